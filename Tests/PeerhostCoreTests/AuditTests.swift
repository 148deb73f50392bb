import Foundation
import Testing
@testable import PeerhostCore

/// `peerhost audit`'s reports and `--diff` (docs/audit.md), on the bundled manifests.
@Suite("Audit")
struct AuditTests {
    /// Copies a bundled manifest and its freshly built library into a temp folder (so the sidecar
    /// goes beside the manifest and nothing in the checkout is touched), signs it with a new key.
    struct SignedCopy {
        let directory: String
        let manifest: PluginManifest
        let key: PrivateSigningKey
        let trust: TrustStore

        init(_ relativeManifest: String, sign: Bool = true) throws {
            directory = try TestSupport.makeTemporaryDirectory()
            let original = try PluginManifest(contentsOf: TestSupport.path(relativeManifest))
            try FileManager.default.copyItem(atPath: TestSupport.path(relativeManifest), toPath: directory + "/manifest.toml")
            try FileManager.default.copyItem(atPath: try original.resolveLibrary(), toPath: directory + "/" + original.library)
            if let profile = original.sandbox.syscallProfile {   // a profile of its own travels with it
                try FileManager.default.copyItem(atPath: original.directory + "/" + profile, toPath: directory + "/" + profile)
            }
            manifest = try PluginManifest(contentsOf: directory + "/manifest.toml")
            key = PrivateSigningKey.generate()
            _ = try key.write(to: directory + "/trust/k")
            trust = TrustStore(directories: [directory + "/trust"])
            if sign {
                let file = try SignatureFile.sign(manifest: manifest, librarySHA256: FileHash.sha256(path: directory + "/" + manifest.library)!, key: key)
                try file.fileText.write(toFile: directory + "/manifest.sig", atomically: true, encoding: .utf8)
            }
        }

        func audit(allowUnsigned: Bool = false, storageRoot: String? = nil) -> PluginAuditReport {
            PluginAuditor.audit(manifest: manifest, inputs: AuditInputs(trust: trust, allowUnsigned: allowUnsigned ? [manifest.name] : [],
                                                                        productsDirectory: "/nonexistent"),
                                storageRoot: storageRoot)
        }
    }

    /// What the audit must say about each bundled manifest: verdict and the finding codes.
    @Test(arguments: [
        ("plugins/echo-c/manifest.toml", PluginAuditReport.Verdict.verified, [String]()),
        ("plugins/echo-swift/manifest.toml", .verified, []),
        ("Tests/Plugins/hostile-ring/manifest.toml", .warnings, ["no-memory-limit"]),
        ("Tests/Plugins/hostile-syscall/manifest.toml", .warnings, ["no-memory-limit"]),
        ("Tests/Plugins/hostile-ctor/manifest.toml", .warnings, ["no-memory-limit"]),
        ("Tests/Plugins/io-probe/manifest.toml", .warnings, ["connect-any-host", "connect-any-host", "multicast", "storage-rw", "no-memory-limit"]),
    ])
    func bundledManifests(_ path: String, _ verdict: PluginAuditReport.Verdict, _ codes: [String]) throws {
        let copy = try SignedCopy(path)
        defer { TestSupport.removeDirectory(copy.directory) }
        let report = copy.audit()
        #expect(report.verdict == verdict, "\(report.findings)")
        #expect(report.findings.map(\.code) == codes)
        if let multicast = report.findings.first(where: { $0.code == "multicast" }) {
            #expect(multicast.message.contains("sends capped at \(MulticastSendBudget.burst), then one per 10 s"), "\(multicast.message)")
        }
        #expect(report.signature.status == "verified")
        #expect(report.signature.key == copy.key.publicKey.keyID)
        #expect(report.signature.keyFile == copy.directory + "/trust/k.pub")
        #expect(report.library.hashStatus == "unpinned")
        #expect(report.library.sha256 == FileHash.sha256(path: copy.directory + "/" + copy.manifest.library))
        #expect(report.namespaces == ["user", "pid", "net", "mount", "ipc", "uts"])
        let profile = try SyscallProfile.forManifest(copy.manifest)
        #expect(report.syscalls.profile == copy.manifest.sandbox.syscallProfile)
        #expect(report.syscalls.findings.isEmpty)
        #expect(report.syscalls.allowlist.count == profile.rules.count && report.syscalls.allowlist.contains("read"))
        #expect(report.syscalls.allowlist.contains("openat (while loading only)"), "\(report.syscalls.allowlist)")
        #expect(!report.syscalls.allowlist.contains { $0.hasPrefix("io_uring") || $0.hasPrefix("socket") })
        #expect(report.grants.listen == copy.manifest.net.listen.map(\.description))
        #expect(report.controls.map(\.name) == copy.manifest.controls.map(\.name))
        let document = AuditDocument(config: nil, trust: copy.trust, plugins: [report])
        #expect(document.exitCode(strict: false) == 0)
        #expect(document.exitCode(strict: true) == (verdict == .verified ? 0 : 1))
    }

    @Test func echoTextAndJSON() throws {
        let copy = try SignedCopy("plugins/echo-c/manifest.toml")
        defer { TestSupport.removeDirectory(copy.directory) }
        let document = AuditDocument(config: nil, trust: copy.trust, plugins: [copy.audit()])
        let text = document.text
        #expect(text.contains("plugin echo-c 1.0.0  [VERIFIED]"), "\(text)")
        // Keys are padded to the longest ("net.multicast", 13 characters).
        func row(_ key: String, _ value: String) -> String { "  " + key.padding(toLength: 13, withPad: " ", startingAt: 0) + "  " + value }
        #expect(text.contains(row("signature", "verified key \(copy.key.publicKey.keyID) at ")), "\(text)")
        #expect(text.contains(row("net.listen", "tcp:127.0.0.1:7001\n")), "\(text)")
        #expect(text.contains(row("net.connect", "-\n")), "\(text)")
        #expect(text.contains(row("limits", "memory 256MiB, cpu 100%, open_files 64, up -, down -\n")), "\(text)")
        #expect(text.contains(row("syscalls", "host default profile (sandbox/profiles/plugin-default.toml)\n")), "\(text)")
        #expect(text.contains(row("", "enforced here: memory 256 MiB by ")), "\(text)")
        #expect(text.contains("rules, everything else kills the runner: "), "\(text)")
        #expect(text.contains(row("controls", "stats () -> bytes  [echo_c_stats] — connections, open connections, bytes echoed and the greeting, as JSON\n")), "\(text)")
        #expect(text.contains("  findings: none"))
        #expect(text.hasSuffix("verdict: verified"))
        let json = try JSONSerialization.jsonObject(with: Data(document.json().utf8)) as? [String: Any]
        let plugin = try #require((json?["plugins"] as? [[String: Any]])?.first)
        #expect(json?["verdict"] as? String == "verified")
        #expect((plugin["signature"] as? [String: Any])?["status"] as? String == "verified")
        #expect((plugin["library"] as? [String: Any])?["hash_status"] as? String == "unpinned")
        #expect((plugin["limits"] as? [String: Any])?["memory"] as? Int == 256 << 20)
        #expect((plugin["grants"] as? [String: Any])?["listen"] as? [String] == ["tcp:127.0.0.1:7001"])
        // Stable for tools: the same input gives the same bytes.
        #expect(document.json() == AuditDocument(config: nil, trust: copy.trust, plugins: [copy.audit()]).json())
    }

    @Test func unsignedTamperedAndUntrustedAreUnsafe() throws {
        let copy = try SignedCopy("plugins/echo-c/manifest.toml", sign: false)
        defer { TestSupport.removeDirectory(copy.directory) }
        var report = copy.audit()
        #expect(report.verdict == .unsafe)
        #expect(report.signature.status == "refused")
        #expect(report.findings.map(\.code) == ["signature"])
        #expect(report.findings[0].message.contains("no signature"))
        // The escape hatch starts it, but the audit still calls it unsafe.
        report = copy.audit(allowUnsigned: true)
        #expect(report.verdict == .unsafe)
        #expect(report.signature.status == "allowed-unsigned")
        #expect(report.findings[0].message.contains("allow_unsigned starts it anyway"))

        // Signed by a key nobody trusts.
        let stranger = PrivateSigningKey.generate()
        let libraryPath = copy.directory + "/" + copy.manifest.library
        try SignatureFile.sign(manifest: copy.manifest, librarySHA256: FileHash.sha256(path: libraryPath)!, key: stranger)
            .fileText.write(toFile: copy.directory + "/manifest.sig", atomically: true, encoding: .utf8)
        report = copy.audit()
        #expect(report.verdict == .unsafe)
        #expect(report.signature.key == stranger.publicKey.keyID)
        #expect(report.signature.reason?.contains("not in the trust store") == true)

        // Trusted signature, then one byte of the library flipped.
        try SignatureFile.sign(manifest: copy.manifest, librarySHA256: FileHash.sha256(path: libraryPath)!, key: copy.key)
            .fileText.write(toFile: copy.directory + "/manifest.sig", atomically: true, encoding: .utf8)
        #expect(copy.audit().verdict == .verified)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: libraryPath))
        bytes[bytes.count / 2] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: libraryPath))
        report = copy.audit()
        #expect(report.verdict == .unsafe)
        #expect(report.signature.reason?.contains("differs from the signed sha256") == true)
    }

    @Test func worldWritableStorageIsUnsafe() throws {
        let copy = try SignedCopy("Tests/Plugins/io-probe/manifest.toml")
        defer { TestSupport.removeDirectory(copy.directory) }
        let root = copy.directory + "/data/io-probe"
        try FileManager.default.createDirectory(atPath: root + "/downloads", withIntermediateDirectories: true)
        chmod(root, 0o700)
        chmod(root + "/downloads", 0o750)
        #expect(copy.audit(storageRoot: root).verdict == .warnings)
        chmod(root + "/downloads", 0o777)
        let report = copy.audit(storageRoot: root)
        #expect(report.verdict == .unsafe)
        #expect(report.findings.contains(AuditFinding(.unsafe, "world-writable", "\(root)/downloads is world-writable (mode 777)")))
        #expect(report.grants.storage.first?.location == root + "/downloads")
    }

    @Test func configWiderThanManifestIsUnsafe() throws {
        let copy = try SignedCopy("plugins/echo-c/manifest.toml")
        defer { TestSupport.removeDirectory(copy.directory) }
        let report = PluginAuditor.audit(manifest: copy.manifest, inputs: AuditInputs(trust: copy.trust, productsDirectory: "/nonexistent"),
                                         listenOverride: [try NetGrant(parsing: "tcp:0.0.0.0:7001")])
        #expect(report.verdict == .unsafe)
        #expect(report.findings.map(\.code) == ["config-wider", "listen-any-interface"])
        #expect(report.grants.manifestListen == ["tcp:127.0.0.1:7001"])
    }

    @Test func syscallProfileAuditReportsPathHashAllowlistAndLint() throws {
        let directory = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(directory) }
        try TestSupport.write(TestSupport.manifest(name: "demo") + "\n[sandbox]\nsyscalls = \"p.toml\"\n", to: directory + "/manifest.toml")
        let manifest = try PluginManifest(contentsOf: directory + "/manifest.toml")
        var result = PluginAuditor.auditSyscallProfile(manifest: manifest)
        #expect(result.findings.map(\.code) == ["syscall-profile"])
        try TestSupport.write("x", to: directory + "/p.toml")
        result = PluginAuditor.auditSyscallProfile(manifest: manifest)
        #expect(result.sha256 == FileHash.sha256(path: directory + "/p.toml"))
        #expect(result.findings.map(\.code) == ["syscall-profile"], "a profile that does not parse is unsafe")
        let profile = """
        arch = "x86_64"
        default = "kill"

        [[syscall]]
        name = "read"
        reason = "ring loop"

        [[syscall]]
        name = "tgkill"
        when = "self"
        reason = "abort()"

        [[syscall]]
        name = "socket"
        reason = "a plugin that wants its own sockets"
        """
        try TestSupport.write(profile, to: directory + "/p.toml")
        result = PluginAuditor.auditSyscallProfile(manifest: manifest)
        #expect(result.allowlist == ["read", "tgkill (only to itself)", "socket"])
        #expect(result.beyondDefault == ["socket"], "what the custom profile adds to the default")
        #expect(result.withoutDefault?.contains("write") == true && result.withoutDefault?.contains("read") == false)
        #expect(result.findings.map(\.code) == ["dangerous-syscall"])
        #expect(result.findings.first?.severity == .unsafe)
        #expect(result.findings.first?.message.contains("p.toml:14: socket is dangerous") == true, "\(result.findings)")
    }

    @Test func diffShowsWhatAChangeAddsOrRemoves() throws {
        let directory = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(directory) }
        let oldText = try String(contentsOfFile: TestSupport.path("plugins/echo-c/manifest.toml"), encoding: .utf8)
        let newText = oldText
            .replacingOccurrences(of: "listen = [\"tcp:127.0.0.1:7001\"]", with: "listen = [\"tcp:127.0.0.1:7001\"]\nconnect = [\"tcp:*:443\"]")
            .replacingOccurrences(of: "memory = \"256MiB\"", with: "memory = \"1GiB\"")
            .replacingOccurrences(of: "open_files = 64", with: "open_files = 32")
            .replacingOccurrences(of: "\"ipc\", \"uts\"", with: "\"ipc\"")
            .replacingOccurrences(of: "[[control]]\nname = \"toggle\"\nsymbol = \"echo_c_toggle\"\nsignature = \"(bool) -> i64\"\ndescription = \"stores a flag and returns it as 0 or 1\"\n", with: "")
        try TestSupport.write(oldText, to: directory + "/old.toml")
        try TestSupport.write(newText, to: directory + "/new.toml")
        let diff = ManifestDiff(old: try PluginManifest(contentsOf: directory + "/old.toml"), new: try PluginManifest(contentsOf: directory + "/new.toml"))
        #expect(diff.changes == [
            .init(area: "net.connect", old: nil, new: "tcp:*:443", widens: true),
            .init(area: "limits.memory", old: "\(256 << 20)", new: "\(1 << 30)", widens: true),
            .init(area: "limits.open_files", old: "64", new: "32", widens: false),
            .init(area: "sandbox.namespaces", old: "uts", new: nil, widens: true),
            .init(area: "control", old: "toggle (bool) -> i64 [echo_c_toggle]", new: nil, widens: false),
        ])
        #expect(diff.widens)
        let text = diff.text
        // Areas are padded to the longest ("sandbox.namespaces", 18 characters).
        func pad(_ area: String) -> String { area.padding(toLength: 18, withPad: " ", startingAt: 0) }
        #expect(text.contains("+ \(pad("net.connect"))  tcp:*:443  (widens)\n"), "\(text)")
        #expect(text.contains("- \(pad("control"))  toggle (bool) -> i64 [echo_c_toggle]\n"), "\(text)")
        #expect(text.contains("~ \(pad("limits.open_files"))  64 → 32\n"), "\(text)")
        #expect(text.contains("- \(pad("sandbox.namespaces"))  uts  (widens)\n"), "\(text)")
        #expect(text.hasSuffix("verdict: NEW widens what the plugin may do"))
        let reverse = ManifestDiff(old: try PluginManifest(contentsOf: directory + "/new.toml"), new: try PluginManifest(contentsOf: directory + "/old.toml"))
        #expect(reverse.changes.count == 5)
        // Back to the old manifest widens where the new one narrowed: open files up again, a method back.
        #expect(reverse.changes.filter(\.widens).map(\.area) == ["limits.open_files", "control"])
        let same = ManifestDiff(old: try PluginManifest(contentsOf: directory + "/old.toml"), new: try PluginManifest(contentsOf: directory + "/old.toml"))
        #expect(same.changes.isEmpty && !same.widens)
    }
}

/// `peerhost check`'s comparison of a manifest with what the runner loaded (PluginCheck.swift).
@Suite struct PluginCheckFindingsTests {
    func manifest(_ extra: String = "") throws -> PluginManifest {
        let directory = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(directory) }
        try TestSupport.write(TestSupport.manifest(name: "demo") + extra, to: directory + "/manifest.toml")
        return try PluginManifest(contentsOf: directory + "/manifest.toml")
    }

    func loaded(features: UInt64, callbacks: [String], abi: String = "1.2.0", missing: [String] = []) -> PluginCheck.Loaded {
        PluginCheck.Loaded(name: "demo", version: "0.1.0", abi: abi, features: features, callbacks: callbacks, missingSymbols: missing)
    }

    @Test func aCompletePluginHasNoFindings() throws {
        let found = PluginCheck.findings(manifest: try manifest(), loaded: loaded(features: 1 << 0 | 1 << 6, callbacks: ["on_accept", "on_data"]))
        #expect(found.isEmpty, "\(found)")
    }

    @Test func aFeatureBitWithoutItsCallbackIsAnError() throws {
        let found = PluginCheck.findings(manifest: try manifest(), loaded: loaded(features: 1 << 0 | 1 << 2 | 1 << 4 | 1 << 6, callbacks: ["on_data"]))
        #expect(found.map(\.description) == [
            "error: PH_FEAT_TIMERS is declared but on_timer is NULL: its results would have nowhere to go",
            "error: PH_FEAT_KV is declared but on_complete is NULL: its results would have nowhere to go",
        ])
    }

    @Test func controlMethodsNeedTheirBitAndTheirSymbols() throws {
        let found = PluginCheck.findings(manifest: try manifest(), loaded: loaded(features: 1 << 0, callbacks: ["on_data", "on_timer"], missing: ["demo_stats"]))
        #expect(found.contains { $0.severity == .error && $0.message.contains("control method stats: the library does not export demo_stats") })
        #expect(found.contains { $0.severity == .error && $0.message.contains("does not declare PH_FEAT_CONTROL: a plugin built against ABI 1.2.0 answers none of them") })
        #expect(found.contains { $0.severity == .warning && $0.message == "on_timer is set but PH_FEAT_TIMERS is not declared: the host never calls it" })
        // A 1.0 plugin without the bit: still an error, worded for what changes at 1.2.
        let old = PluginCheck.findings(manifest: try manifest(), loaded: loaded(features: 1 << 0, callbacks: ["on_data"], abi: "1.0.0"))
        #expect(old.map(\.message) == ["the manifest declares 1 control method(s) but the plugin does not declare PH_FEAT_CONTROL: declare it for ABI 1.2"])
    }
}
