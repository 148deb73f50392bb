// Learn mode, the core's half (docs/syscall-profiles.md). A runner started with `--seccomp learn`
// installs its filter with a user-notification default: every syscall not on its (empty) allowlist
// stops and waits for an answer on the filter's listener fd, except the dangerous ones, which the
// filter still kills. This learner copies that fd out of the runner (pidfd_getfd; the runner never
// hands it over, so nothing it does between filter and dlopen has to be allowed to do so), records
// each notified syscall and answers SECCOMP_USER_NOTIF_FLAG_CONTINUE: the call runs as if unfiltered.
//
// Why user notification rather than SECCOMP_RET_LOG and the kernel log: kauditd's printk is
// rate-limited machine-wide (10 records per 5 s), so a logged run loses syscalls (the ring loop's
// ppoll alone eats the budget) and would have to be repeated until nothing new appears; a
// notification is never dropped, belongs to one listener (no other process's records), and needs
// no readable /dev/kmsg. The cost, one round trip to the core per unlisted syscall, only matters in
// learn mode.

import CSeccomp
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public final class SeccompLearner: Sendable {
    public struct Count: Sendable, Equatable {
        public var beforeLoad = 0
        public var afterLoad = 0
    }

    private struct State {
        var counts: [Int32: Count] = [:]
        var loaded = false
        var errors: [String] = []
    }
    private let state = Mutex(State())

    public init() {}

    /// Syscall name → calls before and after the plugin finished loading (the runner's hello).
    public var observed: [String: Count] {
        state.withLock { s in
            Dictionary(s.counts.map { (SyscallNames.name(of: $0.key) ?? "syscall_\($0.key)", $0.value) },
                       uniquingKeysWith: { a, _ in a })
        }
    }

    public var errors: [String] { state.withLock { $0.errors } }

    static let seccompNumber = SyscallNames.number(of: "seccomp") ?? 317

    /// A new runner incarnation: counts keep adding up, the phase starts over.
    public func markLoading() { state.withLock { $0.loaded = false } }

    /// Serves one runner until its filter has no process left. Runs on a thread of its own.
    public func attach(pid: Int32, pidfd: Int32) {
        detachThread { [self] in serve(pid: pid, pidfd: pidfd) }
    }

    private func serve(pid: Int32, pidfd: Int32) {
        // The listener fd appears once the runner loaded its filter; until we answer, the runner
        // simply waits in its first unlisted syscall.
        var listener: Int32 = -1
        for _ in 0..<500 where listener < 0 {
            if let fd = Self.findListener(pid: pid) { listener = ph_pidfd_getfd(pidfd, fd) }
            if listener < 0 { usleep(10_000) }
        }
        guard listener >= 0 else {
            state.withLock { $0.errors.append("runner \(pid): no seccomp listener fd found (pidfd_getfd: \(String(cString: strerror(errno))))") }
            return
        }
        defer { close(listener) }
        var req: UnsafeMutablePointer<seccomp_notif>?
        var resp: UnsafeMutablePointer<seccomp_notif_resp>?
        guard seccomp_notify_alloc(&req, &resp) == 0, let req, let resp else { return }
        defer { seccomp_notify_free(req, resp) }
        while true {
            var p = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            let r = poll(&p, 1, 1000)
            if r < 0 && errno == EINTR { continue }
            if r < 0 || p.revents & Int16(POLLHUP | POLLERR | POLLNVAL) != 0 && p.revents & Int16(POLLIN) == 0 { return }
            if r == 0 {
                // No HUP on older kernels: stop when the runner is gone.
                if kill(pid, 0) != 0 && errno == ESRCH { return }
                continue
            }
            memset(req, 0, MemoryLayout<seccomp_notif>.size)
            guard seccomp_notify_receive(listener, req) == 0 else { continue }   // ENOENT: the caller died meanwhile
            let nr = req.pointee.data.nr
            state.withLock { s in
                var c = s.counts[nr] ?? Count()
                if s.loaded { c.afterLoad += 1 } else { c.beforeLoad += 1 }
                s.counts[nr] = c
                // The runner's last load step stacks its after-load filter: its seccomp call marks
                // the end of the load phase, exactly, in the runner's own order of calls (the core's
                // view of the hello frame comes later, when start() may already be running).
                if nr == Self.seccompNumber { s.loaded = true }
            }
            ph_notif_continue(req, resp)
            _ = seccomp_notify_respond(listener, resp)
        }
    }

    /// The runner's fd whose link reads "anon_inode:seccomp notify".
    static func findListener(pid: Int32) -> Int32? {
        guard let dir = opendir("/proc/\(pid)/fd") else { return nil }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            guard let fd = Int32(name) else { continue }
            var buf = [CChar](repeating: 0, count: 128)
            let n = readlink("/proc/\(pid)/fd/\(name)", &buf, buf.count - 1)
            if n > 0, String(cString: buf).contains("seccomp notify") { return fd }
        }
        return nil
    }
}

/// A detached pthread (Foundation is not a dependency of PeerhostSandbox).
func detachThread(_ body: @escaping @Sendable () -> Void) {
    final class Box: @unchecked Sendable { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { arg in
        let box = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
        box.body()
        return nil
    }, box)
    if rc == 0 { pthread_detach(thread) } else { Unmanaged<Box>.fromOpaque(box).release() }
}
