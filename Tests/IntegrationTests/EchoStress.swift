import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A load client for echo plugins that checks every byte: many non-blocking connections driven
/// from one thread with poll(2), each writing its own deterministic stream while it reads the echo
/// back, and each reading in its own way — at once, slowly, or in bursts after pauses — with small
/// socket buffers on some so that the host's sends to it come back short. A byte that differs from
/// what was sent at that offset is reported with its offset (reordering shows as a mismatch near a
/// slot boundary); a connection that ends early or stalls past the deadline is reported too.
struct EchoStress {
    enum Reader: CaseIterable { case eager, slow, bursty }

    struct Connection {
        var size: Int
        var reader: Reader
        /// SO_RCVBUF/SO_SNDBUF for this client socket (0 = the kernel's default).
        var socketBuffer: Int32
    }

    /// The expected stream of connection `seed` at offset `i` is `pattern[(i + seed * 7_919) % period]`:
    /// the period is prime, so a chunk delivered at another slot-sized offset never matches.
    static let period = 1_048_573
    static let pattern: [UInt8] = {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        let one = (0..<period).map { _ in
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return UInt8(truncatingIfNeeded: state >> 24)
        }
        return one + one.prefix(65_536)   // pattern[period + j] == pattern[j]: runs wrap seamlessly
    }()

    let port: UInt16
    /// At most this many sockets open at once (the client's own descriptors).
    var concurrency = 200
    var deadline: Duration = .seconds(240)

    /// Runs every connection to the end; returns one line per failed connection (empty: all good)
    /// and the bytes echoed in total.
    func run(_ connections: [Connection]) -> (failures: [String], bytes: Int) {
        raiseDescriptorLimit()
        final class State {
            let index: Int
            let spec: Connection
            var fd: Int32 = -1
            var sent = 0
            var received = 0
            var resumeAt: UInt64 = 0      // a slow or bursty reader does not read before this
            var failure: String?
            init(index: Int, spec: Connection) { self.index = index; self.spec = spec }
            var done: Bool { failure != nil || received == spec.size }
        }
        let states = connections.enumerated().map { State(index: $0.offset, spec: $0.element) }
        var next = 0
        var open: [State] = []
        var failures: [String] = []
        var total = 0
        let end = ContinuousClock.now + deadline
        var scratch = [UInt8](repeating: 0, count: 256 * 1024)
        var rng = SystemRandomNumberGenerator()

        func finish(_ s: State) {
            if s.fd >= 0 { Glibc.close(s.fd); s.fd = -1 }
            if let f = s.failure { failures.append("connection \(s.index) (\(s.spec.size) bytes, \(s.spec.reader), buffer \(s.spec.socketBuffer)): \(f)") }
            total += s.received
        }

        while next < states.count || !open.isEmpty {
            while open.count < concurrency, next < states.count {
                let s = states[next]
                next += 1
                do { s.fd = try Self.connect(port: port, buffer: s.spec.socketBuffer) } catch { s.failure = "\(error)" }
                if s.failure != nil { finish(s) } else { open.append(s) }
            }
            if ContinuousClock.now > end {
                for s in open { s.failure = "stalled: sent \(s.sent), received \(s.received) of \(s.spec.size) at the deadline"; finish(s) }
                open.removeAll()
                break
            }
            let now = Self.monotonicNanoseconds()
            var fds = open.map { s -> pollfd in
                var events: Int16 = 0
                if s.sent < s.spec.size { events |= Int16(POLLOUT) }
                if s.resumeAt <= now { events |= Int16(POLLIN) }
                return pollfd(fd: s.fd, events: events, revents: 0)
            }
            // Sleep until a socket is ready or the next paced reader may read again (at most 5 ms).
            let wake = open.lazy.map(\.resumeAt).filter { $0 > now }.min().map { min($0 - now, 5_000_000) } ?? 5_000_000
            _ = poll(&fds, nfds_t(fds.count), Int32((wake + 999_999) / 1_000_000))
            let after = Self.monotonicNanoseconds()
            for (i, s) in open.enumerated() where fds[i].revents != 0 || s.resumeAt <= after {
                if fds[i].revents & Int16(POLLOUT) != 0, s.sent < s.spec.size {
                    let chunk = min(s.spec.size - s.sent, Int.random(in: 1...65_536, using: &rng))
                    let n = Self.expected(seed: s.index, from: s.sent, count: chunk) { Glibc.send(s.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
                    if n > 0 { s.sent += n } else if n < 0, errno != EAGAIN { s.failure = "send failed after \(s.sent) bytes: errno \(errno)" }
                }
                guard s.failure == nil, s.resumeAt <= after, fds[i].revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 else { continue }
                let want: Int
                switch s.spec.reader {
                case .eager: want = scratch.count
                case .slow: want = Int.random(in: 512...16_384, using: &rng)
                case .bursty: want = scratch.count
                }
                let n = scratch.withUnsafeMutableBytes { recv(s.fd, $0.baseAddress, min(want, s.spec.size - s.received + 1), Int32(MSG_DONTWAIT)) }
                if n == 0 { s.failure = "EOF after \(s.received) of \(s.spec.size) bytes"; continue }
                if n < 0 { if errno != EAGAIN { s.failure = "recv failed after \(s.received) bytes: errno \(errno)" }; continue }
                if s.received + n > s.spec.size { s.failure = "\(s.received + n - s.spec.size) bytes more than were sent"; continue }
                if let bad = Self.firstMismatch(seed: s.index, at: s.received, scratch, count: n) {
                    s.failure = "byte \(bad) differs from what was sent (first wrong offset)"
                    continue
                }
                s.received += n
                switch s.spec.reader {
                case .eager: break
                case .slow: s.resumeAt = after + UInt64.random(in: 0...500_000, using: &rng)            // up to 0.5 ms between small reads
                case .bursty: if Int.random(in: 0..<8, using: &rng) == 0 { s.resumeAt = after + UInt64.random(in: 5_000_000...40_000_000, using: &rng) }
                }
            }
            open.removeAll { s in
                guard s.done else { return false }
                finish(s)
                return true
            }
        }
        return (failures, total)
    }

    /// Calls `body` with the expected bytes [from, from + count) of connection `seed`.
    static func expected<R>(seed: Int, from: Int, count: Int, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        let start = (from + seed &* 7_919) % period
        // The pattern has 64 KiB beyond the period, so any run of up to 64 KiB is contiguous.
        precondition(count <= 65_536)
        return pattern.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[start..<(start + count)])) }
    }

    /// The absolute offset of the first byte of `buffer[0..<count]` that is not what connection
    /// `seed` sent at `at`, or nil.
    static func firstMismatch(seed: Int, at: Int, _ buffer: [UInt8], count: Int) -> Int? {
        var done = 0
        while done < count {
            let chunk = min(65_536, count - done)
            let same = expected(seed: seed, from: at + done, count: chunk) { want in
                buffer.withUnsafeBytes { memcmp($0.baseAddress! + done, want.baseAddress!, chunk) == 0 }
            }
            if !same {
                for j in 0..<chunk {
                    let b = expected(seed: seed, from: at + done + j, count: 1) { $0[0] }
                    if buffer[done + j] != b { return at + done + j }
                }
            }
            done += chunk
        }
        return nil
    }

    static func connect(port: UInt16, buffer: Int32) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
        if buffer > 0 {
            var size = buffer
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { let e = errno; Glibc.close(fd); throw TestFailure("connect to 127.0.0.1:\(port): errno \(e)") }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        return fd
    }

    private func raiseDescriptorLimit() {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        if limit.rlim_cur < limit.rlim_max { limit.rlim_cur = limit.rlim_max; setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) }
    }

    static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
