// The runner's own confinement steps (rlimits, capabilities, no_new_privs, seccomp). Each throws
// a StartupError naming its step; RunnerMain.startUp calls them in DESIGN.md's order.
import CCap
import CPeerhostShim
import CSeccomp
import PeerhostSandbox
#if canImport(Glibc)
import Glibc
#endif

struct ResourceLimits {
    /// Open files: the runner holds fds 0–6, dlopen one more for a moment.
    var nofile: UInt64 = 64
    /// Processes for the runner's uid: clone is denied anyway; this is the second wall.
    var nproc: UInt64 = 4
    /// Address space in bytes; nil = unlimited (the Swift runtime reserves a lot of virtual space).
    var addressSpace: UInt64? = nil
}

enum Confinement {
    // MARK: rlimits

    static func setResourceLimits(_ l: ResourceLimits) throws(StartupError) {
        func set(_ resource: Int32, _ value: UInt64, _ name: String) throws(StartupError) {
            var r = rlimit(rlim_cur: rlim_t(value), rlim_max: rlim_t(value))
            guard setrlimit(__rlimit_resource_t(UInt32(resource)), &r) == 0 else {
                throw StartupError(step: "rlimits", message: "setrlimit(\(name), \(value)): \(errnoText(errno))")
            }
        }
        try set(Int32(RLIMIT_CORE.rawValue), 0, "RLIMIT_CORE")
        try set(Int32(RLIMIT_NOFILE.rawValue), l.nofile, "RLIMIT_NOFILE")
        try set(Int32(__RLIMIT_NPROC.rawValue), l.nproc, "RLIMIT_NPROC")
        if let a = l.addressSpace { try set(Int32(RLIMIT_AS.rawValue), a, "RLIMIT_AS") }
    }

    // MARK: capabilities

    /// Clears the bounding set (needs CAP_SETPCAP, so first), the ambient set, then effective,
    /// permitted and inheritable. The runner is uid 0 of its user namespace, so it starts with a
    /// full set there; afterwards it has none anywhere.
    static func dropCapabilities() throws(StartupError) {
        let last = cap_max_bits()   // number of caps this kernel knows
        for c in 0..<last {
            // EINVAL: a cap the kernel does not have; anything else is a real failure.
            if cap_drop_bound(cap_value_t(c)) != 0 && errno != EINVAL {
                throw StartupError(step: "capabilities", message: "PR_CAPBSET_DROP \(c): \(errnoText(errno))")
            }
        }
        if cap_reset_ambient() != 0 {
            throw StartupError(step: "capabilities", message: "clearing the ambient set: \(errnoText(errno))")
        }
        guard let empty = cap_init() else {
            throw StartupError(step: "capabilities", message: "cap_init: \(errnoText(errno))")
        }
        defer { cap_free(UnsafeMutableRawPointer(empty)) }
        if cap_set_proc(empty) != 0 {
            throw StartupError(step: "capabilities", message: "cap_set_proc(empty): \(errnoText(errno))")
        }
    }

    // MARK: no_new_privs

    static func setNoNewPrivs() throws(StartupError) {
        guard ph_set_no_new_privs() == 0, ph_get_no_new_privs() == 1 else {
            throw StartupError(step: "no_new_privs", message: "PR_SET_NO_NEW_PRIVS: \(errnoText(errno))")
        }
    }

    // MARK: seccomp

    /// The plugin's allowlist (the core's `--syscalls`, PeerhostSandbox's SyscallPolicy): default
    /// kill-process, x86_64 only (any other architecture, x32 included, is killed too).
    /// Learn mode (`--seccomp learn`, `peerhost learn`): the default becomes a user notification
    /// that the core answers with "continue" after recording the syscall, so everything the plugin
    /// calls is seen and still runs — except the dangerous syscalls, which stay killed. The core
    /// takes the listener fd with pidfd_getfd (the runner does nothing with it).
    static func installAllowlist(_ rules: [SyscallRule], learn: Bool) throws(StartupError) {
        guard let ctx = seccomp_init(learn ? SCMP_ACT_NOTIFY : SCMP_ACT_KILL_PROCESS) else {
            throw StartupError(step: "seccomp", message: "seccomp_init failed")
        }
        defer { seccomp_release(ctx) }
        var rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)
        guard rc == 0 else { throw StartupError(step: "seccomp", message: "bad-arch action: \(errnoText(-rc))") }
        let native = seccomp_arch_native()
        guard native == ph_scmp_arch_x86_64() else {
            throw StartupError(step: "seccomp", message: "profiles are for x86_64; this runner is arch 0x\(String(native, radix: 16))")
        }
        // The core lints profiles; checking again here keeps a dangerous allow out even if a
        // caller skipped that (the runner trusts no argument).
        if let bad = rules.first(where: { DangerousSyscalls.reason(for: $0) != nil }) {
            throw StartupError(step: "seccomp", message: "the profile allows dangerous syscall \(bad)")
        }
        let me = UInt64(getpid())
        func add(_ action: UInt32, _ name: String, _ conditions: [scmp_arg_cmp]) throws(StartupError) {
            guard let nr = SyscallNames.number(of: name) else {
                throw StartupError(step: "seccomp", message: "unknown syscall \(name)")
            }
            var c = conditions
            let r = c.withUnsafeMutableBufferPointer { seccomp_rule_add_array(ctx, action, nr, UInt32($0.count), $0.baseAddress) }
            guard r == 0 else { throw StartupError(step: "seccomp", message: "rule for \(name): \(errnoText(-r))") }
        }
        for rule in rules {
            let action: UInt32
            switch rule.action {
            case .allow: action = SCMP_ACT_ALLOW
            case .errno(let e): action = ph_scmp_act_errno(UInt16(e))
            case .kill:
                // Documentation only outside learn mode: the default kills already, and libseccomp
                // refuses a rule whose action equals the default (EACCES).
                if !learn { continue }
                action = SCMP_ACT_KILL_PROCESS
            }
            switch rule.when {
            case nil:
                try add(action, rule.name, [])
            case .selfOnly:
                try add(action, rule.name, [scmp_arg_cmp(arg: 0, op: SCMP_CMP_EQ, datum_a: me, datum_b: 0)])
            case .thread:
                let mask = SyscallPolicy.cloneThread | SyscallPolicy.cloneNamespaceFlags
                try add(action, rule.name, [scmp_arg_cmp(arg: 0, op: SCMP_CMP_MASKED_EQ, datum_a: mask, datum_b: SyscallPolicy.cloneThread)])
            }
        }
        if learn {
            // Dangerous syscalls are killed in learn mode too (a draft can never contain one); the
            // conditional ones only in their unsafe form, the safe form is learned.
            let listed = Set(rules.map(\.name))
            for entry in DangerousSyscalls.entries where !listed.contains(entry.name) {
                guard SyscallNames.number(of: entry.name) != nil else { continue }
                if entry.name == "clone3" {
                    // Its standard answer, as in plugin-threads.toml: glibc then falls back to clone,
                    // which the learner sees (killing here would end every threaded plugin's run).
                    try add(ph_scmp_act_errno(UInt16(ENOSYS)), entry.name, [])
                    continue
                }
                switch entry.unlessWhen {
                case nil:
                    try add(SCMP_ACT_KILL_PROCESS, entry.name, [])
                case .selfOnly:
                    try add(SCMP_ACT_KILL_PROCESS, entry.name, [scmp_arg_cmp(arg: 0, op: SCMP_CMP_NE, datum_a: me, datum_b: 0)])
                case .thread:
                    // Killed when CLONE_THREAD is missing or any namespace flag is set: one rule each
                    // (libseccomp has no masked not-equal).
                    try add(SCMP_ACT_KILL_PROCESS, entry.name, [scmp_arg_cmp(arg: 0, op: SCMP_CMP_MASKED_EQ, datum_a: SyscallPolicy.cloneThread, datum_b: 0)])
                    var bit: UInt64 = 1
                    while bit != 0 {
                        if SyscallPolicy.cloneNamespaceFlags & bit != 0 {
                            try add(SCMP_ACT_KILL_PROCESS, entry.name, [scmp_arg_cmp(arg: 0, op: SCMP_CMP_MASKED_EQ, datum_a: bit, datum_b: bit)])
                        }
                        bit <<= 1
                    }
                }
            }
        }
        rc = seccomp_load(ctx)
        guard rc == 0 else { throw StartupError(step: "seccomp", message: "seccomp_load: \(errnoText(-rc))") }
        // Learn mode: the listener fd stays open (the core copies it with pidfd_getfd).
    }

    /// Stacked after dlopen: what only the loader needed (phase "load") now fails with EACCES.
    /// `always`: install it even with nothing to take away (learn mode: the draft must contain the
    /// seccomp call that stacking makes).
    static func installAfterLoadFilter(_ rules: [SyscallRule], always: Bool = false) throws(StartupError) {
        let loadOnly = rules.filter(\.loadOnly).map(\.name)
        if loadOnly.isEmpty && !always { return }
        guard let ctx = seccomp_init(SCMP_ACT_ALLOW) else {
            throw StartupError(step: "seccomp_after_load", message: "seccomp_init failed")
        }
        defer { seccomp_release(ctx) }
        // no_new_privs is set already, and prctl is not on the allowlist: don't let libseccomp set it.
        var rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)
        guard rc == 0 else { throw StartupError(step: "seccomp_after_load", message: "nnp attribute: \(errnoText(-rc))") }
        for name in loadOnly {
            let nr = seccomp_syscall_resolve_name(name)
            rc = seccomp_rule_add_array(ctx, ph_scmp_act_errno(UInt16(EACCES)), nr, 0, nil)
            guard rc == 0 else { throw StartupError(step: "seccomp_after_load", message: "rule for \(name): \(errnoText(-rc))") }
        }
        rc = seccomp_load(ctx)
        guard rc == 0 else { throw StartupError(step: "seccomp_after_load", message: "seccomp_load: \(errnoText(-rc))") }
    }

    static func errnoText(_ e: Int32) -> String { "\(String(cString: strerror(e))) (errno \(e))" }
}
