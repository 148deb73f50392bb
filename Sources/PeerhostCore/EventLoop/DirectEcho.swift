// DirectEchoServer: TCP echo done directly on the loop, no plugin. It is the "direct io_uring echo"
// baseline the plugin path is measured against (peerhost-bench uring-echo) and the loop's own
// end-to-end test. Data path: multishot recv into a provided buffer → send that same buffer →
// give the buffer back to the group when the send completes. No copy, no allocation per message.

#if canImport(Glibc)
import Glibc
#endif

/// Loop-thread only (like every handler): `@unchecked Sendable` so it can be created before run().
public final class DirectEchoServer: IOHandler, @unchecked Sendable {
    public let loop: IOUringLoop
    public let listener: Int32
    public let address: SocketAddress
    public let group: BufferGroup
    public private(set) var id: HandlerID!
    private let bufferSize: Int
    private let bufferCount: Int
    private let memory: UnsafeMutableRawPointer

    /// Per-connection state, indexed by fd. One send in flight per connection keeps byte order
    /// (two sends on one stream socket may complete out of order if one has to wait).
    final class Conn {
        var queue: [(bid: UInt16, len: Int32, off: Int32)] = []
        var head = 0
        var sending = false
        var recvDone = false
        var closing = false
        init() { queue.reserveCapacity(16) }
    }
    private var conns: [Conn?] = []
    public private(set) var connectionsAccepted = 0
    public private(set) var openConnections = 0
    public private(set) var bytesEchoed = 0

    private static let listenerTag = UInt32.max

    /// Binds and starts accepting. Call on the loop thread or before `loop.run()`.
    public init(loop: IOUringLoop, address: SocketAddress, bufferSize: Int = 16384, bufferCount: Int = 2048,
                groupID: UInt16 = 1) throws {
        self.loop = loop
        self.bufferSize = bufferSize
        self.bufferCount = bufferCount
        var entries: UInt32 = 1
        while entries < UInt32(bufferCount) { entries <<= 1 }
        group = try loop.makeBufferGroup(id: groupID, entries: entries)
        memory = .allocate(byteCount: bufferSize * bufferCount, alignment: 4096)
        for i in 0..<bufferCount {
            group.add(bufferID: UInt16(i), address: memory + i * bufferSize, length: UInt32(bufferSize))
        }
        group.commit()
        listener = try Sockets.tcpListener(address)
        self.address = try Sockets.localAddress(listener)
        id = loop.register(self)
        loop.accept(id, listener: listener, tag: Self.listenerTag)
    }

    deinit { memory.deallocate() }

    public func complete(_ c: IOCompletion) {
        switch c.op {
        case .accept:
            guard c.result >= 0 else { return }
            let fd = c.result
            Sockets.setNoDelay(fd)
            while conns.count <= Int(fd) { conns.append(nil) }
            conns[Int(fd)] = Conn()
            connectionsAccepted += 1
            openConnections += 1
            loop.recv(id, fd: fd, group: group, tag: UInt32(fd))
        case .recv:
            let fd = Int32(c.tag)
            guard let conn = conns[Int(fd)] else { return }
            if let bid = c.bufferID, c.result > 0 {
                conn.queue.append((bid, c.result, 0))
                if !conn.sending { sendNext(fd, conn) }
            }
            if !c.hasMore {
                conn.recvDone = true
                conn.closing = true
                finishIfIdle(fd, conn)
            }
        case .send:
            let fd = Int32(c.tag)
            guard let conn = conns[Int(fd)] else { return }
            conn.sending = false
            if c.result < 0 {
                conn.closing = true
                Glibc.shutdown(fd, Int32(SHUT_RDWR))   // ends the multishot recv with EOF
            } else {
                bytesEchoed += Int(c.result)
                conn.queue[conn.head].off += c.result
                if conn.queue[conn.head].off >= conn.queue[conn.head].len {
                    recycle(conn.queue[conn.head].bid)
                    conn.head += 1
                    if conn.head == conn.queue.count { conn.queue.removeAll(keepingCapacity: true); conn.head = 0 }
                }
                if conn.head < conn.queue.count && !conn.closing { sendNext(fd, conn) }
            }
            finishIfIdle(fd, conn)
        default:
            break
        }
    }

    @inline(__always)
    private func sendNext(_ fd: Int32, _ conn: Conn) {
        let p = conn.queue[conn.head]
        loop.send(id, fd: fd, from: memory + Int(p.bid) * bufferSize + Int(p.off), length: Int(p.len - p.off), tag: UInt32(fd))
        conn.sending = true
    }

    @inline(__always)
    private func recycle(_ bid: UInt16) {
        group.add(bufferID: bid, address: memory + Int(bid) * bufferSize, length: UInt32(bufferSize))
        group.commit()
    }

    private func finishIfIdle(_ fd: Int32, _ conn: Conn) {
        guard conn.closing, conn.recvDone, !conn.sending else { return }
        while conn.head < conn.queue.count { recycle(conn.queue[conn.head].bid); conn.head += 1 }
        conns[Int(fd)] = nil
        openConnections -= 1
        Glibc.close(fd)
    }
}
