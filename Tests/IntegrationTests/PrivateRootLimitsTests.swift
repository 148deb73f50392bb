import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    /// The runner's private root and the manifest's limits, through the real host: a plugin sees no
    /// host file even at load time (where the loader's openat is still allowed), and a plugin that
    /// allocates past `[limits] memory` dies of it while echo-c keeps echoing.
    @Suite(.serialized) struct PrivateRootLimitsTests {
        static let config = """
        [host]
        data_dir = "@DATA@"
        http = "127.0.0.1:0"

        [tuning]
        heartbeat_interval_ms = 200
        heartbeat_timeout_ms = 3000
        backoff_base_ms = 20
        backoff_cap_ms = 200

        [[plugin]]
        name = "echo-c"
        manifest = "@REPO@/plugins/echo-c/manifest.toml"
        listen = ["tcp:127.0.0.1:7001"]

        [[plugin]]
        name = "echo-swift"
        manifest = "@REPO@/plugins/echo-swift/manifest.toml"
        listen = ["tcp:127.0.0.1:7002"]

        [[plugin]]
        name = "hostile-syscall"
        manifest = "@REPO@/Tests/Plugins/hostile-syscall/manifest.toml"
        listen = ["tcp:127.0.0.1:7004"]

        [[plugin]]
        name = "memory-hog"
        manifest = "@REPO@/Tests/Plugins/memory-hog/manifest.toml"
        """

        func attempt(_ host: HostProcess, _ what: String) throws -> Int? {
            let (rc, out) = try host.cli(["ctl", "hostile-syscall", "attempt", what])
            return rc == 0 ? Int(out.trimmingCharacters(in: .whitespacesAndNewlines)) : nil
        }

        func allRunning(_ host: HostProcess, _ plugins: [String]) throws -> Bool {
            try plugins.allSatisfy { try status(host, $0)["state"] as? String == "running" }
        }

        @Test func aPluginSeesNoHostFilesFromItsConstructorOrItsCallbacks() throws {
            let host = try HostProcess(config: Self.config)
            try host.start()
            defer { _ = host.stop() }
            try waitUntil("hostile-syscall running") { try allRunning(host, ["hostile-syscall", "echo-c"]) }
            // Sanity first: stat works from a callback, and the plugin's own copy is there. Without
            // this, the ENOENTs below could be any failure.
            #expect(try attempt(host, "stat:/plugin/libhostile-syscall.so") == 0, "the verified copy is in /plugin")
            // At load time openat is still allowed (the loader needs it): only the private root answers.
            #expect(try attempt(host, "ctor:etc_passwd") == -Int(ENOENT))
            #expect(try attempt(host, "ctor:proc_1_status") == -Int(ENOENT))
            #expect(try attempt(host, "ctor:dotdot") == -Int(ENOENT))
            #expect(try attempt(host, "ctor:root_rw") == -Int(EROFS), "nothing can be planted in the root")
            // From a callback: stat stays allowed, so the private root answers again.
            #expect(try attempt(host, "stat:/etc/passwd") == -Int(ENOENT))
            #expect(try attempt(host, "stat:/proc/1/status") == -Int(ENOENT))
            #expect(try attempt(host, "stat:../../../etc/passwd") == -Int(ENOENT))
            #expect(try attempt(host, "stat:" + host.dataDirectory) == -Int(ENOENT), "the host's data dir")
            #expect(try attempt(host, "stat:" + Products.repoRoot.path + "/Package.swift") == -Int(ENOENT), "the host's source tree")
            // openat from a callback: the after-load filter says no before any lookup.
            #expect(try attempt(host, "open:/etc/passwd") == -Int(EACCES))
            #expect(try status(host, "hostile-syscall")["restarts"] as? Int == 0, "no attempt killed it")
            #expect(echoes(7004, "still echoing"))
            #expect(echoes(7001, "echo-c too"))
            #expect(echoes(7002, "and echo-swift"))
        }

        @Test func aPluginPastItsMemoryLimitDiesOfItAndTheOthersKeepEchoing() throws {
            let host = try HostProcess(config: Self.config)
            try host.start()
            defer { _ = host.stop() }
            try waitUntil("all running") { try allRunning(host, ["memory-hog", "echo-c", "echo-swift"]) }
            let (pingRC, pong) = try host.cli(["ctl", "memory-hog", "ping"])
            #expect(pingRC == 0 && pong.trimmingCharacters(in: .whitespacesAndNewlines) == "1")
            // The audit log's spawn line says how the 64 MiB are enforced.
            let audit = try String(contentsOfFile: host.dataDirectory + "/audit.log", encoding: .utf8)
            let spawnLine = try #require(audit.split(separator: "\n").first { $0.contains("\"memory-hog\"") && $0.contains("\"spawn\"") })
            let mechanism = spawnLine.contains("memory 64 MiB by cgroup") ? "cgroup" : spawnLine.contains("memory 64 MiB by rlimit") ? "rlimit" : "?"
            #expect(mechanism != "?", "the spawn line names the mechanism: \(spawnLine)")
            if mechanism == "cgroup", let pid = try status(host, "memory-hog")["pid"] as? Int {
                let cgroup = try String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8)
                #expect(cgroup.contains("/peerhost/\(host.process.processIdentifier)/memory-hog"), "the runner is in its group: \(cgroup)")
            }

            let (rc, out) = try host.cli(["ctl", "memory-hog", "hog", "512"])
            #expect(rc != 0 || Int(out.trimmingCharacters(in: .whitespacesAndNewlines)) == nil,
                    "512 MiB were allocated past a 64 MiB limit: \(out)")
            try waitUntil("memory-hog restarted") { (try status(host, "memory-hog")["restarts"] as? Int ?? 0) >= 1 }
            let log = host.drainOutput()
            if mechanism == "cgroup" {
                #expect(log.contains("signal 9, killed by the memory limit (64 MiB by cgroup"), "an OOM kill: \(log.suffix(2000))")
            } else {
                #expect(log.contains("signal 6") || log.contains("signal 9"), "abort on a failed malloc: \(log.suffix(2000))")
            }
            #expect(echoes(7001, "echo-c after the hog"))
            #expect(echoes(7002, "echo-swift after the hog"))
            try waitUntil("memory-hog running again") { try status(host, "memory-hog")["state"] as? String == "running" }
            #expect(try host.cli(["ctl", "memory-hog", "hog", "8"]).1.trimmingCharacters(in: .whitespacesAndNewlines) == "8",
                    "below the limit it allocates fine")
            #expect(host.stop() == 0)
            let groups = ["memory", "pids"].map { "/sys/fs/cgroup/\($0)/peerhost/\(host.process.processIdentifier)" }
            #expect(groups.allSatisfy { !FileManager.default.fileExists(atPath: $0) }, "the host removed its cgroups")
        }

        /// The library is read once at start into a sealed memfd; a restart copies those bytes again,
        /// so garbage written over the file on disk meanwhile is never loaded.
        @Test func aRestartLoadsTheBytesReadAtStartNotTheFileOnDisk() throws {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("peerhost-swap-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            try FileManager.default.copyItem(atPath: Products.repoRoot.path + "/plugins/echo-c/manifest.toml", toPath: dir + "/manifest.toml")
            try FileManager.default.copyItem(atPath: Products.buildDirectory.path + "/libecho-c.so", toPath: dir + "/libecho-c.so")
            try Products.signCopy(dir + "/manifest.toml")
            let host = try HostProcess(config: """
            [host]
            data_dir = "@DATA@"
            http = "127.0.0.1:0"

            [tuning]
            backoff_base_ms = 20

            [[plugin]]
            name = "echo-c"
            manifest = "\(dir)/manifest.toml"
            listen = ["tcp:127.0.0.1:7001"]
            """)
            try host.start()
            defer { _ = host.stop() }
            try waitUntil("echo-c running") { try allRunning(host, ["echo-c"]) }
            #expect(echoes(7001, "before the swap"))
            // Same inode rewritten with garbage: a runner that opened the path would fail dlopen.
            let garbage = [UInt8](repeating: 0x90, count: 4096)
            try Data(garbage).write(to: URL(fileURLWithPath: dir + "/libecho-c.so"), options: [])
            let victim = try #require(try status(host, "echo-c")["pid"] as? Int)
            kill(Int32(victim), SIGKILL)
            try waitUntil("echo-c restarted and running") {
                let s = try status(host, "echo-c")
                return (s["restarts"] as? Int ?? 0) >= 1 && s["state"] as? String == "running" && s["pid"] as? Int != victim
            }
            #expect(echoes(7001, "after the swap"), "the restarted runner loaded the verified bytes")
        }

        /// A plugin with a DT_NEEDED library of its own beside it (RUNPATH $ORIGIN): the host binds
        /// that library next to the copy in /plugin, where $ORIGIN points inside, so the plugin
        /// loads. When the file is gone at a restart, the spawn fails at its named step and the host
        /// keeps serving the other plugins.
        @Test func aPluginsOwnLibraryIsBoundBesideItAndAMissingOneFailsAtTheBindStep() throws {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("peerhost-dep-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            chmod(dir, 0o755)   // the clone child, as the plugin's uid, looks the bind source up
            defer { try? FileManager.default.removeItem(atPath: dir) }
            try "int phdep_value(void) { return 42; }\n".write(toFile: dir + "/dep.c", atomically: true, encoding: .utf8)
            try """
            #include "peerhost.h"
            int phdep_value(void);
            int64_t dep_user_value(void) { return phdep_value(); }
            static ph_status start(const ph_host *h, const char *c, size_t n, void **u) { return phdep_value() == 42 ? PH_OK : PH_EINVAL; }
            static const ph_plugin p = { .size = sizeof(ph_plugin), .abi_version = PH_ABI_VERSION, .name = "dep-user",
                .version = "1.0.0", .features = PH_FEAT_CONTROL, .start = start };
            const ph_plugin *peerhost_plugin_v1(void) { return &p; }
            """.write(toFile: dir + "/plugin.c", atomically: true, encoding: .utf8)
            try """
            [plugin]
            name = "dep-user"
            version = "1.0.0"
            library = "libdep-user.so"
            abi = "1"

            [[control]]
            name = "value"
            symbol = "dep_user_value"
            signature = "() -> i64"
            """.write(toFile: dir + "/manifest.toml", atomically: true, encoding: .utf8)
            let cc = FileManager.default.isExecutableFile(atPath: "/opt/swift/usr/bin/clang") ? "/opt/swift/usr/bin/clang" : "/usr/bin/cc"
            for args in [["-shared", "-fPIC", dir + "/dep.c", "-o", dir + "/libphdep.so"],
                         ["-shared", "-fPIC", "-I", Products.repoRoot.path + "/protocols/abi", dir + "/plugin.c",
                          "-L", dir, "-lphdep", "-Wl,-rpath,$ORIGIN", "-o", dir + "/libdep-user.so"]] {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: cc)
                p.arguments = args
                try p.run()
                p.waitUntilExit()
                try #require(p.terminationStatus == 0, "compiling \(args)")
            }
            try Products.signCopy(dir + "/manifest.toml")
            let host = try HostProcess(config: """
            [host]
            data_dir = "@DATA@"
            http = "127.0.0.1:0"

            [tuning]
            backoff_base_ms = 20

            [[plugin]]
            name = "echo-c"
            manifest = "@REPO@/plugins/echo-c/manifest.toml"
            listen = ["tcp:127.0.0.1:7001"]

            [[plugin]]
            name = "dep-user"
            manifest = "\(dir)/manifest.toml"
            """)
            try host.start()
            defer { _ = host.stop() }
            try waitUntil("dep-user running") { try allRunning(host, ["dep-user", "echo-c"]) }
            let (rc, out) = try host.cli(["ctl", "dep-user", "value"])
            #expect(rc == 0 && out.trimmingCharacters(in: .whitespacesAndNewlines) == "42", "its own library answered: \(out)")

            unlink(dir + "/libphdep.so")
            let victim = try #require(try status(host, "dep-user")["pid"] as? Int)
            kill(Int32(victim), SIGKILL)
            try waitUntil("the restart fails at the bind step") {
                (try status(host, "dep-user")["reason"] as? String ?? "").contains("spawn step bind: ENOENT")
            }
            #expect(echoes(7001, "echo-c unaffected"))
        }

        /// An unprivileged host cannot make cgroups: memory falls back to RLIMIT_AS (and says so).
        /// That bounds address space, not memory: the Swift runtime must live with echo-swift's 256 MiB,
        /// while memory-hog's 64 MiB is less than the runner alone maps (about 100 MiB: Swift runtime,
        /// Foundation, ICU), so it is refused at load with the loader's own words.
        @Test func withoutCgroupsMemoryIsAnAddressSpaceLimitAndSwiftPluginsStillRun() throws {
            let host = try HostProcess(config: Self.config, asUser: 65534)
            try host.start()
            defer { _ = host.stop() }
            try waitUntil("echo plugins running") { try allRunning(host, ["echo-c", "echo-swift"]) }
            #expect(echoes(7002, "echo-swift under RLIMIT_AS"))
            let pid = try #require(try status(host, "echo-swift")["pid"] as? Int)
            let limits = try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)
            #expect(limits.contains(where: { _ in true }) && limits.split(separator: "\n").contains {
                $0.hasPrefix("Max address space") && $0.contains("268435456")
            }, "RLIMIT_AS = 256 MiB: \(limits)")
            try waitUntil("memory-hog refused at load") {
                (try status(host, "memory-hog")["reason"] as? String ?? "").contains("failed to map segment")
            }
            #expect(try status(host, "memory-hog")["state"] as? String != "running")
            let log = host.drainOutput()
            #expect(log.contains("memory by RLIMIT_AS"), "the fallback is logged")
            #expect(echoes(7001, "echo-c meanwhile"))
            #expect(echoes(7002, "echo-swift meanwhile"))
        }
    }
}
