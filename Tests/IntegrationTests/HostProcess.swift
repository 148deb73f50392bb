import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Every integration suite is nested here: they share fixed plugin ports (the manifests grant
/// 7001–7004), so they must never run in parallel with each other.
@Suite(.serialized) struct Integration {}

/// Paths of the package and its debug build products, found from this file's location.
enum Products {
    static let repoRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var buildDirectory: URL {
        // `swift build` links .build/debug → .build/<triple>/debug.
        repoRoot.appendingPathComponent(".build/debug")
    }
    static var peerhost: String { buildDirectory.appendingPathComponent("peerhost").path }

    /// The checkout's development key (DEV_KEY in the Makefile): test configs trust its folder.
    static var devKeyFolder: String { repoRoot.appendingPathComponent(".peerhost-dev").path }

    /// Signs every bundled and test plugin against the libraries of this build, as `make build-debug`
    /// does (so `swift build --build-tests && swift test` works too), once per test process: the host
    /// refuses unsigned plugins. Returns the CLI's output when it failed.
    static let devSigned: String? = {
        let key = devKeyFolder + "/dev"
        if !FileManager.default.fileExists(atPath: key + ".key") {
            guard let (status, out) = try? runCLI(["keygen", "--out", key]), status == 0 else { return "keygen failed" }
            _ = out
        }
        var manifests: [String] = []
        for folder in ["plugins", "Tests/Plugins"] {
            let base = repoRoot.appendingPathComponent(folder).path
            for name in ((try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []).sorted()
            where FileManager.default.fileExists(atPath: "\(base)/\(name)/manifest.toml") {
                manifests.append("\(base)/\(name)/manifest.toml")
            }
        }
        guard let (status, out) = try? runCLI(["sign", "--key", key + ".key"] + manifests) else { return "sign did not run" }
        return status == 0 ? nil : out
    }()
}

extension Products {
    /// Signs a manifest a test wrote or copied into a temporary folder with the checkout's dev key,
    /// the sidecar `manifest.sig` beside it (never beside the shared build products, whose
    /// signatures the other tests use). The signature covers the library the manifest resolves to.
    static func signCopy(_ manifest: String) throws {
        if let failure = devSigned { throw TestFailure("the dev key is not usable: \(failure)") }
        let sig = (manifest as NSString).deletingLastPathComponent + "/manifest.sig"
        let (status, out) = try runCLI(["sign", manifest, "--key", devKeyFolder + "/dev.key", "--out", sig])
        guard status == 0 else { throw TestFailure("peerhost sign \(manifest): \(out)") }
    }
}

/// A `peerhost run` child process on a temporary config and data directory.
final class HostProcess: @unchecked Sendable {
    let process = Process()
    let directory: URL
    let configPath: String
    let output: Pipe = Pipe()
    private(set) var runInfo: [String: Any] = [:]
    private var launched = false

    /// `asUser`: run the host as this uid/gid through setpriv (tests of the unprivileged mode).
    /// `command`: the subcommand and its arguments before `--config` (`["learn", "echo-c", …]`).
    /// `netns`: run the host in this named network namespace (`ip netns exec`; NetworkNamespaces.swift).
    /// Its HTTP address then lives in that namespace: talk to it through `cli` (a Unix socket).
    init(config: String, asUser: UInt32? = nil, command: [String] = ["run"], netns: String? = nil) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("peerhost-it-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        configPath = directory.appendingPathComponent("peerhost.toml").path
        try config.replacingOccurrences(of: "@DATA@", with: directory.appendingPathComponent("data").path)
            .replacingOccurrences(of: "@REPO@", with: Products.repoRoot.path)
            .write(toFile: configPath, atomically: true, encoding: .utf8)
        if let uid = asUser {
            // The unprivileged host must be able to create its data dir here.
            chmod(directory.path, 0o777)
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments = ["--reuid=\(uid)", "--regid=\(uid)", "--clear-groups", Products.peerhost] + command + ["--config", configPath]
        } else if let netns {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/ip")
            process.arguments = ["netns", "exec", netns, Products.peerhost] + command + ["--config", configPath]
        } else {
            process.executableURL = URL(fileURLWithPath: Products.peerhost)
            process.arguments = command + ["--config", configPath]
        }
        process.standardOutput = output
        process.standardError = output
    }

    var dataDirectory: String { directory.appendingPathComponent("data").path }

    /// Every line of `<data_dir>/audit.log` so far, parsed (docs/audit-log.md).
    func auditEvents() throws -> [[String: Any]] {
        let path = dataDirectory + "/audit.log"
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        return try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map {
            guard let event = try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] else {
                throw TestFailure("audit line is not a JSON object: \($0)")
            }
            return event
        }
    }

    /// The audit lines of `plugin` with this action (and decision, when given).
    func audit(_ plugin: String, action: String, decision: String? = nil) throws -> [[String: Any]] {
        try auditEvents().filter {
            $0["plugin"] as? String == plugin && $0["action"] as? String == action
                && (decision == nil || $0["decision"] as? String == decision)
        }
    }

    /// The plugin ports the test manifests grant. A test host needs them free: a leftover host (or
    /// anything else) on them would answer in our place.
    static let pluginPorts: [UInt16] = [7001, 7002, 7003, 7004, 7006, 7007]

    /// Starts the host and waits for run.json (the host writes it once it serves).
    func start(timeout: Duration = .seconds(60)) throws {
        if let failure = Products.devSigned { throw TestFailure("signing the test plugins failed: \(failure)") }
        // Test configs trust the development key unless they say otherwise (the verification tests).
        if let text = try? String(contentsOfFile: configPath, encoding: .utf8), !text.contains("[security]") {
            try (text + "\n[security]\ntrust = [\"\(Products.devKeyFolder)\"]\n").write(toFile: configPath, atomically: true, encoding: .utf8)
        }
        let portsFree = ContinuousClock.now + .seconds(30)
        while let busy = Self.pluginPorts.first(where: { !portIsFree($0) }) {
            guard ContinuousClock.now < portsFree else {
                throw TestFailure("port \(busy) is in use by another process; the integration tests need 7001-7004 free")
            }
            usleep(100_000)
        }
        try process.run()
        launched = true
        let runFile = directory.appendingPathComponent("data/run.json").path
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let data = FileManager.default.contents(atPath: runFile),
               let info = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
                runInfo = info
                return
            }
            if !process.isRunning { throw TestFailure("peerhost exited early: \(drainOutput())") }
            usleep(50_000)
        }
        throw TestFailure("peerhost did not write run.json within \(timeout): \(drainOutput())")
    }

    var httpAddress: String { runInfo["http"] as? String ?? "" }

    func drainOutput() -> String {
        let data = output.fileHandleForReading.availableData
        return String(decoding: data, as: UTF8.self)
    }

    func stop() -> Int32 {
        guard launched else { return -1 }   // start() failed before the process ran
        guard process.isRunning else { return process.terminationStatus }
        process.terminate()   // SIGTERM: graceful
        let deadline = ContinuousClock.now + .seconds(15)
        while process.isRunning && ContinuousClock.now < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        return process.terminationStatus
    }

    /// Runs the CLI against this host and returns (exit status, stdout+stderr).
    func cli(_ arguments: [String]) throws -> (Int32, String) {
        try runCLI(arguments + ["--config", configPath])
    }

    /// /metrics parsed into series ("name{labels}") → value.
    func metrics() throws -> [String: Double] {
        let (_, text) = try httpGet(httpAddress, "/metrics")
        var result: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            result[String(line[..<space])] = value
        }
        return result
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(at: directory)
    }
}

/// The plugin's entry of the host's /status document ([:] when it has none).
func status(_ host: HostProcess, _ plugin: String) throws -> [String: Any] {
    let (_, body) = try httpGet(host.httpAddress, "/status")
    let doc = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
    return (doc?["plugins"] as? [[String: Any]])?.first { $0["name"] as? String == plugin } ?? [:]
}

func runCLI(_ arguments: [String]) throws -> (Int32, String) {
    try runProgram(Products.peerhost, arguments)
}

/// Runs a program to completion (in `directory`, when given); returns (status, stdout+stderr).
@discardableResult
func runProgram(_ executable: String, _ arguments: [String], in directory: String? = nil) throws -> (Int32, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    if let directory { p.currentDirectoryURL = URL(fileURLWithPath: directory) }
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Minimal blocking TCP client with timeouts, for echo and HTTP checks.
struct TCPClient {
    let fd: Int32

    init(host: String = "127.0.0.1", port: UInt16, timeoutSeconds: Int = 5) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(errno)") }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        inet_pton(AF_INET, host, &addr.sin_addr)
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { let e = errno; Glibc.close(fd); throw TestFailure("connect to \(host):\(port): errno \(e)") }
    }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw TestFailure("send: errno \(errno)") }
            offset += n
        }
    }

    func receive(exactly count: Int) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + offset, count - offset, 0) }
            guard n > 0 else { throw TestFailure("recv after \(offset)/\(count) bytes: \(n == 0 ? "EOF" : "errno \(errno)")") }
            offset += n
        }
        return buffer
    }

    func receiveAll() -> [UInt8] {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, 65536, 0) }
            if n <= 0 { break }
            result += buffer[0..<n]
        }
        return result
    }

    func close() { Glibc.close(fd) }
}

/// GET a path over HTTP/1.1 with Connection: close; returns (status line, body).
func httpGet(_ address: String, _ path: String) throws -> (String, String) {
    let parts = address.split(separator: ":")
    guard parts.count == 2, let port = UInt16(parts[1]) else { throw TestFailure("bad http address \(address)") }
    let client = try TCPClient(host: String(parts[0]), port: port)
    defer { client.close() }
    try client.send(Array("GET \(path) HTTP/1.1\r\nHost: \(address)\r\nConnection: close\r\n\r\n".utf8))
    let text = String(decoding: client.receiveAll(), as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else { throw TestFailure("no HTTP header end in: \(text)") }
    let statusLine = String(text[..<split.lowerBound].split(separator: "\r\n").first ?? "")
    return (statusLine, String(text[split.upperBound...]))
}

/// Sums every series of metric `name` whose labels contain all of `labels` (order-independent).
func series(_ metrics: [String: Double], _ name: String, _ labels: [String]) -> Double {
    metrics.filter { key, _ in key.hasPrefix(name + "{") && labels.allSatisfy { key.contains($0) } }.values.reduce(0, +)
}

/// True when nothing listens on 127.0.0.1:port (a bind with SO_REUSEADDR succeeds).
func portIsFree(_ port: UInt16) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { Glibc.close(fd) }
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = port.bigEndian
    addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    return withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}

/// Polls `condition` every 50 ms until it holds (errors count as "not yet"), or fails naming `what`.
func waitUntil(_ what: String, timeout: Duration = .seconds(20), _ condition: () throws -> Bool) throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if (try? condition()) == true { return }
        usleep(50_000)
    }
    throw TestFailure("timed out waiting for \(what)")
}

/// True when a fresh connection to 127.0.0.1:port echoes `text` back.
func echoes(_ port: UInt16, _ text: String) -> Bool {
    guard let client = try? TCPClient(port: port, timeoutSeconds: 2) else { return false }
    defer { client.close() }
    let bytes = Array(text.utf8)
    return (try? client.send(bytes)) != nil && (try? client.receive(exactly: bytes.count)) == bytes
}
