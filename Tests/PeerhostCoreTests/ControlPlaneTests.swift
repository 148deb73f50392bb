import Foundation
import Testing
@testable import PeerhostCore
#if canImport(Glibc)
import Glibc
#endif

/// A host that answers from fixed data and converts arguments with the real echo-c manifest.
struct FakeHost: HostControl {
    let document: StatusDocument
    let manifest: PluginManifest

    func statusDocument() async -> StatusDocument { document }

    func callControl(plugin: String, method: String, args: [ControlArgument]) async throws -> ControlValue {
        guard plugin == manifest.name else { throw ControlCallError.unknownPlugin(plugin, known: [manifest.name]) }
        let call = try manifest.prepareControlCall(method: method, arguments: args)
        let values = call.arguments
        if method == "add", case .i64(let a) = values[0], case .i64(let b) = values[1] { return .i64(a &+ b) }
        if method == "checksum", case .bytes(let bytes) = values[0] { return .i64(bytes.reduce(0) { $0 + Int64($1) }) }
        if method == "set_greeting", case .string(let text) = values[0] { return .i64(Int64(text.utf8.count)) }
        if method == "stats" { return .bytes(Array(#"{"connections":0}"#.utf8)) }
        throw ControlCallError.callFailed(plugin: plugin, method: method, message: "not in the fake")
    }
}

/// Runs blocking socket code off the cooperative pool (2 threads here; the server side needs one).
func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try work() }) }
    }
}

/// A raw HTTP/1.1 request over a TCP socket; returns (status line, headers, body).
func httpRequest(port: Int, method: String = "GET", path: String) throws -> (status: String, headers: [String: String], body: String) {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    #expect(descriptor >= 0)
    defer { close(descriptor) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
    let request = Array("\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
    _ = request.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, 0) }
    var response: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    while true {
        let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        if count <= 0 { break }
        response.append(contentsOf: chunk[..<count])
    }
    let text = String(decoding: response, as: UTF8.self)
    let parts = text.components(separatedBy: "\r\n\r\n")
    let headLines = parts[0].components(separatedBy: "\r\n")
    var headers: [String: String] = [:]
    for line in headLines.dropFirst() {
        let pair = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
        if pair.count == 2 { headers[pair[0].lowercased()] = pair[1] }
    }
    return (headLines[0], headers, parts.dropFirst().joined(separator: "\r\n\r\n"))
}

@Suite("Control plane", .serialized)
struct ControlPlaneTests {
    static func settings(dataDirectory: String) -> HostConfig.HostSettings {
        HostConfig.HostSettings(dataDirectory: dataDirectory, httpHost: "127.0.0.1", httpPort: 0,
                                uidBase: Defaults.uidBase, logLevel: .info)
    }

    static func fakeHost() throws -> FakeHost {
        FakeHost(document: StatusTests.sample,
                 manifest: try PluginManifest(contentsOf: TestSupport.path("plugins/echo-c/manifest.toml")))
    }

    @Test func servesMetricsStatusAndControlSocket() async throws {
        let directory = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(directory) }
        let metrics = HostMetrics()
        metrics.plugin(named: "echo-c").bytesIn(5)
        let plane = try await ControlPlane.start(settings: Self.settings(dataDirectory: directory + "/data"),
                                                 control: try Self.fakeHost(), metrics: metrics)
        let serving = Task { try await plane.run() }
        let port = plane.http.port
        #expect(port > 0)

        // run.json
        try plane.writeRunFile()
        let runFile = try RunFile.read(dataDirectory: directory + "/data")
        #expect(runFile.pid == getpid())
        #expect(runFile.http == "127.0.0.1:\(port)")
        #expect(runFile.controlSocket == directory + "/data/control.sock")
        #expect(plane.readyLine(plugins: []).contains("http://127.0.0.1:\(port)/metrics"))

        // The socket and the data dir are private to the host's user.
        var info = stat()
        #expect(stat(runFile.controlSocket, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        #expect(stat(directory + "/data", &info) == 0)
        #expect(info.st_mode & 0o777 == 0o700)

        // HTTP
        let metricsResponse = try await offPool { try httpRequest(port: port, path: "/metrics") }
        #expect(metricsResponse.status == "HTTP/1.1 200 OK")
        #expect(metricsResponse.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
        #expect(metricsResponse.body.contains(#"peerhost_plugin_bytes_total{plugin="echo-c",direction="in"} 5"#))

        let statusResponse = try await offPool { try httpRequest(port: port, path: "/status?pretty") }
        #expect(statusResponse.status == "HTTP/1.1 200 OK")
        #expect(statusResponse.headers["content-type"] == "application/json")
        #expect(try StatusDocument.decode(Array(statusResponse.body.utf8)) == StatusTests.sample)

        let missing = try await offPool { try httpRequest(port: port, path: "/nope") }
        #expect(missing.status == "HTTP/1.1 404 Not Found")
        let post = try await offPool { try httpRequest(port: port, method: "POST", path: "/status") }
        #expect(post.status == "HTTP/1.1 405 Method Not Allowed")
        #expect(post.headers["allow"] == "GET, HEAD")

        // Control socket
        let client = ControlSocketClient(path: runFile.controlSocket, timeoutSeconds: 10)
        #expect(try await offPool { try client.status() } == StatusTests.sample)
        #expect(try await offPool { try client.call(plugin: "echo-c", method: "add", args: ["2", "40"]) } == .i64(42))
        #expect(try await offPool { try client.call(plugin: "echo-c", method: "checksum", args: [.file(literal: "@f", contents: [1, 2, 250])]) } == .i64(253))
        #expect(try await offPool { try client.call(plugin: "echo-c", method: "stats", args: []) }.description == #"{"connections":0}"#)
        await #expect(throws: ControlClientError.host("argument 1 of add: 'x' is not an i64")) {
            try await offPool { try client.call(plugin: "echo-c", method: "add", args: ["x", "1"]) }
        }
        await #expect(throws: ControlClientError.host("set_greeting takes 1 argument (string), got 2")) {
            try await offPool { try client.call(plugin: "echo-c", method: "set_greeting", args: ["a", "b"]) }
        }
        await #expect(throws: ControlClientError.host("no plugin named 'nope' (configured: echo-c)")) {
            try await offPool { try client.call(plugin: "nope", method: "stats", args: []) }
        }
        // The reply on the wire is one compact JSON line.
        let raw = try await offPool { try client.exchange(.status) }
        #expect(String(decoding: raw, as: UTF8.self).hasPrefix(#"{"ok":true,"result":{"#))

        // Shutdown removes what run.json and the socket promised.
        plane.shutdown()
        try await serving.value
        #expect(!FileManager.default.fileExists(atPath: runFile.controlSocket))
        #expect(!FileManager.default.fileExists(atPath: RunFile.path(dataDirectory: directory + "/data")))
        #expect(throws: RunFileError.self) { try RunFile.read(dataDirectory: directory + "/data") }
    }

    @Test func badRequestsGetErrorReplies() async throws {
        let server = try await {
            let directory = try TestSupport.makeTemporaryDirectory()
            return (directory, try await ControlPlane.start(settings: Self.settings(dataDirectory: directory),
                                                             control: try Self.fakeHost(), metrics: HostMetrics()))
        }()
        defer { TestSupport.removeDirectory(server.0) }
        let plane = server.1
        let replies = [
            await plane.socket.reply(to: Array(#"{"op":"reboot"}"#.utf8)),
            await plane.socket.reply(to: Array("not json".utf8)),
            await plane.socket.reply(to: Array(#"{"op":"ctl","plugin":"echo-c"}"#.utf8)),
        ].map { String(decoding: $0, as: UTF8.self) }
        #expect(replies[0] == #"{"error":"bad request: unknown op 'reboot' (expected status or ctl)","ok":false}"# + "\n")
        #expect(replies[1].hasPrefix(#"{"error":"bad request: "#))
        #expect(replies[2] == #"{"error":"bad request: missing key 'method'","ok":false}"# + "\n")
        plane.shutdown()
        try await plane.run()
    }

    @Test func portInUseIsAClearError() async throws {
        let directory = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(directory) }
        let first = try await ControlPlane.start(settings: Self.settings(dataDirectory: directory + "/a"),
                                                 control: try Self.fakeHost(), metrics: HostMetrics())
        var settings = Self.settings(dataDirectory: directory + "/b")
        settings.httpPort = UInt16(first.http.port)
        do {
            _ = try await ControlPlane.start(settings: settings, control: try Self.fakeHost(), metrics: HostMetrics())
            Issue.record("second bind on one port succeeded")
        } catch {
            #expect("\(error)".hasPrefix("cannot serve HTTP on 127.0.0.1:\(first.http.port): "))
        }
        first.shutdown()
        try await first.run()
    }

    @Test func runFileErrorsSayWhatToDo() throws {
        let directory = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(directory) }
        #expect(throws: RunFileError.missing(path: directory + "/run.json")) { try RunFile.read(dataDirectory: directory) }
        #expect(RunFileError.missing(path: "/d/run.json").description
                == "no running host found: /d/run.json does not exist (start one with `peerhost run`)")
        // A pid that cannot exist (above pid_max) stands for a host that died without cleaning up.
        try RunFile(pid: 2_000_000_000, controlSocket: directory + "/control.sock", http: "127.0.0.1:1").write(dataDirectory: directory)
        #expect(throws: RunFileError.stale(path: directory + "/run.json", pid: 2_000_000_000)) { try RunFile.read(dataDirectory: directory) }
        try TestSupport.write("{", to: directory + "/run.json")
        #expect(throws: RunFileError.self) { try RunFile.read(dataDirectory: directory) }
    }

    @Test func clientExplainsAMissingSocket() {
        let client = ControlSocketClient(path: "/tmp/peerhost-no-such.sock")
        #expect(throws: ControlClientError.connect(path: "/tmp/peerhost-no-such.sock", reason: "no such socket (is the host running?)")) {
            try client.status()
        }
    }
}

extension ControlPlaneTests {
    @Test func secondHostOnOneDataDirIsRefused() async throws {
        let directory = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(directory) }
        // Our own parent process stands in for another live host.
        try RunFile(pid: getppid(), controlSocket: directory + "/control.sock", http: "127.0.0.1:1").write(dataDirectory: directory)
        await #expect(throws: ControlPlaneError.alreadyRunning(dataDirectory: directory, pid: getppid())) {
            _ = try await ControlPlane.start(settings: Self.settings(dataDirectory: directory), control: try Self.fakeHost(), metrics: HostMetrics())
        }
    }
}
