// Naming the syscall that killed a runner (DESIGN.md: "A seccomp kill tells the core only SIGSYS").
// The kernel's audit code reports every SECCOMP_RET_KILL_PROCESS as
//   audit: type=1326 audit(…): … pid=HOSTPID comm="peerhost-runner" … sig=31 arch=c000003e syscall=N … code=0x80000000
// With no auditd running, kauditd prints it to the kernel log, which /dev/kmsg serves one record
// per read(). The host opens /dev/kmsg at start (O_NONBLOCK, positioned at the end) and, after a
// runner died of SIGSYS, reads what is new and matches the host pid. Caveats, said in the object:
// the device needs CAP_SYSLOG (or dmesg_restrict=0), and kauditd's printk is rate-limited (10
// records per 5 s across the whole machine), so a burst of kills can leave one unnamed.

import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public final class KernelLog: Sendable {
    /// What the log said about one seccomp kill.
    public enum Lookup: Sendable, Equatable {
        case syscall(name: String, number: Int32)
        /// No record for that pid arrived in time; `why` for the audit object.
        case unknown(why: String)

        public var object: String {
            switch self {
            case .syscall(let name, _): return name
            case .unknown(let why): return "unknown (\(why))"
            }
        }
    }

    private struct State {
        var fd: Int32
        /// host pid → syscall number, from seccomp kill records read so far (kept a while: a record
        /// read while looking for another pid is someone else's answer).
        var kills: [Int32: Int32] = [:]
        var order: [Int32] = []
        var suppressed = false
    }
    private let state: Mutex<State>
    /// Why the log cannot be read, or nil when it can.
    public let unavailable: String?

    public init(path: String = "/dev/kmsg") {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        if fd < 0 {
            unavailable = "kernel log unreadable"
        } else {
            unavailable = nil
            lseek(fd, 0, SEEK_END)   // only records after host start
        }
        state = Mutex(State(fd: fd))
    }

    deinit {
        state.withLock { if $0.fd >= 0 { close($0.fd) } }
    }

    /// The syscall that killed `pid` (a host pid), waiting up to `timeoutMilliseconds` for kauditd
    /// to print it (it does so asynchronously, often after the parent has seen the death).
    /// Blocking: call it off the event loop.
    public func seccompKill(pid: Int32, timeoutMilliseconds: Int = 1500) -> Lookup {
        if let unavailable { return .unknown(why: unavailable) }
        var waited = 0
        while true {
            let done = waited >= timeoutMilliseconds
            let (found, suppressed) = state.withLock { s -> (Int32?, Bool) in
                drain(&s)
                // A record is used once (pids are reused); a suppression notice counts for the
                // lookup that gives up after it.
                let nr = s.kills.removeValue(forKey: pid)
                let suppressed = s.suppressed
                if nr != nil || done { s.suppressed = false }
                return (nr, suppressed)
            }
            if let nr = found { return .syscall(name: SyscallNames.name(of: nr) ?? "syscall \(nr)", number: nr) }
            if done {
                return .unknown(why: suppressed ? "no kernel log record: the kernel's printk rate limit dropped some" : "no kernel log record")
            }
            usleep(20_000)
            waited += 20
        }
    }

    private func drain(_ s: inout State) {
        var buffer = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = read(s.fd, &buffer, buffer.count)
            if n < 0 {
                if errno == EPIPE { continue }   // records were overwritten before we read them
                return                           // EAGAIN: nothing new
            }
            if n == 0 { return }
            let record = String(decoding: buffer[0..<n], as: UTF8.self)
            if record.contains("kauditd_printk_skb:") && record.contains("suppressed") { s.suppressed = true }
            guard let (pid, nr) = Self.parseSeccompKill(record) else { continue }
            s.kills[pid] = nr
            s.order.append(pid)
            if s.order.count > 256 {
                let old = s.order.removeFirst()
                if !s.order.contains(old) { s.kills[old] = nil }
            }
        }
    }

    /// (host pid, syscall number) of a kill record: type=1326 with sig=31, else nil. Public for tests.
    public static func parseSeccompKill(_ record: String) -> (pid: Int32, syscall: Int32)? {
        // "PRI,SEQ,TIME,FLAGS;MESSAGE\n continuation lines"; the message is the first line after ';'.
        guard let semicolon = record.firstIndex(of: ";") else { return nil }
        let message = record[record.index(after: semicolon)...].prefix { $0 != "\n" }
        guard message.contains("type=1326") else { return nil }
        var pid: Int32?, sig: Int32?, nr: Int32?
        for token in message.split(separator: " ") {
            if token.hasPrefix("pid=") { pid = Int32(token.dropFirst(4)) }
            else if token.hasPrefix("sig=") { sig = Int32(token.dropFirst(4)) }
            else if token.hasPrefix("syscall=") { nr = Int32(token.dropFirst(8)) }
        }
        guard let pid, let nr, sig == SIGSYS else { return nil }
        return (pid, nr)
    }
}
