// The runner's seccomp allowlist (issue 4, DESIGN.md "The runner's start-up sequence"): every
// system call a runner may make, x86_64 only, with who needs it. Anything not listed kills the
// whole process (SECCOMP_RET_KILL_PROCESS → the core sees "signal 31"). It is installed BEFORE
// dlopen, so it must also cover the glibc loader (dlopen of the plugin and its DT_NEEDED
// libraries) and the plugin's constructors; a second, stacked filter (`afterLoad`) then takes
// file opening away once the library is in.
//
// Found empirically: strace -f of every runner the whole test suite starts (the runner replaced
// by a wrapper that runs it under strace, filter on), counting the calls made after the filter
// was loaded. 15 calls were seen (marked "seen"); the few others are rare paths that cannot be
// left to kill a plugin at an unpredictable time (marked "rare path", each with the path).
// Never on this list, whatever a plugin asks: io_uring_setup/enter/register (io_uring operations
// bypass seccomp), socket/connect/bind (the core does all networking), execve/execveat,
// fork/vfork/clone/clone3 (the runner is single-threaded), ptrace, mount/umount2/pivot_root/
// unshare/setns, bpf, keyctl/add_key/request_key, perf_event_open, userfaultfd, process_vm_*.

/// One allowlist entry: the syscall's name (resolved by libseccomp for x86_64) and who needs it.
struct AllowedSyscall {
    let name: String
    let neededBy: String
    /// Allowed only when argument 0 equals the runner's own pid (kill/tgkill/tkill).
    var onlyOnSelf = false
}

enum SyscallAllowlist {
    static let entries: [AllowedSyscall] = [
        // ---- I/O on the fds the runner was given (3 region, 4 control, 5/6 eventfds) ----------
        .init(name: "read", neededBy: "seen: ring loop drains the RX eventfd (fd 5); glibc loader reads the ELF header in dlopen"),
        .init(name: "write", neededBy: "seen: ring loop rings the TX eventfd (fd 6); start-up errors to stderr (fd 2)"),
        .init(name: "sendto", neededBy: "seen: control channel, send(MSG_NOSIGNAL) of frames on fd 4"),
        .init(name: "recvfrom", neededBy: "seen: control channel, recv(MSG_DONTWAIT) of frames on fd 4"),
        .init(name: "ppoll", neededBy: "seen: ring loop sleeps on the RX eventfd and fd 4 (ph_poll2)"),
        .init(name: "poll", neededBy: "rare path: control channel waits for fd 4 to drain when the core's socket buffer is full"),
        .init(name: "close", neededBy: "seen: glibc loader closes the library fd after mapping it"),
        .init(name: "ftruncate", neededBy: "seen: hostile-ring test; ftruncate of the sealed region must fail with EPERM (the seal refuses it, not the filter)"),

        // ---- loading the plugin (dlopen after the filter) ---------------------------------------
        .init(name: "openat", neededBy: "seen: glibc loader opens the plugin library (and DT_NEEDED libraries); answered EACCES after load by the stacked filter"),
        .init(name: "newfstatat", neededBy: "seen: glibc loader fstat of the library (glibc 2.36 fstat is newfstatat AT_EMPTY_PATH); Foundation/ICU probes its data files on first JSON use"),
        .init(name: "pread64", neededBy: "rare path: glibc loader reads program headers/notes that lie beyond the first 832 bytes of a library"),

        // ---- memory --------------------------------------------------------------------------------
        .init(name: "mmap", neededBy: "seen: glibc loader maps library segments; malloc of large blocks; libffi"),
        .init(name: "mprotect", neededBy: "seen: glibc loader applies RELRO and segment protections after relocation"),
        .init(name: "brk", neededBy: "seen: malloc grows and trims the heap"),
        .init(name: "munmap", neededBy: "rare path: free() of a malloc block of 128 KiB or more (big control frames, big Swift arrays)"),

        // ---- runtime support ----------------------------------------------------------------------
        .init(name: "futex", neededBy: "seen: Swift runtime swift_once/metadata locks and glibc loader lock (uncontended wake, single thread)"),
        .init(name: "clock_gettime", neededBy: "rare path: ring loop spin budget; normally the vDSO, a syscall on clocksources without vDSO support"),
        .init(name: "getrandom", neededBy: "rare path: Swift SystemRandomNumberGenerator (Int.random, hashing seeds) in Swift plugins"),

        // ---- abort(): a crashing plugin should die of SIGABRT, not look like a violation ----------
        .init(name: "rt_sigprocmask", neededBy: "rare path: glibc abort()/raise() block signals around tgkill"),
        .init(name: "getpid", neededBy: "rare path: glibc raise() finds its own tgid"),
        .init(name: "gettid", neededBy: "rare path: glibc raise() finds its own tid"),
        .init(name: "tgkill", neededBy: "rare path: glibc raise(SIGABRT) in abort() — only to the runner itself", onlyOnSelf: true),

        // ---- filter and exit ------------------------------------------------------------------------
        .init(name: "seccomp", neededBy: "seen: runner stacks the after-load filter (a stacked filter can only tighten, never loosen)"),
        .init(name: "exit_group", neededBy: "seen: exit(0) after STOP, exit(1) after a fail frame"),
    ]

    /// Names that must never be added (a lint for this file; the tests check it).
    static let forbidden: Set<String> = [
        "io_uring_setup", "io_uring_enter", "io_uring_register", "socket", "socketpair", "connect",
        "bind", "listen", "accept", "accept4", "execve", "execveat", "fork", "vfork", "clone", "clone3",
        "ptrace", "mount", "umount2", "pivot_root", "unshare", "setns", "bpf", "keyctl", "add_key",
        "request_key", "kill", "tkill", "perf_event_open", "userfaultfd", "process_vm_readv", "process_vm_writev",
        "init_module", "finit_module", "kexec_load", "chroot", "open_by_handle_at",
    ]

    /// After dlopen: file opening is no longer needed by anyone; a plugin's files go through the
    /// core's broker. Answered with EACCES (not a kill) so a probing plugin learns "no" and the
    /// test can tell this layer from the first filter.
    static let deniedAfterLoad: [String] = ["openat"]
}
