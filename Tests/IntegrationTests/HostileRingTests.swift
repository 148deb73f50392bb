import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    /// A plugin that attacks the core through the shared region (Tests/Plugins/hostile-ring). Each
    /// attack must be refused with its named violation, the plugin killed and restarted, the core alive,
    /// and another plugin echoing throughout.
    @Suite(.serialized) struct HostileRingTests {
        static let config = """
        [host]
        data_dir = "@DATA@"
        http = "127.0.0.1:0"

        [tuning]
        heartbeat_interval_ms = 200
        heartbeat_timeout_ms = 1500
        backoff_base_ms = 20
        backoff_cap_ms = 200

        [[plugin]]
        name = "echo-c"
        manifest = "@REPO@/plugins/echo-c/manifest.toml"
        listen = ["tcp:127.0.0.1:7001"]

        [[plugin]]
        name = "hostile-ring"
        manifest = "@REPO@/Tests/Plugins/hostile-ring/manifest.toml"
        listen = ["tcp:127.0.0.1:7003"]
        """

        func state(_ host: HostProcess, _ plugin: String) throws -> (String, Int) {
            let (_, body) = try httpGet(host.httpAddress, "/status")
            let doc = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
            let p = (doc?["plugins"] as? [[String: Any]])?.first { $0["name"] as? String == plugin }
            return (p?["state"] as? String ?? "", p?["restarts"] as? Int ?? -1)
        }

        static let attacks: [(attack: String, kind: String)] = [
            ("slot_out_of_range", "slot_out_of_range"),
            ("range_past_pool", "range_outside_slot"),
            ("slot_not_owned", "slot_not_owned"),
            ("connection_not_owned", "connection_not_owned"),
            ("garbage_type", "bad_type"),
            ("index_past_capacity", "ring_index"),
        ]

        @Test func everyAttackIsRefusedCountedAndRestarted() throws {
            let host = try HostProcess(config: Self.config)
            try host.start()
            try waitUntil("hostile-ring running", timeout: .seconds(60)) { try state(host, "hostile-ring").0 == "running" }
            for (attack, kind) in Self.attacks {
                let before = try state(host, "hostile-ring").1
                let label = "kind=\"\(kind)\""
                let violationsBefore = series(try host.metrics(), "peerhost_plugin_violations_total", ["plugin=\"hostile-ring\"", label])
                // The call dies with the plugin. If the plugin was between incarnations the host says
            // "not running": wait for it and try again.
            try waitUntil("\(attack): attack delivered", timeout: .seconds(60)) {
                let (_, out) = try host.cli(["ctl", "hostile-ring", "attack", attack])
                return !out.contains("is not running: state")
            }
                try waitUntil("\(attack): violation \(kind) counted", timeout: .seconds(60)) {
                    series(try host.metrics(), "peerhost_plugin_violations_total", ["plugin=\"hostile-ring\"", label]) > violationsBefore
                }
                try waitUntil("\(attack): hostile-ring restarted", timeout: .seconds(60)) {
                    let (s, restarts) = try state(host, "hostile-ring")
                    return s == "running" && restarts > before
                }
                #expect(echoes(7001, "still here after \(attack)"), "echo-c keeps serving")
                #expect(echoes(7003, "back after \(attack)"), "the restarted plugin has a fresh, working region")
            }
            let m = try host.metrics()
            #expect(series(m, "peerhost_plugin_restarts_total", ["plugin=\"hostile-ring\"", "cause=\"violation\""]) >= Double(Self.attacks.count))
            #expect(series(m, "peerhost_plugin_restarts_total", ["plugin=\"echo-c\""]) == 0)
            #expect(host.stop() == 0, "the core survived every attack and stops cleanly")
        }

        @Test func rewritingADescriptorAfterSendingItCannotHurtTheCore() throws {
            let host = try HostProcess(config: Self.config)
            try host.start()
            try waitUntil("hostile-ring running", timeout: .seconds(60)) { try state(host, "hostile-ring").0 == "running" }
            _ = try host.cli(["ctl", "hostile-ring", "attack", "rewrite_after_send"])
            try waitUntil("a violation counted", timeout: .seconds(60)) {
                series(try host.metrics(), "peerhost_plugin_violations_total", ["plugin=\"hostile-ring\""]) >= 1
            }
            try waitUntil("restarted", timeout: .seconds(60)) { try state(host, "hostile-ring") == ("running", 1) }
            #expect(echoes(7001, "alive"))
            #expect(host.stop() == 0)
        }

        @Test func sealedRegionAndSaturatedEventfdsAreHarmless() throws {
            let host = try HostProcess(config: Self.config)
            try host.start()
            try waitUntil("hostile-ring running", timeout: .seconds(60)) { try state(host, "hostile-ring").0 == "running" }
            let (status, out) = try host.cli(["ctl", "hostile-ring", "attack", "truncate_region"])
            #expect(status == 0 && out.trimmingCharacters(in: .whitespacesAndNewlines) == "0",
                    "ftruncate on the sealed region fails with EPERM (0 = refused as expected): \(out)")
            let (status2, _) = try host.cli(["ctl", "hostile-ring", "attack", "saturate_eventfd"])
            #expect(status2 == 0)
            // Saturated doorbells mean EAGAIN on the core's writes: "already signalled", never a block.
            for i in 0..<20 { #expect(echoes(7003, "ping \(i)")) }
            #expect(echoes(7001, "alive"))
            #expect(try state(host, "hostile-ring") == ("running", 0))
            #expect(host.stop() == 0)
        }

        /// crash_loop_limit = 2: the third failure in a row leaves the plugin down, state failed,
        /// with the reason in status; the other plugin never notices.
        @Test func aCrashLoopLeavesThePluginFailedWithItsReason() throws {
            let host = try HostProcess(config: Self.config.replacingOccurrences(
                of: "backoff_cap_ms = 200", with: "backoff_cap_ms = 200\ncrash_loop_limit = 2"))
            try host.start()
            for round in 1...3 {
                try waitUntil("hostile-ring running before attack \(round)", timeout: .seconds(60)) { try state(host, "hostile-ring").0 == "running" }
                _ = try host.cli(["ctl", "hostile-ring", "attack", "garbage_type"])
                try waitUntil("failure \(round) noticed", timeout: .seconds(60)) {
                    series(try host.metrics(), "peerhost_plugin_violations_total", ["plugin=\"hostile-ring\""]) >= Double(round)
                }
            }
            try waitUntil("state failed", timeout: .seconds(60)) { try state(host, "hostile-ring").0 == "failed" }
            #expect(series(try host.metrics(), "peerhost_plugin_restarts_total", ["plugin=\"hostile-ring\""]) == 2,
                    "two restarts, then left down")
            let (_, body) = try httpGet(host.httpAddress, "/status")
            #expect(body.contains("crash loop"), "the reason says why it stays down: \(body)")
            usleep(500_000)
            #expect(try state(host, "hostile-ring").0 == "failed", "and it stays down")
            #expect(echoes(7001, "unaffected"))
            #expect(host.stop() == 0)
        }

        @Test func aPluginThatStopsAnsweringHeartbeatsIsKilledAsHung() throws {
            let host = try HostProcess(config: Self.config)
            try host.start()
            try waitUntil("hostile-ring running", timeout: .seconds(60)) { try state(host, "hostile-ring").0 == "running" }
            let spinner = Thread { _ = try? host.cli(["ctl", "hostile-ring", "attack", "spin"]) }
            spinner.start()
            try waitUntil("restart with cause hang", timeout: .seconds(60)) {
                series(try host.metrics(), "peerhost_plugin_restarts_total", ["plugin=\"hostile-ring\"", "cause=\"hang\""]) >= 1
            }
            try waitUntil("running again", timeout: .seconds(60)) { try state(host, "hostile-ring").0 == "running" }
            #expect(echoes(7003, "recovered"))
            #expect(echoes(7001, "never stopped"))
            #expect(host.stop() == 0)
        }
    }
}
