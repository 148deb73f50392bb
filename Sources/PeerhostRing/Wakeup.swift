import CPeerhostShim
#if canImport(Glibc)
import Glibc
#endif

/// An eventfd used as a doorbell for one ring direction. The core's ends are non-blocking: EAGAIN on
/// write means the counter is saturated, i.e. "already signalled", which is all a doorbell needs.
public struct Wakeup: Sendable {
    public let fd: Int32

    public init(fd: Int32) { self.fd = fd }

    public static func make(nonBlocking: Bool) throws(RingError) -> Wakeup {
        let fd = ph_eventfd(0, nonBlocking ? 1 : 0)
        guard fd >= 0 else { throw .system(call: "eventfd", errno: errno) }
        return Wakeup(fd: fd)
    }

    /// Rings the bell. Returns false only for a real error (EBADF...), never for a full counter.
    @discardableResult
    public func signal() -> Bool { ph_eventfd_signal(fd) == 0 }

    /// Reads and resets the counter; 0 when nothing was pending (non-blocking fd).
    public func drain() -> UInt64 {
        var value: UInt64 = 0
        _ = ph_eventfd_drain(fd, &value)
        return value
    }

    public func close() { _ = Glibc.close(fd) }
}
