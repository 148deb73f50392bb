import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    /// `peerhost run` as a user starts it: real runner processes in namespaces, echo through both
    /// plugins, ctl, /metrics, /status, restarts after kill -9, clean shutdown.
    @Suite(.serialized) struct EchoIntegrationTests {
        static let config = """
        [host]
        data_dir = "@DATA@"
        http = "127.0.0.1:0"

        [[plugin]]
        name = "echo-c"
        manifest = "@REPO@/plugins/echo-c/manifest.toml"
        listen = ["tcp:127.0.0.1:7001"]

        [[plugin]]
        name = "echo-swift"
        manifest = "@REPO@/plugins/echo-swift/manifest.toml"
        listen = ["tcp:127.0.0.1:7002"]
        """

        /// Connects (retrying while the plugin is still coming up) and echoes `payload`.
        func echo(port: UInt16, _ payload: [UInt8], within: Duration = .seconds(20)) throws -> [UInt8] {
            let deadline = ContinuousClock.now + within
            var lastError: Error = TestFailure("never tried")
            while ContinuousClock.now < deadline {
                do {
                    let client = try TCPClient(port: port)
                    defer { client.close() }
                    try client.send(payload)
                    return try client.receive(exactly: payload.count)
                } catch {
                    lastError = error
                    usleep(100_000)
                }
            }
            throw lastError
        }

        func runnerPIDs(_ host: HostProcess) throws -> [String: Int32] {
            let (status, out) = try host.cli(["status", "--json"])
            guard status == 0, let doc = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any],
                  let plugins = doc["plugins"] as? [[String: Any]] else { throw TestFailure("status --json failed: \(out)") }
            var result: [String: Int32] = [:]
            for p in plugins { if let name = p["name"] as? String, let pid = p["pid"] as? Int { result[name] = Int32(pid) } }
            return result
        }

        @Test func echoThroughBothPluginsWithManyClients() throws {
            let host = try HostProcess(config: Self.config)
            try host.start()
            for port: UInt16 in [7001, 7002] {
                #expect(try echo(port: port, Array("hello".utf8)) == Array("hello".utf8))
            }
            // 64 concurrent clients per plugin, each with its own random payload up to 200 KiB.
            let failures = Locked<[String]>([])
            DispatchQueue.concurrentPerform(iterations: 128) { i in
                let port: UInt16 = i % 2 == 0 ? 7001 : 7002
                var rng = SystemRandomNumberGenerator()
                let payload = (0..<Int.random(in: 1...200_000, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                do {
                    let back = try echo(port: port, payload)
                    if back != payload { failures.withLock { $0.append("client \(i): bytes differ") } }
                } catch {
                    failures.withLock { $0.append("client \(i): \(error)") }
                }
            }
            #expect(failures.value.isEmpty, "\(failures.value.prefix(5))")
            #expect(host.stop() == 0, "SIGTERM stops the host cleanly")
        }

        /// The host passes `listen` to a plugin as an array of the effective grants; both echo
        /// plugins used to read it as a string and fell back to their default port (issue 14).
        @Test func bothEchoPluginsListenWhereTheConfigSays() throws {
            let folder = try BitTorrentPeers.temporaryDirectory("echo-manifests")
            var plugins = ""
            for (name, granted, chosen) in [("echo-c", 7001, 7003), ("echo-swift", 7002, 7004)] {
                try FileManager.default.createDirectory(atPath: "\(folder)/\(name)", withIntermediateDirectories: true)
                let manifest = try String(contentsOfFile: Products.repoRoot.appendingPathComponent("plugins/\(name)/manifest.toml").path, encoding: .utf8)
                    .replacingOccurrences(of: #"listen = ["tcp:127.0.0.1:\#(granted)"]"#,
                                          with: #"listen = ["tcp:127.0.0.1:\#(granted)", "tcp:127.0.0.1:\#(chosen)"]"#)
                #expect(manifest.contains("\(chosen)"), "the manifest's listen line moved: \(name)")
                try manifest.write(toFile: "\(folder)/\(name)/manifest.toml", atomically: true, encoding: .utf8)
                try Products.signCopy("\(folder)/\(name)/manifest.toml")
                plugins += "\n[[plugin]]\nname = \"\(name)\"\nmanifest = \"\(folder)/\(name)/manifest.toml\"\nlisten = [\"tcp:127.0.0.1:\(chosen)\"]\n"
            }
            let host = try HostProcess(config: "[host]\ndata_dir = \"@DATA@\"\nhttp = \"127.0.0.1:0\"\n" + plugins)
            defer { _ = host.stop() }
            try host.start()
            #expect(try echo(port: 7003, Array("c\n".utf8)) == Array("c\n".utf8))
            #expect(try echo(port: 7004, Array("swift\n".utf8)) == Array("swift\n".utf8))
            #expect(portIsFree(7001) && portIsFree(7002), "nothing listens on the manifest's other port")
        }

        @Test func ctlStatusMetricsAndSandboxFacts() throws {
            let host = try HostProcess(config: Self.config)
            try host.start()
            _ = try echo(port: 7001, Array("x".utf8))
            _ = try echo(port: 7002, Array("x".utf8))

            for plugin in ["echo-c", "echo-swift"] {
                let (s1, stats) = try host.cli(["ctl", plugin, "stats"])
                #expect(s1 == 0, "\(stats)")
                #expect(stats.contains("\"connections\""), "\(stats)")
                let (s2, sum) = try host.cli(["ctl", plugin, "add", "40", "2"])
                #expect(s2 == 0 && sum.trimmingCharacters(in: .whitespacesAndNewlines) == "42", "\(sum)")
                let (s3, bad) = try host.cli(["ctl", plugin, "add", "1"])
                #expect(s3 != 0 && bad.contains("add"), "wrong arity is a clear error: \(bad)")
                let (s4, unknown) = try host.cli(["ctl", plugin, "nope"])
                #expect(s4 != 0 && unknown.contains("nope"), "\(unknown)")
            }

            let (statusLine, metrics) = try httpGet(host.httpAddress, "/metrics")
            #expect(statusLine.contains("200"))
            #expect(metrics.contains("peerhost_plugin_up{plugin=\"echo-c\"} 1"), "\(metrics.prefix(2000))")
            #expect(metrics.contains("peerhost_plugin_bytes_total"))
            let (_, statusBody) = try httpGet(host.httpAddress, "/status")
            let doc = try #require(try JSONSerialization.jsonObject(with: Data(statusBody.utf8)) as? [String: Any])
            let plugins = try #require(doc["plugins"] as? [[String: Any]])
            #expect(plugins.compactMap { $0["state"] as? String } == ["running", "running"])

            // From the host: each runner runs as a non-zero uid, in its own namespaces, with NoNewPrivs.
            for (name, pid) in try runnerPIDs(host) {
                let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
                let uidLine = status.split(separator: "\n").first { $0.hasPrefix("Uid:") } ?? ""
                #expect(!uidLine.split(separator: "\t").dropFirst().contains("0"), "\(name): \(uidLine)")
                #expect(status.contains("NoNewPrivs:\t1"), "\(name)")
                for ns in ["user", "pid", "net", "mnt", "ipc", "uts"] {
                    let mine = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/\(ns)")
                    let theirs = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/\(ns)")
                    #expect(mine != theirs, "\(name) has its own \(ns) namespace")
                }
            }
            #expect(host.stop() == 0)
        }

        /// Started by an unprivileged user, the host still sandboxes plugins (one-uid map) and says so.
        @Test func unprivilegedHostRunsPluginsWithAOneUidMap() throws {
            let host = try HostProcess(config: Self.config, asUser: 65534)
            try host.start()
            #expect(try echo(port: 7001, Array("unprivileged".utf8)) == Array("unprivileged".utf8))
            let (_, body) = try httpGet(host.httpAddress, "/status")
            let doc = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
            let pid = try #require(((doc["plugins"] as? [[String: Any]])?.first)?["pid"] as? Int)
            let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
            #expect(status.contains("Uid:\t65534"), "the runner maps to the unprivileged user's uid")
            #expect(status.contains("NoNewPrivs:\t1"))
            #expect(host.stop() == 0)
            #expect(host.drainOutput().contains("running unprivileged"), "the weaker mode is announced")
        }

        /// Under load the data path copies no payload and rings the plugin's doorbell far less often than
        /// it hands it messages (the need-wakeup flag works).
        @Test func dataPathCopiesNothingAndWakesRarelyUnderLoad() throws {
            let host = try HostProcess(config: Self.config)
            try host.start()
            _ = try echo(port: 7001, Array("warm".utf8))
            let before = try host.metrics()
            let client = try TCPClient(port: 7001, timeoutSeconds: 20)
            defer { client.close() }
            let total = 64 << 20
            let chunk = [UInt8](repeating: 0x5a, count: 4096)
            let writer = Thread {
                var sent = 0
                while sent < total { try? client.send(chunk); sent += chunk.count }
            }
            writer.start()
            var received = 0
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            while received < total {
                let n = buffer.withUnsafeMutableBytes { recv(client.fd, $0.baseAddress!, $0.count, 0) }
                guard n > 0 else { break }
                received += n
            }
            #expect(received == total)
            let after = try host.metrics()
            let plugin = "plugin=\"echo-c\""
            let messages = series(after, "peerhost_plugin_messages_total", [plugin, "direction=\"in\""])
                - series(before, "peerhost_plugin_messages_total", [plugin, "direction=\"in\""])
            let wakeups = series(after, "peerhost_ring_wakeups_total", [plugin, "ring=\"rx\""])
                - series(before, "peerhost_ring_wakeups_total", [plugin, "ring=\"rx\""])
            let bytesIn = series(after, "peerhost_plugin_bytes_total", [plugin, "direction=\"in\""])
                - series(before, "peerhost_plugin_bytes_total", [plugin, "direction=\"in\""])
            #expect(bytesIn == Double(total), "every byte counted once")
            #expect(series(after, "peerhost_datapath_copied_bytes_total", [plugin]) == 0, "no payload copied")
            #expect(messages > 1000, "the load produced \(messages) RX messages")
            #expect(wakeups * 10 < messages, "eventfd writes (\(wakeups)) must be far fewer than messages (\(messages))")
            #expect(host.stop() == 0)
        }

        @Test func aKilledRunnerIsRestartedAndEchoesAgain() throws {
            let host = try HostProcess(config: Self.config)
            try host.start()
            _ = try echo(port: 7001, Array("before".utf8))
            let pids = try runnerPIDs(host)
            let victim = try #require(pids["echo-c"])
            kill(victim, SIGKILL)
            // echo-swift keeps serving while echo-c restarts.
            #expect(try echo(port: 7002, Array("meanwhile".utf8)) == Array("meanwhile".utf8))
            #expect(try echo(port: 7001, Array("after".utf8), within: .seconds(30)) == Array("after".utf8))
            let newPID = try #require(try runnerPIDs(host)["echo-c"])
            #expect(newPID != victim)
            let (_, metrics) = try httpGet(host.httpAddress, "/metrics")
            #expect(metrics.contains("peerhost_plugin_restarts_total{cause=\"crash\",plugin=\"echo-c\"} 1")
                    || metrics.contains("peerhost_plugin_restarts_total{plugin=\"echo-c\",cause=\"crash\"} 1"), "\(metrics.prefix(3000))")
            #expect(host.stop() == 0)
        }
    }
}

final class Locked<T>: @unchecked Sendable {
    private var inner: T
    private let lock = NSLock()
    init(_ v: T) { inner = v }
    func withLock<R>(_ body: (inout T) -> R) -> R { lock.lock(); defer { lock.unlock() }; return body(&inner) }
    var value: T { withLock { $0 } }
}
