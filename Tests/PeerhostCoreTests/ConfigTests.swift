import Foundation
import Testing
@testable import PeerhostCore

@Suite("Config")
struct ConfigTests {
    /// Writes `config` as <tmp>/config/peerhost.toml with a manifest at <tmp>/plugins/demo/manifest.toml.
    private func load(_ config: String, manifest: String = TestSupport.manifest(name: "demo"),
                      body: (Result<HostConfig, TOMLFileError>, String) throws -> Void) throws {
        let directory = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(directory) }
        let configPath = directory + "/config/peerhost.toml"
        try TestSupport.write(config, to: configPath)
        try TestSupport.write(manifest, to: directory + "/plugins/demo/manifest.toml")
        let result = Result { () throws(TOMLFileError) -> HostConfig in
            try HostConfig.load(origin: .commandLine(path: configPath), currentDirectory: directory)
        }
        try body(result, configPath)
    }

    private func expectError(_ config: String, line: Int, key: String, contains fragment: String,
                             manifest: String = TestSupport.manifest(name: "demo"),
                             sourceLocation: SourceLocation = #_sourceLocation) throws {
        try load(config, manifest: manifest) { result, path in
            guard case .failure(let error) = result else {
                Issue.record("expected an error for key \(key)", sourceLocation: sourceLocation)
                return
            }
            #expect(error.file == path, sourceLocation: sourceLocation)
            #expect(error.line == line, "\(error)", sourceLocation: sourceLocation)
            #expect(error.key == key, "\(error)", sourceLocation: sourceLocation)
            let text = error.description
            #expect(text.hasPrefix("\(path):\(line): key '\(key)': "), "\(text)", sourceLocation: sourceLocation)
            #expect(text.contains(fragment), "\(text)", sourceLocation: sourceLocation)
        }
    }

    private let plugin = """
        [[plugin]]
        name = "demo"
        manifest = "../plugins/demo/manifest.toml"
        """

    @Test func shippedDefaultConfigLoads() throws {
        let root = TestSupport.repositoryRoot
        let config = try HostConfig.load(origin: .development(path: root + "/config/peerhost.toml"), currentDirectory: root)
        #expect(config.host.dataDirectory == root + "/.peerhost")
        #expect(config.host.httpHost == "127.0.0.1")
        #expect(config.host.httpPort == 9180)
        #expect(config.host.uidBase == 200_000)
        #expect(config.host.logLevel == .info)
        #expect(config.tuning == HostConfig.Tuning())
        #expect(config.plugins.map(\.name) == ["echo-c", "echo-swift"])
        #expect(config.enabledPlugins.count == 2)
        #expect(config.plugins[0].effectiveListen.map(\.description) == ["tcp:127.0.0.1:7001"])
        #expect(config.plugins[1].effectiveListen.map(\.description) == ["tcp:127.0.0.1:7002"])
        #expect(config.plugins[0].manifest.path == root + "/plugins/echo-c/manifest.toml")
        let start = try JSONDecoder().decode(JSONValue.self, from: Data(config.plugins[0].startConfigJSON))
        #expect(start == .object(["listen": .array([.string("tcp:127.0.0.1:7001")])]))
        #expect(config.summary.contains("echo-swift 1.0.0 [enabled] listen: tcp:127.0.0.1:7002"))
        // The development config trusts the key `make build` generates in the checkout.
        #expect(config.security.trustDirectories == [root + "/.peerhost-dev"])
        #expect(config.security.allowUnsigned.isEmpty)
    }

    /// Issue 14: narrowing listen to one transport silently dropped the other; now it is said.
    @Test func aNarrowingThatDropsATransportIsAWarning() throws {
        let manifest = TestSupport.manifest(name: "demo", listen: #"tcp:0.0.0.0:6881", "udp:0.0.0.0:6881"#)
        try load(plugin + "\nlisten = [\"tcp:127.0.0.1:6881\"]\n", manifest: manifest) { result, _ in
            let config = try result.get()
            #expect(config.plugins[0].warnings == ["plugin demo: the config's listen names no udp address, so the manifest's udp:0.0.0.0:6881 is not used; add one to listen to keep udp"])
            #expect(config.summary.contains("    warning: plugin demo: the config's listen names no udp address"), "\(config.summary)")
        }
        try load(plugin + "\nlisten = [\"tcp:127.0.0.1:6881\", \"udp:127.0.0.1:6881\"]\n", manifest: manifest) { result, _ in
            let config = try result.get()
            #expect(config.plugins[0].warnings.isEmpty)
        }
        try load(plugin, manifest: manifest) { result, _ in
            let config = try result.get()
            #expect(config.plugins[0].warnings.isEmpty, "no narrowing, no warning")
        }
    }

    @Test func embeddedDefaultEqualsShippedFile() throws {
        let shipped = try String(contentsOfFile: TestSupport.path("config/peerhost.toml"), encoding: .utf8)
        #expect(EmbeddedDefaultConfig.text == shipped,
                "Sources/PeerhostCore/Config/EmbeddedDefaultConfig.swift is out of date: paste config/peerhost.toml into it")
    }

    @Test func embeddedDefaultResolvesManifestsFromCurrentDirectory() throws {
        let root = TestSupport.repositoryRoot
        let config = try HostConfig.load(origin: .embedded, currentDirectory: root)
        #expect(config.plugins.map(\.manifest.path) == [root + "/plugins/echo-c/manifest.toml", root + "/plugins/echo-swift/manifest.toml"])
    }

    @Test func emptyConfigUsesDefaults() throws {
        try load("") { result, _ in
            let config = try result.get()
            #expect(config.host.httpPort == 9180)
            #expect(config.plugins.isEmpty)
            #expect(config.tuning.ringEntries == Defaults.ringEntries)
        }
    }

    @Test func ephemeralPortAndOverrides() throws {
        try load("""
            [host]
            http = "127.0.0.1:0"
            data_dir = "/var/tmp/ph"
            [tuning]
            ring_entries = 1024
            crash_loop_limit = 5
            \(plugin)
            enabled = false
            listen = ["tcp:127.0.0.1:7001"]
            config = { greeting = "hi", nested = { n = 3 } }
            """) { result, _ in
            let config = try result.get()
            #expect(config.host.httpPort == 0)
            #expect(config.host.dataDirectory == "/var/tmp/ph")
            #expect(config.host.controlSocketPath == "/var/tmp/ph/control.sock")
            #expect(config.tuning.ringEntries == 1024)
            #expect(config.tuning.crashLoopLimit == 5)
            #expect(config.plugins[0].enabled == false)
            #expect(config.plugins[0].settings == .object(["greeting": .string("hi"), "nested": .object(["n": .integer(3)])]))
        }
    }

    @Test func unknownKeyNamesFileLineAndKey() throws {
        try expectError("""
            [host]
            http = "127.0.0.1:9180"
            htpp = "oops"
            """, line: 3, key: "host.htpp", contains: "unknown key (expected one of: data_dir, http, uid_base, log_level)")
    }

    @Test func unknownKeyInSecondPlugin() throws {
        try expectError("""
            \(plugin)

            [[plugin]]
            name = "other"
            manifest = "../plugins/demo/manifest.toml"
            colour = "red"
            """, line: 8, key: "plugin[1].colour", contains: "unknown key")
    }

    @Test func unknownTopLevelTable() throws {
        try expectError("[hots]\nx = 1\n", line: 1, key: "hots", contains: "unknown key")
    }

    @Test func badPort() throws {
        try expectError("""
            # comment
            [host]
            http = "127.0.0.1:70000"
            """, line: 3, key: "host.http", contains: "not HOST:PORT")
    }

    @Test func badListenPortInPlugin() throws {
        try expectError("""
            \(plugin)
            listen = [
              "tcp:127.0.0.1:7001",
              "tcp:127.0.0.1:99999",
            ]
            """, line: 6, key: "plugin[0].listen[1]", contains: "bad port '99999'")
    }

    @Test func listenOverrideMayNotWidenManifest() throws {
        try expectError("""
            \(plugin)
            listen = ["tcp:0.0.0.0:7001"]
            """, line: 4, key: "plugin[0].listen[0]", contains: "not granted by the manifest's net.listen (tcp:127.0.0.1:7001)")
    }

    @Test func badType() throws {
        try expectError("""
            [host]
            uid_base = "lots"
            """, line: 2, key: "host.uid_base", contains: "expected an integer, found a string")
        try expectError("""
            \(plugin)
            enabled = "yes"
            """, line: 4, key: "plugin[0].enabled", contains: "expected a boolean")
    }

    @Test func badTuningValue() throws {
        try expectError("""
            [tuning]
            ring_entries = 1000
            """, line: 2, key: "tuning.ring_entries", contains: "not a power of two")
        try expectError("""
            [tuning]
            slot_count = 8
            recv_slots = 8
            """, line: 3, key: "tuning.recv_slots", contains: "must be below slot_count")
    }

    @Test func securitySection() throws {
        try load("[security]\ntrust = [\"keys\", \"/etc/k\"]\nallow_unsigned = [\"demo\"]\n\n" + plugin) { result, path in
            let config = try result.get()
            let folder = (path as NSString).deletingLastPathComponent
            #expect(config.security.trustDirectories == [folder + "/keys", "/etc/k"])
            #expect(config.security.allowUnsigned == ["demo"])
        }
        try expectError("[security]\nallow_unsigned = [\"demo\", \"demx\"]\n\n" + plugin, line: 2,
                        key: "security.allow_unsigned[1]", contains: "'demx' is not a configured plugin")
        try expectError("[security]\ntrusted = []\n", line: 2, key: "security.trusted", contains: "unknown key")
        try expectError("[security]\ntrust = \"keys\"\n", line: 2, key: "security.trust", contains: "expected an array of strings")
    }

    @Test func badLogLevel() throws {
        try expectError("[host]\nlog_level = \"loud\"\n", line: 2, key: "host.log_level", contains: "not a log level")
    }

    @Test func missingManifest() throws {
        try load("""
            [[plugin]]
            name = "demo"
            manifest = "../plugins/nope/manifest.toml"
            """) { result, path in
            guard case .failure(let error) = result else { Issue.record("expected an error"); return }
            #expect(error.line == 3)
            #expect(error.key == "plugin[0].manifest")
            #expect(error.description.contains("file not found: "))
            #expect(error.description.contains("/plugins/nope/manifest.toml"))
            #expect(error.description.hasPrefix(path + ":3:"))
        }
    }

    @Test func missingRequiredKey() throws {
        try expectError("""
            [[plugin]]
            manifest = "../plugins/demo/manifest.toml"
            """, line: 1, key: "plugin[0].name", contains: "required key is missing")
    }

    @Test func nameMustMatchManifest() throws {
        try expectError("""
            [[plugin]]
            name = "demox"
            manifest = "../plugins/demo/manifest.toml"
            """, line: 2, key: "plugin[0].name", contains: "differs from the manifest's plugin.name 'demo'")
    }

    @Test func errorInsideManifestNamesTheManifest() throws {
        try load(plugin, manifest: TestSupport.manifest(name: "demo") + "\n[extra]\nsurprise = 1\n") { result, _ in
            guard case .failure(let error) = result else { Issue.record("expected an error"); return }
            #expect(error.file.hasSuffix("/plugins/demo/manifest.toml"))
            #expect(error.key == "extra")
            #expect(error.line == 15)
        }
    }

    @Test func syntaxErrorHasLine() throws {
        try load("[host]\nhttp = \n") { result, path in
            guard case .failure(let error) = result else { Issue.record("expected an error"); return }
            #expect(error.line == 2)
            #expect(error.description.hasPrefix(path + ":2: TOML syntax error"))
        }
    }

    @Test func unreadableFile() throws {
        let result = Result { () throws(TOMLFileError) -> HostConfig in
            try HostConfig.load(origin: .commandLine(path: "/nonexistent/peerhost.toml"))
        }
        guard case .failure(let error) = result else { Issue.record("expected an error"); return }
        #expect(error.description == "/nonexistent/peerhost.toml: cannot read file: no such file")
    }

    @Test func discoveryOrder() {
        let files: Set<String> = ["/repo/config/peerhost.toml", "/etc/peerhost/peerhost.toml"]
        let exists: (String) -> Bool = { files.contains($0) }
        #expect(ConfigDiscovery.locate(commandLinePath: "/x.toml", environment: ["PEERHOST_CONFIG": "/y.toml"],
                                       executableDirectory: "/repo/.build/x86_64-unknown-linux-gnu/debug", fileExists: exists)
                == .commandLine(path: "/x.toml"))
        #expect(ConfigDiscovery.locate(commandLinePath: nil, environment: ["PEERHOST_CONFIG": "/y.toml"],
                                       executableDirectory: "/repo/.build/debug", fileExists: exists)
                == .environment(path: "/y.toml"))
        #expect(ConfigDiscovery.locate(commandLinePath: nil, environment: [:],
                                       executableDirectory: "/repo/.build/x86_64-unknown-linux-gnu/debug", fileExists: exists)
                == .development(path: "/repo/config/peerhost.toml"))
        #expect(ConfigDiscovery.locate(commandLinePath: nil, environment: [:],
                                       executableDirectory: "/usr/local/bin", fileExists: exists)
                == .system(path: "/etc/peerhost/peerhost.toml"))
        #expect(ConfigDiscovery.locate(commandLinePath: nil, environment: [:],
                                       executableDirectory: "/usr/local/bin", fileExists: { _ in false })
                == .embedded)
    }

    @Test func lineIndexFollowsTablesArraysAndInlineTables() {
        let index = TOMLKeyLineIndex(text: """
            a = 1
            [t]
            "quoted key" = 'x'
            s = \"\"\"
            multi
            line\"\"\"
            after = 2
            [[p]]
            n = { x = 1, y = [1, 2] }
            [[p]]
            arr = [
              { k = "v" },
              { k = "w" },
            ]
            [p.sub]
            z = 0
            """)
        #expect(index.line(for: "a") == 1)
        #expect(index.line(for: "t.quoted key") == 3)
        #expect(index.line(for: "t.after") == 7)
        #expect(index.line(for: "p[0].n.y") == 9)
        #expect(index.line(for: "p[1].arr[1].k") == 13)
        #expect(index.line(for: "p[1].sub.z") == 16)
        #expect(index.line(for: "p[1].missing") == 10)
    }
}

@Suite struct EmbeddedABIHeaderTests {
    @Test func theEmbeddedHeaderIsTheHeader() throws {
        let header = try String(contentsOfFile: TestSupport.path("protocols/abi/peerhost.h"), encoding: .utf8)
        #expect(EmbeddedABIHeader.text + "\n" == header,
                "Sources/PeerhostCore/Scaffold/EmbeddedABIHeader.swift is out of date: paste protocols/abi/peerhost.h into it")
    }
}
