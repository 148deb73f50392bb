import Foundation
import Testing
@testable import PeerhostCore

/// Signing keys, the canonical form, signature sidecars and the verifier (docs/signing.md).
@Suite("Trust")
struct TrustTests {
    /// A plugin folder with a manifest and a fake library beside it (verification never loads it).
    struct Fixture {
        let directory: String
        let manifestPath: String
        let libraryPath: String
        let key: PrivateSigningKey
        var trust: TrustStore

        init(manifest: String = TestSupport.manifest(name: "demo"), library: String = "library bytes") throws {
            directory = try TestSupport.makeTemporaryDirectory()
            manifestPath = directory + "/plugin/manifest.toml"
            libraryPath = directory + "/plugin/libdemo.so"
            try TestSupport.write(manifest, to: manifestPath)
            try TestSupport.write(library, to: libraryPath)
            key = PrivateSigningKey.generate()
            _ = try key.write(to: directory + "/trusted/k")
            trust = TrustStore(directories: [directory + "/trusted"])
        }

        func manifest() throws -> PluginManifest { try PluginManifest(contentsOf: manifestPath) }
        var hash: String { FileHash.sha256(path: libraryPath)! }

        func sign(with signer: PrivateSigningKey? = nil, hash: String? = nil) throws {
            let file = try SignatureFile.sign(manifest: try manifest(), librarySHA256: hash ?? self.hash, key: signer ?? key)
            try file.fileText.write(toFile: directory + "/plugin/manifest.sig", atomically: true, encoding: .utf8)
        }

        func verify() throws -> Verification {
            PluginVerifier.verify(manifest: try manifest(), librarySHA256: hash, libraryPath: libraryPath, trust: trust)
        }
    }

    @Test func keyFilesRoundTripAndKeepThePrivateKeyPrivate() throws {
        let directory = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(directory) }
        let key = PrivateSigningKey.generate()
        let paths = try key.write(to: directory + "/sub/dev")
        var info = stat()
        #expect(stat(paths.privatePath, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        let loaded = try PrivateSigningKey(contentsOf: paths.privatePath)
        #expect(loaded.publicKey == key.publicKey)
        let pub = try PublicSigningKey(contentsOf: paths.publicPath)
        #expect(pub.keyID == key.publicKey.keyID)
        #expect(pub.keyID.hasPrefix("ed25519:") && pub.keyID.count == 24)
        // Never overwrites a key.
        #expect(throws: KeyFileError.self) { try PrivateSigningKey.generate().write(to: directory + "/sub/dev") }
        #expect(try PrivateSigningKey(contentsOf: paths.privatePath).publicKey == key.publicKey)
        try "ed25519 nope\n".write(toFile: directory + "/bad.pub", atomically: true, encoding: .utf8)
        #expect(throws: KeyFileError.self) { try PublicSigningKey(contentsOf: directory + "/bad.pub") }
    }

    @Test func signedPluginVerifies() throws {
        let fixture = try Fixture()
        defer { TestSupport.removeDirectory(fixture.directory) }
        try fixture.sign()
        guard case .verified(let keyID, _, let file) = try fixture.verify() else {
            Issue.record("expected verified, got \(try fixture.verify())"); return
        }
        #expect(keyID == fixture.key.publicKey.keyID)
        #expect(file == fixture.directory + "/plugin/manifest.sig")
    }

    @Test func unsignedPluginIsRefused() throws {
        let fixture = try Fixture()
        defer { TestSupport.removeDirectory(fixture.directory) }
        guard case .refused(.signatureMissing(let tried)) = try fixture.verify() else {
            Issue.record("expected signatureMissing"); return
        }
        #expect(tried == [fixture.directory + "/plugin/manifest.sig"])
        #expect(VerificationFailure.signatureMissing(tried: tried).description.contains("peerhost sign"))
    }

    @Test func tamperedLibraryIsRefused() throws {
        let fixture = try Fixture()
        defer { TestSupport.removeDirectory(fixture.directory) }
        let signedHash = fixture.hash
        try fixture.sign()
        try TestSupport.write("library bytez", to: fixture.libraryPath)
        guard case .refused(let failure) = try fixture.verify(),
              case .signedHashMismatch(_, let signed, let actual) = failure else {
            Issue.record("expected signedHashMismatch"); return
        }
        #expect(signed == signedHash)
        #expect(actual == fixture.hash)
        #expect(failure.description.contains("differs from the signed sha256 \(signedHash)"))
    }

    @Test func untrustedKeyIsRefused() throws {
        let fixture = try Fixture()
        defer { TestSupport.removeDirectory(fixture.directory) }
        let stranger = PrivateSigningKey.generate()
        try fixture.sign(with: stranger)
        #expect(try fixture.verify() == .refused(.untrustedKey(file: fixture.directory + "/plugin/manifest.sig", keyID: stranger.publicKey.keyID)))
    }

    @Test func widenedGrantBreaksTheSignature() throws {
        let fixture = try Fixture()
        defer { TestSupport.removeDirectory(fixture.directory) }
        try fixture.sign()
        // Comments and layout are not signed ...
        try TestSupport.write("# a comment\n" + TestSupport.manifest(name: "demo"), to: fixture.manifestPath)
        #expect(try fixture.verify().isVerified)
        // ... but every grant is.
        try TestSupport.write(TestSupport.manifest(name: "demo") + "\n[storage]\npaths = [{ path = \"d\", mode = \"rw\" }]\n", to: fixture.manifestPath)
        guard case .refused(.badSignature) = try fixture.verify() else { Issue.record("expected badSignature"); return }
        try TestSupport.write(TestSupport.manifest(name: "demo", listen: "tcp:0.0.0.0:7001"), to: fixture.manifestPath)
        guard case .refused(.badSignature) = try fixture.verify() else { Issue.record("expected badSignature"); return }
    }

    @Test func syscallProfileBytesAreSigned() throws {
        let fixture = try Fixture(manifest: TestSupport.manifest(name: "demo") + "\n[sandbox]\nsyscalls = \"profile.toml\"\n")
        defer { TestSupport.removeDirectory(fixture.directory) }
        try TestSupport.write("[allow]\n", to: fixture.directory + "/plugin/profile.toml")
        try fixture.sign()
        #expect(try fixture.verify().isVerified)
        try TestSupport.write("[allow]\nptrace = true\n", to: fixture.directory + "/plugin/profile.toml")
        guard case .refused(.badSignature) = try fixture.verify() else { Issue.record("expected badSignature"); return }
        try FileManager.default.removeItem(atPath: fixture.directory + "/plugin/profile.toml")
        guard case .refused(.profileUnreadable) = try fixture.verify() else { Issue.record("expected profileUnreadable"); return }
    }

    @Test func pinnedHashMustMatchTheBytes() throws {
        let pinned = String(repeating: "0", count: 64)
        let fixture = try Fixture(manifest: TestSupport.manifest(name: "demo").replacingOccurrences(of: "abi = \"1\"", with: "abi = \"1\"\nsha256 = \"\(pinned)\""))
        defer { TestSupport.removeDirectory(fixture.directory) }
        try fixture.sign()
        #expect(try fixture.verify() == .refused(.libraryHashMismatch(manifestSHA256: pinned, librarySHA256: fixture.hash)))
    }

    @Test func corruptOrForeignSidecarsAreRefused() throws {
        let fixture = try Fixture()
        defer { TestSupport.removeDirectory(fixture.directory) }
        try fixture.sign()
        let sigPath = fixture.directory + "/plugin/manifest.sig"
        let good = try String(contentsOfFile: sigPath, encoding: .utf8)
        try good.replacingOccurrences(of: "plugin = \"demo\"", with: "plugin = \"other\"").write(toFile: sigPath, atomically: true, encoding: .utf8)
        #expect(try fixture.verify() == .refused(.signatureForOtherPlugin(file: sigPath, plugin: "other")))
        try (good + "extra = 1\n").write(toFile: sigPath, atomically: true, encoding: .utf8)
        guard case .refused(.signatureUnreadable(let why)) = try fixture.verify() else { Issue.record("expected unreadable"); return }
        #expect(why.contains("manifest.sig:7: key 'extra': unknown key"), "\(why)")
        // A valid signature by the trusted key over another signed time does not verify this one.
        let forged = good.replacingOccurrences(of: "signed = \"", with: "signed = \"1")
        try forged.write(toFile: sigPath, atomically: true, encoding: .utf8)
        guard case .refused(.badSignature) = try fixture.verify() else { Issue.record("expected badSignature"); return }
    }

    @Test func sidecarBesideAProductsFolderLibrary() throws {
        let directory = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(directory) }
        try TestSupport.write(TestSupport.manifest(name: "demo"), to: directory + "/plugin/manifest.toml")
        let manifest = try PluginManifest(contentsOf: directory + "/plugin/manifest.toml")
        #expect(SignatureFile.candidates(manifest: manifest, libraryPath: directory + "/products/libdemo.so")
                == [directory + "/plugin/manifest.sig", directory + "/products/demo.manifest.sig"])
        #expect(SignatureFile.defaultLocation(manifest: manifest, libraryPath: directory + "/products/libdemo.so")
                == directory + "/products/demo.manifest.sig", "signing a checkout's manifest writes beside the build, not the checkout")
        #expect(SignatureFile.candidates(manifest: manifest, libraryPath: directory + "/plugin/libdemo.so")
                == [directory + "/plugin/manifest.sig"])
    }

    @Test func canonicalFormIsDocumentedAndEscaped() throws {
        let text = """
            [plugin]
            name = "bt"
            version = "1.0\\tbeta"
            library = "libbt.so"
            abi = "1.2"
            [net]
            listen = ["udp:0.0.0.0:6881", "tcp:0.0.0.0:6881"]
            connect = ["tcp:*:1-65535"]
            [storage]
            paths = [{ path = "downloads", mode = "rw", quota = "1GiB" }]
            kv = { quota = "64MiB" }
            [limits]
            memory = "512MiB"
            bandwidth = { up = "1MiB/s", down = "0" }
            [sandbox]
            namespaces = ["user", "net"]
            [[control]]
            name = "add"
            symbol = "bt_add"
            signature = "(string) -> i64"
            """
        let manifest = try PluginManifest(source: try TOMLSource(text: text, displayName: "m.toml"), absolutePath: "/x/m.toml")
        let canonical = try CanonicalManifest.text(manifest, librarySHA256: String(repeating: "a", count: 64), signedTime: "2026-01-01T00:00:00.000Z")
        #expect(canonical == """
            peerhost-manifest-v1
            plugin.name\tbt
            plugin.version\t1.0\\x09beta
            plugin.library\tlibbt.so
            plugin.abi\t1.2
            plugin.sha256\t\(String(repeating: "a", count: 64))
            net.listen\ttcp:0.0.0.0:6881
            net.listen\tudp:0.0.0.0:6881
            net.connect\ttcp:*:1-65535
            storage.path\tdownloads\trw\t1073741824
            storage.kv\t67108864
            limits.memory\t536870912
            limits.cpu_percent\t-
            limits.open_files\t-
            limits.bandwidth.up\t1048576
            limits.bandwidth.down\t0
            sandbox.namespaces\tnet,user
            sandbox.syscalls\t-\t-
            control\tadd\tbt_add\t(string) -> i64
            signed\t2026-01-01T00:00:00.000Z

            """)
        #expect(CanonicalManifest.escape("a\\b\nc\u{7f}") == "a\\\\b\\x0ac\\x7f")
    }

    @Test func trustStoreReportsProblemsWithoutFailing() throws {
        let directory = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(directory) }
        let key = PrivateSigningKey.generate()
        _ = try key.write(to: directory + "/keys/a")
        try "garbage\n".write(toFile: directory + "/keys/b.pub", atomically: true, encoding: .utf8)
        let store = TrustStore(directories: [directory + "/keys", directory + "/missing"])
        #expect(store.keys.count == 1)
        #expect(store.key(id: key.publicKey.keyID)?.path == directory + "/keys/a.pub")
        #expect(store.problems.count == 2)
        #expect(store.problems.contains { $0.contains("b.pub") })
        #expect(store.problems.contains { $0.contains("missing") })
    }
}
