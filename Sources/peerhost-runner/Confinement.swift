// The runner's own confinement steps (rlimits, capabilities, no_new_privs, seccomp). Each throws
// a StartupError naming its step; RunnerMain.startUp calls them in DESIGN.md's order.
import CCap
import CPeerhostShim
import CSeccomp
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

    /// The allowlist of SyscallAllowlist.swift: default kill-process, x86_64 only (any other
    /// architecture, x32 included, is killed too).
    static func installAllowlist() throws(StartupError) {
        guard let ctx = seccomp_init(SCMP_ACT_KILL_PROCESS) else {
            throw StartupError(step: "seccomp", message: "seccomp_init failed")
        }
        defer { seccomp_release(ctx) }
        var rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)
        guard rc == 0 else { throw StartupError(step: "seccomp", message: "bad-arch action: \(errnoText(-rc))") }
        let native = seccomp_arch_native()
        guard native == ph_scmp_arch_x86_64() else {
            throw StartupError(step: "seccomp", message: "the allowlist is for x86_64; this runner is arch 0x\(String(native, radix: 16))")
        }
        // Lint: a forbidden syscall on the list is a build mistake; refuse to run with it.
        if let bad = SyscallAllowlist.entries.first(where: { SyscallAllowlist.forbidden.contains($0.name) }) {
            throw StartupError(step: "seccomp", message: "the allowlist contains forbidden syscall \(bad.name)")
        }
        let me = UInt64(getpid())
        for e in SyscallAllowlist.entries {
            let nr = seccomp_syscall_resolve_name(e.name)
            guard nr != __NR_SCMP_ERROR else {
                throw StartupError(step: "seccomp", message: "unknown syscall \(e.name) in the allowlist")
            }
            if e.onlyOnSelf {
                var cmp = scmp_arg_cmp(arg: 0, op: SCMP_CMP_EQ, datum_a: me, datum_b: 0)
                rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, 1, &cmp)
            } else {
                rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, 0, nil)
            }
            guard rc == 0 else { throw StartupError(step: "seccomp", message: "rule for \(e.name): \(errnoText(-rc))") }
        }
        rc = seccomp_load(ctx)
        guard rc == 0 else { throw StartupError(step: "seccomp", message: "seccomp_load: \(errnoText(-rc))") }
    }

    /// Stacked after dlopen: what only the loader needed now fails with EACCES.
    static func installAfterLoadFilter() throws(StartupError) {
        guard let ctx = seccomp_init(SCMP_ACT_ALLOW) else {
            throw StartupError(step: "seccomp_after_load", message: "seccomp_init failed")
        }
        defer { seccomp_release(ctx) }
        // no_new_privs is set already, and prctl is not on the allowlist: don't let libseccomp set it.
        var rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)
        guard rc == 0 else { throw StartupError(step: "seccomp_after_load", message: "nnp attribute: \(errnoText(-rc))") }
        for name in SyscallAllowlist.deniedAfterLoad {
            let nr = seccomp_syscall_resolve_name(name)
            rc = seccomp_rule_add_array(ctx, ph_scmp_act_errno(UInt16(EACCES)), nr, 0, nil)
            guard rc == 0 else { throw StartupError(step: "seccomp_after_load", message: "rule for \(name): \(errnoText(-rc))") }
        }
        rc = seccomp_load(ctx)
        guard rc == 0 else { throw StartupError(step: "seccomp_after_load", message: "seccomp_load: \(errnoText(-rc))") }
    }

    static func errnoText(_ e: Int32) -> String { "\(String(cString: strerror(e))) (errno \(e))" }
}
