import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// fd 4: u32 little-endian length + one JSON object per frame (Contract 3). Reads never block
/// (MSG_DONTWAIT into a buffer, frames cut out whole); writes block until the frame is out, which is
/// fine: the core reads its end from the event loop.
final class ControlChannel {
    let fd: Int32
    private var inbox: [UInt8] = []
    /// Kept between reads: the runner polls this socket every millisecond while busy, and a fresh
    /// zeroed 64 KiB array per poll showed in the profile of a BitTorrent download.
    private var chunk = [UInt8](repeating: 0, count: 65536)
    private(set) var closed = false
    static let maxFrame = 64 << 20

    init(fd: Int32) { self.fd = fd }

    struct ChannelError: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }

    func writeFrame(_ object: [String: Any]) throws {
        let body = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        var frame = [UInt8]()
        frame.reserveCapacity(body.count + 4)
        let n = UInt32(body.count)
        frame += [UInt8(n & 0xff), UInt8((n >> 8) & 0xff), UInt8((n >> 16) & 0xff), UInt8(n >> 24)]
        frame += body
        var off = 0
        while off < frame.count {
            let w = frame.withUnsafeBytes { send(fd, $0.baseAddress! + off, frame.count - off, Int32(MSG_NOSIGNAL)) }
            if w < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN { _ = ph_wait_writable(fd); continue }
                throw ChannelError(message: "control socket write: errno \(errno)")
            }
            off += w
        }
    }

    /// Reads what is available now; returns whole frames (raw JSON bytes). Sets `closed` on EOF.
    func readAvailable() throws -> [[UInt8]] {
        while true {
            let r = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if r > 0 { inbox += chunk[0..<r]; continue }
            if r == 0 { closed = true; break }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { break }
            throw ChannelError(message: "control socket read: errno \(errno)")
        }
        var frames: [[UInt8]] = []
        var start = 0
        while inbox.count - start >= 4 {
            let n = Int(inbox[start]) | Int(inbox[start + 1]) << 8 | Int(inbox[start + 2]) << 16 | Int(inbox[start + 3]) << 24
            guard n <= ControlChannel.maxFrame else { throw ChannelError(message: "control frame of \(n) bytes is too large") }
            guard inbox.count - start - 4 >= n else { break }
            frames.append(Array(inbox[(start + 4)..<(start + 4 + n)]))
            start += 4 + n
        }
        if start > 0 { inbox.removeFirst(start) }
        return frames
    }
}

/// Blocks until fd is writable (used only when the core's socket buffer is full).
func ph_wait_writable(_ fd: Int32) -> Int32 {
    var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
    return poll(&p, 1, -1)
}
