import Foundation
import PeerhostCore
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

        func crashes(_ host: HostProcess, _ plugin: String) throws -> Double {
            series(try host.metrics(), "peerhost_plugin_restarts_total", ["plugin=\"\(plugin)\"", "cause=\"crash\""])
        }

        static let killed = ["socket", "execve", "fork", "ptrace", "mount", "unshare", "bpf",
                             "io_uring_setup", "keyctl", "kill_parent"]
        /// The syscall each attempt makes, as the audit log must name it (fork is a raw clone).
        static let syscallOf = ["socket": "socket", "execve": "execve", "fork": "clone", "ptrace": "ptrace",
                                "mount": "mount", "unshare": "unshare", "bpf": "bpf", "io_uring_setup": "io_uring_setup",
                                "keyctl": "keyctl", "kill_parent": "kill"]

        static func auditEvents(_ host: HostProcess) -> [AuditEvent] {
            (try? AuditLog.events(at: host.dataDirectory + "/audit.log")) ?? []
        }

        /// The audit line of the last seccomp kill of `plugin` (action "syscall").
        static func syscallKills(_ host: HostProcess, _ plugin: String) -> [AuditEvent] {
            auditEvents(host).filter { $0.plugin == plugin && $0.action == "syscall" }
        }

        @Test func everyForbiddenSyscallIsKilledBySIGSYSAndRestarted() throws {
            let host = try HostProcess(config: Self.config(plugin: "hostile-syscall", port: 7004))
            try host.start()
            defer { _ = host.stop() }
            try waitUntil("hostile-syscall running") { try status(host, "hostile-syscall")["state"] as? String == "running" }
            var log = ""
            var named = 0
            for what in Self.killed {
                // The kernel prints at most 10 audit records per 5 s machine-wide; pace the kills
                // so this test alone stays under that (other tests may still use some of it).
                usleep(600_000)
                let kills = Self.syscallKills(host, "hostile-syscall").count
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
                // The supervisor looked the syscall up in the kernel log: one audit line per kill.
                let events = Self.syscallKills(host, "hostile-syscall")
                #expect(events.count == kills + 1, "\(what): one action=syscall audit line")
                if let event = events.last {
                    #expect(event.decision == .killed)
                    if event.object == Self.syscallOf[what] {
                        named += 1
                    } else {
                        // Only acceptable when the kernel itself dropped the record (rate limit).
                        #expect(event.object.contains("rate limit"), "\(what): audit names \(event.object), expected \(Self.syscallOf[what]!)")
                    }
                }
                #expect(echoes(7001, "echo-c after \(what)"), "echo-c keeps serving")
                #expect(echoes(7004, "back after \(what)"), "the restarted plugin echoes")
            }
            #expect(try crashes(host, "hostile-syscall") == Double(Self.killed.count))
            #expect(named >= Self.killed.count - 2, "the kernel log named \(named) of \(Self.killed.count) kills")
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
            #expect(reason.contains("runner exited (signal 31): killed by seccomp: socket"), "reason: \(reason)")
            #expect(reason.contains("[sandbox] syscalls") && reason.contains("peerhost learn hostile-ctor"),
                    "the reason says how to allow it: \(reason)")
            let kills = Self.syscallKills(host, "hostile-ctor")
            #expect(!kills.isEmpty && kills.allSatisfy { $0.object == "socket" && $0.decision == .killed },
                    "audit: \(kills.map(\.object))")
            #expect(try crashes(host, "hostile-ctor") >= 2)
            #expect(echoes(7001, "echo-c unaffected"))
        }
    }
}
