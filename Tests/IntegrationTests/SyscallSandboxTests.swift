import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    /// Plugins that try system calls the runner's seccomp allowlist forbids (Tests/Plugins/
    /// hostile-syscall, hostile-ctor). Each attempt must end with the runner killed by SIGSYS
    /// (signal 31) as the supervisor sees it — a restart with cause crash and "signal 31" in its
    /// log — the core alive, and echo-c echoing throughout.
    @Suite(.serialized) struct SyscallSandboxTests {
        static let config = """
        [host]
        data_dir = "@DATA@"
        http = "127.0.0.1:0"

        [tuning]
        heartbeat_interval_ms = 200
        heartbeat_timeout_ms = 1500
        backoff_base_ms = 20
        backoff_cap_ms = 200
        @CRASHLOOP@

        [[plugin]]
        name = "echo-c"
        manifest = "@REPO@/plugins/echo-c/manifest.toml"
        listen = ["tcp:127.0.0.1:7001"]

        [[plugin]]
        name = "@PLUGIN@"
        manifest = "@REPO@/Tests/Plugins/@PLUGIN@/manifest.toml"
        listen = ["tcp:127.0.0.1:@PORT@"]
        """

        static func config(plugin: String, port: Int, crashLoopLimit: Int? = nil) -> String {
            config.replacingOccurrences(of: "@PLUGIN@", with: plugin)
                .replacingOccurrences(of: "@PORT@", with: "\(port)")
                .replacingOccurrences(of: "@CRASHLOOP@", with: crashLoopLimit.map { "crash_loop_limit = \($0)" } ?? "")
        }

        func status(_ host: HostProcess, _ plugin: String) throws -> [String: Any] {
            let (_, body) = try httpGet(host.httpAddress, "/status")
            let doc = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
            return (doc?["plugins"] as? [[String: Any]])?.first { $0["name"] as? String == plugin } ?? [:]
        }

        func crashes(_ host: HostProcess, _ plugin: String) throws -> Double {
            series(try host.metrics(), "peerhost_plugin_restarts_total", ["plugin=\"\(plugin)\"", "cause=\"crash\""])
        }

        static let killed = ["socket", "execve", "fork", "ptrace", "mount", "unshare", "bpf",
                             "io_uring_setup", "keyctl", "kill_parent"]

        @Test func everyForbiddenSyscallIsKilledBySIGSYSAndRestarted() throws {
            let host = try HostProcess(config: Self.config(plugin: "hostile-syscall", port: 7004))
            try host.start()
            defer { _ = host.stop() }
            try waitUntil("hostile-syscall running") { try status(host, "hostile-syscall")["state"] as? String == "running" }
            var log = ""
            for what in Self.killed {
                let before = try crashes(host, "hostile-syscall")
                let restarts = try status(host, "hostile-syscall")["restarts"] as? Int ?? -1
                let (_, out) = try host.cli(["ctl", "hostile-syscall", "attempt", what])   // dies with the plugin
                #expect(Int(out.trimmingCharacters(in: .whitespacesAndNewlines)) == nil,
                        "\(what) returned a value instead of the runner being killed: \(out)")
                try waitUntil("\(what): a crash restart") { try crashes(host, "hostile-syscall") > before }
                try waitUntil("\(what): running again") {
                    let s = try status(host, "hostile-syscall")
                    return s["state"] as? String == "running" && (s["restarts"] as? Int ?? -1) > restarts
                }
                log += host.drainOutput()
                #expect(echoes(7001, "echo-c after \(what)"), "echo-c keeps serving")
                #expect(echoes(7004, "back after \(what)"), "the restarted plugin echoes")
            }
            #expect(try crashes(host, "hostile-syscall") == Double(Self.killed.count))
            let exits = log.components(separatedBy: "signal 31").count - 1
            #expect(exits >= Self.killed.count, "each runner exit was SIGSYS (\(exits) in the log)")
            #expect(series(try host.metrics(), "peerhost_plugin_restarts_total", ["plugin=\"echo-c\""]) == 0)
            #expect(host.stop() == 0, "the core survived every attempt and stops cleanly")
        }

        @Test func openingEtcPasswdIsRefusedWithEACCESWithoutAKill() throws {
            let host = try HostProcess(config: Self.config(plugin: "hostile-syscall", port: 7004))
            try host.start()
            defer { _ = host.stop() }
            try waitUntil("hostile-syscall running") { try status(host, "hostile-syscall")["state"] as? String == "running" }
            let (rc, out) = try host.cli(["ctl", "hostile-syscall", "attempt", "open_etc_passwd"])
            #expect(rc == 0 && out.trimmingCharacters(in: .whitespacesAndNewlines) == "\(-EACCES)",
                    "openat after load answers EACCES: \(out)")
            #expect(try status(host, "hostile-syscall")["restarts"] as? Int == 0)
            #expect(echoes(7004, "still here"))
            #expect(echoes(7001, "echo-c too"))
        }

        @Test func aConstructorSyscallIsKilledAtLoadBeforeStart() throws {
            let host = try HostProcess(config: Self.config(plugin: "hostile-ctor", port: 7005, crashLoopLimit: 2))
            try host.start()
            defer { _ = host.stop() }
            var everRunning = false
            try waitUntil("hostile-ctor given up") {
                let state = try status(host, "hostile-ctor")["state"] as? String
                if state == "running" { everRunning = true }
                return state == "failed"
            }
            #expect(!everRunning, "hostile-ctor never reached running")
            let s = try status(host, "hostile-ctor")
            let reason = s["reason"] as? String ?? ""
            #expect(reason.contains("runner exited (signal 31)"), "reason: \(reason)")
            #expect(try crashes(host, "hostile-ctor") >= 2)
            #expect(echoes(7001, "echo-c unaffected"))
        }
    }
}
