// A plugin's syscall profile (sandbox/profiles/*.toml, or the file a manifest's [sandbox] syscalls
// names): the seccomp allowlist its runner gets. Schema, lint list and learn mode:
// docs/syscall-profiles.md. The core parses and lints the file; the runner receives the rules in
// the compact `--syscalls` form of PeerhostSandbox's SyscallPolicy (it cannot read files, and it
// does not link TOMLKit).

import Foundation
import PeerhostSandbox

public struct SyscallProfile: Sendable, Equatable {
    /// One `[[syscall]]` table.
    public struct Entry: Sendable, Equatable {
        public var rule: SyscallRule
        /// Who needs it (required: a reviewer reads every entry).
        public var reason: String
        /// A path the echo workload of the minimality check does not reach (see the doc).
        public var rare: Bool
        /// 1-based line of the entry's `name`, for findings.
        public var line: Int?
    }

    /// How findings and errors name the file.
    public var displayName: String
    public var entries: [Entry]

    public var rules: [SyscallRule] { entries.map(\.rule) }
    public var names: Set<String> { Set(entries.map(\.rule.name)) }
    /// The runner's `--syscalls` argument.
    public var encoded: String { SyscallPolicy.encode(rules) }

    public static let schemaKeys: [String: [String]] = [
        "": ["arch", "default", "syscall"],
        "syscall": ["name", "action", "errno", "when", "phase", "reason", "rare"],
    ]

    public init(displayName: String, entries: [Entry]) {
        self.displayName = displayName
        self.entries = entries
    }

    public init(contentsOf path: String) throws(TOMLFileError) {
        try self.init(source: TOMLSource(contentsOf: path))
    }

    public init(text: String, displayName: String) throws(TOMLFileError) {
        try self.init(source: TOMLSource(text: text, displayName: displayName))
    }

    /// Strict: unknown keys, a missing reason, an unknown syscall, a condition that does not fit its
    /// syscall and duplicates are errors naming file, line and key.
    public init(source: TOMLSource) throws(TOMLFileError) {
        let root = source.rootReader
        try root.allowOnly(Self.schemaKeys[""]!)
        let arch = try root.requiredString("arch")
        guard arch == "x86_64" else {
            throw root.error("arch", .badValue("'\(arch)' is not supported: profiles pin x86_64 (every other architecture is killed)"))
        }
        let defaultAction = try root.requiredString("default")
        guard defaultAction == "kill" else {
            throw root.error("default", .badValue("'\(defaultAction)' is not supported: the default action is \"kill\" (an allowlist); learn mode is `peerhost learn`, not a profile setting"))
        }
        displayName = source.displayName
        entries = []
        var seen: [String: String] = [:]
        for table in try root.tableArray("syscall") ?? [] {
            try table.allowOnly(Self.schemaKeys["syscall"]!)
            let name = try table.requiredString("name")
            let actionText = try table.string("action") ?? "allow"
            var rule = SyscallRule(name: name)
            switch actionText {
            case "allow":
                if table.contains("errno") { throw table.error("errno", .badValue("errno goes with action = \"errno\"")) }
            case "kill":
                rule.action = .kill
                if table.contains("errno") { throw table.error("errno", .badValue("errno goes with action = \"errno\"")) }
            case "errno":
                guard let n = try table.integer("errno", in: 1...4095) else { throw table.error("errno", .missingKey) }
                rule.action = .errno(Int32(n))
            default:
                throw table.error("action", .badValue("'\(actionText)' is not an action (expected allow, errno or kill)"))
            }
            if let when = try table.string("when") {
                guard let condition = SyscallRule.Condition(rawValue: when) else {
                    throw table.error("when", .badValue("'\(when)' is not a condition (expected one of: \(SyscallRule.Condition.allCases.map(\.rawValue).joined(separator: ", ")))"))
                }
                rule.when = condition
            }
            if let phase = try table.string("phase") {
                guard phase == "load" else { throw table.error("phase", .badValue("'\(phase)' is not a phase (the only phase is \"load\")")) }
                rule.loadOnly = true
            }
            do {
                try SyscallPolicy.validate(rule, entry: name)
            } catch {
                let key = error.problem.contains("condition") ? "when" : error.problem.contains("phase") ? "phase" : "name"
                throw table.error(key, .badValue(error.problem))
            }
            if let earlier = seen[name] {
                throw table.error("name", .badValue("\(name) is listed twice (first at \(earlier))"))
            }
            seen[name] = table.path
            let reason = try table.requiredString("reason")
            if reason.trimmingCharacters(in: .whitespaces).isEmpty {
                throw table.error("reason", .badValue("say who needs \(name)"))
            }
            entries.append(Entry(rule: rule, reason: reason, rare: try table.boolean("rare") ?? false,
                                 line: source.lineIndex.line(for: table.keyPath("name"))))
        }
    }

    // MARK: Lint

    /// A dangerous allow: `syscall` is the name, `reason` why it is dangerous.
    public struct Finding: Sendable, Equatable, CustomStringConvertible {
        public var profile: String
        public var line: Int?
        public var syscall: String
        public var reason: String
        public var description: String {
            "\(profile)\(line.map { ":\($0)" } ?? ""): \(syscall) is dangerous: \(reason)"
        }
    }

    /// Every entry that allows a syscall of PeerhostSandbox's DangerousSyscalls list (without the
    /// one argument condition that makes it safe). The host refuses to start a plugin with any.
    public func lint() -> [Finding] {
        entries.compactMap { entry in
            DangerousSyscalls.reason(for: entry.rule).map {
                Finding(profile: displayName, line: entry.line, syscall: entry.rule.name, reason: $0)
            }
        }
    }

    // MARK: Which profile a plugin gets

    /// The profile a manifest selects: its `[sandbox] syscalls` file (relative to the manifest's
    /// folder), else the host's built-in default (sandbox/profiles/plugin-default.toml, compiled in).
    public static func forManifest(_ manifest: PluginManifest) throws(TOMLFileError) -> SyscallProfile {
        guard let path = manifest.sandbox.syscallProfile else { return builtInDefault }
        let absolute = path.hasPrefix("/") ? path : (manifest.directory as NSString).appendingPathComponent(path)
        return try SyscallProfile(contentsOf: (absolute as NSString).standardizingPath)
    }

    public static let builtInDefault: SyscallProfile = {
        do {
            return try SyscallProfile(text: EmbeddedProfiles.pluginDefault, displayName: EmbeddedProfiles.defaultDisplayName)
        } catch {
            fatalError("the embedded default profile does not parse: \(error)")   // a test parses it too
        }
    }()

    // MARK: Drafts (learn mode)

    /// A draft profile from what a learn run saw: one entry per syscall, `when` where the learn
    /// filter only let the safe form through, phase load for what was only called before the
    /// plugin finished loading.
    public static func draft(plugin: String, observed: [LearnedSyscall], seconds: Int) -> String {
        var lines = [
            "# Draft syscall profile for \(plugin), written by `peerhost learn` (\(seconds) s, \(AuditEvent.now())).",
            "# Review every entry and replace each reason with who needs it (docs/syscall-profiles.md);",
            "# only what the workload reached is here: add the rare paths a plugin must survive by hand.",
            "",
            "arch = \"x86_64\"",
            "default = \"kill\"",
        ]
        for s in observed.sorted(by: { $0.name < $1.name }) {
            lines.append("")
            lines.append("[[syscall]]")
            lines.append("name = \"\(s.name)\"")
            if s.name == "clone" { lines.append("when = \"thread\"") }
            if SyscallRule.Condition.selfOnly.appliesTo.contains(s.name) { lines.append("when = \"self\"") }
            if s.callsAfterLoad == 0 { lines.append("phase = \"load\"") }
            lines.append("reason = \"learned: \(s.callsBeforeLoad) calls while loading, \(s.callsAfterLoad) after; TODO: who needs it\"")
        }
        if observed.contains(where: { $0.name == "clone" }) {
            // Learn mode answers clone3 with ENOSYS itself (never seen, but glibc tried it first).
            lines += ["", "[[syscall]]", "name = \"clone3\"", "action = \"errno\"", "errno = 38",
                      "reason = \"glibc tries clone3 before clone; ENOSYS makes it fall back to clone, whose flags the filter checks\""]
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// What learn mode saw of one syscall.
public struct LearnedSyscall: Sendable, Equatable {
    public var name: String
    public var callsBeforeLoad: Int
    public var callsAfterLoad: Int
    public init(name: String, callsBeforeLoad: Int, callsAfterLoad: Int) {
        self.name = name
        self.callsBeforeLoad = callsBeforeLoad
        self.callsAfterLoad = callsAfterLoad
    }
}

/// For `peerhost audit` (and anyone else): a profile file's allowlist and its lint findings.
/// A file that does not parse throws its TOMLFileError (file:line: key …).
public func auditSyscallProfile(path: String) throws(TOMLFileError) -> (allowlist: [SyscallProfile.Entry], findings: [SyscallProfile.Finding]) {
    let profile = try SyscallProfile(contentsOf: path)
    return (profile.entries, profile.lint())
}
