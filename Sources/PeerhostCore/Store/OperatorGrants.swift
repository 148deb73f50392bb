// Directory grants the operator adds at run time (`peerhost ctl host grant PLUGIN DIR`, or
// `--dir` on a plugin command such as `peerhost ctl bittorrent add`): DESIGN.md "Capabilities and
// manifests" — audited, kept in the store, listed by `peerhost audit`. docs/grants.md.
//
// They live in the host's own namespace of the key-value store ("@host": plugin names are
// [a-z0-9_-], so no plugin can ever name it), one record per grant:
//   key   "grant/<plugin>/<absolute directory>"   value "rw" or "r"
// so a prefix scan of "grant/<plugin>/" lists one plugin's grants (a plugin name has no "/").

import Foundation
import GRDB
#if canImport(Glibc)
import Glibc
#endif

public struct OperatorGrant: Sendable, Equatable, Codable {
    public var plugin: String
    /// Absolute, without "." or ".." components or a trailing "/".
    public var directory: String
    public var writable: Bool

    public init(plugin: String, directory: String, writable: Bool) {
        self.plugin = plugin
        self.directory = directory
        self.writable = writable
    }

    public var mode: String { writable ? "rw" : "r" }
    public var layoutGrant: StorageLayout.Grant { .init(path: directory, writable: writable) }
    /// The line in `/status` grants and the audit log: "storage /srv/t rw (operator)".
    public var summary: String { "storage \(directory) \(mode) (operator)" }
}

/// Why a grant was refused; the text is what the operator reads.
public struct GrantError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

public enum OperatorGrants {
    /// The store namespace of the host itself.
    public static let namespace = "@host"
    /// Bytes the host's own namespace may use: grants are tiny; this only stops a runaway script.
    public static let quota: UInt64 = 16 << 20
    /// At most this many operator grants per plugin (each is an open O_PATH descriptor per session).
    public static let perPluginLimit = 64

    static func prefix(plugin: String) -> [UInt8] { Array("grant/\(plugin)/".utf8) }
    static func key(_ grant: OperatorGrant) -> [UInt8] { prefix(plugin: grant.plugin) + Array(grant.directory.utf8) }
    static func key(plugin: String, directory: String) -> [UInt8] { prefix(plugin: plugin) + Array(directory.utf8) }

    /// "rw" (also "w"), "r" (also "ro"): the mode words `--mode` accepts.
    public static func parseMode(_ text: String) throws(GrantError) -> Bool {
        switch text {
        case "rw", "w": return true
        case "r", "ro": return false
        default: throw GrantError("mode '\(text)' is not rw or ro")
        }
    }

    /// Decodes the records of a scan of "grant/" (KVStore scan format).
    static func decode(_ records: [(key: [UInt8], value: [UInt8])]) -> [OperatorGrant] {
        records.compactMap { record in
            let key = String(decoding: record.key, as: UTF8.self)
            guard key.hasPrefix("grant/") else { return nil }
            let rest = key.dropFirst("grant/".count)
            guard let slash = rest.firstIndex(of: "/") else { return nil }
            let plugin = String(rest[..<slash])
            let directory = String(rest[rest.index(after: slash)...])   // "grant/bt//srv/t" → "/srv/t"
            return OperatorGrant(plugin: plugin, directory: directory, writable: record.value == Array("rw".utf8))
        }
    }

    /// Every grant in an open store (blocking: never on the loop thread).
    public static func load(from store: KVStore) -> Result<[OperatorGrant], GrantError> {
        switch store.perform(plugin: namespace, quota: quota, .scan(prefix: Array("grant/".utf8), limit: 0, capacity: 1 << 24)) {
        case .records(let bytes, _, _):
            return .success(decode(KVStore.decodeRecords(bytes) ?? []))
        case .failed(let why):
            return .failure(GrantError("reading the operator grants from \(store.path) failed: \(why)"))
        default:
            return .success([])
        }
    }

    /// The grants recorded in `<dataDirectory>/store.sqlite`, read without a running host (for
    /// `peerhost audit`). No store file: no grants (nothing is created).
    public static func readOffline(dataDirectory: String) -> Result<[OperatorGrant], GrantError> {
        let path = (dataDirectory as NSString).appendingPathComponent(KVStore.fileName)
        guard FileManager.default.fileExists(atPath: path) else { return .success([]) }
        do {
            var config = Configuration()
            config.readonly = true
            let queue = try DatabaseQueue(path: path, configuration: config)
            let rows: [(key: [UInt8], value: [UInt8])] = try queue.read { db in
                guard try db.tableExists("kv") else { return [] }
                return try Row.fetchAll(db, sql: "SELECT key, value FROM kv WHERE plugin = ? AND key >= ? AND key < ? ORDER BY key",
                                        arguments: [namespace, Data("grant/".utf8), Data("grant0".utf8)])
                    .map { (key: [UInt8]($0[0] as Data), value: [UInt8]($0[1] as Data)) }
            }
            return .success(decode(rows))
        } catch {
            return .failure(GrantError("cannot read operator grants from \(path): \(error)"))
        }
    }

    /// Checks a directory the operator wants to grant and returns its normalised form. Rules
    /// (docs/grants.md): absolute; no "." or ".." components; exists and is a directory (symlinks
    /// are followed: the operator named it); not "/"; not world-writable (another local user could
    /// plant files or hard links there that the core, which opens the files, would read or write);
    /// and neither inside the host's data dir nor containing it (the store, audit log, control
    /// socket and other plugins' storage live there).
    public static func validate(directory: String, dataDirectory: String) throws(GrantError) -> String {
        guard directory.hasPrefix("/") else {
            throw GrantError("grant directory '\(directory)' is not absolute (the CLI makes it absolute; a raw control call must too)")
        }
        let parts = directory.split(separator: "/")
        if parts.contains(where: { $0 == "." || $0 == ".." }) {
            throw GrantError("grant directory '\(directory)' contains '.' or '..'; give its plain absolute path")
        }
        guard !parts.isEmpty else { throw GrantError("refusing to grant '/': the whole file system") }
        let normal = "/" + parts.joined(separator: "/")
        var info = stat()
        guard stat(normal, &info) == 0 else {
            let e = errno
            throw GrantError("grant directory \(normal): \(String(cString: strerror(e)))")
        }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw GrantError("grant directory \(normal) is not a directory") }
        if info.st_mode & S_IWOTH != 0 {
            throw GrantError("grant directory \(normal) is world-writable (mode \(String(info.st_mode & 0o7777, radix: 8))): other local users could plant files there; use a directory only you can write")
        }
        let data = "/" + ((dataDirectory as NSString).standardizingPath).split(separator: "/").joined(separator: "/")
        func within(_ inner: String, _ outer: String) -> Bool { outer == "/" || inner == outer || inner.hasPrefix(outer + "/") }
        if within(normal, data) || within(data, normal) {
            throw GrantError("grant directory \(normal) overlaps the host's data dir \(data) (store, audit log, control socket, other plugins' storage)")
        }
        return normal
    }
}
