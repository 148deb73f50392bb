import Foundation
import Testing
@testable import PeerhostCore
#if canImport(Glibc)
import Glibc
#endif

/// Directories the operator grants at run time (OperatorGrants.swift, docs/grants.md): how absolute
/// paths resolve against them, which directories are refused, and how they are kept in the store.
@Suite("OperatorGrants")
struct OperatorGrantsTests {
    let layout = StorageLayout(grants: [.init(path: "downloads", writable: true),
                                        .init(path: "/srv/torrents", writable: true),
                                        .init(path: "/srv/torrents/seeds", writable: false),
                                        .init(path: "/data/ro", writable: false)])

    @Test func absolutePathsMatchOperatorGrantsOnly() {
        #expect(layout.resolve(path: "/srv/torrents/x/a.bin", write: true) == .beneath(grant: 1, remainder: "x/a.bin"))
        #expect(layout.resolve(path: "/srv/torrents/seeds/a.bin", write: false) == .beneath(grant: 2, remainder: "a.bin"),
                "the longest granted prefix wins")
        #expect(layout.resolve(path: "downloads/a.bin", write: true) == .beneath(grant: 0, remainder: "a.bin"),
                "relative paths keep matching manifest grants")
        // ".." is left to openat2(RESOLVE_BENEATH), which refuses a way out of the directory.
        #expect(layout.resolve(path: "/srv/torrents/../etc/passwd", write: false) == .beneath(grant: 1, remainder: "../etc/passwd"))
        func denied(_ path: String, write: Bool = false) -> Bool {
            if case .denied = layout.resolve(path: path, write: write) { return true }
            return false
        }
        #expect(denied("/etc/passwd"))
        #expect(denied("/srv/torrentsX/a"))
        #expect(denied("/srv/torrents"), "the granted directory itself is not a file")
        #expect(denied("srv/torrents/a"), "a relative path never matches an absolute grant")
        #expect(denied("/downloads/a"), "an absolute path never matches a manifest grant")
        #expect(denied("/srv/torrents/seeds/a", write: true), "read-only grant")
        #expect(denied("/data/ro/a", write: true))
        #expect(!denied("/data/ro/a"))
    }

    @Test func directoriesAreCheckedBeforeTheyAreGranted() throws {
        let base = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(base) }
        let data = base + "/data"
        try FileManager.default.createDirectory(atPath: data + "/echo-c", withIntermediateDirectories: true)
        let good = base + "/torrents"
        try FileManager.default.createDirectory(atPath: good, withIntermediateDirectories: true)
        #expect(try OperatorGrants.validate(directory: good, dataDirectory: data) == good)
        #expect(try OperatorGrants.validate(directory: good + "/", dataDirectory: data) == good, "trailing slash")

        func refusal(_ dir: String) -> String {
            do { _ = try OperatorGrants.validate(directory: dir, dataDirectory: data); return "" } catch { return error.description }
        }
        #expect(refusal("torrents").contains("not absolute"))
        #expect(refusal(base + "/torrents/../torrents").contains("'..'"))
        #expect(refusal("/").contains("whole file system"))
        #expect(refusal(base + "/missing").contains("No such file"))
        FileManager.default.createFile(atPath: base + "/file", contents: Data())
        #expect(refusal(base + "/file").contains("not a directory"))
        let open = base + "/open"
        try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: true)
        chmod(open, 0o1777)
        #expect(refusal(open).contains("world-writable"), "sticky or not: the core opens the files")
        #expect(refusal(data).contains("data dir"))
        #expect(refusal(data + "/echo-c").contains("data dir"), "another plugin's storage")
        #expect(refusal(base).contains("data dir"), "a parent of the data dir")
        #expect(throws: GrantError.self) { try OperatorGrants.parseMode("rwx") }
        #expect(try OperatorGrants.parseMode("ro") == false && OperatorGrants.parseMode("rw") == true)
    }

    @Test func grantsRoundTripThroughTheHostNamespaceOfTheStore() throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(dir) }
        let store = try KVStore.open(dataDirectory: dir)
        let a = OperatorGrant(plugin: "bittorrent", directory: "/srv/t", writable: true)
        let b = OperatorGrant(plugin: "bittorrent", directory: "/srv/t/ro dir", writable: false)
        let c = OperatorGrant(plugin: "io-probe", directory: "/x", writable: true)
        for g in [a, b, c] {
            #expect(store.perform(plugin: OperatorGrants.namespace, quota: OperatorGrants.quota,
                                  .put(key: OperatorGrants.key(g), value: Array(g.mode.utf8))) == .done(existed: false))
        }
        // A plugin's own namespace never sees them.
        #expect(store.perform(plugin: "bittorrent", quota: 1 << 20, .scan(prefix: [], limit: 0, capacity: 1 << 20)) == .records([], count: 0))
        let loaded = try OperatorGrants.load(from: store).get()
        #expect(Set(loaded.map(\.directory)) == ["/srv/t", "/srv/t/ro dir", "/x"])
        #expect(loaded.first { $0.directory == "/srv/t/ro dir" }?.writable == false)
        #expect(loaded.first { $0.directory == "/x" }?.plugin == "io-probe")
        #expect(try OperatorGrants.readOffline(dataDirectory: dir).get() == loaded, "audit reads the same without a host")
        #expect(try OperatorGrants.readOffline(dataDirectory: dir + "/none").get().isEmpty)
        #expect(!FileManager.default.fileExists(atPath: dir + "/none/store.sqlite"), "reading never creates a store")
        #expect(a.summary == "storage /srv/t rw (operator)")
    }

    @Test func auditListsOperatorGrants() throws {
        let base = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(base) }
        try TestSupport.write(TestSupport.manifest(name: "demo"), to: base + "/plugins/demo/manifest.toml")
        try TestSupport.write("""
            [host]
            data_dir = "\(base)/data"
            [[plugin]]
            name = "demo"
            manifest = "\(base)/plugins/demo/manifest.toml"
            """, to: base + "/config/peerhost.toml")
        let config = try HostConfig.load(origin: .development(path: base + "/config/peerhost.toml"), currentDirectory: base)
        let grant = OperatorGrant(plugin: "demo", directory: "/srv/x", writable: true)
        let report = PluginAuditor.audit(plugin: config.plugins[0],
                                         inputs: AuditInputs(trust: TrustStore(config: config), operatorGrants: [grant]))
        #expect(report.grants.storage.contains { $0.path == "/srv/x" && $0.grantedBy == "operator" && $0.mode == "rw" })
        #expect(report.findings.contains { $0.code == "storage-rw" && $0.message.contains("/srv/x") })
        let document = AuditDocument(config: "c", trust: TrustStore(config: config), plugins: [report])
        #expect(document.text.contains("/srv/x rw  (operator grant)"))
        #expect(document.json().contains("\"granted_by\" : \"operator\"") || document.json().contains("\"granted_by\":\"operator\""))
    }
}
