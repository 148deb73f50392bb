import Foundation
import Testing

extension Integration {
    /// `[tuning] plugin_descriptors`: the sockets and files the core holds for one plugin are
    /// bounded, so a plugin that hoards them (hostile or leaking) cannot spend the host process's
    /// RLIMIT_NOFILE, which every plugin shares. Past the budget a request is answered PH_EQUOTA and an
    /// incoming connection is closed at once; what the plugin lets go of is usable again.
    @Suite(.serialized) struct DescriptorBudgetTests {
        static let budget = 16

        static let config = """
        [host]
        data_dir = "@DATA@"
        http = "127.0.0.1:0"

        [tuning]
        plugin_descriptors = \(budget)

        [[plugin]]
        name = "io-probe"
        manifest = "@REPO@/Tests/Plugins/io-probe/manifest.toml"

        [[plugin]]
        name = "echo-c"
        manifest = "@REPO@/plugins/echo-c/manifest.toml"
        listen = ["tcp:127.0.0.1:7001"]
        """

        /// One io-probe scenario to its end (retrying while the plugin starts): its report.
        func scenario(_ host: HostProcess, _ text: String) throws -> [String: Any] {
            var report: [String: Any] = [:]
            try waitUntil("io-probe accepts '\(text)'") {
                let (status, out) = try host.cli(["ctl", "io-probe", "run", text])
                return status == 0 && out.trimmingCharacters(in: .whitespacesAndNewlines) == "0"
            }
            try waitUntil("io-probe finishes '\(text)'") {
                let (status, out) = try host.cli(["ctl", "io-probe", "report"])
                guard status == 0, let doc = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any] else { return false }
                report = doc
                return doc["done"] as? Bool == true
            }
            return report
        }

        func gauge(_ host: HostProcess, _ plugin: String) throws -> Double? {
            try host.metrics()["peerhost_plugin_descriptors{plugin=\"\(plugin)\"}"]
        }

        @Test(.timeLimit(.minutes(2))) func aPluginPastItsBudgetIsRefusedAndOthersServe() throws {
            let host = try HostProcess(config: Self.config)
            try host.start()
            defer { _ = host.stop() }

            // Files held open: the budget's worth succeed, the next open and a UDP bind are PH_EQUOTA (-3).
            for i in 0..<(Self.budget - 1) {
                let held = try scenario(host, "hold_file downloads/held-\(i).bin")
                try #require(held["status"] as? Int == 0, "file \(i): \(held)")
            }
            // One short of the budget: an open that closes again (flags 7: read, write, create) gives
            // its descriptor back each time.
            for _ in 0..<3 {
                #expect(try scenario(host, "file_open downloads/passing.bin 7")["open_status"] as? Int == 0)
            }
            #expect(try scenario(host, "hold_file downloads/held-last.bin")["status"] as? Int == 0)
            #expect(try scenario(host, "hold_file downloads/one-too-many.bin")["status"] as? Int == -3)
            #expect(try scenario(host, "file_open downloads/passing.bin 7")["open_status"] as? Int == -3)
            #expect(try scenario(host, "hold_udp udp:127.0.0.1:7105")["status"] as? Int == -3)
            #expect(try scenario(host, "connect tcp:127.0.0.1:7101")["connect_status"] as? Int == -3)   // granted, refused for the budget
            #expect(!FileManager.default.fileExists(atPath: host.dataDirectory + "/io-probe/downloads/one-too-many.bin"),
                    "a refused open creates nothing")
            try waitUntil("the gauge and the counter in /metrics", timeout: .seconds(10)) {
                let m = try host.metrics()
                return m["peerhost_plugin_descriptors{plugin=\"io-probe\"}"] == Double(Self.budget)
                    && m["peerhost_plugin_descriptor_refusals_total{plugin=\"io-probe\"}"] == 4
            }

            // echo-c has its own budget: its listener and 15 connections. The next connection is
            // accepted by the kernel and closed by the core before the plugin hears of it.
            try waitUntil("echo-c serves") { echoes(7001, "ready") }
            try waitUntil("that connection given back") { try gauge(host, "echo-c") == 1 }   // the listener
            var clients: [TCPClient] = []
            defer { clients.forEach { $0.close() } }
            for i in 0..<(Self.budget - 1) {
                let c = try TCPClient(port: 7001)
                try c.send(Array("client \(i)".utf8))
                #expect(try c.receive(exactly: "client \(i)".utf8.count) == Array("client \(i)".utf8))
                clients.append(c)
            }
            let refused = try TCPClient(port: 7001, timeoutSeconds: 5)
            defer { refused.close() }
            _ = try? refused.send(Array("over".utf8))
            #expect(refused.receiveAll().isEmpty, "closed without an echo")
            #expect(try gauge(host, "echo-c") == Double(Self.budget))
            #expect(try host.metrics()["peerhost_plugin_descriptor_refusals_total{plugin=\"echo-c\"}"] ?? 0 >= 1)

            // Letting go makes room: after two clients close, a new one is served again.
            clients.removeLast().close()
            clients.removeLast().close()
            try waitUntil("echo-c serves again") { echoes(7001, "after the close") }
            #expect(try status(host, "io-probe")["state"] as? String == "running", "a refusal is not a violation")
            #expect(try status(host, "echo-c")["state"] as? String == "running")
        }
    }
}
