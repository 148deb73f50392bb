import Foundation
import PeerhostCore
import PeerhostSandbox
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    /// Syscall profiles end to end (docs/syscall-profiles.md): the threads profile lets a plugin with
    /// a thread run and the default one kills it at thread creation; a profile that allows a
    /// dangerous syscall keeps its plugin from starting; and learn mode proves the default profile is
    /// the smallest on which echo-c and echo-swift run.
    @Suite(.serialized) struct SyscallProfileTests {
        static func config(_ plugins: [(name: String, manifest: String, port: Int)]) -> String {
            var text = """
            [host]
            data_dir = "@DATA@"
            http = "127.0.0.1:0"

            [tuning]
            heartbeat_interval_ms = 200
            heartbeat_timeout_ms = 1500
            backoff_base_ms = 20
            backoff_cap_ms = 200
            crash_loop_limit = 1

            """
            for p in plugins {
                text += """

                [[plugin]]
                name = "\(p.name)"
                manifest = "\(p.manifest)"
                listen = ["tcp:127.0.0.1:\(p.port)"]

                """
            }
            return text
        }

        /// A copy of a manifest in a temporary folder with its [sandbox] syscalls replaced (nil:
        /// removed, i.e. the built-in default). The library is still found in the build products.
        func manifestCopy(_ manifest: String, syscalls: String?, extraFiles: [String: String] = [:]) throws -> String {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("peerhost-profile-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            var text = try String(contentsOfFile: Products.repoRoot.appendingPathComponent(manifest).path, encoding: .utf8)
            text = text.split(separator: "\n", omittingEmptySubsequences: false)
                .filter { !$0.hasPrefix("syscalls =") }.joined(separator: "\n")
            if let syscalls {
                if text.contains("[sandbox]") {
                    text = text.replacingOccurrences(of: "[sandbox]", with: "[sandbox]\nsyscalls = \"\(syscalls)\"")
                } else {
                    text = text.replacingOccurrences(of: "[[control]]", with: "[sandbox]\nsyscalls = \"\(syscalls)\"\n\n[[control]]", options: [], range: text.range(of: "[[control]]"))
                }
            }
            for (name, content) in extraFiles { try content.write(to: dir.appendingPathComponent(name), atomically: true, encoding: .utf8) }
            let path = dir.appendingPathComponent("manifest.toml").path
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            try Products.signCopy(path)   // the signature covers the profile: a changed one needs a new one
            return path
        }

        @Test func aThreadedPluginRunsUnderTheThreadsProfile() throws {
            let host = try HostProcess(config: Self.config([("threaded", "@REPO@/Tests/Plugins/threaded/manifest.toml", 7006)]))
            try host.start()
            defer { _ = host.stop() }
            try waitUntil("threaded running") { try status(host, "threaded")["state"] as? String == "running" }
            for i in 0..<5 { #expect(echoes(7006, "through the worker thread \(i)")) }
            let (rc, out) = try host.cli(["ctl", "threaded", "worker_jobs"])
            #expect(rc == 0 && (Int(out.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) >= 5,
                    "the worker thread did the jobs: \(out)")
            let s = try status(host, "threaded")
            #expect(s["restarts"] as? Int == 0, "\(s["reason"] ?? "")")
            #expect(host.stop() == 0)
        }

        @Test func theDefaultProfileKillsTheSamePluginAtThreadCreation() throws {
            let manifest = try manifestCopy("Tests/Plugins/threaded/manifest.toml", syscalls: nil)
            let host = try HostProcess(config: Self.config([("threaded", manifest, 7006)]))
            try host.start()
            defer { _ = host.stop() }
            try waitUntil("threaded given up") { try status(host, "threaded")["state"] as? String == "failed" }
            let reason = try status(host, "threaded")["reason"] as? String ?? ""
            // pthread_create's syscalls are what the threads profile adds to the default one; glibc
            // 2.36 makes rt_sigaction first (late_init installs the SIGSETXID handler), then clone3.
            let threadOnly = try SyscallProfile(text: EmbeddedProfiles.pluginThreads, displayName: "threads").names
                .subtracting(SyscallProfile.builtInDefault.names)
            #expect(reason.contains("runner exited (signal 31): killed by seccomp: "), "reason: \(reason)")
            let kills = (try AuditLog.events(at: host.dataDirectory + "/audit.log")).filter { $0.action == "syscall" }
            #expect(!kills.isEmpty && kills.allSatisfy { threadOnly.contains($0.object) || $0.object.contains("rate limit") },
                    "killed at \(kills.map(\.object)), expected one of \(threadOnly.sorted())")
            #expect(kills.contains { $0.object == "rt_sigaction" || $0.object == "clone3" || $0.object == "clone" })
            #expect(try status(host, "threaded")["restarts"] as? Int == 1, "crash_loop_limit 1: one restart, then failed")
        }

        @Test func aProfileAllowingADangerousSyscallIsRefused() throws {
            let bad = EmbeddedProfiles.pluginDefault + """

            [[syscall]]
            name = "socket"
            reason = "I want my own network"
            """
            let manifest = try manifestCopy("plugins/echo-c/manifest.toml", syscalls: "bad.toml", extraFiles: ["bad.toml": bad])
            let host = try HostProcess(config: Self.config([("echo-c", manifest, 7001)]))
            try host.start()
            defer { _ = host.stop() }
            try waitUntil("echo-c failed") { try status(host, "echo-c")["state"] as? String == "failed" }
            let s = try status(host, "echo-c")
            let reason = s["reason"] as? String ?? ""
            #expect(reason.contains("socket") && reason.contains("bad.toml"), "reason: \(reason)")
            #expect(s["restarts"] as? Int == 0, "a dangerous profile is not retried")
            #expect(s["pid"] == nil || s["pid"] is NSNull, "no runner was spawned")
            let events = try AuditLog.events(at: host.dataDirectory + "/audit.log")
            let profile = events.first { $0.action == "profile" }
            #expect(profile?.decision == .failed && profile?.object.hasSuffix("bad.toml") == true && profile?.reason.contains("socket") == true,
                    "audit: \(String(describing: profile))")
            #expect(!events.contains { $0.action == "spawn" && $0.decision == .allowed })
        }

        /// The proof that plugin-default.toml is the smallest profile for the echo plugins (and
        /// plugin-threads.toml for the threaded one): learn each under its workload, then
        /// (1) everything learned is in the profile (else the plugin would die under it) and
        /// (2) every profile entry was learned or is marked rare (a documented path the workload
        /// does not reach), and phase-load entries were not called after loading.
        @Test(arguments: [("echo-c", 7001, "plugins/echo-c"), ("echo-swift", 7002, "plugins/echo-swift"),
                          ("threaded", 7006, "Tests/Plugins/threaded")])
        func theShippedProfilesAreWhatTheirPluginsCall(plugin: String, port: Int, folder: String) throws {
            let draft = FileManager.default.temporaryDirectory.appendingPathComponent("learned-\(plugin)-\(UUID().uuidString).toml").path
            defer { try? FileManager.default.removeItem(atPath: draft) }
            let host = try HostProcess(config: Self.config([(plugin, "@REPO@/\(folder)/manifest.toml", port)]),
                                       command: ["learn", plugin, "--seconds", "120", "--out", draft])
            try host.start()
            defer { _ = host.stop() }
            try waitUntil("\(plugin) running in learn mode") { try status(host, plugin)["state"] as? String == "running" }
            let threaded = plugin == "threaded"
            for i in 0..<3 {
                // echo plugins: from the second round on, each new connection is greeted with "hi" first.
                let text = "learn \(i) " + String(repeating: "x", count: 100 * i)
                let expected = Array(((i == 0 || threaded ? "" : "hi") + text).utf8)
                let client = try TCPClient(port: UInt16(port))
                try client.send(Array(text.utf8))
                #expect(try client.receive(exactly: expected.count) == expected)
                client.close()
                let calls = threaded ? [["worker_jobs"]]
                    : [["stats"], ["set_greeting", "hi"], ["add", "40", "2"], ["scale", "1.5", "2"],
                       ["toggle", "true"], ["checksum", "abc"], ["echo_bytes", "abc", "def"]]
                for call in calls {
                    let (rc, out) = try host.cli(["ctl", plugin] + call)
                    #expect(rc == 0, "\(call): \(out)")
                }
            }
            // SIGTERM ends a learn run early, like --seconds running out: STOP, then the draft.
            #expect(host.stop() == 0, "\(host.drainOutput())")
            let learned = try SyscallProfile(contentsOf: draft)
            #expect(learned.lint().isEmpty)
            let profile = threaded ? try SyscallProfile(text: EmbeddedProfiles.pluginThreads, displayName: "plugin-threads.toml")
                                   : SyscallProfile.builtInDefault
            let extra = learned.names.subtracting(profile.names)
            #expect(extra.isEmpty, "\(plugin) called syscalls its profile lacks: \(extra.sorted())")
            let unused = profile.entries.filter { !$0.rare && !learned.names.contains($0.rule.name) }.map(\.rule.name)
            #expect(unused.isEmpty, "profile entries \(plugin) never called (drop them or mark them rare): \(unused)")
            for entry in profile.entries where entry.rule.loadOnly {
                if let seen = learned.entries.first(where: { $0.rule.name == entry.rule.name }) {
                    #expect(seen.rule.loadOnly, "\(entry.rule.name) is phase load in the profile but \(plugin) called it after loading")
                }
            }
            // What the learn filter let through in its safe form is drafted with its condition.
            if threaded {
                #expect(learned.rules.contains(SyscallRule(name: "clone", when: .thread)))
                #expect(learned.rules.contains(SyscallRule(name: "clone3", action: .errno(38))))
            }
        }
    }
}
