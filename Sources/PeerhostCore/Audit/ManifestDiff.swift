// `peerhost audit --diff OLD NEW`: what a manifest change adds or removes, so a reviewer reads a
// plugin update as "now may also connect to X" rather than as a text diff of TOML.

import Foundation

public struct ManifestDiff: Sendable, Equatable, Codable {
    public struct Change: Sendable, Equatable, Codable {
        /// "net.listen", "storage", "limits.memory", "control", "plugin.version", …
        public var area: String
        public var old: String?
        public var new: String?
        /// True when NEW allows more than OLD here (a new grant, a raised or removed limit, a
        /// namespace dropped, a new control method, another library or profile).
        public var widens: Bool
    }

    public var old: String
    public var new: String
    public var changes: [Change]

    public var widens: Bool { changes.contains { $0.widens } }

    public init(old: PluginManifest, new: PluginManifest) {
        self.old = old.path
        self.new = new.path
        var changes: [Change] = []

        func scalar(_ area: String, _ a: String?, _ b: String?, widens: Bool) {
            if a != b { changes.append(Change(area: area, old: a, new: b, widens: widens)) }
        }
        func set(_ area: String, _ a: [String], _ b: [String]) {
            for item in a where !b.contains(item) { changes.append(Change(area: area, old: item, new: nil, widens: false)) }
            for item in b where !a.contains(item) { changes.append(Change(area: area, old: nil, new: item, widens: true)) }
        }
        /// A limit widens when it is removed or raised (0 bandwidth = unlimited).
        func limit(_ area: String, _ a: UInt64?, _ b: UInt64?, zeroIsUnlimited: Bool = false) {
            guard a != b else { return }
            func value(_ x: UInt64?) -> UInt64 { guard let x else { return .max }; return zeroIsUnlimited && x == 0 ? .max : x }
            changes.append(Change(area: area, old: a.map(String.init), new: b.map(String.init), widens: value(b) > value(a)))
        }

        scalar("plugin.name", old.name, new.name, widens: true)
        scalar("plugin.version", old.version, new.version, widens: false)
        scalar("plugin.library", old.library, new.library, widens: true)
        scalar("plugin.sha256", old.sha256, new.sha256, widens: true)
        scalar("plugin.abi", old.abi, new.abi, widens: false)
        set("net.listen", old.net.listen.map(\.description), new.net.listen.map(\.description))
        set("net.connect", old.net.connect.map(\.description), new.net.connect.map(\.description))
        set("net.multicast", old.net.multicast.map(\.description), new.net.multicast.map(\.description))
        func storage(_ m: PluginManifest) -> [String] {
            m.storage.paths.map { "\($0.path) \($0.mode.rawValue)\($0.quota.map { " quota \(ByteSize.format($0))" } ?? "")" }
        }
        set("storage", storage(old), storage(new))
        if old.storage.kvQuota != new.storage.kvQuota {
            // No store → a store widens; otherwise a larger quota widens.
            let widens = (new.storage.kvQuota ?? 0) > (old.storage.kvQuota ?? 0)
            changes.append(Change(area: "storage.kv", old: old.storage.kvQuota.map(String.init),
                                  new: new.storage.kvQuota.map(String.init), widens: widens))
        }
        limit("limits.memory", old.limits.memoryBytes, new.limits.memoryBytes)
        limit("limits.cpu_percent", old.limits.cpuPercent.map(UInt64.init), new.limits.cpuPercent.map(UInt64.init))
        limit("limits.open_files", old.limits.openFiles.map(UInt64.init), new.limits.openFiles.map(UInt64.init))
        limit("limits.bandwidth.up", old.limits.bandwidthUp, new.limits.bandwidthUp, zeroIsUnlimited: true)
        limit("limits.bandwidth.down", old.limits.bandwidthDown, new.limits.bandwidthDown, zeroIsUnlimited: true)
        // A namespace removed is a wall taken down.
        let oldNS = old.sandbox.namespaces.map(\.rawValue), newNS = new.sandbox.namespaces.map(\.rawValue)
        for ns in oldNS where !newNS.contains(ns) { changes.append(Change(area: "sandbox.namespaces", old: ns, new: nil, widens: true)) }
        for ns in newNS where !oldNS.contains(ns) { changes.append(Change(area: "sandbox.namespaces", old: nil, new: ns, widens: false)) }
        let oldProfile = PluginAuditor.auditSyscallProfile(manifest: old), newProfile = PluginAuditor.auditSyscallProfile(manifest: new)
        func profileText(_ p: SyscallProfileAudit) -> String? { p.profile.map { "\($0) sha256 \(p.sha256 ?? "unreadable")" } }
        scalar("sandbox.syscalls", profileText(oldProfile), profileText(newProfile), widens: true)
        set("control", old.controls.map { "\($0.name) \($0.signature)\($0.isAsync ? " async" : "") [\($0.symbol)]" },
            new.controls.map { "\($0.name) \($0.signature)\($0.isAsync ? " async" : "") [\($0.symbol)]" })
        self.changes = changes
    }

    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }

    /// "+ net.connect  tcp:*:443" for an addition, "- …" for a removal, "~ area  old → new" for a
    /// changed value; "(widens)" marks what lets the plugin do more.
    public var text: String {
        var lines = ["--- \(old)", "+++ \(new)"]
        if changes.isEmpty { lines.append("no change in identity, grants, limits, sandbox or control methods") }
        let width = changes.map(\.area.count).max() ?? 0
        for change in changes {
            let area = change.area.padding(toLength: width, withPad: " ", startingAt: 0)
            let mark = change.widens ? "  (widens)" : ""
            switch (change.old, change.new) {
            case (nil, let new?): lines.append("+ \(area)  \(new)\(mark)")
            case (let old?, nil): lines.append("- \(area)  \(old)\(mark)")
            default: lines.append("~ \(area)  \(change.old ?? "-") → \(change.new ?? "-")\(mark)")
            }
        }
        lines.append(widens ? "verdict: NEW widens what the plugin may do" : "verdict: NEW grants nothing OLD did not")
        return lines.joined(separator: "\n")
    }
}
