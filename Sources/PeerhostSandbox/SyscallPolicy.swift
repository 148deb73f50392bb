// A syscall policy as the runner receives it (docs/syscall-profiles.md): the core parses and lints
// the TOML profile (PeerhostCore's SyscallProfile) and passes the rules to the runner as one
// compact argument, `--syscalls read,write,tgkill@self,clone@thread,openat@load,clone3=e38`. The
// runner cannot read the profile file (it starts in an empty file system) and must not link TOMLKit,
// so this encoding is the contract between the two; both sides validate it, and the runner refuses
// anything malformed with step "seccomp".
//
//   entry   = name [ "@" when ] [ "@load" ] [ "=" action ]
//   when    = "self"      argument 0 must equal the runner's own pid (kill, tkill, tgkill)
//           | "thread"    clone only with CLONE_THREAD and no namespace flag (a thread, not a process)
//   "@load"               allowed only until dlopen finished; then EACCES from the stacked filter
//   action  = "kill" | "e" ERRNO (1…4095); absent = allow
//
// The architecture is always x86_64 (anything else, x32 included, is killed) and the default action
// is always kill-process: neither is encoded.

#if canImport(Glibc)
import Glibc
#endif
import CSeccomp

public struct SyscallRule: Sendable, Equatable, Hashable, CustomStringConvertible {
    public enum Action: Sendable, Equatable, Hashable {
        case allow
        case errno(Int32)
        case kill
    }

    /// An argument condition under which the rule applies (otherwise the default, kill, applies).
    public enum Condition: String, Sendable, CaseIterable, Hashable {
        /// Argument 0 equals the runner's own pid: kill/tkill/tgkill only to itself.
        case selfOnly = "self"
        /// clone with CLONE_THREAD and without any CLONE_NEW* flag.
        case thread

        /// The syscalls a condition can be put on (it inspects their argument 0).
        public var appliesTo: Set<String> {
            switch self {
            case .selfOnly: return ["kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"]
            case .thread: return ["clone"]
            }
        }
    }

    public var name: String
    public var action: Action
    public var when: Condition?
    /// Phase "load": allowed only while the runner loads the plugin (dlopen), EACCES afterwards.
    public var loadOnly: Bool

    public init(name: String, action: Action = .allow, when: Condition? = nil, loadOnly: Bool = false) {
        self.name = name
        self.action = action
        self.when = when
        self.loadOnly = loadOnly
    }

    /// The compact form of one entry.
    public var description: String {
        var text = name
        if let when { text += "@\(when.rawValue)" }
        if loadOnly { text += "@load" }
        switch action {
        case .allow: break
        case .errno(let e): text += "=e\(e)"
        case .kill: text += "=kill"
        }
        return text
    }
}

/// A malformed `--syscalls` value or a rule that cannot be built; names the entry.
public struct SyscallPolicyError: Error, Sendable, Equatable, CustomStringConvertible {
    public var entry: String
    public var problem: String
    public init(entry: String, problem: String) {
        self.entry = entry
        self.problem = problem
    }
    public var description: String { "syscall entry '\(entry)': \(problem)" }
}

public enum SyscallPolicy {
    /// CLONE_THREAD and the namespace flags a thread-only clone must not carry. (CLONE_NEWTIME,
    /// 0x80, is not among them: clone() reads that byte as the exit signal; only clone3 and
    /// unshare take it, and both are denied.)
    public static let cloneThread: UInt64 = 0x0001_0000
    public static let cloneNamespaceFlags: UInt64 =
        0x0002_0000 /* NEWNS */ | 0x0200_0000 /* NEWCGROUP */ | 0x0400_0000 /* NEWUTS */ | 0x0800_0000 /* NEWIPC */
        | 0x1000_0000 /* NEWUSER */ | 0x2000_0000 /* NEWPID */ | 0x4000_0000 /* NEWNET */

    public static func encode(_ rules: [SyscallRule]) -> String {
        rules.map(\.description).joined(separator: ",")
    }

    /// Strict: every entry must parse, name a syscall libseccomp knows on x86_64, appear once, and
    /// carry only conditions that fit it. An empty string is an empty policy (learn mode starts there).
    public static func decode(_ text: String) throws(SyscallPolicyError) -> [SyscallRule] {
        if text.isEmpty { return [] }
        var rules: [SyscallRule] = []
        var seen = Set<String>()
        for entry in text.split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
            let rule = try decodeEntry(entry)
            guard seen.insert(rule.name).inserted else {
                throw SyscallPolicyError(entry: entry, problem: "\(rule.name) appears twice")
            }
            rules.append(rule)
        }
        return rules
    }

    static func decodeEntry(_ entry: String) throws(SyscallPolicyError) -> SyscallRule {
        func bad(_ problem: String) -> SyscallPolicyError { SyscallPolicyError(entry: entry, problem: problem) }
        let sides = entry.split(separator: "=", omittingEmptySubsequences: false)
        guard sides.count <= 2 else { throw bad("more than one '='") }
        var action = SyscallRule.Action.allow
        if sides.count == 2 {
            let a = String(sides[1])
            if a == "kill" {
                action = .kill
            } else if a.hasPrefix("e"), let n = Int32(a.dropFirst()), (1...4095).contains(n) {
                action = .errno(n)
            } else {
                throw bad("action '\(a)' is not kill or eN with N in 1…4095")
            }
        }
        let parts = sides[0].split(separator: "@", omittingEmptySubsequences: false).map(String.init)
        var rule = SyscallRule(name: parts[0], action: action)
        try checkName(rule.name, entry: entry)
        for qualifier in parts.dropFirst() {
            if qualifier == "load" {
                guard !rule.loadOnly else { throw bad("@load twice") }
                rule.loadOnly = true
            } else if let condition = SyscallRule.Condition(rawValue: qualifier) {
                guard rule.when == nil, !rule.loadOnly else { throw bad("one condition at most, before @load") }
                rule.when = condition
            } else {
                throw bad("unknown qualifier '@\(qualifier)' (expected @self, @thread or @load)")
            }
        }
        try validate(rule, entry: entry)
        return rule
    }

    /// The checks both the TOML parser and the decoder apply to one rule; `entry` names it in errors.
    public static func validate(_ rule: SyscallRule, entry: String) throws(SyscallPolicyError) {
        func bad(_ problem: String) -> SyscallPolicyError { SyscallPolicyError(entry: entry, problem: problem) }
        try checkName(rule.name, entry: entry)
        if let when = rule.when, !when.appliesTo.contains(rule.name) {
            throw bad("condition '\(when.rawValue)' applies only to \(when.appliesTo.sorted().joined(separator: ", "))")
        }
        if rule.loadOnly && rule.action != .allow { throw bad("phase load is only for allowed syscalls") }
        if rule.when != nil && rule.action != .allow { throw bad("a condition is only for allowed syscalls (the default already kills)") }
    }

    static func checkName(_ name: String, entry: String) throws(SyscallPolicyError) {
        guard !name.isEmpty, name.utf8.allSatisfy({ ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 95 }) else {
            throw SyscallPolicyError(entry: entry, problem: "'\(name)' is not a syscall name (lowercase letters, digits, _)")
        }
        guard SyscallNames.number(of: name) != nil else {
            throw SyscallPolicyError(entry: entry, problem: "\(name) is not an x86_64 system call")
        }
    }
}

/// x86_64 syscall names and numbers, as libseccomp knows them.
public enum SyscallNames {
    public static func number(of name: String) -> Int32? {
        let nr = seccomp_syscall_resolve_name_arch(ph_scmp_arch_x86_64(), name)
        return nr == __NR_SCMP_ERROR || nr < 0 ? nil : nr
    }

    public static func name(of number: Int32) -> String? {
        guard let p = seccomp_syscall_resolve_num_arch(ph_scmp_arch_x86_64(), number) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }
}

/// Syscalls no plugin profile may allow, each with why (the lint of docs/syscall-profiles.md).
/// `unlessWhen`: the rule is acceptable with that argument condition (clone for a thread, kill to
/// itself). The runner's learn mode kills these too, so a draft never contains one.
public enum DangerousSyscalls {
    public struct Entry: Sendable {
        public let name: String
        public let reason: String
        public let unlessWhen: SyscallRule.Condition?
    }

    private static func e(_ names: [String], _ reason: String, unless: SyscallRule.Condition? = nil) -> [Entry] {
        names.map { Entry(name: $0, reason: reason, unlessWhen: unless) }
    }

    public static let entries: [Entry] =
        e(["io_uring_setup", "io_uring_enter", "io_uring_register"],
          "io_uring operations run in the kernel without passing seccomp: the filter would no longer see what the plugin does")
        + e(["socket", "socketpair", "connect", "bind", "listen", "accept", "accept4", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "getsockopt", "setsockopt", "shutdown", "getsockname", "getpeername"],
            "network access is the core's: a socket of its own would bypass grants, the shaper and accounting")
        + e(["execve", "execveat"], "replaces the runner (and its filter's purpose) with another program")
        + e(["fork", "vfork"], "a second process escapes the single-runner supervision and its limits")
        + e(["clone"], "without CLONE_THREAD it makes a new process (or namespaces)", unless: .thread)
        + e(["clone3"], "its flags live in memory seccomp cannot inspect, so CLONE_THREAD cannot be required; answer it with errno 38 (ENOSYS) and glibc falls back to clone")
        + e(["ptrace"], "inspects and controls other processes")
        + e(["process_vm_readv", "process_vm_writev"], "reads or writes another process's memory")
        + e(["kcmp", "pidfd_open", "pidfd_getfd"], "reaches into other processes and their file descriptors")
        + e(["mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr"],
            "changes the file-system view the sandbox was built on")
        + e(["unshare", "setns"], "enters or creates namespaces: new user namespaces are kernel attack surface")
        + e(["bpf"], "loads programs into the kernel")
        + e(["perf_event_open"], "kernel profiling interface with a long history of exploits and side channels")
        + e(["userfaultfd"], "lets a plugin stall the kernel at will, a standard exploit primitive")
        + e(["keyctl", "add_key", "request_key"], "the kernel keyring is shared state outside the sandbox")
        + e(["pidfd_send_signal"], "signals another process through a pidfd")
        + e(["kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"],
            "signals other processes (kill(0, …) reached the launcher's process group)", unless: .selfOnly)
        + e(["init_module", "finit_module", "delete_module"], "loads or removes kernel modules")
        + e(["kexec_load", "kexec_file_load", "reboot"], "replaces or restarts the running kernel")
        + e(["open_by_handle_at", "name_to_handle_at"], "opens files by handle, past the mount namespace (the 'shocker' escape)")
        + e(["personality"], "changes the execution domain (e.g. READ_IMPLIES_EXEC); old exploit enabler")
        + e(["setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "setfsuid", "setfsgid", "capset"],
            "changes credentials; the runner's identity is fixed before the plugin loads")
        + e(["prctl"], "changes process attributes the sandbox relies on (dumpable, ptracer, child subreaper); answer it with an errno")
        + e(["iopl", "ioperm", "modify_ldt"], "hardware I/O ports and segment tricks")
        + e(["acct", "swapon", "swapoff", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "syslog", "quotactl", "lookup_dcookie", "nfsservctl", "vhangup"],
            "host-wide administration")
        + e(["mknod", "mknodat"], "creates device nodes")
        + e(["fanotify_init", "memfd_secret"], "host-wide file monitoring or hidden memory outside accounting")

    public static let byName: [String: Entry] = Dictionary(entries.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })

    /// Why `rule` is dangerous, or nil. Only allowing matters: errno and kill are always safe.
    public static func reason(for rule: SyscallRule) -> String? {
        guard rule.action == .allow, let entry = byName[rule.name] else { return nil }
        if let safe = entry.unlessWhen, rule.when == safe { return nil }
        return entry.reason
    }
}
