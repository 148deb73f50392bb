import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    /// Issue 5 through the real host: per-plugin CPU, memory and exact byte counts in metrics,
    /// status and the usage log; per-peer counts from ABI 1.1 tags; restart causes, downtime and a
    /// crash loop; a clean close for the peers of a dying plugin; the Grafana dashboard's metrics.
    /// memory-hog (Tests/Plugins/memory-hog) burns CPU, allocates, crashes and echoes on 7090,
    /// tagging each connection with its peer address; echo-c must keep serving throughout.
    @Suite(.serialized) struct AccountingTests {
        static func config(heartbeatTimeout: Int = 5000, crashLoopLimit: Int = 0) -> String {
            """
            [host]
            data_dir = "@DATA@"
            http = "127.0.0.1:0"

            [tuning]
            heartbeat_interval_ms = 200
            heartbeat_timeout_ms = \(heartbeatTimeout)
            backoff_base_ms = 50
            backoff_cap_ms = 400
            crash_loop_limit = \(crashLoopLimit)
            usage_log_interval_s = 1

            [[plugin]]
            name = "echo-c"
            manifest = "@REPO@/plugins/echo-c/manifest.toml"
            listen = ["tcp:127.0.0.1:7001"]

            [[plugin]]
            name = "memory-hog"
            manifest = "@REPO@/Tests/Plugins/memory-hog/manifest.toml"
            listen = ["tcp:127.0.0.1:7090"]
            """
        }

        func running(_ host: HostProcess, _ plugins: [String] = ["echo-c", "memory-hog"]) throws -> Bool {
            try plugins.allSatisfy { try status(host, $0)["state"] as? String == "running" }
        }

        func ctl(_ host: HostProcess, _ args: String...) throws -> String {
            let (rc, out) = try host.cli(["ctl", "memory-hog"] + args)
            guard rc == 0 else { throw TestFailure("ctl memory-hog \(args): exit \(rc): \(out)") }
            return out.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        /// The local port of a client socket: the plugin tags the connection "tcp:127.0.0.1:PORT".
        func localPort(_ client: TCPClient) -> UInt16 {
            var addr = sockaddr_in()
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(client.fd, $0, &len) } }
            return UInt16(bigEndian: addr.sin_port)
        }

        /// peerhost_peer_bytes_total of the peer whose (hex) id decodes to text ending in ":PORT".
        func peerBytes(_ metrics: [String: Double], port: UInt16, direction: String) -> Double? {
            for (key, value) in metrics where key.hasPrefix("peerhost_peer_bytes_total{") && key.contains("direction=\"\(direction)\"") {
                guard let start = key.range(of: "peer=\"")?.upperBound, let end = key[start...].firstIndex(of: "\"") else { continue }
                let hex = Array(key[start..<end].utf8)
                var bytes: [UInt8] = []
                var i = 0
                while i + 1 < hex.count, let b = UInt8(String(decoding: hex[i...i + 1], as: UTF8.self), radix: 16) { bytes.append(b); i += 2 }
                if String(decoding: bytes, as: UTF8.self).hasSuffix(":\(port)") { return value }
            }
            return nil
        }

        @Test func cpuMemoryAndExactBytesShowInMetricsStatusAndTheUsageLog() throws {
            let host = try HostProcess(config: Self.config())
            try host.start()
            defer { _ = host.stop() }
            try waitUntil("both running") { try running(host) }

            // CPU and memory: 1.2 s of CPU and 24 MiB touched, seen within a few seconds.
            #expect(Int(try ctl(host, "burn", "1200")) ?? 0 >= 1200)
            #expect(try ctl(host, "hog", "24") == "24")
            try waitUntil("CPU and memory in /metrics", timeout: .seconds(5)) {
                let m = try host.metrics()
                return series(m, "peerhost_plugin_cpu_seconds_total", ["plugin=\"memory-hog\""]) >= 1.1
                    && series(m, "peerhost_plugin_resident_memory_bytes", ["plugin=\"memory-hog\""]) >= Double(24 << 20)
            }
            let s = try status(host, "memory-hog")
            #expect((s["cpu_seconds"] as? Double ?? 0) >= 1.1, "\(s)")
            #expect((s["memory_bytes"] as? Int ?? 0) >= 24 << 20, "\(s)")
            #expect((try status(host, "echo-c")["cpu_seconds"] as? Double ?? 9) < 1.0, "the burn is not charged to echo-c")

            // Bytes: exactly what two tagged peers sent, each way, per plugin and per peer.
            let a = try TCPClient(port: 7090), b = try TCPClient(port: 7090)
            let aBytes = (0..<1000).map { UInt8($0 & 0xff) }, bBytes = (0..<3333).map { UInt8(($0 * 7) & 0xff) }
            for chunk in stride(from: 0, to: aBytes.count, by: 250) {
                try a.send(Array(aBytes[chunk..<chunk + 250]))
                #expect(try a.receive(exactly: 250) == Array(aBytes[chunk..<chunk + 250]))
            }
            try b.send(bBytes)
            #expect(try b.receive(exactly: bBytes.count) == bBytes)
            let aPort = localPort(a), bPort = localPort(b)
            a.close(); b.close()
            try waitUntil("exact byte counts", timeout: .seconds(5)) {
                let m = try host.metrics()
                return series(m, "peerhost_plugin_bytes_total", ["plugin=\"memory-hog\"", "direction=\"in\""]) == 4333
                    && series(m, "peerhost_plugin_bytes_total", ["plugin=\"memory-hog\"", "direction=\"out\""]) == 4333
            }
            let m = try host.metrics()
            #expect(peerBytes(m, port: aPort, direction: "in") == 1000, "per peer, tagged by the plugin")
            #expect(peerBytes(m, port: aPort, direction: "out") == 1000)
            #expect(peerBytes(m, port: bPort, direction: "in") == 3333)
            #expect(peerBytes(m, port: bPort, direction: "out") == 3333)
            #expect(series(m, "peerhost_plugin_bytes_total", ["plugin=\"echo-c\""]) == 0, "nothing charged to echo-c")
            let after = try status(host, "memory-hog")
            #expect(after["bytes_in"] as? Int == 4333 && after["bytes_out"] as? Int == 4333, "\(after)")

            // The readable table.
            let (rc, table) = try host.cli(["status"])
            #expect(rc == 0)
            #expect(table.contains("IN/S") && table.contains("STORAGE") && table.contains("memory-hog"), "\(table)")

            // The usage log: one record per plugin per second, with the same totals.
            try waitUntil("usage.log has the totals", timeout: .seconds(5)) {
                let lines = try String(contentsOfFile: host.dataDirectory + "/usage.log", encoding: .utf8).split(separator: "\n")
                return lines.contains { line in
                    guard let r = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return false }
                    return r["plugin"] as? String == "memory-hog" && r["bytes_in"] as? Int == 4333 && r["bytes_out"] as? Int == 4333
                        && (r["cpu_seconds"] as? Double ?? 0) >= 1.1 && (r["memory_bytes"] as? Int ?? 0) >= 24 << 20
                }
            }
            let records = try String(contentsOfFile: host.dataDirectory + "/usage.log", encoding: .utf8).split(separator: "\n")
            #expect(records.contains { $0.contains("\"plugin\":\"echo-c\"") }, "every plugin gets records")

            // Every metric the Grafana dashboard queries is served by this host. Violations and
            // denials appear with their first event (docs/metrics.md); none happened here.
            let text = try httpGet(host.httpAddress, "/metrics").1
            let served = Set(text.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { String($0.split(separator: " ")[2]) })
            let eventOnly: Set = ["peerhost_plugin_violations_total", "peerhost_plugin_denials_total"]
            let dashboard = try String(contentsOfFile: Products.repoRoot.path + "/config/grafana-dashboard.json", encoding: .utf8)
            let regex = try NSRegularExpression(pattern: "peerhost_[a-z0-9_]+")
            let queried = Set(regex.matches(in: dashboard, range: NSRange(dashboard.startIndex..., in: dashboard))
                .compactMap { Range($0.range, in: dashboard).map { String(dashboard[$0]) } })
                .subtracting(["peerhost_overview"])   // not a metric: the dashboard's uid is "peerhost-overview"
            #expect(queried.count >= 14)
            for name in queried.sorted() where !eventOnly.contains(name) {
                #expect(served.contains(name), "the dashboard queries \(name); /metrics does not serve it")
            }
            #expect(host.stop() == 0)
        }

        @Test func crashHangAndLimitAreToldApartWhileEchoCKeepsServing() throws {
            let host = try HostProcess(config: Self.config(heartbeatTimeout: 1500))
            try host.start()
            defer { _ = host.stop() }
            try waitUntil("both running") { try running(host) }
            let audit = try String(contentsOfFile: host.dataDirectory + "/audit.log", encoding: .utf8)
            let memoryByCgroup = audit.split(separator: "\n").contains { $0.contains("\"memory-hog\"") && $0.contains("memory 64 MiB by cgroup") }

            func restarts(_ cause: String) throws -> Double {
                series(try host.metrics(), "peerhost_plugin_restarts_total", ["plugin=\"memory-hog\"", "cause=\"\(cause)\""])
            }
            func expectCause(_ cause: String) throws {
                try waitUntil("restart with cause \(cause)") { try restarts(cause) == 1 }
                let s = try status(host, "memory-hog")
                #expect(s["last_cause"] as? String == cause, "\(s)")
                #expect(try host.audit("memory-hog", action: "restart", decision: "restarted")
                    .contains { ($0["reason"] as? String ?? "").hasPrefix("cause \(cause),") }, "audit line with cause \(cause)")
                #expect(echoes(7001, "echo-c serves while memory-hog restarts (\(cause))"))
                try waitUntil("memory-hog running again") { try running(host) }
            }

            _ = try? host.cli(["ctl", "memory-hog", "crash"])
            try expectCause("crash")
            #expect(try restarts("hang") == 0 && restarts("limit") == 0)
            let down = series(try host.metrics(), "peerhost_plugin_downtime_seconds_total", ["plugin=\"memory-hog\""])
            #expect(down > 0 && down < 10, "downtime between the crash and the restart: \(down)")

            // A hang: the plugin's thread is stuck in a control call, so heartbeats go unanswered.
            let stuck = Process()
            stuck.executableURL = URL(fileURLWithPath: Products.peerhost)
            stuck.arguments = ["ctl", "memory-hog", "burn", "600000", "--config", host.configPath]
            stuck.standardOutput = FileHandle.nullDevice
            stuck.standardError = FileHandle.nullDevice
            try stuck.run()
            defer { if stuck.isRunning { stuck.terminate() } }
            try expectCause("hang")

            _ = try? host.cli(["ctl", "memory-hog", "hog", "512"])
            if memoryByCgroup {
                try expectCause("limit")
                #expect(try restarts("crash") == 1, "the OOM kill is not counted as a crash")
            } else {
                try waitUntil("restart after the failed malloc") { try restarts("crash") == 2 }   // abort(): a crash under RLIMIT_AS
            }
            let audited = try host.audit("memory-hog", action: "exit")
            #expect(audited.contains { ($0["reason"] as? String ?? "").hasPrefix("cause hang:") }, "\(audited)")
            #expect(series(try host.metrics(), "peerhost_plugin_restarts_total", ["plugin=\"echo-c\""]) == 0)
            #expect(host.stop() == 0)
        }

        @Test func aCrashLoopLeavesThePluginFailedSayingWhy() throws {
            let host = try HostProcess(config: Self.config(crashLoopLimit: 1))
            try host.start()
            defer { _ = host.stop() }
            try waitUntil("both running") { try running(host) }
            _ = try? host.cli(["ctl", "memory-hog", "crash"])
            try waitUntil("restarted once") { try running(host) && (try status(host, "memory-hog")["restarts"] as? Int) == 1 }
            _ = try? host.cli(["ctl", "memory-hog", "crash"])
            try waitUntil("failed") { try status(host, "memory-hog")["state"] as? String == "failed" }
            let s = try status(host, "memory-hog")
            let reason = s["reason"] as? String ?? ""
            #expect(reason.hasPrefix("crash loop:") && reason.contains("last cause crash"), "\(reason)")
            #expect(s["last_cause"] as? String == "crash")
            let (_, table) = try host.cli(["status"])
            #expect(table.contains("failed") && table.contains("last cause crash"), "\(table)")
            #expect(try host.audit("memory-hog", action: "restart", decision: "failed").count == 1)
            #expect(echoes(7001, "echo-c still serves"))
            #expect(host.stop() == 0)
        }

        /// When a runner dies, its peers see an orderly close (read returns 0: FIN), not a reset.
        @Test func peersOfADyingPluginSeeANormalClose() throws {
            let host = try HostProcess(config: Self.config())
            try host.start()
            defer { _ = host.stop() }
            try waitUntil("both running") { try running(host) }
            let clients = try (0..<3).map { _ in try TCPClient(port: 7090) }
            for (i, c) in clients.enumerated() {
                try c.send(Array("hello \(i)".utf8))
                #expect(try c.receive(exactly: 7) == Array("hello \(i)".utf8))
            }
            _ = try? host.cli(["ctl", "memory-hog", "crash"])
            for c in clients {
                var byte: UInt8 = 0
                let n = recv(c.fd, &byte, 1, 0)
                let e = errno
                #expect(n == 0, "expected EOF (FIN); got \(n) with errno \(e) (\(e == ECONNRESET ? "ECONNRESET" : "other"))")
                c.close()
            }
            try waitUntil("memory-hog back") { try running(host) }
            #expect(echoes(7090, "and it echoes again"))
            #expect(host.stop() == 0)
        }

        /// The hard case: a hung plugin stopped taking data, the core's receive slots filled up and
        /// bytes wait unread in the kernel when the runner is killed. close() alone would answer
        /// with a RST (the peer's read fails with ECONNRESET); the host sends its FIN first.
        @Test func aPeerWithUnreadBytesQueuedStillSeesAFIN() throws {
            let host = try HostProcess(config: Self.config(heartbeatTimeout: 1500))
            try host.start()
            defer { _ = host.stop() }
            try waitUntil("both running") { try running(host) }
            let client = try TCPClient(port: 7090)
            defer { client.close() }
            let stuck = Process()
            stuck.executableURL = URL(fileURLWithPath: Products.peerhost)
            stuck.arguments = ["ctl", "memory-hog", "burn", "600000", "--config", host.configPath]
            stuck.standardOutput = FileHandle.nullDevice
            stuck.standardError = FileHandle.nullDevice
            try stuck.run()
            defer { if stuck.isRunning { stuck.terminate() } }
            usleep(200_000)   // the plugin's thread is in the burn now: nothing is echoed any more
            // Push until the core's receive slots (16 MiB) and the kernel's buffers are full.
            _ = fcntl(client.fd, F_SETFL, fcntl(client.fd, F_GETFL) | O_NONBLOCK)
            let chunk = [UInt8](repeating: 0x5a, count: 65_536)
            var sent = 0
            var lastProgress = ContinuousClock.now
            while ContinuousClock.now - lastProgress < .milliseconds(500) && sent < 256 << 20 {
                let n = chunk.withUnsafeBytes { Glibc.send(client.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n > 0 { sent += n; lastProgress = .now } else { usleep(10_000) }
            }
            #expect(sent > 16 << 20, "more than the receive slots hold: \(sent) bytes")
            try waitUntil("killed as hung", timeout: .seconds(15)) {
                series(try host.metrics(), "peerhost_plugin_restarts_total", ["plugin=\"memory-hog\"", "cause=\"hang\""]) == 1
            }
            _ = fcntl(client.fd, F_SETFL, fcntl(client.fd, F_GETFL) & ~O_NONBLOCK)
            var buffer = [UInt8](repeating: 0, count: 65_536)
            var n = 0
            var e: Int32 = 0
            repeat {   // anything echoed before the burn started, then the end
                n = buffer.withUnsafeMutableBytes { recv(client.fd, $0.baseAddress, $0.count, 0) }
                e = errno
            } while n > 0
            #expect(n == 0, "expected EOF (FIN); got \(n), errno \(e)\(e == ECONNRESET ? " (ECONNRESET: a RST)" : "")")
            #expect(echoes(7001, "echo-c unaffected"))
        }
    }
}
