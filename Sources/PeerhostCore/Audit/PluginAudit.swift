// `peerhost audit`: what a plugin may do and whether its code is the code that was signed, for a
// security reviewer (DESIGN.md "Capabilities and manifests"; docs/audit.md).
//
// Findings have two severities. "unsafe" (exit 1): the library is missing, unsigned, signed by an
// untrusted key or differs from what was signed or pinned; a storage folder is world-writable; the
// config grants more than the manifest; the syscall profile is dangerous. "warning" (exit 0, or 1
// with --strict): broad but declared grants — connect to any host or a port range, rw storage,
// multicast, listening on every interface, no memory limit, a namespace left out.

import Foundation
import PeerhostSandbox

public struct AuditFinding: Sendable, Equatable, Codable {
    public enum Severity: String, Sendable, Codable { case unsafe, warning }
    public var severity: Severity
    /// Stable identifier for tools: "signature", "library-hash", "world-writable", …
    public var code: String
    public var message: String

    public init(_ severity: Severity, _ code: String, _ message: String) {
        self.severity = severity
        self.code = code
        self.message = message
    }
}

/// What `auditSyscallProfile` found for one manifest's profile.
public struct SyscallProfileAudit: Sendable, Equatable, Codable {
    /// As written in the manifest; nil = the host's default profile.
    public var profile: String?
    /// Absolute path and sha256 of the profile file (nil when default or unreadable).
    public var path: String?
    public var sha256: String?
    /// Every rule the runner's filter gets, one line each: "read", "tgkill (only to itself)",
    /// "openat (while loading only)", "clone3 → errno 38". Empty when the profile does not parse.
    public var allowlist: [String] = []
    /// A custom profile against the host's default: what it allows beyond it and what it leaves
    /// out (nil for the default itself, or when it does not parse).
    public var beyondDefault: [String]? = nil
    public var withoutDefault: [String]? = nil
    public var findings: [AuditFinding]
}

public struct PluginAuditReport: Sendable, Equatable, Codable {
    public enum Verdict: String, Sendable, Codable { case verified, warnings, unsafe }

    public struct Library: Sendable, Equatable, Codable {
        public var file: String
        /// Resolved path; nil when not found.
        public var path: String?
        public var sha256: String?
        /// The manifest's pin, when it has one.
        public var manifestSHA256: String?
        /// "pinned-match", "unpinned", "pinned-mismatch", "missing"
        public var hashStatus: String

        enum CodingKeys: String, CodingKey {
            case file, path, sha256, manifestSHA256 = "manifest_sha256", hashStatus = "hash_status"
        }
    }

    public struct Signature: Sendable, Equatable, Codable {
        /// "verified", "refused", "allowed-unsigned" (refused, but the config's allow_unsigned lets it start)
        public var status: String
        public var key: String?
        public var keyFile: String?
        public var signed: String?
        public var file: String?
        public var reason: String?

        enum CodingKeys: String, CodingKey { case status, key, keyFile = "key_file", signed, file, reason }
    }

    public struct Storage: Sendable, Equatable, Codable {
        public var path: String
        public var mode: String
        public var quota: UInt64?
        /// Where it is on disk: <data_dir>/<plugin>/<path> (nil without a config).
        public var location: String?
        /// "operator" for a directory granted at run time (`peerhost ctl host grant`, kept in the
        /// store); nil for a manifest grant.
        public var grantedBy: String? = nil

        enum CodingKeys: String, CodingKey { case path, mode, quota, location, grantedBy = "granted_by" }
    }

    public struct Grants: Sendable, Equatable, Codable {
        public var listen: [String]
        /// The manifest's listen grants when the config narrowed them.
        public var manifestListen: [String]?
        public var connect: [String]
        public var multicast: [String]
        public var storage: [Storage]
        public var kvQuota: UInt64?

        enum CodingKeys: String, CodingKey {
            case listen, manifestListen = "manifest_listen", connect, multicast, storage, kvQuota = "kv_quota"
        }
    }

    public struct Limits: Sendable, Equatable, Codable {
        public var memory: UInt64?
        public var cpuPercent: Int?
        public var openFiles: Int?
        public var bandwidthUp: UInt64?
        public var bandwidthDown: UInt64?
        /// How this machine would enforce them for the user running the audit (cgroup v1/v2,
        /// rlimit, none): "memory 256 MiB by cgroup v1; processes 4 by cgroup v1 + rlimit; …".
        public var enforcement: String?

        enum CodingKeys: String, CodingKey {
            case memory, cpuPercent = "cpu_percent", openFiles = "open_files", bandwidthUp = "bandwidth_up", bandwidthDown = "bandwidth_down"
            case enforcement
        }
    }

    public struct Control: Sendable, Equatable, Codable {
        public var name: String
        public var symbol: String
        public var signature: String
        /// ABI 1.2: answers through control_reply, possibly later or as a stream.
        public var async: Bool? = nil
        /// The manifest's `description`, what the method does.
        public var description: String? = nil
    }

    public var name: String
    public var manifest: String
    public var version: String
    public var abi: String
    /// nil when audited without a config (a bare manifest).
    public var enabled: Bool?
    public var library: Library
    public var signature: Signature
    public var grants: Grants
    public var limits: Limits
    public var namespaces: [String]
    public var syscalls: SyscallProfileAudit
    public var controls: [Control]
    public var findings: [AuditFinding]
    public var verdict: Verdict

    /// Exit status for this report alone: 0 verified, 1 unsafe (or warnings when `strict`).
    public func failed(strict: Bool) -> Bool {
        verdict == .unsafe || (strict && verdict == .warnings)
    }
}

public struct AuditInputs: Sendable {
    public var trust: TrustStore
    /// Plugins the config starts without a valid signature.
    public var allowUnsigned: Set<String> = []
    /// Where bundled libraries are looked for after the manifest's folder.
    public var productsDirectory: String = ExecutableLocation.directory

    /// Directories the operator granted at run time (OperatorGrants.readOffline), all plugins.
    public var operatorGrants: [OperatorGrant] = []

    public init(trust: TrustStore, allowUnsigned: Set<String> = [], productsDirectory: String = ExecutableLocation.directory,
                operatorGrants: [OperatorGrant] = []) {
        self.operatorGrants = operatorGrants
        self.trust = trust
        self.allowUnsigned = allowUnsigned
        self.productsDirectory = productsDirectory
    }
}

public enum PluginAuditor {
    /// Audits a configured plugin: the effective grants (manifest ∩ config) and its storage on disk.
    public static func audit(plugin: HostConfig.PluginConfig, inputs: AuditInputs) -> PluginAuditReport {
        var report = audit(manifest: plugin.manifest, inputs: inputs, listenOverride: plugin.listenOverride,
                           storageRoot: (plugin.dataDirectory as NSString).appendingPathComponent(plugin.name))
        // A config that repeats the manifest's list narrows nothing: not worth a line.
        if report.grants.manifestListen == report.grants.listen { report.grants.manifestListen = nil }
        report.enabled = plugin.enabled
        for grant in inputs.operatorGrants where grant.plugin == plugin.name {
            report.grants.storage.append(.init(path: grant.directory, mode: grant.mode, quota: nil, location: grant.directory,
                                               grantedBy: "operator"))
            var info = stat()
            if lstat(grant.directory, &info) == 0, info.st_mode & S_IWOTH != 0, info.st_mode & S_IFMT != S_IFLNK {
                report.findings.append(.init(.unsafe, "world-writable", "\(grant.directory) (operator grant) is world-writable (mode \(String(info.st_mode & 0o7777, radix: 8)))"))
                report.verdict = .unsafe
            }
            if grant.writable {
                report.findings.append(.init(.warning, "storage-rw", "may write \(grant.directory) (operator grant)"))
                if report.verdict == .verified { report.verdict = .warnings }
            }
        }
        return report
    }

    /// Audits a manifest. `listenOverride` is the config's narrowing; `storageRoot` the plugin's
    /// `<data_dir>/<plugin>/` (nil = not checked on disk).
    public static func audit(manifest: PluginManifest, inputs: AuditInputs, listenOverride: [NetGrant]? = nil,
                             storageRoot: String? = nil) -> PluginAuditReport {
        var findings: [AuditFinding] = []

        // Library and signature: the same check the host makes before spawning.
        var library = PluginAuditReport.Library(file: manifest.library, path: nil, sha256: nil,
                                                manifestSHA256: manifest.sha256, hashStatus: "missing")
        var signature = PluginAuditReport.Signature(status: "refused")
        do {
            let path = try manifest.resolveLibrary(productsDirectory: inputs.productsDirectory)
            library.path = path
            library.sha256 = PluginVerifier.librarySHA256(path: path)
        } catch {
            findings.append(.init(.unsafe, "library-missing", error.description))
            signature.reason = "library not found"
        }
        if let path = library.path, let hash = library.sha256 {
            library.hashStatus = manifest.sha256 == nil ? "unpinned" : (manifest.sha256 == hash ? "pinned-match" : "pinned-mismatch")
            switch PluginVerifier.verify(manifest: manifest, librarySHA256: hash, libraryPath: path, trust: inputs.trust) {
            case .verified(let keyID, let signedTime, let file):
                signature = .init(status: "verified", key: keyID, keyFile: inputs.trust.key(id: keyID)?.path, signed: signedTime, file: file)
            case .refused(let failure):
                signature.reason = failure.description
                if case .libraryHashMismatch = failure {
                    findings.append(.init(.unsafe, "library-hash", failure.description))
                } else {
                    if inputs.allowUnsigned.contains(manifest.name) { signature.status = "allowed-unsigned" }
                    let suffix = inputs.allowUnsigned.contains(manifest.name) ? " (the config's allow_unsigned starts it anyway)" : ""
                    findings.append(.init(.unsafe, "signature", failure.description + suffix))
                }
                if let file = SignatureFile.candidates(manifest: manifest, libraryPath: path).first(where: { FileManager.default.fileExists(atPath: $0) }) {
                    signature.file = file
                    if let parsed = try? SignatureFile(contentsOf: file) {
                        signature.key = parsed.keyID
                        signature.signed = parsed.signedTime
                    }
                }
            }
        } else if library.path != nil {
            findings.append(.init(.unsafe, "library-unreadable", "library \(library.path!) is not readable"))
        }

        // Grants.
        let listen = listenOverride ?? manifest.net.listen
        for grant in listenOverride ?? [] where !manifest.net.listen.contains(where: { $0.covers(grant) }) {
            findings.append(.init(.unsafe, "config-wider", "the config's listen \(grant) is not granted by the manifest"))
        }
        for grant in listen where ["0.0.0.0", "::", "*"].contains(grant.host) {
            findings.append(.init(.warning, "listen-any-interface", "listens on every interface: \(grant)"))
        }
        for grant in manifest.net.connect {
            if grant.host == "*" {
                findings.append(.init(.warning, "connect-any-host", "may connect to any host: \(grant)"))
            } else if grant.ports.count > 1 {
                findings.append(.init(.warning, "connect-port-range", "may connect to a port range: \(grant)"))
            }
        }
        for grant in manifest.net.multicast {
            findings.append(.init(.warning, "multicast", "may send and receive multicast: \(grant) (joined on every "
                + "multicast-capable interface; sends capped at \(MulticastSendBudget.burst), then one per "
                + "\(MulticastSendBudget.intervalNanoseconds / 1_000_000_000) s)"))
        }
        var storage: [PluginAuditReport.Storage] = []
        for grant in manifest.storage.paths {
            let location = storageRoot.map { ($0 as NSString).appendingPathComponent(grant.path) }
            storage.append(.init(path: grant.path, mode: grant.mode.rawValue, quota: grant.quota, location: location))
            if grant.mode == .readWrite {
                findings.append(.init(.warning, "storage-rw", "may write storage \(grant.path)\(grant.quota == nil ? " without a quota of its own" : "")"))
            }
        }
        if let root = storageRoot {
            // An existing folder others can write to lets any local user plant files the plugin reads.
            for folder in [root] + storage.compactMap(\.location) {
                var info = stat()
                if lstat(folder, &info) == 0, info.st_mode & S_IWOTH != 0, info.st_mode & S_IFMT != S_IFLNK {
                    findings.append(.init(.unsafe, "world-writable", "\(folder) is world-writable (mode \(String(info.st_mode & 0o7777, radix: 8)))"))
                }
            }
        }

        // Limits and namespaces.
        if manifest.limits.memoryBytes == nil {
            findings.append(.init(.warning, "no-memory-limit", "no memory limit ([limits] memory)"))
        }
        let namespaces = manifest.sandbox.namespaces.map(\.rawValue)
        for required in ["user", "pid", "net", "mount", "ipc", "uts"] where !namespaces.contains(required) {
            findings.append(.init(.warning, "namespace", "runs without its own \(required) namespace"))
        }

        let syscalls = auditSyscallProfile(manifest: manifest)
        findings += syscalls.findings

        let verdict: PluginAuditReport.Verdict = findings.contains { $0.severity == .unsafe } ? .unsafe
            : (findings.isEmpty ? .verified : .warnings)
        return PluginAuditReport(
            name: manifest.name, manifest: manifest.path, version: manifest.version, abi: manifest.abi, enabled: nil,
            library: library, signature: signature,
            grants: .init(listen: listen.map(\.description),
                          manifestListen: listenOverride == nil ? nil : manifest.net.listen.map(\.description),
                          connect: manifest.net.connect.map(\.description),
                          multicast: manifest.net.multicast.map(\.description),
                          storage: storage, kvQuota: manifest.storage.kvQuota),
            limits: .init(memory: manifest.limits.memoryBytes, cpuPercent: manifest.limits.cpuPercent,
                          openFiles: manifest.limits.openFiles, bandwidthUp: manifest.limits.bandwidthUp,
                          bandwidthDown: manifest.limits.bandwidthDown,
                          enforcement: PluginLimits.preview(manifest.limits, cgroups: Cgroups.discover()).description),
            namespaces: namespaces, syscalls: syscalls,
            controls: manifest.controls.map {
                .init(name: $0.name, symbol: $0.symbol, signature: $0.signature.description,
                      async: $0.isAsync ? true : nil, description: $0.description)
            },
            findings: findings, verdict: verdict)
    }

    /// The syscall profile's part of the audit. For now it reports where the profile is and its
    /// hash (the hash is covered by the signature); the profile lint (a dangerous syscall such as
    /// io_uring_setup, ptrace or an unconditioned clone is "unsafe") plugs in here and returns its
    /// findings with the same severities.
    /// The profile a plugin runs under (its file, or the built-in default), its allowlist, and the
    /// lint: a dangerous allow or a profile that does not parse is unsafe (the host would refuse it).
    public static func auditSyscallProfile(manifest: PluginManifest) -> SyscallProfileAudit {
        let path = CanonicalManifest.profilePath(manifest)
        var audit = SyscallProfileAudit(profile: manifest.sandbox.syscallProfile, path: path,
                                        sha256: path.flatMap { FileHash.sha256(path: $0) }, findings: [])
        if let path, audit.sha256 == nil {
            audit.findings = [.init(.unsafe, "syscall-profile", "syscall profile \(path) is not readable")]
            return audit
        }
        do {
            let profile = try SyscallProfile.forManifest(manifest)
            audit.allowlist = profile.rules.map(Self.describe)
            audit.findings = profile.lint().map { .init(.unsafe, "dangerous-syscall", $0.description) }
            if path != nil {
                let base = Set(SyscallProfile.builtInDefault.rules.map(Self.describe))
                let mine = Set(audit.allowlist)
                audit.beyondDefault = audit.allowlist.filter { !base.contains($0) }
                audit.withoutDefault = SyscallProfile.builtInDefault.rules.map(Self.describe).filter { !mine.contains($0) }
            }
        } catch {
            audit.findings = [.init(.unsafe, "syscall-profile", "syscall profile: \(error)")]
        }
        return audit
    }

    static func describe(_ rule: SyscallRule) -> String {
        var text = rule.name
        switch rule.action {
        case .allow: break
        case .errno(let e): text += " → errno \(e)"
        case .kill: text += " → kill"
        }
        switch rule.when {
        case .selfOnly?: text += " (only to itself)"
        case .thread?: text += " (threads only)"
        case nil: break
        }
        if rule.loadOnly { text += " (while loading only)" }
        return text
    }
}

/// The whole `peerhost audit` answer: one report per plugin, the trust store, the overall verdict.
public struct AuditDocument: Sendable, Equatable, Codable {
    public var config: String?
    /// "KEYID PATH" per trusted key.
    public var trust: [String]
    public var trustFolders: [String]
    public var trustProblems: [String]
    public var plugins: [PluginAuditReport]
    public var verdict: PluginAuditReport.Verdict

    enum CodingKeys: String, CodingKey { case config, trust, trustFolders = "trust_folders", trustProblems = "trust_problems", plugins, verdict }

    public init(config: String?, trust: TrustStore, plugins: [PluginAuditReport]) {
        self.config = config
        self.trust = trust.keys.values.map { "\($0.key.keyID) \($0.path)" }.sorted()
        self.trustFolders = trust.directories
        self.trustProblems = trust.problems
        self.plugins = plugins
        verdict = plugins.contains { $0.verdict == .unsafe } ? .unsafe
            : (plugins.contains { $0.verdict == .warnings } ? .warnings : .verified)
    }

    /// 0 when everything verifies; 1 when something is unsafe, or has warnings under `strict`.
    public func exitCode(strict: Bool) -> Int32 {
        verdict == .unsafe || (strict && verdict == .warnings) ? 1 : 0
    }

    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }

    /// For people: one section per plugin, aligned "key  value" lines, findings last.
    public var text: String {
        var out: [String] = []
        if let config { out.append("config: \(config)") }
        out.append("trust folders: " + (trustFolders.isEmpty ? "(none)" : trustFolders.joined(separator: ", ")))
        out.append("trusted keys:" + (trust.isEmpty ? " (none)" : ""))
        for key in trust { out.append("  \(key)") }
        for problem in trustProblems { out.append("  ! \(problem)") }
        for plugin in plugins {
            out.append("")
            out.append("plugin \(plugin.name) \(plugin.version)  [\(plugin.verdict.rawValue.uppercased())]\(plugin.enabled == false ? "  (disabled in config)" : "")")
            var rows: [(String, String)] = []
            rows.append(("manifest", plugin.manifest))
            rows.append(("abi", plugin.abi))
            rows.append(("library", plugin.library.path ?? "\(plugin.library.file) (not found)"))
            rows.append(("sha256", (plugin.library.sha256 ?? "-") + "  (\(plugin.library.hashStatus))"))
            if plugin.library.hashStatus == "unpinned" {
                rows.append(("", "(unpinned: the manifest names no [plugin] sha256, so only the signature binds these bytes; pin it to refuse any other build even when signed)"))
            }
            var signatureText = plugin.signature.status
            if let key = plugin.signature.key { signatureText += " key \(key)" }
            if let signed = plugin.signature.signed { signatureText += " at \(signed)" }
            rows.append(("signature", signatureText))
            if let file = plugin.signature.file { rows.append(("", file)) }
            if let reason = plugin.signature.reason { rows.append(("", reason)) }
            func list(_ key: String, _ items: [String]) {
                if items.isEmpty { rows.append((key, "-")) }
                for (index, item) in items.enumerated() { rows.append((index == 0 ? key : "", item)) }
            }
            list("net.listen", plugin.grants.listen.map {
                $0.hasSuffix(":0") ? $0 + "  (port 0: a free port the kernel picks at each start, another one after every restart)" : $0
            })
            if let manifestListen = plugin.grants.manifestListen {
                rows.append(("", "(narrowed by the config from: \(manifestListen.joined(separator: ", ")))"))
            }
            list("net.connect", plugin.grants.connect)
            list("net.multicast", plugin.grants.multicast)
            list("storage", plugin.grants.storage.map {
                $0.grantedBy == "operator" ? "\($0.path) \($0.mode)  (operator grant)"
                    : "\($0.path) \($0.mode)\($0.quota.map { " quota \(ByteSize.format($0))" } ?? "")\($0.location.map { "  → \($0)" } ?? "")"
            })
            rows.append(("kv", plugin.grants.kvQuota.map { "quota \(ByteSize.format($0))" } ?? "-"))
            let l = plugin.limits
            rows.append(("limits", [l.memory.map { "memory \(ByteSize.format($0))" } ?? "memory -",
                                    "cpu \(l.cpuPercent.map { "\($0)%" } ?? "-")",
                                    "open_files \(l.openFiles.map(String.init) ?? "-")",
                                    "up \(l.bandwidthUp.map { $0 == 0 ? "unlimited" : ByteSize.format($0) + "/s" } ?? "-")",
                                    "down \(l.bandwidthDown.map { $0 == 0 ? "unlimited" : ByteSize.format($0) + "/s" } ?? "-")"].joined(separator: ", ")))
            if let how = l.enforcement { rows.append(("", "enforced here: \(how)")) }
            rows.append(("namespaces", plugin.namespaces.joined(separator: ", ")))
            rows.append(("syscalls", plugin.syscalls.profile.map { "\($0) (\(plugin.syscalls.path ?? "")) sha256 \(plugin.syscalls.sha256 ?? "-")" } ?? "host default profile (sandbox/profiles/plugin-default.toml)"))
            rows.append(("", "\(plugin.syscalls.allowlist.count) rules, everything else kills the runner: " + plugin.syscalls.allowlist.joined(separator: ", ")))
            if let beyond = plugin.syscalls.beyondDefault, let without = plugin.syscalls.withoutDefault {
                rows.append(("", "against the host's default: adds " + (beyond.isEmpty ? "nothing" : beyond.joined(separator: ", "))
                    + "; leaves out " + (without.isEmpty ? "nothing" : without.joined(separator: ", "))))
            }
            list("controls", plugin.controls.map {
                "\($0.name) \($0.signature)\($0.async == true ? " async" : "")  [\($0.symbol)]"
                    + ($0.description.map { " — \($0)" } ?? " — (no description in the manifest)")
            })
            let width = rows.map(\.0.count).max() ?? 0
            for (key, value) in rows { out.append("  " + key.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value) }
            if plugin.findings.isEmpty {
                out.append("  findings: none")
            } else {
                out.append("  findings:")
                for finding in plugin.findings { out.append("    \(finding.severity == .unsafe ? "UNSAFE " : "warning") \(finding.message)") }
            }
        }
        out.append("")
        out.append("verdict: \(verdict.rawValue)")
        return out.joined(separator: "\n")
    }
}
