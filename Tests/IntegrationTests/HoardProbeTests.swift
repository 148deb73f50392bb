import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    /// Through the hoard-probe test plugin (Tests/Plugins/hoard-probe, port 7120): receive-slot
    /// backpressure (a plugin that holds every receive slot pauses its connections, it does not lose
    /// them) and plugin status details and metrics (manifest [status]).
    @Suite(.serialized) struct HoardProbeTests {
        /// 16 receive slots of 4 KiB: 64 KiB of receive pool, so a 1 MiB stream must pause many times.
        static let config = """
        [host]
        data_dir = "@DATA@"
        http = "127.0.0.1:0"

        [tuning]
        slot_size = 4096
        slot_count = 64
        recv_slots = 16
        status_interval_s = 1

        [[plugin]]
        name = "hoard-probe"
        manifest = "@REPO@/Tests/Plugins/hoard-probe/manifest.toml"
        """

        func report(_ host: HostProcess) throws -> [String: Any] {
            let (code, out) = try host.cli(["ctl", "hoard-probe", "report"])
            guard code == 0, let doc = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any] else {
                throw TestFailure("report: \(out)")
            }
            return doc
        }

        func started(_ host: HostProcess) throws {
            try waitUntil("hoard-probe running") { try status(host, "hoard-probe")["state"] as? String == "running" }
        }

        static func fnv(_ bytes: [UInt8]) -> String {
            var h: UInt64 = 1469598103934665603
            for b in bytes { h ^= UInt64(b); h = h &* 1099511628211 }
            let hex = String(h, radix: 16)
            return String(repeating: "0", count: 16 - hex.count) + hex
        }

        final class Outcome: @unchecked Sendable {
            let lock = NSLock()
            var error: String?
            var finished = false
        }

        @Test func aPluginHoldingEveryReceiveSlotPausesItsConnectionsWithoutLosingBytes() throws {
            let host = try HostProcess(config: Self.config)
            try host.start()
            defer { _ = host.stop() }
            try started(host)

            var generator = SystemRandomNumberGenerator()
            let payload = (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let client = try TCPClient(port: 7120, timeoutSeconds: 120)
            defer { Glibc.close(client.fd) }
            let outcome = Outcome()
            let sender = Thread {
                do { try client.send(payload) } catch { outcome.lock.withLock { outcome.error = "\(error)" } }
                outcome.lock.withLock { outcome.finished = true }
            }
            sender.start()

            // Every receive slot ends up with the plugin, and the stream stops short of its end.
            try waitUntil("the plugin holds all 16 receive slots") { try report(host)["held"] as? Int == 16 }
            usleep(500_000)
            let stalled = try report(host)
            #expect(stalled["held"] as? Int == 16 && stalled["max_held"] as? Int == 16, "\(stalled)")
            #expect((stalled["bytes"] as? Int ?? 0) <= 16 * 4096, "\(stalled)")
            #expect(stalled["closed"] as? Int == 0, "the connection stays open: \(stalled)")
            try waitUntil("a receive pause is counted") {
                try host.metrics()["peerhost_plugin_receive_pauses_total{plugin=\"hoard-probe\"}"] ?? 0 >= 1
            }
            #expect(outcome.lock.withLock { outcome.error } == nil, "the sender is held back by TCP (or buffered), never failed")

            // Released: everything arrives, in order, on the same connection.
            #expect(try host.cli(["ctl", "hoard-probe", "hold", "0"]).0 == 0)
            try waitUntil("all bytes arrive", timeout: .seconds(60)) { try report(host)["bytes"] as? Int == payload.count }
            let done = try report(host)
            #expect(done["fnv"] as? String == Self.fnv(payload), "no byte lost or reordered: \(done)")
            #expect(done["accepted"] as? Int == 1 && done["closed"] as? Int == 0, "\(done)")
            try waitUntil("the sender finished") { outcome.lock.withLock { outcome.finished } }
            #expect(outcome.lock.withLock { outcome.error } == nil)
            // The data path still works after the pauses: a second burst passes straight through.
            try client.send(Array(payload.prefix(100_000)))
            try waitUntil("the second burst arrives") { try report(host)["bytes"] as? Int == payload.count + 100_000 }
        }

        @Test func statusDetailsAndMetricsComeFromThePluginsStatusMethod() throws {
            let host = try HostProcess(config: Self.config)
            try host.start()
            defer { _ = host.stop() }
            try started(host)
            #expect(try host.cli(["ctl", "hoard-probe", "hold", "0"]).0 == 0)
            let series = "peerhost_hoard_received_bytes_total{plugin=\"hoard-probe\",infohash=\"00112233445566778899aabbccddeeff00112233\"}"

            try waitUntil("details appear in /status") {
                (try status(host, "hoard-probe")["details"] as? [String: Any])?["greeting"] as? String == "hello"
            }
            let (code, json) = try host.cli(["status", "--json"])
            #expect(code == 0 && json.contains("\"greeting\" : \"hello\""), "\(json)")
            try waitUntil("the metric appears") { try host.metrics()[series] == 0 }
            #expect(try host.metrics()["peerhost_hoard_held_buffers{plugin=\"hoard-probe\"}"] == 0)

            // The counter grows with what the plugin received.
            let client = try TCPClient(port: 7120)
            defer { Glibc.close(client.fd) }
            try client.send([UInt8](repeating: 7, count: 5000))
            try waitUntil("the counter grows") { try host.metrics()[series] == 5000 }

            // A bad answer is logged; the previous details and metrics stay.
            #expect(try host.cli(["ctl", "hoard-probe", "status_mode", "1"]).0 == 0)
            try client.send([UInt8](repeating: 7, count: 1000))
            try waitUntil("the plugin received it") { try report(host)["bytes"] as? Int == 6000 }
            usleep(3_000_000)   // three status intervals: three bad answers
            #expect(try host.metrics()[series] == 5000, "kept, not updated from a bad answer")
            #expect((try status(host, "hoard-probe")["details"] as? [String: Any])?["bytes"] as? Int == 5000)

            // Too many series: bounded at 500; the ones missing from this answer are gone.
            #expect(try host.cli(["ctl", "hoard-probe", "status_mode", "2"]).0 == 0)
            try waitUntil("500 series") { try host.metrics().keys.filter { $0.hasPrefix("peerhost_hoard_series{") }.count == 500 }
            #expect(try host.metrics()[series] == nil, "a series the latest answer lacks is gone")

            // Names outside the prefix and labels outside the allowed set are left out.
            #expect(try host.cli(["ctl", "hoard-probe", "status_mode", "3"]).0 == 0)
            try waitUntil("good answer again") { try host.metrics()[series] == 6000 }
            let metrics = try host.metrics()
            #expect(!metrics.keys.contains { $0.hasPrefix("peerhost_other_thing") || $0.hasPrefix("peerhost_hoard_bad_label") })
            #expect(!metrics.keys.contains { $0.hasPrefix("peerhost_hoard_series{") })
            #expect(try status(host, "hoard-probe")["state"] as? String == "running", "the host never faulted the plugin for it")
        }
    }
}
