// The plugins' key-value store: one SQLite file per data dir (<data_dir>/store.sqlite) through GRDB,
// one namespace per plugin, a byte quota per plugin, and group commit.
//
// Why one file for every plugin: one writer thread and one WAL mean one fsync acknowledges the
// writes of every plugin that arrived during the previous commit; per-plugin files would need one
// fsync each. Namespaces are a column of the primary key, so a plugin can never name another's rows
// (the plugin name comes from the core, never from the plugin).
//
// Threads: nothing here runs on the io_uring loop thread. `submit` only appends to a queue under a
// lock; one serial worker takes everything queued, runs it in one transaction, commits, and only
// then calls each request's completion (the session posts it back to the loop with loop.execute).
// Requests that arrive while a commit runs wait for the next one and are committed together:
// that is the group commit that makes synchronous=FULL cheap (docs/store.md has figures).

import Dispatch
import Foundation
import GRDB
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One key-value request, with the bytes already copied out of the plugin's slot.
public enum KVOperation: Sendable {
    case get(key: [UInt8])
    case put(key: [UInt8], value: [UInt8])
    case delete(key: [UInt8])
    /// Keys starting with `prefix` and not below `start`, ascending (bytewise), at most `limit`
    /// records (0: no limit) and at most `capacity` bytes of encoded records.
    case scan(prefix: [UInt8], start: [UInt8] = [], limit: UInt32, capacity: Int)

    var writes: Bool {
        switch self {
        case .put, .delete: true
        case .get, .scan: false
        }
    }
}

/// What a request produced. Delivered only after the transaction that ran it committed.
public enum KVResult: Sendable, Equatable {
    /// put; delete (`existed` false when there was no such key).
    case done(existed: Bool)
    case value([UInt8])
    case notFound
    /// Records (u32 key_len, key, u32 value_len, value), little-endian, and their count; `more`
    /// when matching keys remain past the last record (the limit or the capacity stopped it).
    case records([UInt8], count: Int, more: Bool = false)
    /// The put would take the plugin's keys+values past its quota; nothing was written.
    case quotaExceeded(used: UInt64, quota: UInt64)
    /// A scan whose first record alone is larger than the buffer.
    case tooLarge(Int)
    /// SQLite failed; the transaction was rolled back and nothing of it was written.
    case failed(String)
}

/// Why the store cannot be used. Every case names the file and the way out.
public enum StoreError: Error, CustomStringConvertible, Sendable, Equatable {
    case corrupt(path: String, detail: String)
    case missing(path: String, marker: String)
    case newerSchema(path: String, unknown: [String])
    case openFailed(path: String, detail: String)

    public var description: String {
        switch self {
        case .corrupt(let path, let detail):
            return "key-value store \(path) is damaged (\(detail)); kv calls fail with PH_EIO until it is replaced. "
                + "Fix: stop the host, `mv \(path) \(path).corrupt` (and its -wal/-shm files), optionally salvage with "
                + "`sqlite3 \(path).corrupt .recover | sqlite3 \(path)`, then start the host (it creates a new store if none is there)"
        case .missing(let path, let marker):
            return "key-value store \(path) is missing but \(marker) says this data dir had one; kv calls fail with PH_EIO "
                + "rather than start the plugins on an empty store. Fix: restore \(path) from a backup, or `rm \(marker)` "
                + "to start with an empty store"
        case .newerSchema(let path, let unknown):
            return "key-value store \(path) has schema migrations this peerhost does not know (\(unknown.joined(separator: ", "))): "
                + "it was written by a newer peerhost; kv calls fail with PH_EIO. Fix: run the newer peerhost"
        case .openFailed(let path, let detail):
            return "key-value store \(path) could not be opened (\(detail)); kv calls fail with PH_EIO. "
                + "Fix: check the data dir's permissions and free space, then restart the host"
        }
    }
}

public final class KVStore: Sendable {
    public static let fileName = "store.sqlite"
    /// Written once a store was created, so a later start can tell "never had a store" from "lost it".
    public static let markerName = "store.created"

    public let path: String
    private let queue: DatabaseQueue
    /// Commit everything queued together (true), or each request in its own transaction (false:
    /// the benchmark's comparison).
    public let groupCommit: Bool

    private struct Pending: @unchecked Sendable {
        var plugin: String
        var quota: UInt64
        var op: KVOperation
        var completion: @Sendable (KVResult) -> Void
    }
    private struct Queue {
        var pending: [Pending] = []
        var draining = false
    }
    private let state = Mutex(Queue())
    private let worker = DispatchQueue(label: "peerhost.store")
    /// Bytes of keys+values per plugin, as committed. Written by the worker only; read by metrics.
    private let committedUsage: Mutex<[String: UInt64]>
    /// Transactions committed and requests they carried (the group commit's effect, for tests/bench).
    private let commitStats = Mutex<(commits: UInt64, requests: UInt64)>((0, 0))

    /// Opens (or creates) `<dataDirectory>/store.sqlite`. Refuses a file it cannot trust rather than
    /// replace it: see StoreError.
    public static func open(dataDirectory: String, groupCommit: Bool = true) throws(StoreError) -> KVStore {
        try KVStore(path: (dataDirectory as NSString).appendingPathComponent(fileName),
                    marker: (dataDirectory as NSString).appendingPathComponent(markerName),
                    groupCommit: groupCommit)
    }

    public init(path: String, marker: String, groupCommit: Bool = true) throws(StoreError) {
        self.path = path
        self.groupCommit = groupCommit
        let fm = FileManager.default
        let size = (try? fm.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue
        // SQLite treats a missing or empty file as a new, empty database: after a first start that
        // would be silent data loss, so the marker turns it into an error.
        if fm.fileExists(atPath: marker), size == nil || size == 0 {
            throw .missing(path: path, marker: marker)
        }
        var config = Configuration()
        config.label = "peerhost.store"
        // Not config.journalMode = .wal: GRDB then sets synchronous=NORMAL after prepareDatabase,
        // which loses the last commits on power failure. WAL and FULL are set here, in this order.
        config.prepareDatabase { db in
            let mode = try String.fetchOne(db, sql: "PRAGMA journal_mode = WAL")
            guard mode == "wal" else { throw DatabaseError(message: "journal_mode is \(mode ?? "?"), not wal") }
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        // Locals until every check passed: a class may not use self before it is initialized.
        let opened: DatabaseQueue
        let usage: [String: UInt64]
        do {
            opened = try DatabaseQueue(path: path, configuration: config)
            let problems: [String] = try opened.read { db in
                try String.fetchAll(db, sql: "PRAGMA quick_check")
            }
            if problems != ["ok"] {
                throw StoreError.corrupt(path: path, detail: "quick_check: " + problems.prefix(3).joined(separator: "; "))
            }
            let migrator = Self.migrator
            let unknown: [String] = try opened.read { db in
                try migrator.appliedIdentifiers(db).subtracting(migrator.migrations).sorted()
            }
            if !unknown.isEmpty { throw StoreError.newerSchema(path: path, unknown: unknown) }
            try migrator.migrate(opened)
            usage = try opened.read { db in
                try Row.fetchAll(db, sql: "SELECT plugin, bytes FROM usage").reduce(into: [String: UInt64]()) {
                    $0[$1[0] as String] = UInt64(max(0, $1[1] as Int64))
                }
            }
        } catch let error as StoreError {
            throw error
        } catch {
            throw Self.classify(error, path: path)
        }
        queue = opened
        committedUsage = Mutex(usage)
        if !fm.fileExists(atPath: marker) { Self.writeDurably(marker, "created \(Date())\n") }
    }

    /// The schema, one migration per version; never edit a shipped migration, add the next one.
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1: kv and usage") { db in
            // WITHOUT ROWID: the (plugin, key) B-tree is the table; prefix scans are range scans on it.
            try db.execute(sql: """
                CREATE TABLE kv (plugin TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,
                                 PRIMARY KEY (plugin, key)) WITHOUT ROWID;
                CREATE TABLE usage (plugin TEXT PRIMARY KEY NOT NULL, bytes INTEGER NOT NULL);
                """)
        }
        return m
    }

    private static func classify(_ error: any Error, path: String) -> StoreError {
        if let e = error as? DatabaseError {
            switch e.resultCode {
            case .SQLITE_CORRUPT, .SQLITE_NOTADB:
                return .corrupt(path: path, detail: e.message ?? "\(e)")
            default:
                return .openFailed(path: path, detail: "\(e)")
            }
        }
        return .openFailed(path: path, detail: "\(error)")
    }

    private static func writeDurably(_ path: String, _ text: String) {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        _ = text.utf8CString.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count - 1) }
        fsync(fd)
        close(fd)
        let dir = Glibc.open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 { fsync(dir); close(dir) }
    }

    // MARK: Requests

    /// Queues a request; `completion` runs on the store's worker thread once the transaction that
    /// carried it committed (or failed). Never blocks on the database.
    public func submit(plugin: String, quota: UInt64, _ op: KVOperation,
                       completion: @escaping @Sendable (KVResult) -> Void) {
        let start = state.withLock { s -> Bool in
            s.pending.append(Pending(plugin: plugin, quota: quota, op: op, completion: completion))
            if s.draining { return false }
            s.draining = true
            return true
        }
        if start { worker.async { [self] in drain() } }
    }

    /// Bytes of keys+values the plugin has committed.
    public func usage(plugin: String) -> UInt64 { committedUsage.withLock { $0[plugin] ?? 0 } }
    public func usageByPlugin() -> [String: UInt64] { committedUsage.withLock { $0 } }
    public var commits: (transactions: UInt64, requests: UInt64) { commitStats.withLock { ($0.commits, $0.requests) } }

    /// PRAGMA synchronous of the store's connection (2 = FULL), for tests.
    func synchronousMode() -> Int { (try? queue.read { try Int.fetchOne($0, sql: "PRAGMA synchronous") }) ?? -1 }

    /// Synchronous convenience for tests and tools (never on the loop thread).
    public func perform(plugin: String, quota: UInt64, _ op: KVOperation) -> KVResult {
        let done = DispatchSemaphore(value: 0)
        let box = Mutex<KVResult?>(nil)
        submit(plugin: plugin, quota: quota, op) { r in box.withLock { $0 = r }; done.signal() }
        done.wait()
        return box.withLock { $0! }
    }

    private func drain() {
        while true {
            let batch = state.withLock { s -> [Pending] in
                let b = s.pending
                s.pending = []
                if b.isEmpty { s.draining = false }
                return b
            }
            if batch.isEmpty { return }
            if groupCommit {
                run(batch)
            } else {
                for p in batch { run([p]) }
            }
        }
    }

    /// One transaction for the whole batch (a write transaction if any request writes), then the
    /// completions, in arrival order.
    private func run(_ batch: [Pending]) {
        var usage = committedUsage.withLock { $0 }
        var results: [KVResult] = []
        results.reserveCapacity(batch.count)
        let writes = batch.contains { $0.op.writes }
        do {
            try queue.writeWithoutTransaction { db in
                try db.inTransaction(writes ? .immediate : .deferred) {
                    var touched: Set<String> = []
                    for p in batch {
                        results.append(try Self.execute(p, db: db, usage: &usage, touched: &touched))
                    }
                    for plugin in touched {
                        try db.cachedStatement(sql: "INSERT INTO usage (plugin, bytes) VALUES (?, ?) ON CONFLICT (plugin) DO UPDATE SET bytes = excluded.bytes")
                            .execute(arguments: [plugin, Int64(usage[plugin] ?? 0)])
                    }
                    return .commit
                }
            }
            committedUsage.withLock { $0 = usage }
            if writes { commitStats.withLock { $0.commits += 1; $0.requests += UInt64(batch.count) } }
        } catch {
            // Rolled back: nothing of this batch is in the database, and every request says so.
            results = Array(repeating: .failed("\(error)"), count: batch.count)
        }
        for (p, r) in zip(batch, results) { p.completion(r) }
    }

    private static func execute(_ p: Pending, db: Database, usage: inout [String: UInt64],
                                touched: inout Set<String>) throws -> KVResult {
        switch p.op {
        case .get(let key):
            guard let v = try Data.fetchOne(db.cachedStatement(sql: "SELECT value FROM kv WHERE plugin = ? AND key = ?"),
                                            arguments: [p.plugin, Data(key)]) else { return .notFound }
            return .value([UInt8](v))
        case .put(let key, let value):
            let old = try storedSize(db, p.plugin, key)
            let new = UInt64(key.count + value.count)
            let used = usage[p.plugin] ?? 0
            // A put that does not grow the namespace is allowed even above a (lowered) quota.
            if new > old, used - old + new > p.quota { return .quotaExceeded(used: used, quota: p.quota) }
            try db.cachedStatement(sql: "INSERT OR REPLACE INTO kv (plugin, key, value) VALUES (?, ?, ?)")
                .execute(arguments: [p.plugin, Data(key), Data(value)])
            usage[p.plugin] = used - old + new
            touched.insert(p.plugin)
            return .done(existed: old > 0)
        case .delete(let key):
            let old = try storedSize(db, p.plugin, key)
            guard old > 0 else { return .done(existed: false) }
            try db.cachedStatement(sql: "DELETE FROM kv WHERE plugin = ? AND key = ?").execute(arguments: [p.plugin, Data(key)])
            usage[p.plugin] = (usage[p.plugin] ?? old) - old
            touched.insert(p.plugin)
            return .done(existed: true)
        case .scan(let prefix, let start, let limit, let capacity):
            // The lower bound is the larger of prefix and start (bytewise): a start below the
            // prefix starts at the prefix, one above it skips the keys before it.
            let low = start.lexicographicallyPrecedes(prefix) ? prefix : start
            let rows: RowCursor
            if let end = prefixSuccessor(prefix) {
                rows = try Row.fetchCursor(db.cachedStatement(sql: "SELECT key, value FROM kv WHERE plugin = ? AND key >= ? AND key < ? ORDER BY key"),
                                           arguments: [p.plugin, Data(low), Data(end)])
            } else {
                // Empty prefix, or only 0xFF bytes: no upper bound exists in bytewise order.
                rows = try Row.fetchCursor(db.cachedStatement(sql: "SELECT key, value FROM kv WHERE plugin = ? AND key >= ? ORDER BY key"),
                                           arguments: [p.plugin, Data(low)])
            }
            var out: [UInt8] = []
            var count = 0
            var more = false
            while let row = try rows.next() {
                if limit > 0, count >= Int(limit) { more = true; break }
                let k: Data = row[0]
                let v: Data = row[1]
                let size = 8 + k.count + v.count
                if out.count + size > capacity {
                    if count == 0 { return .tooLarge(size) }
                    more = true
                    break
                }
                appendLE(&out, UInt32(k.count)); out += k
                appendLE(&out, UInt32(v.count)); out += v
                count += 1
            }
            return .records(out, count: count, more: more)
        }
    }

    private static func storedSize(_ db: Database, _ plugin: String, _ key: [UInt8]) throws -> UInt64 {
        let n = try Int64.fetchOne(db.cachedStatement(sql: "SELECT length(key) + length(value) FROM kv WHERE plugin = ? AND key = ?"),
                                   arguments: [plugin, Data(key)])
        return UInt64(n ?? 0)
    }

    /// The smallest byte string greater than every string starting with `prefix`, or nil if none
    /// exists (empty prefix, or all bytes 0xFF): drop trailing 0xFF bytes, increment the last.
    static func prefixSuccessor(_ prefix: [UInt8]) -> [UInt8]? {
        var p = prefix
        while let last = p.last, last == 0xFF { p.removeLast() }
        guard !p.isEmpty else { return nil }
        p[p.count - 1] += 1
        return p
    }

    private static func appendLE(_ out: inout [UInt8], _ v: UInt32) {
        out += [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24)]
    }

    /// Decodes scan records (for tests and the SDK's documentation of the format).
    public static func decodeRecords(_ bytes: [UInt8]) -> [(key: [UInt8], value: [UInt8])]? {
        var out: [(key: [UInt8], value: [UInt8])] = []
        var i = 0
        func u32() -> Int? {
            guard i + 4 <= bytes.count else { return nil }
            defer { i += 4 }
            return Int(bytes[i]) | Int(bytes[i + 1]) << 8 | Int(bytes[i + 2]) << 16 | Int(bytes[i + 3]) << 24
        }
        while i < bytes.count {
            guard let kl = u32(), i + kl <= bytes.count else { return nil }
            let k = Array(bytes[i..<i + kl]); i += kl
            guard let vl = u32(), i + vl <= bytes.count else { return nil }
            let v = Array(bytes[i..<i + vl]); i += vl
            out.append((k, v))
        }
        return out
    }
}
