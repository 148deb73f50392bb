import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    /// The key-value store behind the ABI's kv calls, driven through the kv-probe test plugin
    /// (Tests/Plugins/kv-probe) in a real `peerhost run`: calls, quota, restarts, SIGKILL of the core
    /// mid-write, and damaged or missing store files. Port 7110 (kv-probe's listen grant).
    @Suite(.serialized) struct KVStoreIntegrationTests {
        static let config = """
        [host]
        data_dir = "@DATA@"
        http = "127.0.0.1:0"

        [[plugin]]
        name = "kv-probe"
        manifest = "@REPO@/Tests/Plugins/kv-probe/manifest.toml"
        """

        /// A data directory that outlives one host, so a second host can start on it.
        final class SharedData {
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("peerhost-kv-\(UUID().uuidString)").path
            init() throws { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) }
            deinit { try? FileManager.default.removeItem(atPath: path) }
            var store: String { path + "/store.sqlite" }

            /// A host whose data dir (its `data` folder, where the tests look for run.json) is this one.
            func host(_ config: String = KVStoreIntegrationTests.config) throws -> HostProcess {
                let host = try HostProcess(config: config)
                try FileManager.default.createSymbolicLink(atPath: host.dataDirectory, withDestinationPath: path)
                try? FileManager.default.removeItem(atPath: path + "/run.json")   // the previous host's
                try host.start()
                return host
            }
        }

        /// Runs one kv-probe command (retrying while the plugin is still starting) and polls its
        /// report until the plugin says it is done.
        func kv(_ host: HostProcess, _ text: String, within: Duration = .seconds(20)) throws -> [String: Any] {
            let deadline = ContinuousClock.now + within
            var started = false
            var last = ""
            while ContinuousClock.now < deadline {
                if !started {
                    let (status, out) = try host.cli(["ctl", "kv-probe", "run", text])
                    last = out
                    if status == 0, out.trimmingCharacters(in: .whitespacesAndNewlines) == "0" { started = true } else { usleep(100_000); continue }
                }
                let (status, out) = try host.cli(["ctl", "kv-probe", "report"])
                last = out
                if status == 0, let doc = try? JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any],
                   doc["done"] as? Bool == true {
                    return doc
                }
                usleep(50_000)
            }
            throw TestFailure("kv-probe '\(text)' did not finish (started: \(started)); last output: \(last)\n\(host.drainOutput())")
        }

        func code(_ doc: [String: Any]) -> Int { doc["status"] as? Int ?? doc["call_status"] as? Int ?? 999 }

        @Test func callsScansQuotaAndStorageMetric() throws {
            let data = try SharedData()
            let host = try data.host()
            defer { _ = host.stop() }
            #expect(code(try kv(host, "put a 1")) == 0)
            #expect(try kv(host, "put ab 22")["value"] as? Int == 0)
            #expect(try kv(host, "put ab 2")["value"] as? Int == 1, "a replaced key reports that it existed")
            #expect(code(try kv(host, "put b 3")) == 0)
            let got = try kv(host, "get ab")
            #expect(code(got) == 0 && got["data"] as? String == "2" && got["value"] as? Int == 1)
            let scan = try kv(host, "scan a 0")
            #expect(scan["keys"] as? String == "a,ab" && scan["value"] as? Int == 2 && scan["records_ok"] as? Int == 1)
            let all = try kv(host, "scan - 0")
            #expect(all["keys"] as? String == "a,ab,b" && all["records_ok"] as? Int == 1)
            #expect(try kv(host, "scan - 2")["keys"] as? String == "a,ab")
            // ABI 1.2 kv_scan_from: a page from a start key, and whether more keys remain.
            let first = try kv(host, "scan_from - -/2")
            #expect(first["keys"] as? String == "a,ab" && first["count"] as? Int == 2 && first["more"] as? Int == 1
                    && first["records_ok"] as? Int == 1, "\(first)")
            // (The probe's text has no NUL: "ab0" is past "ab" and before "b" all the same.)
            let rest = try kv(host, "scan_from - ab0/2")
            #expect(rest["keys"] as? String == "b" && rest["more"] as? Int == 0, "from ab0: \(rest)")
            let inPrefix = try kv(host, "scan_from a ab/0")
            #expect(inPrefix["keys"] as? String == "ab" && inPrefix["more"] as? Int == 0, "\(inPrefix)")
            #expect(try kv(host, "delete a")["value"] as? Int == 1)
            #expect(code(try kv(host, "get a")) == -10, "PH_ENOENT after delete")
            // The manifest's quota is 16 KiB of keys+values (ab+2, b+3 = 5 bytes used so far):
            // past it a put is refused and nothing is written.
            #expect(code(try kv(host, "putn fits 10000")) == 0)
            #expect(code(try kv(host, "putn more 8000")) == -3, "PH_EQUOTA")
            #expect(code(try kv(host, "get more")) == -10)
            #expect(code(try kv(host, "putn fits 16380")) == -3, "growing a value past the quota is refused too: 5 + 4 + 16380 > 16384")
            #expect(try kv(host, "get fits")["value"] as? Int == 10000, "and the old value stays")
            #expect(code(try kv(host, "putn fits 16375")) == 0, "exactly at the quota: 5 + 4 + 16375 = 16384")
            // peerhost_plugin_storage_bytes: the committed kv bytes.
            let m = try host.metrics()
            #expect(series(m, "peerhost_plugin_storage_bytes", ["plugin=\"kv-probe\""]) == 16384)
        }

        @Test func dataSurvivesPluginAndHostRestarts() throws {
            let data = try SharedData()
            do {
                let host = try data.host()
                defer { _ = host.stop() }
                #expect(code(try kv(host, "put resume torrent-state")) == 0)
                // Kill the runner: the supervisor restarts the plugin, the value is still there.
                let pid = try #require(status(host, "kv-probe")["pid"] as? Int)
                kill(Int32(pid), SIGKILL)
                try waitUntil("kv-probe restarted") {
                    let s = try status(host, "kv-probe")
                    return (s["restarts"] as? Int ?? 0) >= 1 && s["state"] as? String == "running"
                }
                #expect(try kv(host, "get resume")["data"] as? String == "torrent-state")
                #expect(code(try kv(host, "put after-restart yes")) == 0)
            }
            let second = try data.host()
            defer { _ = second.stop() }
            #expect(try kv(second, "get resume")["data"] as? String == "torrent-state")
            #expect(try kv(second, "get after-restart")["data"] as? String == "yes")
        }

        /// The plugin puts seq 0, 1, 2, … and writes "ack N" to us after each PH_OK; we SIGKILL the
        /// core mid-stream, start a new host on the same data dir and find every acknowledged write.
        @Test func sigkillMidWriteLosesNoAcknowledgedWrite() throws {
            let data = try SharedData()
            var acked: Set<Int> = []
            do {
                let host = try data.host()
                var client: TCPClient?
                try waitUntil("kv-probe listens on 7110") { client = try TCPClient(port: 7110, timeoutSeconds: 5); return true }
                let c = try #require(client)
                defer { c.close() }
                usleep(200_000)   // the accept reaches the plugin before the stream starts
                let (rc, out) = try host.cli(["ctl", "kv-probe", "run", "stream 16"])
                try #require(rc == 0 && out.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "stream: \(out)")
                var text = ""
                var buffer = [UInt8](repeating: 0, count: 65536)
                var killed = false
                let start = ContinuousClock.now
                while true {
                    let n = buffer.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress!, 65536, 0) }
                    if n <= 0 { break }   // EOF once the core is gone (or the 5 s timeout)
                    text += String(decoding: buffer[0..<n], as: UTF8.self)
                    if !killed, text.count > 4000 || ContinuousClock.now - start > .seconds(3) {
                        kill(host.process.processIdentifier, SIGKILL)   // the core itself, mid-write
                        killed = true
                    }
                }
                if !killed { kill(host.process.processIdentifier, SIGKILL) }
                host.process.waitUntilExit()
                #expect(host.process.terminationReason == .uncaughtSignal)
                // Only whole lines count: a torn last line was not fully received.
                let whole = text.lastIndex(of: "\n").map { text[...$0] } ?? ""
                for line in whole.split(separator: "\n") where line.hasPrefix("ack ") {
                    if let n = Int(line.dropFirst(4)) { acked.insert(n) }
                }
            }
            try #require(acked.count >= 50, "the stream acknowledged \(acked.count) writes before the kill")
            let last = acked.max()!
            print("SIGKILL test: \(acked.count) writes acknowledged before the kill, last seq \(last)")
            let second = try data.host()
            defer { _ = second.stop() }
            // Commits are in submission order, so every seq up to the last acknowledged one is there.
            let report = try kv(second, "verify \(last)", within: .seconds(120))
            #expect(report["missing"] as? Int == 0, "missing: \(report)")
            #expect(report["wrong"] as? Int == 0, "wrong values: \(report)")
            #expect(report["checked"] as? Int == last + 1)
        }

        @Test func corruptStoreIsRefusedWithTheFixAndTheHostRunsOn() throws {
            let data = try SharedData()
            let garbage = Data((0..<16384).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 17) })
            try garbage.write(to: URL(fileURLWithPath: data.store))
            do {
                let host = try data.host()
                defer { _ = host.stop() }
                #expect(code(try kv(host, "put k v")) == -9, "PH_EIO while the store is damaged")
                let s = try status(host, "kv-probe")
                #expect(s["state"] as? String == "running")
                let reason = s["reason"] as? String ?? ""
                #expect(reason.contains(data.store) && reason.contains("mv "), "status reason: \(reason)")
                #expect(try !host.audit("host", action: "kv", decision: "failed").isEmpty)
                #expect(try !host.audit("kv-probe", action: "kv", decision: "denied").isEmpty)
            }
            #expect(FileManager.default.contents(atPath: data.store) == garbage, "the damaged file is left for recovery")
            // The documented fix: move it aside (the marker was never written: no store was ever opened).
            try FileManager.default.moveItem(atPath: data.store, toPath: data.store + ".corrupt")
            let host = try data.host()
            defer { _ = host.stop() }
            #expect(code(try kv(host, "put k v")) == 0)
            #expect(try kv(host, "get k")["data"] as? String == "v")
        }

        @Test func missingStoreAfterAFirstStartIsAnErrorNotAnEmptyStore() throws {
            let data = try SharedData()
            do {
                let host = try data.host()
                defer { _ = host.stop() }
                #expect(code(try kv(host, "put k v")) == 0)
            }
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: data.store + suffix) }
            do {
                let host = try data.host()
                defer { _ = host.stop() }
                #expect(code(try kv(host, "get k")) == -9)
                let reason = try status(host, "kv-probe")["reason"] as? String ?? ""
                #expect(reason.contains("missing") && reason.contains("store.created"), "status reason: \(reason)")
            }
            #expect(!FileManager.default.fileExists(atPath: data.store), "no empty store was created in its place")
            try FileManager.default.removeItem(atPath: data.path + "/store.created")
            let host = try data.host()
            defer { _ = host.stop() }
            #expect(code(try kv(host, "get k")) == -10, "an empty store, on purpose")
            #expect(code(try kv(host, "put k v2")) == 0)
        }

        @Test func withoutAKVGrantCallsAreDeniedAndAudited() throws {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("peerhost-kvgrant-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let manifest = try String(contentsOfFile: Products.repoRoot.path + "/Tests/Plugins/kv-probe/manifest.toml", encoding: .utf8)
                .replacingOccurrences(of: "[storage]\nkv = { quota = \"16KiB\" }\n", with: "")
                .replacingOccurrences(of: "library = \"libkv-probe.so\"", with: "library = \"\(Products.buildDirectory.path)/libkv-probe.so\"")
            try #require(!manifest.contains("[storage]"))
            try manifest.write(toFile: dir + "/manifest.toml", atomically: true, encoding: .utf8)
            try Products.signCopy(dir + "/manifest.toml")
            let host = try HostProcess(config: Self.config.replacingOccurrences(of: "@REPO@/Tests/Plugins/kv-probe/manifest.toml", with: dir + "/manifest.toml"))
            try host.start()
            defer { _ = host.stop() }
            #expect(code(try kv(host, "put k v")) == -2, "PH_EDENIED")
            #expect(code(try kv(host, "get k")) == -2)
            #expect(try host.audit("kv-probe", action: "kv", decision: "denied").count >= 2)
            #expect(!FileManager.default.fileExists(atPath: host.dataDirectory + "/store.sqlite"), "no plugin has a kv grant: no store file")
        }
    }
}
