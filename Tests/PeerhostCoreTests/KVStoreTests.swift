import Foundation
import GRDB
import Synchronization
import Testing
@testable import PeerhostCore

/// The key-value store on its own (no host, no processes): quota, prefix scans, deletes, group
/// commit, migrations, and the files it refuses to trust.
@Suite struct KVStoreTests {
    final class TempDir {
        let path: String
        init() {
            path = FileManager.default.temporaryDirectory.appendingPathComponent("kvstore-\(UUID().uuidString)").path
            try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
        deinit { try? FileManager.default.removeItem(atPath: path) }
        var store: String { path + "/" + KVStore.fileName }
        var marker: String { path + "/" + KVStore.markerName }
    }

    static let big: UInt64 = 1 << 30
    func b(_ s: String) -> [UInt8] { Array(s.utf8) }

    @Test func putGetDeleteAndNamespaces() throws {
        let dir = TempDir()
        let kv = try KVStore.open(dataDirectory: dir.path)
        #expect(kv.perform(plugin: "a", quota: Self.big, .get(key: b("k"))) == .notFound)
        #expect(kv.perform(plugin: "a", quota: Self.big, .put(key: b("k"), value: b("one"))) == .done(existed: false))
        #expect(kv.perform(plugin: "a", quota: Self.big, .put(key: b("k"), value: b("two"))) == .done(existed: true))
        #expect(kv.perform(plugin: "a", quota: Self.big, .get(key: b("k"))) == .value(b("two")))
        // Another plugin's namespace does not see it.
        #expect(kv.perform(plugin: "b", quota: Self.big, .get(key: b("k"))) == .notFound)
        #expect(kv.perform(plugin: "a", quota: Self.big, .delete(key: b("k"))) == .done(existed: true))
        #expect(kv.perform(plugin: "a", quota: Self.big, .delete(key: b("k"))) == .done(existed: false))
        #expect(kv.perform(plugin: "a", quota: Self.big, .get(key: b("k"))) == .notFound)
        #expect(kv.usage(plugin: "a") == 0)
        // An empty value is a value, not an absence.
        #expect(kv.perform(plugin: "a", quota: Self.big, .put(key: b("e"), value: [])) == .done(existed: false))
        #expect(kv.perform(plugin: "a", quota: Self.big, .get(key: b("e"))) == .value([]))
    }

    @Test func quotaCountsKeysAndValuesAndWritesNothingWhenExceeded() throws {
        let dir = TempDir()
        let kv = try KVStore.open(dataDirectory: dir.path)
        #expect(kv.perform(plugin: "p", quota: 100, .put(key: b("aaaa"), value: [UInt8](repeating: 1, count: 56))) == .done(existed: false))
        #expect(kv.usage(plugin: "p") == 60)
        // 60 + 4 + 41 = 105 > 100: refused, and not written.
        #expect(kv.perform(plugin: "p", quota: 100, .put(key: b("bbbb"), value: [UInt8](repeating: 2, count: 41))) == .quotaExceeded(used: 60, quota: 100))
        #expect(kv.perform(plugin: "p", quota: 100, .get(key: b("bbbb"))) == .notFound)
        #expect(kv.usage(plugin: "p") == 60)
        // Exactly at the quota is allowed; replacing a value counts the difference only.
        #expect(kv.perform(plugin: "p", quota: 100, .put(key: b("bbbb"), value: [UInt8](repeating: 2, count: 36))) == .done(existed: false))
        #expect(kv.usage(plugin: "p") == 100)
        #expect(kv.perform(plugin: "p", quota: 100, .put(key: b("aaaa"), value: [UInt8](repeating: 3, count: 56))) == .done(existed: true))
        #expect(kv.perform(plugin: "p", quota: 100, .put(key: b("aaaa"), value: [UInt8](repeating: 3, count: 57))) == .quotaExceeded(used: 100, quota: 100))
        // Shrinking is allowed even above a lowered quota, and frees room.
        #expect(kv.perform(plugin: "p", quota: 10, .put(key: b("aaaa"), value: [1])) == .done(existed: true))
        #expect(kv.usage(plugin: "p") == 45)
        #expect(kv.perform(plugin: "p", quota: 100, .delete(key: b("bbbb"))) == .done(existed: true))
        #expect(kv.usage(plugin: "p") == 5)
        // Another plugin has its own quota.
        #expect(kv.perform(plugin: "q", quota: 100, .put(key: b("x"), value: [UInt8](repeating: 0, count: 99))) == .done(existed: false))
    }

    func keys(_ r: KVResult) -> [String] {
        guard case .records(let bytes, let count, _) = r, let records = KVStore.decodeRecords(bytes), records.count == count else { return ["<bad>"] }
        return records.map { String(decoding: $0.key, as: UTF8.self) }
    }

    @Test func prefixScansAreBytewiseRanges() throws {
        let dir = TempDir()
        let kv = try KVStore.open(dataDirectory: dir.path)
        for k in ["a", "ab", "abc", "abd", "ac", "b", "peer/1", "peer/2", "peer0"] {
            #expect(kv.perform(plugin: "p", quota: Self.big, .put(key: b(k), value: b("v" + k))) == .done(existed: false))
        }
        _ = kv.perform(plugin: "other", quota: Self.big, .put(key: b("ab"), value: b("x")))
        #expect(keys(kv.perform(plugin: "p", quota: Self.big, .scan(prefix: b("ab"), limit: 0, capacity: 4096))) == ["ab", "abc", "abd"])
        #expect(keys(kv.perform(plugin: "p", quota: Self.big, .scan(prefix: b("peer/"), limit: 0, capacity: 4096))) == ["peer/1", "peer/2"])
        #expect(keys(kv.perform(plugin: "p", quota: Self.big, .scan(prefix: [], limit: 0, capacity: 4096))).count == 9)
        #expect(keys(kv.perform(plugin: "p", quota: Self.big, .scan(prefix: [], limit: 2, capacity: 4096))) == ["a", "ab"])
        #expect(keys(kv.perform(plugin: "p", quota: Self.big, .scan(prefix: b("zz"), limit: 0, capacity: 4096))) == [])
        // Values come back with their keys.
        if case .records(let bytes, _, _) = kv.perform(plugin: "p", quota: Self.big, .scan(prefix: b("abc"), limit: 0, capacity: 4096)) {
            #expect(KVStore.decodeRecords(bytes)?.first?.value == b("vabc"))
        } else { Issue.record("scan failed") }
        // Capacity: whole records only; a first record larger than the buffer is an error, not an empty answer.
        #expect(keys(kv.perform(plugin: "p", quota: Self.big, .scan(prefix: b("a"), limit: 0, capacity: 8 + 1 + 2 + 8 + 2 + 3))) == ["a", "ab"])
        #expect(kv.perform(plugin: "p", quota: Self.big, .scan(prefix: b("a"), limit: 0, capacity: 5)) == .tooLarge(8 + 1 + 2))
    }

    @Test func scansPageFromAStartKeyAndSayWhetherMoreRemain() throws {
        let dir = TempDir()
        let kv = try KVStore.open(dataDirectory: dir.path)
        let all = ["a", "ab", "abc", "abd", "ac", "b", "peer/1", "peer/2", "peer0"]
        for k in all { _ = kv.perform(plugin: "p", quota: Self.big, .put(key: b(k), value: b("v"))) }
        // Every key, two at a time: the next page starts just after the last key (key + 0x00).
        var seen: [String] = []
        var start: [UInt8] = []
        var pages = 0
        while pages < 20 {
            pages += 1
            guard case .records(let bytes, _, let more) = kv.perform(plugin: "p", quota: Self.big, .scan(prefix: [], start: start, limit: 2, capacity: 4096)),
                  let records = KVStore.decodeRecords(bytes) else { Issue.record("scan failed"); return }
            seen += records.map { String(decoding: $0.key, as: UTF8.self) }
            guard more, let last = records.last else { break }
            start = last.key + [0]
        }
        #expect(seen == all && pages == 5, "\(pages) pages: \(seen)")
        // Exactly `limit` keys left: no more. A start inside the prefix skips; one below it is the prefix.
        #expect(kv.perform(plugin: "p", quota: Self.big, .scan(prefix: b("peer/"), limit: 2, capacity: 4096))
                == kv.perform(plugin: "p", quota: Self.big, .scan(prefix: b("peer/"), start: b("a"), limit: 2, capacity: 4096)))
        if case .records(_, let count, let more) = kv.perform(plugin: "p", quota: Self.big, .scan(prefix: b("peer/"), limit: 2, capacity: 4096)) {
            #expect(count == 2 && !more)
        } else { Issue.record("scan failed") }
        #expect(keys(kv.perform(plugin: "p", quota: Self.big, .scan(prefix: b("ab"), start: b("abc"), limit: 0, capacity: 4096))) == ["abc", "abd"])
        // The capacity stopping a scan says more too.
        if case .records(_, let count, let more) = kv.perform(plugin: "p", quota: Self.big, .scan(prefix: b("a"), limit: 0, capacity: 8 + 1 + 1 + 8 + 2 + 1)) {
            #expect(count == 2 && more)
        } else { Issue.record("scan failed") }
    }

    @Test func prefixesEndingIn0xFF() throws {
        let dir = TempDir()
        let kv = try KVStore.open(dataDirectory: dir.path)
        let stored: [[UInt8]] = [[0x01, 0xFE], [0x01, 0xFF], [0x01, 0xFF, 0x00], [0x01, 0xFF, 0xFF], [0x02], [0xFF], [0xFF, 0xFF, 0x01]]
        for k in stored { _ = kv.perform(plugin: "p", quota: Self.big, .put(key: k, value: [7])) }
        func scan(_ prefix: [UInt8]) -> [[UInt8]] {
            guard case .records(let bytes, _, _) = kv.perform(plugin: "p", quota: Self.big, .scan(prefix: prefix, limit: 0, capacity: 4096)) else { return [] }
            return KVStore.decodeRecords(bytes)?.map(\.key) ?? []
        }
        #expect(scan([0x01, 0xFF]) == [[0x01, 0xFF], [0x01, 0xFF, 0x00], [0x01, 0xFF, 0xFF]])
        #expect(scan([0x01]) == [[0x01, 0xFE], [0x01, 0xFF], [0x01, 0xFF, 0x00], [0x01, 0xFF, 0xFF]])
        #expect(scan([0xFF]) == [[0xFF], [0xFF, 0xFF, 0x01]])
        #expect(scan([0xFF, 0xFF]) == [[0xFF, 0xFF, 0x01]])
        #expect(KVStore.prefixSuccessor([0x01, 0xFF]) == [0x02])
        #expect(KVStore.prefixSuccessor([0xFF, 0xFF]) == nil)
        #expect(KVStore.prefixSuccessor([]) == nil)
    }

    @Test func concurrentWritesShareCommitsAndAllSurviveReopen() throws {
        let dir = TempDir()
        do {
            let kv = try KVStore.open(dataDirectory: dir.path)
            let n = 400
            let done = DispatchSemaphore(value: 0)
            let results = Mutex<[KVResult]>([])
            for i in 0..<n {
                kv.submit(plugin: "p", quota: Self.big, .put(key: b("k\(i)"), value: b("v\(i)"))) { r in
                    results.withLock { $0.append(r) }
                    done.signal()
                }
            }
            for _ in 0..<n { done.wait() }
            #expect(results.withLock { $0.allSatisfy { $0 == .done(existed: false) } })
            let (commits, requests) = kv.commits
            #expect(requests == UInt64(n))
            // Submitted faster than one fsync each: group commit folds them into fewer transactions.
            #expect(commits < UInt64(n))
        }
        let reopened = try KVStore.open(dataDirectory: dir.path)
        #expect(reopened.perform(plugin: "p", quota: Self.big, .get(key: b("k399"))) == .value(b("v399")))
        #expect(reopened.usage(plugin: "p") == (0..<400).reduce(0) { $0 + UInt64("k\($1)".count + "v\($1)".count) })
    }

    @Test func withoutGroupCommitEveryWriteIsItsOwnTransaction() throws {
        let dir = TempDir()
        let kv = try KVStore.open(dataDirectory: dir.path, groupCommit: false)
        let done = DispatchSemaphore(value: 0)
        for i in 0..<20 {
            kv.submit(plugin: "p", quota: Self.big, .put(key: b("k\(i)"), value: b("v"))) { _ in done.signal() }
        }
        for _ in 0..<20 { done.wait() }
        #expect(kv.commits.transactions == 20)
    }

    @Test func newFileIsMigratedWALAndSynchronousFull() throws {
        let dir = TempDir()
        _ = try KVStore.open(dataDirectory: dir.path)
        #expect(FileManager.default.fileExists(atPath: dir.marker))
        let queue = try DatabaseQueue(path: dir.store)
        try queue.read { db in
            #expect(try String.fetchOne(db, sql: "PRAGMA journal_mode") == "wal")
            #expect(try KVStore.migrator.appliedIdentifiers(db) == Set(KVStore.migrator.migrations))
            let tables = try db.tableExists("kv") && db.tableExists("usage")
            #expect(tables)
        }
        // synchronous is per connection: check the store's own.
        let kv = try KVStore.open(dataDirectory: dir.path)
        #expect(kv.synchronousMode() == 2)   // FULL
    }

    @Test func garbageFileIsRefusedAndLeftInPlace() throws {
        let dir = TempDir()
        let garbage = Data((0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        try garbage.write(to: URL(fileURLWithPath: dir.store))
        #expect {
            try KVStore.open(dataDirectory: dir.path)
        } throws: { error in
            guard case .corrupt(let path, _) = error as? StoreError else { return false }
            return path == dir.store && "\(error)".contains("mv \(dir.store) \(dir.store).corrupt")
        }
        // Never replaced: the bytes are still there for recovery.
        #expect(FileManager.default.contents(atPath: dir.store) == garbage)
    }

    @Test func truncatedFileIsRefused() throws {
        let dir = TempDir()
        do {
            let kv = try KVStore.open(dataDirectory: dir.path)
            for i in 0..<300 { _ = kv.perform(plugin: "p", quota: Self.big, .put(key: b("key\(i)"), value: [UInt8](repeating: 9, count: 200))) }
        }
        // Checkpoint everything into the main file, then cut it in half.
        let queue = try DatabaseQueue(path: dir.store)
        try queue.writeWithoutTransaction { try $0.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
        try queue.close()
        let size = try #require(try FileManager.default.attributesOfItem(atPath: dir.store)[.size] as? NSNumber).intValue
        #expect(size > 16384)
        #expect(truncate(dir.store, off_t(size / 2)) == 0)
        #expect {
            try KVStore.open(dataDirectory: dir.path)
        } throws: { error in
            if case .corrupt = error as? StoreError { return true }
            return false
        }
    }

    @Test func missingOrEmptyFileAfterAFirstStartIsAnError() throws {
        let dir = TempDir()
        _ = try KVStore.open(dataDirectory: dir.path)
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: dir.store + suffix) }
        #expect(throws: StoreError.missing(path: dir.store, marker: dir.marker)) { try KVStore.open(dataDirectory: dir.path) }
        FileManager.default.createFile(atPath: dir.store, contents: Data())
        #expect(throws: StoreError.missing(path: dir.store, marker: dir.marker)) { try KVStore.open(dataDirectory: dir.path) }
        // The documented way out: remove the marker, get an empty store.
        try FileManager.default.removeItem(atPath: dir.marker)
        let kv = try KVStore.open(dataDirectory: dir.path)
        #expect(kv.perform(plugin: "p", quota: Self.big, .put(key: b("k"), value: b("v"))) == .done(existed: false))
    }

    @Test func schemaFromANewerPeerhostIsRefused() throws {
        let dir = TempDir()
        _ = try KVStore.open(dataDirectory: dir.path)
        var newer = KVStore.migrator
        newer.registerMigration("v99: from the future") { db in try db.execute(sql: "CREATE TABLE future (x)") }
        let queue = try DatabaseQueue(path: dir.store)
        try newer.migrate(queue)
        try queue.close()
        #expect(throws: StoreError.newerSchema(path: dir.store, unknown: ["v99: from the future"])) {
            try KVStore.open(dataDirectory: dir.path)
        }
    }
}
