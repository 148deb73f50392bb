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
            let (_, body) = try httpGet(host.httpAddress, "/status")
            let doc = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
            let plugins = try #require(doc["plugins"] as? [[String: Any]])
            let bad = try #require(plugins.first { $0["name"] as? String == "bad" })
            #expect(bad["state"] as? String == "failed")
            #expect((bad["reason"] as? String ?? "").contains("libnothere.so"), "\(bad)")
            let client = try TCPClient(port: 7001)
            defer { client.close() }
            try client.send(Array("ok".utf8))
            #expect(try client.receive(exactly: 2) == Array("ok".utf8), "the good plugin serves")
            #expect(host.stop() == 0)
        }
    }
}
