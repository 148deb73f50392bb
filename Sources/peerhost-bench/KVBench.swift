// `peerhost-bench kv DIR SECONDS`: the key-value store (KVStore, through its public API, in
// process) against raw SQLite through GRDB's raw SQL with the same file settings (WAL,
// synchronous=FULL, the same table). Prints one key=value line for bench/run.sh.
//
// Rows:
//   raw_put          one INSERT OR REPLACE per transaction (autocommit): one fsync per put
//   raw_put_batch64  64 puts per transaction: what group commit can reach at best
//   raw_get          one SELECT per lookup
//   store_put_nogroup  KVStore(groupCommit: false), 64 puts in flight: one transaction each
//   store_put_w1     group commit on, one put in flight at a time (nothing to group)
//   store_put_w64    group commit on, 64 puts in flight (many plugins or a busy one)
//   store_get_w1 / store_get_w64
// The store does more per put than the raw row: it reads the old size for the quota and updates
// the plugin's usage row in the same transaction.

import Foundation
import GRDB
import PeerhostCore
import Synchronization

private func keyBytes(_ i: Int) -> [UInt8] { Array(String(format: "key%08d", i).utf8) }
private let value = [UInt8](repeating: 0x5A, count: 100)

/// Runs `body` until `seconds` passed; returns operations per second.
private func rate(_ seconds: Double, _ body: (Int) throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    let end = start + UInt64(seconds * 1e9)
    var n = 0
    while DispatchTime.now().uptimeNanoseconds < end {
        try body(n)
        n += 1
    }
    return Double(n) / (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
}

/// Keeps `window` store requests in flight until `seconds` passed; returns completions per second.
private func windowed(_ seconds: Double, window: Int,
                      _ submit: (Int, @escaping @Sendable () -> Void) -> Void) -> Double {
    let slots = DispatchSemaphore(value: window)
    let completed = Atomic<Int>(0)
    let start = DispatchTime.now().uptimeNanoseconds
    let end = start + UInt64(seconds * 1e9)
    var i = 0
    while DispatchTime.now().uptimeNanoseconds < end {
        slots.wait()
        submit(i) { completed.add(1, ordering: .relaxed); slots.signal() }
        i += 1
    }
    for _ in 0..<window { slots.wait() }   // every request completed
    // libdispatch traps when a semaphore is freed below its initial value: give the slots back.
    for _ in 0..<window { slots.signal() }
    return Double(completed.load(ordering: .relaxed)) / (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
}

func runKVBench(_ arguments: [String]) {
    let dir = arguments.first ?? NSTemporaryDirectory() + "/peerhost-kvbench-\(getpid())"
    let seconds = arguments.count > 1 ? Double(arguments[1]) ?? 2 : 2
    try? FileManager.default.removeItem(atPath: dir)
    try? FileManager.default.createDirectory(atPath: dir + "/store", withIntermediateDirectories: true)
    try? FileManager.default.createDirectory(atPath: dir + "/nogroup", withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    var out: [(String, Double)] = []
    do {
        var config = Configuration()
        config.prepareDatabase { db in
            _ = try String.fetchOne(db, sql: "PRAGMA journal_mode = WAL")
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        let raw = try DatabaseQueue(path: dir + "/raw.sqlite", configuration: config)
        try raw.write { db in
            try db.execute(sql: "CREATE TABLE kv (plugin TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL, PRIMARY KEY (plugin, key)) WITHOUT ROWID")
        }
        let put = "INSERT OR REPLACE INTO kv (plugin, key, value) VALUES ('bench', ?, ?)"
        var written = 0
        out.append(("raw_put", try rate(seconds) { i in
            try raw.inDatabase { db in try db.cachedStatement(sql: put).execute(arguments: [Data(keyBytes(i)), Data(value)]) }
            written = max(written, i + 1)
        }))
        out.append(("raw_put_batch64", try rate(seconds) { i in
            try raw.inTransaction { db in
                for j in 0..<64 { try db.cachedStatement(sql: put).execute(arguments: [Data(keyBytes(i * 64 + j)), Data(value)]) }
                return .commit
            }
            written = max(written, i * 64 + 64)
        } * 64))
        let keys = written
        out.append(("raw_get", try rate(seconds) { i in
            _ = try raw.inDatabase { db in
                try Data.fetchOne(db.cachedStatement(sql: "SELECT value FROM kv WHERE plugin = 'bench' AND key = ?"),
                                  arguments: [Data(keyBytes((i &* 7919) % keys))])
            }
        }))
        try raw.close()

        let noGroup = try KVStore.open(dataDirectory: dir + "/nogroup", groupCommit: false)
        out.append(("store_put_nogroup", windowed(seconds, window: 64) { i, done in
            noGroup.submit(plugin: "bench", quota: 1 << 40, .put(key: keyBytes(i), value: value)) { _ in done() }
        }))
        let store = try KVStore.open(dataDirectory: dir + "/store")
        out.append(("store_put_w1", windowed(seconds, window: 1) { i, done in
            store.submit(plugin: "bench", quota: 1 << 40, .put(key: keyBytes(i), value: value)) { _ in done() }
        }))
        let before = store.commits
        var stored = 0
        out.append(("store_put_w64", windowed(seconds, window: 64) { i, done in
            stored = max(stored, i + 1)
            store.submit(plugin: "bench", quota: 1 << 40, .put(key: keyBytes(i), value: value)) { _ in done() }
        }))
        let after = store.commits
        out.append(("store_put_w64_requests_per_commit", Double(after.requests - before.requests) / Double(max(1, after.transactions - before.transactions))))
        let storedKeys = max(1, stored)
        for w in [1, 64] {
            out.append(("store_get_w\(w)", windowed(seconds, window: w) { i, done in
                store.submit(plugin: "bench", quota: 1 << 40, .get(key: keyBytes((i &* 7919) % storedKeys))) { _ in done() }
            }))
        }
    } catch {
        FileHandle.standardError.write(Data("kv bench: \(error)\n".utf8))
        exit(1)
    }
    print(out.map { "\($0.0)=\(String(format: "%.1f", $0.1))" }.joined(separator: " "))
}
