// The canonical form of a manifest: the exact bytes a plugin signature covers (docs/signing.md).
//
// It is a deterministic text a third party can rebuild from the manifest, the library's bytes and
// the syscall profile's bytes, without a TOML library that preserves formatting: comments, key order
// and spacing in the manifest do not matter; every value that changes what the plugin may do does.
// So widening a grant, raising a limit, dropping a namespace, swapping the profile or rolling the
// library back all break the signature.
//
// Rules:
// - UTF-8 lines ending in "\n"; a line is a fixed key, then fields each preceded by one TAB.
// - Fields are escaped: "\" → "\\", every byte below 0x20 and 0x7F → "\xHH" (lowercase hex), so a
//   value can never contain a TAB or a newline of its own.
// - Absent optional values are "-". Sizes and rates are decimal bytes (per second).
// - Lists are one line per item, sorted by the line's bytes (order in the file carries no meaning).
// - The first line is "peerhost-manifest-v1"; the last is "signed\tTIME" (the sidecar's time).

import Foundation

public enum CanonicalManifest {
    public static let header = "peerhost-manifest-v1"

    public struct ProfileError: Error, Sendable, Equatable, CustomStringConvertible {
        public var path: String
        public var description: String { "syscall profile \(path) is not readable" }
    }

    /// The syscall profile's absolute path, or nil when the manifest uses the host's default.
    public static func profilePath(_ manifest: PluginManifest) -> String? {
        guard let profile = manifest.sandbox.syscallProfile else { return nil }
        return profile.hasPrefix("/") ? profile
            : ((manifest.directory as NSString).appendingPathComponent(profile) as NSString).standardizingPath
    }

    /// The canonical text for `manifest` with the library's hash `librarySHA256`, signed at `signedTime`.
    public static func text(_ manifest: PluginManifest, librarySHA256: String, signedTime: String) throws(ProfileError) -> String {
        var lines: [String] = [header]
        func line(_ key: String, _ fields: [String]) { lines.append(([key] + fields.map(escape)).joined(separator: "\t")) }
        func optional<T>(_ value: T?) -> String { value.map { "\($0)" } ?? "-" }
        func sortedLines(_ key: String, _ items: [[String]]) {
            let rendered = items.map { ([key] + $0.map(escape)).joined(separator: "\t") }
            lines += rendered.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        }

        line("plugin.name", [manifest.name])
        line("plugin.version", [manifest.version])
        line("plugin.library", [manifest.library])
        line("plugin.abi", [manifest.abi])
        line("plugin.sha256", [librarySHA256])
        sortedLines("net.listen", manifest.net.listen.map { [$0.description] })
        sortedLines("net.connect", manifest.net.connect.map { [$0.description] })
        sortedLines("net.multicast", manifest.net.multicast.map { [$0.description] })
        sortedLines("storage.path", manifest.storage.paths.map { [$0.path, $0.mode.rawValue, optional($0.quota)] })
        line("storage.kv", [optional(manifest.storage.kvQuota)])
        line("limits.memory", [optional(manifest.limits.memoryBytes)])
        line("limits.cpu_percent", [optional(manifest.limits.cpuPercent)])
        line("limits.open_files", [optional(manifest.limits.openFiles)])
        line("limits.bandwidth.up", [optional(manifest.limits.bandwidthUp)])
        line("limits.bandwidth.down", [optional(manifest.limits.bandwidthDown)])
        line("sandbox.namespaces", [manifest.sandbox.namespaces.map(\.rawValue).sorted().joined(separator: ",")])
        if let path = profilePath(manifest) {
            guard let hash = FileHash.sha256(path: path) else { throw ProfileError(path: path) }
            line("sandbox.syscalls", [manifest.sandbox.syscallProfile!, hash])
        } else {
            line("sandbox.syscalls", ["-", "-"])
        }
        // `async` and `description` only when set, so manifests without them keep their signatures.
        sortedLines("control", manifest.controls.map {
            [$0.name, $0.symbol, $0.signature.description] + ($0.isAsync ? ["async"] : [])
                + ($0.description.map { ["description=" + $0] } ?? [])
        })
        // Only when present, so manifests without [status] keep their signatures.
        if let status = manifest.status { line("status", [status.method, optional(status.metricPrefix)]) }
        line("signed", [signedTime])
        return lines.joined(separator: "\n") + "\n"
    }

    static func escape(_ field: String) -> String {
        var out = ""
        for scalar in field.unicodeScalars {
            if scalar == "\\" { out += "\\\\" }
            else if scalar.value < 0x20 || scalar.value == 0x7f { out += String(format: "\\x%02x", scalar.value) }
            else { out.unicodeScalars.append(scalar) }
        }
        return out
    }
}
