// The Unix control socket <data_dir>/control.sock: mutating calls (ctl, later grants, rates,
// restarts). Mode 0600 and an SO_PEERCRED check (root or the host's own uid): the file mode alone
// would not stop a process that inherited a connected descriptor.

import Foundation
import NIOCore
import NIOPosix
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// Linux `struct ucred` (pid, uid, gid; three 32-bit fields, 12 bytes). Glibc hides `ucred` from
/// Swift (it needs _GNU_SOURCE), so we mirror it; getsockopt sizes the read by this layout.
struct PeerCredentials: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

public final class ControlSocketServer: Service, Sendable {
    struct PeerConnection: Sendable {
        var channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        /// nil when the kernel did not tell us (treated as refused).
        var peerUID: UInt32?
    }

    /// Requests are one line; base64 file arguments make them large but never this large.
    static let maximumRequestBytes = 64 << 20

    public let path: String
    private let serverChannel: NIOAsyncChannel<PeerConnection, Never>
    private let control: any HostControl
    private let allowedUIDs: Set<UInt32>

    private init(path: String, serverChannel: NIOAsyncChannel<PeerConnection, Never>, control: any HostControl, allowedUIDs: Set<UInt32>) {
        self.path = path
        self.serverChannel = serverChannel
        self.control = control
        self.allowedUIDs = allowedUIDs
    }

    /// Binds `path` (replacing a stale socket file) with mode 0600.
    public static func bind(path: String, control: any HostControl, group: any EventLoopGroup) async throws(ControlPlaneError) -> ControlSocketServer {
        let serverChannel: NIOAsyncChannel<PeerConnection, Never>
        do {
            serverChannel = try await ServerBootstrap(group: group)
                .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true) { channel in
                    Self.peerUID(of: channel).flatMapThrowing { uid in
                        PeerConnection(channel: try NIOAsyncChannel(wrappingChannelSynchronously: channel), peerUID: uid)
                    }
                }
        } catch {
            throw .socketBind(path: path, reason: "\(error)")
        }
        // The data dir is 0700 as well, which covers the instant between bind and chmod.
        guard chmod(path, 0o600) == 0 else {
            let reason = String(cString: strerror(errno))
            serverChannel.channel.close(promise: nil)
            throw .socketBind(path: path, reason: "chmod 0600: \(reason)")
        }
        return ControlSocketServer(path: path, serverChannel: serverChannel, control: control, allowedUIDs: [0, getuid()])
    }

    private static func peerUID(of channel: any Channel) -> EventLoopFuture<UInt32?> {
        guard let provider = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeSucceededFuture(nil)
        }
        let credentials: EventLoopFuture<PeerCredentials> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        return credentials.map { credentials -> UInt32? in credentials.uid }.recover { _ -> UInt32? in nil }
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await self.serve()
        } onGracefulShutdown: {
            self.close()
        }
        unlink(path)
    }

    public func close() {
        serverChannel.channel.close(promise: nil)
    }

    private func serve() async {
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
                // The listening socket was closed: stopping.
            }
        }
    }

    private func answer(_ connection: PeerConnection) async {
        do {
            try await connection.channel.executeThenClose { inbound, outbound in
                guard let uid = connection.peerUID, self.allowedUIDs.contains(uid) else {
                    let who = connection.peerUID.map { "uid \($0)" } ?? "an unidentified peer"
                    let reply = ControlReply<JSONValue>.failure("permission denied: \(who) may not use this control socket (only root and uid \(getuid()))")
                    try await outbound.write(ByteBuffer(bytes: reply.line()))
                    return
                }
                var request: [UInt8] = []
                for try await chunk in inbound {
                    request.append(contentsOf: chunk.readableBytesView)
                    if let newline = request.firstIndex(of: 0x0a) {
                        request.removeSubrange(newline...)
                        break
                    }
                    if request.count > Self.maximumRequestBytes {
                        try await outbound.write(ByteBuffer(bytes: ControlReply<JSONValue>.failure("request larger than \(Self.maximumRequestBytes) bytes").line()))
                        return
                    }
                }
                // Answers of a streaming call go out as they come, each a line with "more": true,
                // then the reply line. A caller that stops reading (or leaves) ends the stream: its
                // queue is bounded, and a full or closed one cancels the call.
                let (lines, sink) = AsyncStream<[UInt8]>.makeStream(bufferingPolicy: .bufferingOldest(Self.maximumQueuedAnswers))
                let requestLine = request
                try await withThrowingDiscardingTaskGroup { group in
                    group.addTask {
                        let last = await self.reply(to: requestLine) { value in
                            if case .enqueued = sink.yield(ControlReply.partial(value).line()) { return true }
                            return false
                        }
                        sink.yield(last)
                        sink.finish()
                    }
                    do {
                        for await line in lines { try await outbound.write(ByteBuffer(bytes: line)) }
                    } catch {
                        sink.finish()   // the caller went away: the next answer cancels the call
                        throw error
                    }
                }
            }
        } catch {
            // The client went away; nothing to answer.
        }
    }

    /// Answers of a streaming call waiting for a slow reader; past this the call is cancelled.
    static let maximumQueuedAnswers = 4096

    /// The reply line for one request line; `partial` takes a streaming call's earlier answers
    /// (false: the caller is gone).
    func reply(to line: [UInt8], partial: (@Sendable (ControlValue) -> Bool)? = nil) async -> [UInt8] {
        let request: ControlRequest
        do {
            request = try JSONDecoder().decode(ControlRequest.self, from: Data(line))
        } catch {
            return ControlReply<JSONValue>.failure("bad request: \(Self.describe(error))").line()
        }
        switch request {
        case .status:
            return ControlReply.success(await control.statusDocument()).line()
        case .ctl(let plugin, let method, let args):
            do {
                let value = if let partial {
                    try await control.callControl(plugin: plugin, method: method, args: args, partial: partial)
                } else {
                    try await control.callControl(plugin: plugin, method: method, args: args)
                }
                return ControlReply.success(value).line()
            } catch let error as ControlCallError {
                return ControlReply<ControlValue>.failure(error.description).line()
            } catch {
                return ControlReply<ControlValue>.failure("\(error)").line()
            }
        }
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let context): return context.debugDescription
        case DecodingError.keyNotFound(let key, _): return "missing key '\(key.stringValue)'"
        case DecodingError.typeMismatch(_, let context): return "wrong type at \(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)"
        default: return "\(error)"
        }
    }
}
