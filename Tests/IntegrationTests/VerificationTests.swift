import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    /// Secure bootstrapping with real hosts: a tampered library or a signature by an untrusted key
    /// leaves that plugin failed with the reason and an audit line, while the others serve; and the
    /// security reviewer's commands (keygen, sign, audit) on the bundled plugins.
    @Suite(.serialized) struct VerificationTests {
        static var devKey: String { Products.devKeyFolder + "/dev.key" }

        /// A copy of echo-swift (manifest + library side by side) in `host`'s folder; `prepare` may
        /// sign it, flip bytes, …; the config runs the checkout's echo-c next to it.
        func hostWithCopiedEchoSwift(security: String, _ prepare: (_ folder: String) throws -> Void) throws -> HostProcess {
            if let failure = Products.devSigned { throw TestFailure("signing the test plugins failed: \(failure)") }
            let host = try HostProcess(config: "")
            let folder = host.directory.appendingPathComponent("echo-swift").path
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: Products.repoRoot.path + "/plugins/echo-swift/manifest.toml", toPath: folder + "/manifest.toml")
            try FileManager.default.copyItem(atPath: Products.buildDirectory.path + "/libecho-swift.so", toPath: folder + "/libecho-swift.so")
            try prepare(folder)
            try """
            [host]
            data_dir = "\(host.dataDirectory)"
            http = "127.0.0.1:0"

            [security]
            trust = ["\(Products.devKeyFolder)"]
            \(security)

            [[plugin]]
            name = "echo-c"
            manifest = "\(Products.repoRoot.path)/plugins/echo-c/manifest.toml"

            [[plugin]]
            name = "echo-swift"
            manifest = "\(folder)/manifest.toml"
            """.write(toFile: host.configPath, atomically: true, encoding: .utf8)
            return host
        }

        func sign(_ folder: String, key: String = VerificationTests.devKey) throws {
            let (status, out) = try runCLI(["sign", folder + "/manifest.toml", "--key", key])
            guard status == 0 else { throw TestFailure("sign failed: \(out)") }
        }

        func flipByte(_ path: String) throws {
            var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            bytes[bytes.count / 2] ^= 0x01
            try bytes.write(to: URL(fileURLWithPath: path))
        }

        func pluginStatus(_ host: HostProcess, _ name: String) throws -> [String: Any] {
            let (_, body) = try httpGet(host.httpAddress, "/status")
            let doc = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
            return try #require((doc["plugins"] as? [[String: Any]])?.first { $0["name"] as? String == name })
        }

        func auditLines(_ host: HostProcess, plugin: String, action: String) -> [[String: Any]] {
            let text = (try? String(contentsOfFile: host.dataDirectory + "/audit.log", encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }.filter { $0["plugin"] as? String == plugin && $0["action"] as? String == action }
        }

        /// Asserts echo-swift was refused for `reasonFragment` while echo-c serves.
        func expectRefused(_ host: HostProcess, _ reasonFragment: String) throws {
            try host.start()
            try waitUntil("echo-c echoes") { echoes(7001, "still serving") }
            let status = try pluginStatus(host, "echo-swift")
            #expect(status["state"] as? String == "failed")
            #expect((status["reason"] as? String ?? "").contains(reasonFragment), "\(status)")
            let lines = auditLines(host, plugin: "echo-swift", action: "verify")
            #expect(lines.count == 1, "\(lines)")
            #expect(lines.first?["decision"] as? String == "denied")
            #expect((lines.first?["reason"] as? String ?? "").contains(reasonFragment), "\(lines)")
            #expect(auditLines(host, plugin: "echo-swift", action: "spawn").isEmpty, "a refused plugin is never spawned")
            #expect(auditLines(host, plugin: "echo-c", action: "verify").first?["decision"] as? String == "allowed")
            #expect(!echoes(7002, "x"))
            #expect(host.stop() == 0)
        }

        @Test func tamperedLibraryIsRefused() throws {
            let host = try hostWithCopiedEchoSwift(security: "") { folder in
                try sign(folder)
                try flipByte(folder + "/libecho-swift.so")
            }
            try expectRefused(host, "differs from the signed sha256")
        }

        @Test func signatureByAnUntrustedKeyIsRefused() throws {
            let host = try hostWithCopiedEchoSwift(security: "") { folder in
                let (status, out) = try runCLI(["keygen", "--out", folder + "/../stranger"])
                #expect(status == 0, "\(out)")
                try sign(folder, key: folder + "/../stranger.key")
            }
            try expectRefused(host, "which is not in the trust store")
        }

        @Test func unsignedIsRefused() throws {
            let host = try hostWithCopiedEchoSwift(security: "") { _ in }
            try expectRefused(host, "no signature")
        }

        @Test func widenedManifestIsRefused() throws {
            let host = try hostWithCopiedEchoSwift(security: "") { folder in
                try sign(folder)
                let path = folder + "/manifest.toml"
                let text = try String(contentsOfFile: path, encoding: .utf8)
                try text.replacingOccurrences(of: "listen = [\"tcp:127.0.0.1:7002\"]", with: "listen = [\"tcp:127.0.0.1:7002\"]\nconnect = [\"tcp:*:1-65535\"]")
                    .write(toFile: path, atomically: true, encoding: .utf8)
            }
            try expectRefused(host, "does not match the manifest")
        }

        @Test func allowUnsignedStartsItLoudly() throws {
            let host = try hostWithCopiedEchoSwift(security: "allow_unsigned = [\"echo-swift\"]") { _ in }
            try host.start()
            try waitUntil("echo-swift echoes") { echoes(7002, "unsigned but allowed") }
            let line = try #require(auditLines(host, plugin: "echo-swift", action: "verify").first)
            #expect(line["decision"] as? String == "allowed")
            #expect((line["reason"] as? String ?? "").hasPrefix("allow_unsigned: no signature"), "\(line)")
            // The reviewer's view: unsafe, exit 1.
            let (status, out) = try host.cli(["audit", "echo-swift"])
            #expect(status == 1, "\(out)")
            #expect(out.contains("[UNSAFE]") && out.contains("allowed-unsigned"), "\(out)")
            #expect(host.stop() == 0)
        }

        // MARK: The reviewer's commands

        @Test func auditOfTheDevelopmentConfig() throws {
            if let failure = Products.devSigned { throw TestFailure("signing the test plugins failed: \(failure)") }
            let config = Products.repoRoot.path + "/config/peerhost.toml"
            let keyID = try #require(try String(contentsOfFile: Products.devKeyFolder + "/dev.pub", encoding: .utf8)
                .split(separator: " ").last?.trimmingCharacters(in: .whitespacesAndNewlines))
            let (status, text) = try runCLI(["audit", "--config", config])
            #expect(status == 0, "\(text)")
            #expect(text.contains("plugin echo-c 1.0.0  [VERIFIED]"), "\(text)")
            #expect(text.contains("plugin echo-swift 1.0.0  [VERIFIED]"), "\(text)")
            #expect(text.contains("verified key \(keyID) at "), "\(text)")
            #expect(text.contains("\(keyID) \(Products.devKeyFolder)/dev.pub"), "trusted keys are listed: \(text)")
            #expect(text.hasSuffix("verdict: verified\n"), "\(text)")
            #expect(try runCLI(["audit", "--config", config, "--strict"]).0 == 0)

            let (jsonStatus, json) = try runCLI(["audit", "echo-c", "--json", "--config", config])
            #expect(jsonStatus == 0)
            let doc = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
            let plugins = try #require(doc["plugins"] as? [[String: Any]])
            #expect(plugins.map { $0["name"] as? String } == ["echo-c"])
            let signature = try #require(plugins[0]["signature"] as? [String: Any])
            #expect(signature["status"] as? String == "verified")
            #expect(signature["key"] as? String == keyID)
            #expect((signature["file"] as? String ?? "").hasSuffix("/echo-c.manifest.sig"))
            #expect((plugins[0]["library"] as? [String: Any])?["sha256"] as? String
                    == sha256Hex(Products.buildDirectory.path + "/libecho-c.so"))

            // A manifest that is not configured: its warnings pass, unless --strict.
            let probe = Products.repoRoot.path + "/Tests/Plugins/io-probe/manifest.toml"
            let (probeStatus, probeText) = try runCLI(["audit", probe, "--config", config])
            #expect(probeStatus == 0, "\(probeText)")
            #expect(probeText.contains("plugin io-probe 1.0.0  [WARNINGS]"), "\(probeText)")
            #expect(probeText.contains("warning may connect to any host: tcp:*:1-65535"), "\(probeText)")
            #expect(probeText.contains("warning may write storage downloads without a quota of its own"), "\(probeText)")
            #expect(try runCLI(["audit", probe, "--config", config, "--strict"]).0 == 1)

            // Usage errors exit 2; an unknown plugin is an error (1) that names the choices.
            #expect(try runCLI(["audit", "a", "b", "--config", config]).0 == 2)
            #expect(try runCLI(["audit", "--diff", probe, "--config", config]).0 == 2)
            let (unknownStatus, unknown) = try runCLI(["audit", "nope", "--config", config])
            #expect(unknownStatus == 1)
            #expect(unknown.contains("no plugin 'nope'") && unknown.contains("echo-c, echo-swift"), "\(unknown)")
        }

        @Test func keygenSignAndDiffFromTheCommandLine() throws {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("peerhost-sign-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let (status, out) = try runCLI(["keygen", "--out", directory + "/k"])
            #expect(status == 0, "\(out)")
            #expect(out.hasPrefix("key ed25519:"))
            var info = stat()
            #expect(stat(directory + "/k.key", &info) == 0 && info.st_mode & 0o777 == 0o600)
            #expect(try runCLI(["keygen", "--out", directory + "/k"]).0 == 1, "never overwrites a key")

            let manifest = Products.repoRoot.path + "/plugins/echo-c/manifest.toml"
            let (signStatus, signOut) = try runCLI(["sign", manifest, "--key", directory + "/k.key",
                                                    "--library", Products.buildDirectory.path + "/libecho-c.so", "--out", directory + "/echo-c.sig"])
            #expect(signStatus == 0, "\(signOut)")
            let sig = try String(contentsOfFile: directory + "/echo-c.sig", encoding: .utf8)
            #expect(sig.contains("plugin = \"echo-c\"") && sig.contains("sha256 = \"\(sha256Hex(Products.buildDirectory.path + "/libecho-c.so"))\""))
            #expect(try runCLI(["sign", manifest, manifest, "--key", directory + "/k.key", "--out", directory + "/x"]).0 == 2)
            #expect(try runCLI(["sign", manifest, "--key", directory + "/nokey"]).0 == 1)

            // --diff: the same manifest widens nothing (0); an added grant widens (1).
            try FileManager.default.createDirectory(atPath: directory + "/new", withIntermediateDirectories: true)
            let text = try String(contentsOfFile: manifest, encoding: .utf8)
            try text.replacingOccurrences(of: "[limits]", with: "multicast = [\"udp:239.192.152.143:6771\"]\n\n[limits]")
                .write(toFile: directory + "/new/manifest.toml", atomically: true, encoding: .utf8)
            #expect(try runCLI(["audit", "--diff", manifest, manifest]).0 == 0)
            let (diffStatus, diff) = try runCLI(["audit", "--diff", manifest, directory + "/new/manifest.toml"])
            #expect(diffStatus == 1)
            #expect(diff.contains("+ net.multicast  udp:239.192.152.143:6771  (widens)"), "\(diff)")
            let (_, diffJSON) = try runCLI(["audit", "--diff", manifest, directory + "/new/manifest.toml", "--json"])
            let doc = try #require(try JSONSerialization.jsonObject(with: Data(diffJSON.utf8)) as? [String: Any])
            #expect((doc["changes"] as? [[String: Any]])?.first?["area"] as? String == "net.multicast")

            for command in ["audit", "sign", "keygen"] {
                let (helpStatus, help) = try runCLI([command, "--help"])
                #expect(helpStatus == 0)
                #expect(help.contains("Examples:"), "\(command) --help: \(help)")
            }
        }

        func sha256Hex(_ path: String) -> String {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
            p.arguments = [path]
            let pipe = Pipe()
            p.standardOutput = pipe
            try? p.run()
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return String(String(decoding: data, as: UTF8.self).prefix(64))
        }
    }
}
