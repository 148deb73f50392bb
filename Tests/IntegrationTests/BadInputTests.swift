import Foundation
import Testing

extension Integration {
    /// Bad manifests stop `peerhost run` with an error naming the manifest, line and key; a plugin whose
    /// library is missing does not stop the host: it shows as failed with the reason.
    @Suite(.serialized) struct BadInputTests {
        func writeManifest(_ text: String, in host: HostProcess) throws -> String {
            let path = host.directory.appendingPathComponent("bad-manifest.toml").path
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }

        static let goodHead = """
        [plugin]
        name = "bad"
        version = "1.0.0"
        library = "libecho-c.so"
        abi = "1"

        """

        @Test(arguments: [
            (goodHead + "[net]\nlisten = [\"tcp:127.0.0.1:99999\"]\n", ":7: key 'net.listen[0]'"),
            (goodHead + "[net]\nlistne = [\"tcp:127.0.0.1:7001\"]\n", ":7: key 'net.listne'"),
            (goodHead + "[[control]]\nname = \"x\"\nsymbol = \"x\"\nsignature = \"(i32) -> i64\"\n", "key 'control[0].signature'"),
            ("[plugin]\nname = \"bad\"\nversion = \"1.0.0\"\nabi = \"1\"\n", "library"),
        ])
        func badManifestStopsRunWithFileLineAndKey(_ manifest: String, _ expected: String) throws {
            let host = try HostProcess(config: "")
            let manifestPath = try writeManifest(manifest, in: host)
            try """
            [host]
            data_dir = "\(host.dataDirectory)"
            http = "127.0.0.1:0"

            [[plugin]]
            name = "bad"
            manifest = "\(manifestPath)"
            """.write(toFile: host.configPath, atomically: true, encoding: .utf8)
            let (status, output) = try runCLI(["run", "--config", host.configPath])
            #expect(status != 0)
            #expect(output.contains(manifestPath), "the error names the manifest: \(output)")
            #expect(output.contains(expected), "\(output)")
        }

        @Test func aMissingLibraryFailsThatPluginOnly() throws {
            let host = try HostProcess(config: "")
            let manifestPath = try writeManifest(Self.goodHead.replacingOccurrences(of: "libecho-c.so", with: "libnothere.so")
                                                 + "[net]\nlisten = [\"tcp:127.0.0.1:7005\"]\n", in: host)
            try """
            [host]
            data_dir = "\(host.dataDirectory)"
            http = "127.0.0.1:0"

            [[plugin]]
            name = "echo-c"
            manifest = "\(Products.repoRoot.path)/plugins/echo-c/manifest.toml"

            [[plugin]]
            name = "bad"
            manifest = "\(manifestPath)"
            """.write(toFile: host.configPath, atomically: true, encoding: .utf8)
            try host.start()
            // run.json means the control plane is up, not that every plugin has started: the good
            // plugin's listener and the bad one's verdict may come a moment later, so wait for each.
            try waitUntil("the bad plugin shown as failed") { try status(host, "bad")["state"] as? String == "failed" }
            let bad = try status(host, "bad")
            #expect((bad["reason"] as? String ?? "").contains("libnothere.so"), "\(bad)")
            try waitUntil("the good plugin serves") { echoes(7001, "ok") }
            #expect(try status(host, "echo-c")["state"] as? String == "running")
            #expect(host.stop() == 0)
        }
    }
}
