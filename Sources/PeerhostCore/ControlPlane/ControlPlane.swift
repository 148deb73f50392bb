// The control plane as one unit for the host: HTTP (/metrics, /status) and the Unix control
// socket on a private one-thread event loop, plus run.json. Start it, write run.json once the
// plugins are up, run it as a swift-service-lifecycle Service (or call `shutdown()`).
//
//   let plane = try await ControlPlane.start(settings: config.host, control: host, metrics: metrics)
//   try plane.writeRunFile()              // once the plugins are up; then print plane.readyLine(…)
//   try await plane.run()                 // until graceful shutdown / cancellation

import Foundation
import NIOCore
import NIOPosix
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

public final class ControlPlane: Service, Sendable {
    public let http: HTTPControlServer
    public let socket: ControlSocketServer
    public let dataDirectory: String
    private let group: MultiThreadedEventLoopGroup

    private init(http: HTTPControlServer, socket: ControlSocketServer, dataDirectory: String, group: MultiThreadedEventLoopGroup) {
        self.http = http
        self.socket = socket
        self.dataDirectory = dataDirectory
        self.group = group
    }

    /// Creates the data dir (0700), binds HTTP and the control socket. Nothing is served until
    /// `run()`; connections made before that wait in the listen backlog.
    public static func start(settings: HostConfig.HostSettings, control: any HostControl,
                             metrics: HostMetrics) async throws(ControlPlaneError) -> ControlPlane {
        let dataDirectory = settings.dataDirectory
        // Binding replaces the socket file, so a second host on one data dir would silently steal
        // the first one's control socket: refuse instead.
        if let running = try? RunFile.read(dataDirectory: dataDirectory), running.pid != getpid() {
            throw .alreadyRunning(dataDirectory: dataDirectory, pid: running.pid)
        }
        do {
            try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw .dataDirectory(path: dataDirectory, reason: error.localizedDescription)
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let http: HTTPControlServer
        do {
            http = try await HTTPControlServer.bind(host: settings.httpHost, port: Int(settings.httpPort),
                                                    control: control, metrics: metrics, group: group)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        do {
            let socket = try await ControlSocketServer.bind(path: settings.controlSocketPath, control: control, group: group)
            return ControlPlane(http: http, socket: socket, dataDirectory: dataDirectory, group: group)
        } catch {
            http.close()
            try? await group.shutdownGracefully()
            throw error
        }
    }

    /// "127.0.0.1:PORT" with the bound port.
    public var httpAddress: String { http.host.contains(":") ? "[\(http.host)]:\(http.port)" : "\(http.host):\(http.port)" }

    public var runFile: RunFile {
        RunFile(pid: getpid(), controlSocket: socket.path, http: httpAddress)
    }

    /// Writes <data_dir>/run.json: call once the host is ready to serve.
    public func writeRunFile() throws(ControlPlaneError) {
        do { try runFile.write(dataDirectory: dataDirectory) } catch { throw .runFile(error) }
    }

    /// The line `peerhost run` prints when ready (DESIGN.md: "prints the ready line and the addresses").
    public func readyLine(plugins: [HostConfig.PluginConfig]) -> String {
        let listens = plugins.filter(\.enabled).map { plugin in
            "\(plugin.name) \(plugin.effectiveListen.map(\.description).joined(separator: ","))"
        }
        return "peerhost ready: http://\(httpAddress)/metrics http://\(httpAddress)/status control \(socket.path)"
            + (listens.isEmpty ? "" : " plugins: " + listens.joined(separator: "; "))
    }

    /// Serves both until graceful shutdown or cancellation; then removes run.json and the socket
    /// and stops the event loop.
    public func run() async throws {
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { try? await self.http.run() }
                group.addTask { try? await self.socket.run() }
                await group.waitForAll()
            }
        } onGracefulShutdown: {
            self.shutdown()
        }
        RunFile.remove(dataDirectory: dataDirectory)
        unlink(socket.path)
        try? await group.shutdownGracefully()
    }

    /// Stops accepting on both servers; `run()` then returns.
    public func shutdown() {
        http.close()
        socket.close()
    }
}
