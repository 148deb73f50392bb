import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    /// Issue 14 (4): `peerhost check PLUGIN_DIR` compares a manifest with its library, loading the
    /// library only in a sandboxed runner (a hostile constructor is killed there, not run by the CLI).
    @Suite(.serialized) struct CheckTests {
        func copy(of plugin: String, _ edit: (String) -> String) throws -> String {
            let folder = try BitTorrentPeers.temporaryDirectory("check-\(plugin)")
            let text = try String(contentsOfFile: Products.repoRoot.appendingPathComponent("plugins/\(plugin)/manifest.toml").path, encoding: .utf8)
            try edit(text).write(toFile: folder + "/manifest.toml", atomically: true, encoding: .utf8)
            return folder
        }

        @Test func aGoodPluginPasses() throws {
            let (code, out) = try runCLI(["check", Products.repoRoot.appendingPathComponent("plugins/echo-c").path])
            #expect(code == 0 && out.contains("verdict: ok"), "\(out)")
            #expect(out.contains("loaded     echo-c 1.0.0, ABI 1.2.0, features streams, control"), "\(out)")
            #expect(out.contains("callbacks  stop, on_accept, on_data, on_writable, on_closed, on_complete"), "\(out)")
            let (jsonCode, json) = try runCLI(["check", Products.repoRoot.appendingPathComponent("plugins/echo-swift/manifest.toml").path, "--json"])
            let doc = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
            #expect(jsonCode == 0 && (doc?["loaded"] as? [String: Any])?["name"] as? String == "echo-swift", "\(json)")
        }

        @Test func aMissingSymbolAWrongNameAndAHostileConstructorAreRefused() throws {
            let missing = try copy(of: "echo-c") {
                $0 + "\n[[control]]\nname = \"nope\"\nsymbol = \"echo_c_nope\"\nsignature = \"() -> i64\"\n"
            }
            let (c1, o1) = try runCLI(["check", missing])
            #expect(c1 == 1 && o1.contains("control method nope: the library does not export echo_c_nope"), "\(o1)")

            let renamed = try copy(of: "echo-c") { $0.replacingOccurrences(of: #"name = "echo-c""#, with: #"name = "other""#) }
            let (c2, o2) = try runCLI(["check", renamed])
            #expect(c2 == 1 && o2.contains(#"declares plugin name "echo-c", expected "other""#), "\(o2)")

            let (c3, o3) = try runCLI(["check", Products.repoRoot.appendingPathComponent("Tests/Plugins/hostile-ctor").path])
            #expect(c3 == 1 && o3.contains("killed by seccomp: socket"), "the constructor ran in the sandbox: \(o3)")

            let (c4, o4) = try runCLI(["check", "/nonexistent/plugin"])
            #expect(c4 != 0 && o4.contains("/nonexistent/plugin: no such file or folder"), "\(o4)")
        }
    }
}
