// Read-only HTTP on loopback: GET /metrics (Prometheus text) and GET /status (the status document).
// Mutating calls never come here; they go over the Unix control socket, where the peer is checked.
// SwiftNIO's HTTP/1 codec parses requests; one event-loop thread is plenty for scrapes and CLIs.

import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

public final class HTTPControlServer: Service, Sendable {
    public typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    /// The bound address; `port` is the real one when the config asked for port 0.
    public let host: String
    public let port: Int
    private let serverChannel: NIOAsyncChannel<Connection, Never>
    private let control: any HostControl
    private let metrics: HostMetrics

    private init(host: String, port: Int, serverChannel: NIOAsyncChannel<Connection, Never>,
                 control: any HostControl, metrics: HostMetrics) {
        self.host = host
        self.port = port
        self.serverChannel = serverChannel
        self.control = control
        self.metrics = metrics
    }

    /// Binds `host:port` (port 0 = ephemeral). Serving starts with `run()`.
    public static func bind(host: String, port: Int, control: any HostControl, metrics: HostMetrics,
                            group: any EventLoopGroup) async throws(ControlPlaneError) -> HTTPControlServer {
        let serverChannel: NIOAsyncChannel<Connection, Never>
        do {
            serverChannel = try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        return try Connection(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw .httpBind(address: "\(host):\(port)", reason: "\(error)")
        }
        let boundPort = serverChannel.channel.localAddress?.port ?? port
        return HTTPControlServer(host: host, port: boundPort, serverChannel: serverChannel, control: control, metrics: metrics)
    }

    /// Serves until graceful shutdown, task cancellation or `close()`.
    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await self.serve()
        } onGracefulShutdown: {
            self.close()
        }
    }

    /// Stops accepting; requests already being answered finish.
    public func close() {
        serverChannel.channel.close(promise: nil)
    }

    private func serve() async throws {
        await withDiscardingTaskGroup { group in
            do {
                try await withTaskCancellationHandler {
                    try await serverChannel.executeThenClose { connections in
                        for try await connection in connections {
                            group.addTask { await self.answer(connection) }
                        }
                    }
                } onCancel: {
                    self.close()
                }
            } catch {
                // Closing the listening socket ends the loop with an error on some paths; the
                // server is stopping either way.
            }
        }
    }

    private func answer(_ connection: Connection) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var requestHead: HTTPRequestHead?
                for try await part in inbound {
                    switch part {
                    case .head(let head):
                        requestHead = head
                    case .body:
                        continue
                    case .end:
                        guard let head = requestHead else { return }
                        let response = await self.response(to: head)
                        var headers = HTTPHeaders()
                        headers.add(name: "Content-Type", value: response.contentType)
                        headers.add(name: "Content-Length", value: String(response.body.count))
                        // One request per connection keeps shutdown simple; scrapers reconnect.
                        headers.add(name: "Connection", value: "close")
                        if let allow = response.allow { headers.add(name: "Allow", value: allow) }
                        try await outbound.write(.head(HTTPResponseHead(version: head.version, status: response.status, headers: headers)))
                        if head.method != .HEAD {
                            try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: response.body))))
                        }
                        try await outbound.write(.end(nil))
                        return
                    }
                }
            }
        } catch {
            // A client that disconnects mid-request is its own problem, not the server's.
        }
    }

    struct Response {
        var status: HTTPResponseStatus
        var contentType: String
        var body: [UInt8]
        var allow: String? = nil
    }

    func response(to head: HTTPRequestHead) async -> Response {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? head.uri
        let routes = ["/metrics", "/status"]
        guard routes.contains(path) else {
            return Response(status: .notFound, contentType: "text/plain; charset=utf-8",
                            body: Array("not found: \(path) (this server has /metrics and /status)\n".utf8))
        }
        guard head.method == .GET || head.method == .HEAD else {
            return Response(status: .methodNotAllowed, contentType: "text/plain; charset=utf-8",
                            body: Array("method \(head.method.rawValue) not allowed: this server is read-only (use the control socket)\n".utf8),
                            allow: "GET, HEAD")
        }
        switch path {
        case "/metrics":
            return Response(status: .ok, contentType: HostMetrics.contentType, body: metrics.render())
        default:
            do {
                var body = try await control.statusDocument().encodedJSON()
                body.append(0x0a)
                return Response(status: .ok, contentType: "application/json", body: body)
            } catch {
                return Response(status: .internalServerError, contentType: "text/plain; charset=utf-8",
                                body: Array("status document could not be encoded: \(error)\n".utf8))
            }
        }
    }
}

/// Errors starting the control plane; each names what it was doing.
public enum ControlPlaneError: Error, Sendable, Equatable, CustomStringConvertible {
    case dataDirectory(path: String, reason: String)
    case httpBind(address: String, reason: String)
    case socketBind(path: String, reason: String)
    case runFile(RunFileError)
    case alreadyRunning(dataDirectory: String, pid: Int32)

    public var description: String {
        switch self {
        case .dataDirectory(let path, let reason): return "cannot prepare data dir \(path): \(reason)"
        case .httpBind(let address, let reason): return "cannot serve HTTP on \(address): \(reason)"
        case .socketBind(let path, let reason): return "cannot create control socket \(path): \(reason)"
        case .runFile(let error): return error.description
        case .alreadyRunning(let dataDirectory, let pid):
            return "a host is already running with data dir \(dataDirectory) (pid \(pid)); stop it first or use another data_dir"
        }
    }
}
