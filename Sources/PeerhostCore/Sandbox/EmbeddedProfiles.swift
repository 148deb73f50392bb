// Generated from sandbox/profiles/plugin-default.toml and plugin-threads.toml; keep them identical
// (a test compares them byte for byte). Compiled in so a host without the source tree still has its
// default profile. Regenerate: paste each file between its delimiters.

public enum EmbeddedProfiles {
    /// How findings and errors name the built-in default profile.
    public static let defaultDisplayName = "<built-in sandbox/profiles/plugin-default.toml>"

    public static let pluginDefault = #"""
# The default syscall profile for plugins: single-threaded, callback-driven (C or Swift through
# PeerhostSDK). A plugin whose manifest names no [sandbox] syscalls runs under this one.
# Schema, lint and learn mode: docs/syscall-profiles.md. This file is also compiled into the host
# (Sources/PeerhostCore/Sandbox/EmbeddedProfiles.swift; a test keeps the two identical).
#
# It is the smallest set on which echo-c and echo-swift run: the integration test
# SyscallProfileTests.theShippedProfilesAreWhatTheirPluginsCall runs both with `peerhost learn`
# through the echo and control-call workload and checks that they call nothing else and that every
# entry below was called, unless it is marked `rare = true` (a path the workload does not reach but
# that must not kill a plugin at an unpredictable time; its reason names the path).
# The filter goes on BEFORE dlopen (plugin constructors never run unfiltered), so it covers the glibc
# loader too; entries with phase = "load" are answered EACCES by a second, stacked filter once the
# plugin is loaded.
#
# Never here, whatever a plugin asks (the lint refuses them; list and reasons in the doc):
# io_uring_setup/enter/register, sockets, execve, fork/vfork/clone without CLONE_THREAD, clone3,
# ptrace, mount family, unshare/setns, bpf, keyctl, kill/tgkill to another process, …

arch = "x86_64"        # the only architecture; a syscall made through any other ABI (x32, i386) is killed
default = "kill"       # anything not listed kills the whole runner (SIGSYS, signal 31)

# ---- I/O on the fds the runner was given (3 region, 4 control socket, 5/6 eventfds) ------------
[[syscall]]
name = "read"
reason = "runner: the ring loop drains the RX eventfd (fd 5); glibc loader reads the ELF header in dlopen"

[[syscall]]
name = "write"
reason = "runner: the ring loop rings the TX eventfd (fd 6); start-up errors go to stderr (fd 2)"

[[syscall]]
name = "sendto"
reason = "runner: control channel frames on fd 4 (send with MSG_NOSIGNAL)"

[[syscall]]
name = "recvfrom"
reason = "runner: control channel frames on fd 4 (recv with MSG_DONTWAIT)"

[[syscall]]
name = "ppoll"
reason = "runner: the ring loop sleeps on the RX eventfd and fd 4 (ph_poll2)"

[[syscall]]
name = "poll"
rare = true
reason = "runner: the control channel waits for fd 4 to drain when the core's socket buffer is full"

[[syscall]]
name = "close"
reason = "glibc loader: closes the library fd after mapping it"

# ---- loading the plugin (dlopen runs after the filter is in) ---------------------------------
[[syscall]]
name = "openat"
phase = "load"
reason = "glibc loader: opens the plugin library and its DT_NEEDED libraries; EACCES once loaded (the plugin's files come from the core's broker)"

[[syscall]]
name = "newfstatat"
reason = "glibc loader: fstat of the library (glibc 2.36 fstat is newfstatat with AT_EMPTY_PATH); Foundation/ICU probe their data files on first JSON use"

[[syscall]]
name = "pread64"
phase = "load"
rare = true
reason = "glibc loader: reads program headers or notes that lie beyond the first 832 bytes of a library"

# ---- memory ------------------------------------------------------------------------------------
[[syscall]]
name = "mmap"
reason = "glibc loader maps library segments; malloc of large blocks; libffi closures"

[[syscall]]
name = "mprotect"
reason = "glibc loader: RELRO and segment protections after relocation"

[[syscall]]
name = "brk"
rare = true
reason = "malloc grows and trims the heap; whether a run needs it after the filter depends on how much heap the start-up left free (learn runs see it only sometimes)"

[[syscall]]
name = "munmap"
rare = true
reason = "free() of a malloc block of 128 KiB or more (big control frames, big Swift arrays)"

[[syscall]]
name = "mremap"
rare = true
reason = "realloc() of a malloc block of 128 KiB or more grows or shrinks its mapping in place (ordinary C under load: a growing queue or buffer)"

# ---- runtime support -----------------------------------------------------------------------------
[[syscall]]
name = "futex"
reason = "Swift runtime swift_once and metadata locks, glibc loader lock (uncontended wake, one thread)"

[[syscall]]
name = "clock_gettime"
rare = true
reason = "runner: ring loop spin budget; normally answered by the vDSO, a syscall on clocksources without vDSO support"

[[syscall]]
name = "getrandom"
rare = true
reason = "Swift plugins: SystemRandomNumberGenerator (Int.random, hashing seeds)"

# ---- abort(): a crashing plugin should die of SIGABRT, not look like a sandbox violation ---------
[[syscall]]
name = "writev"
rare = true
reason = "glibc's fatal messages (\"free(): invalid pointer\", a failed assert, stack smashing) go to stderr in one writev before abort(): without it the crash reads as a sandbox kill"

[[syscall]]
name = "rt_sigprocmask"
rare = true
reason = "glibc abort()/raise() block signals around tgkill"

[[syscall]]
name = "getpid"
rare = true
reason = "glibc raise() finds its own tgid"

[[syscall]]
name = "gettid"
rare = true
reason = "glibc raise() finds its own tid"

[[syscall]]
name = "tgkill"
when = "self"
rare = true
reason = "glibc raise(SIGABRT) in abort(): only to the runner itself"

# ---- filter and exit -------------------------------------------------------------------------------
[[syscall]]
name = "seccomp"
phase = "load"
reason = "runner: stacks the after-load filter once dlopen is done (a stacked filter only tightens); EACCES afterwards"

[[syscall]]
name = "exit_group"
reason = "runner: exit(0) after STOP, exit(1) after a fail frame"

"""#

    public static let pluginThreads = #"""
# The syscall profile for plugins that start threads of their own (pthread_create, Dispatch-free
# C or Swift threads). Declare it in the manifest: [sandbox] syscalls = "<path to this file>";
# `peerhost audit` shows which profile a plugin runs under. Schema, lint and learn mode:
# docs/syscall-profiles.md. Compiled into the host too (EmbeddedProfiles.swift; a test compares).
#
# It is plugin-default.toml plus what glibc's pthread_create/pthread_exit/pthread_join need, found
# with `peerhost learn` on Tests/Plugins/threaded (a C plugin whose worker thread does the echo
# work): rt_sigaction, clone, set_robust_list, rseq, madvise and exit were seen, clone3 is answered
# by the learn filter itself, sched_yield is a rare path. clone is allowed only with CLONE_THREAD (a thread, never a process or a namespace); clone3
# cannot be inspected (its flags are in memory), so it answers ENOSYS and glibc falls back to clone.
# Swift concurrency and Dispatch need more than this (NOTES-swift-linux.md); they are not covered.

arch = "x86_64"        # the only architecture; a syscall made through any other ABI (x32, i386) is killed
default = "kill"       # anything not listed kills the whole runner (SIGSYS, signal 31)

# ---- I/O on the fds the runner was given (3 region, 4 control socket, 5/6 eventfds) ------------
[[syscall]]
name = "read"
reason = "runner: the ring loop drains the RX eventfd (fd 5); glibc loader reads the ELF header in dlopen"

[[syscall]]
name = "write"
reason = "runner: the ring loop rings the TX eventfd (fd 6); start-up errors go to stderr (fd 2)"

[[syscall]]
name = "sendto"
reason = "runner: control channel frames on fd 4 (send with MSG_NOSIGNAL)"

[[syscall]]
name = "recvfrom"
reason = "runner: control channel frames on fd 4 (recv with MSG_DONTWAIT)"

[[syscall]]
name = "ppoll"
reason = "runner: the ring loop sleeps on the RX eventfd and fd 4 (ph_poll2)"

[[syscall]]
name = "poll"
rare = true
reason = "runner: the control channel waits for fd 4 to drain when the core's socket buffer is full"

[[syscall]]
name = "close"
reason = "glibc loader: closes the library fd after mapping it"

# ---- loading the plugin (dlopen runs after the filter is in) ---------------------------------
[[syscall]]
name = "openat"
phase = "load"
reason = "glibc loader: opens the plugin library and its DT_NEEDED libraries; EACCES once loaded (the plugin's files come from the core's broker)"

[[syscall]]
name = "newfstatat"
reason = "glibc loader: fstat of the library (glibc 2.36 fstat is newfstatat with AT_EMPTY_PATH); Foundation/ICU probe their data files on first JSON use"

[[syscall]]
name = "pread64"
phase = "load"
rare = true
reason = "glibc loader: reads program headers or notes that lie beyond the first 832 bytes of a library"

# ---- memory ------------------------------------------------------------------------------------
[[syscall]]
name = "mmap"
reason = "glibc loader maps library segments; malloc of large blocks; libffi closures"

[[syscall]]
name = "mprotect"
reason = "glibc loader: RELRO and segment protections after relocation"

[[syscall]]
name = "brk"
rare = true
reason = "malloc grows and trims the heap; whether a run needs it after the filter depends on how much heap the start-up left free (learn runs see it only sometimes)"

[[syscall]]
name = "munmap"
rare = true
reason = "free() of a malloc block of 128 KiB or more (big control frames, big Swift arrays)"

[[syscall]]
name = "mremap"
rare = true
reason = "realloc() of a malloc block of 128 KiB or more grows or shrinks its mapping in place (ordinary C under load: a growing queue or buffer)"

# ---- runtime support -----------------------------------------------------------------------------
[[syscall]]
name = "futex"
reason = "Swift runtime swift_once and metadata locks, glibc loader lock (uncontended wake, one thread)"

[[syscall]]
name = "clock_gettime"
rare = true
reason = "runner: ring loop spin budget; normally answered by the vDSO, a syscall on clocksources without vDSO support"

[[syscall]]
name = "getrandom"
rare = true
reason = "Swift plugins: SystemRandomNumberGenerator (Int.random, hashing seeds)"

# ---- abort(): a crashing plugin should die of SIGABRT, not look like a sandbox violation ---------
[[syscall]]
name = "writev"
rare = true
reason = "glibc's fatal messages (\"free(): invalid pointer\", a failed assert, stack smashing) go to stderr in one writev before abort(): without it the crash reads as a sandbox kill"

[[syscall]]
name = "rt_sigprocmask"
rare = true
reason = "glibc abort()/raise() block signals around tgkill"

[[syscall]]
name = "getpid"
rare = true
reason = "glibc raise() finds its own tgid"

[[syscall]]
name = "gettid"
rare = true
reason = "glibc raise() finds its own tid"

[[syscall]]
name = "tgkill"
when = "self"
rare = true
reason = "glibc raise(SIGABRT) in abort(): only to the runner itself"

# ---- filter and exit -------------------------------------------------------------------------------
[[syscall]]
name = "seccomp"
phase = "load"
reason = "runner: stacks the after-load filter once dlopen is done (a stacked filter only tightens); EACCES afterwards"

[[syscall]]
name = "exit_group"
reason = "runner: exit(0) after STOP, exit(1) after a fail frame"

# ---- threads (pthread_create, thread exit, join) ----------------------------------------------
[[syscall]]
name = "clone"
when = "thread"
reason = "glibc pthread_create: CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|…; any clone without CLONE_THREAD (a process) or with a CLONE_NEW* flag is killed"

[[syscall]]
name = "clone3"
action = "errno"
errno = 38
reason = "glibc 2.34+ pthread_create tries clone3 first; ENOSYS makes it fall back to clone, whose flags the filter can check"

[[syscall]]
name = "set_robust_list"
reason = "glibc: every new thread registers its robust-futex list"

[[syscall]]
name = "rseq"
reason = "glibc 2.35+: every new thread registers restartable sequences"

[[syscall]]
name = "rt_sigaction"
reason = "glibc pthread_create, first thread only (late_init): installs the SIGSETXID handler setuid() needs across threads"

[[syscall]]
name = "madvise"
reason = "glibc thread exit: MADV_DONTNEED on the unused part of the thread's stack"

[[syscall]]
name = "exit"
reason = "a thread's own exit (exit_group ends the whole runner)"

[[syscall]]
name = "sched_yield"
rare = true
reason = "glibc and Swift runtime spin-then-yield on contended locks between threads"

"""#
}
