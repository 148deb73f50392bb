import Foundation
import Synchronization
import Testing
@testable import PeerhostCore
#if canImport(Glibc)
import Glibc
#endif

/// IOUringLoop.stopRecv, the shaper's pause: a multishot receive stops without losing data (what
/// arrives meanwhile waits in the socket) and without touching other operations; re-armed, it
/// delivers everything in order.
@Suite("Event loop: stopRecv")
struct EventLoopStopRecvTests {
    final class Receiver: IOHandler, @unchecked Sendable {
        let loop: IOUringLoop
        let group: BufferGroup
        let memory: UnsafeMutableRawPointer
        var id: HandlerID!
        let received = Mutex<[UInt8]>([])
        let finals = Mutex(0)
        init(loop: IOUringLoop) throws {
            self.loop = loop
            group = try loop.makeBufferGroup(id: 9, entries: 64)
            memory = .allocate(byteCount: 64 * 16, alignment: 64)
            for b in 0..<64 { group.add(bufferID: UInt16(b), address: memory + b * 16, length: 16) }
            group.commit()
        }
        func complete(_ c: IOCompletion) {
            guard c.op == .recv else { return }
            if let bid = c.bufferID, c.result > 0 {
                let bytes = UnsafeRawBufferPointer(start: memory + Int(bid) * 16, count: Int(c.result))
                received.withLock { $0.append(contentsOf: bytes) }
                group.add(bufferID: bid, address: memory + Int(bid) * 16, length: 16)
                group.commit()
            }
            if !c.hasMore { finals.withLock { $0 += 1 } }
        }
    }

    @Test("a stopped receive ends once, is not re-armed, and loses nothing")
    func stopAndResume() throws {
        let runner = try LoopRunner()
        let r = try Receiver(loop: runner.loop)
        r.id = runner.loop.register(r)
        let listener = try Sockets.tcpListener(SocketAddress(ip: "127.0.0.1", port: 0))
        defer { Glibc.close(listener) }
        let port = try Sockets.localAddress(listener).port
        runner.start()
        defer { runner.stop() }
        let client = try dialLoopback(port)
        defer { Glibc.close(client) }
        let server = Glibc.accept(listener, nil, nil)
        #expect(server >= 0)
        defer { Glibc.close(server) }

        let payload = (0..<600).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        _ = runner.onLoop { r.loop.recv(r.id, fd: server, group: r.group, tag: 3) }
        #expect(writeAll(client, Array(payload[0..<100])))
        #expect(waitUntil { r.received.withLock { $0.count } == 100 })

        _ = runner.onLoop { r.loop.stopRecv(r.id, tag: 3) }
        #expect(waitUntil { r.finals.withLock { $0 } == 1 })
        #expect(waitUntil { runner.onLoop { r.loop.outstandingOperations(r.id) } == 0 })
        #expect(writeAll(client, Array(payload[100...])))
        usleep(100_000)
        #expect(r.received.withLock { $0.count } == 100)        // paused: the rest waits in the socket
        #expect(r.finals.withLock { $0 } == 1)                  // and nothing re-armed it

        _ = runner.onLoop { r.loop.recv(r.id, fd: server, group: r.group, tag: 3) }
        #expect(waitUntil { r.received.withLock { $0.count } == payload.count })
        #expect(r.received.withLock { $0 } == payload)
        #expect(runner.onLoop { r.loop.outstandingOperations(r.id) } == 1)   // armed again
    }
}
