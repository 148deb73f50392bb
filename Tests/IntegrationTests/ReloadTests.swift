import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    /// Issue 14 (4): `peerhost ctl host reload PLUGIN` re-reads the plugin's manifest, verifies its
    /// new bytes and restarts it with them, while the other plugin keeps serving the clients it
    /// has; bytes that do not verify are refused and the running plugin keeps running.
    @Suite(.serialized) struct ReloadTests {
        @Test func reloadSwapsOnePluginsBytesWhileAnotherKeepsServing() throws {
            let folder = try BitTorrentPeers.temporaryDirectory("reload")
            let library = folder + "/libecho-c.so"
            let manifest = folder + "/manifest.toml"
            try FileManager.default.copyItem(atPath: Products.buildDirectory.appendingPathComponent("libecho-c.so").path, toPath: library)
            let original = try String(contentsOfFile: Products.repoRoot.appendingPathComponent("plugins/echo-c/manifest.toml").path, encoding: .utf8)
            // The first version declares only `stats`; the second also `add`, and a new version.
            let stats = original.components(separatedBy: "[[control]]")[0] + "[[control]]" + original.components(separatedBy: "[[control]]")[1]
            try stats.write(toFile: manifest, atomically: true, encoding: .utf8)
            try Products.signCopy(manifest)

            let host = try HostProcess(config: """
                [host]
                data_dir = "@DATA@"
                http = "127.0.0.1:0"

                [[plugin]]
                name = "echo-c"
                manifest = "\(manifest)"

                [[plugin]]
                name = "echo-swift"
                manifest = "@REPO@/plugins/echo-swift/manifest.toml"
                """)
            defer { _ = host.stop() }
            try host.start()
            try waitUntil("both plugins echo") { echoes(7001, "c\n") && echoes(7002, "swift\n") }
            let swiftPID = try status(host, "echo-swift")["pid"] as? Int
            let oldPID = try status(host, "echo-c")["pid"] as? Int
            // A client of the other plugin stays connected through the reload.
            let client = try TCPClient(port: 7002, timeoutSeconds: 10)
            defer { client.close() }
            try client.send(Array("before\n".utf8))
            #expect(try client.receive(exactly: 7) == Array("before\n".utf8))
            let (before, beforeText) = try host.cli(["ctl", "echo-c", "add", "2", "3"])
            #expect(before != 0 && beforeText.contains("no control method 'add'"), "\(beforeText)")

            // New bytes (one byte appended: dlopen ignores it, the hash does not) and a new manifest.
            let handle = try #require(FileHandle(forWritingAtPath: library))
            try handle.seekToEnd()
            try handle.write(contentsOf: Data([0]))
            try handle.close()
            try original.replacingOccurrences(of: #"version = "1.0.0""#, with: #"version = "1.0.1""#)
                .write(toFile: manifest, atomically: true, encoding: .utf8)
            try Products.signCopy(manifest)
            let (code, out) = try host.cli(["ctl", "host", "reload", "echo-c"])
            #expect(code == 0 && out.contains("reloaded echo-c 1.0.1"), "\(out)")
            try waitUntil("echo-c serves again") { echoes(7001, "again\n") }
            let (added, sum) = try host.cli(["ctl", "echo-c", "add", "2", "3"])
            #expect(added == 0 && sum.trimmingCharacters(in: .whitespacesAndNewlines) == "5", "the new manifest's method: \(sum)")
            let newPID = try status(host, "echo-c")["pid"] as? Int
            #expect(newPID != nil && newPID != oldPID, "a new runner: \(String(describing: oldPID)) → \(String(describing: newPID))")
            #expect(try status(host, "echo-swift")["pid"] as? Int == swiftPID, "the other plugin was not restarted")
            try client.send(Array("after\n".utf8))
            #expect(try client.receive(exactly: 6) == Array("after\n".utf8), "its client kept its connection")
            #expect(try host.audit("echo-c", action: "reload", decision: "allowed").count == 1)

            // Bytes nobody signed: refused, and the running plugin keeps running.
            let again = try #require(FileHandle(forWritingAtPath: library))
            try again.seekToEnd()
            try again.write(contentsOf: Data([1]))
            try again.close()
            let (refusedCode, refused) = try host.cli(["ctl", "host", "reload", "echo-c"])
            #expect(refusedCode != 0 && refused.contains("refused") && refused.contains("keeps running"), "\(refused)")
            #expect(try status(host, "echo-c")["pid"] as? Int == newPID)
            #expect(echoes(7001, "still\n"))
            let (wrong, wrongText) = try host.cli(["ctl", "host", "reload", "nope"])
            #expect(wrong != 0 && wrongText.contains("nope"), "\(wrongText)")
        }
    }
}
