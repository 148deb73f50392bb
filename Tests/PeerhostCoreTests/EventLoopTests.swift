// Tests of the io_uring event loop over real loopback sockets and a temp directory (127.0.0.1 only;
// every wait is bounded).

import Foundation
import Synchronization
import Testing
import CPeerhostShim
@testable import PeerhostCore
#if canImport(Glibc)
import Glibc
#endif

@Suite("EventLoop", .serialized)
struct EventLoopTests {

    @Test("echo through the loop: many concurrent clients get their bytes back unchanged")
    func echoManyClients() throws {
        let runner = try LoopRunner()
        // Few, small buffers: the run also exercises buffer recycling and the ENOBUFS re-arm path.
        let server = try DirectEchoServer(loop: runner.loop, address: SocketAddress(ip: "127.0.0.1", port: 0),
                                          bufferSize: 2048, bufferCount: 64)
        let port = server.address.port
        runner.start()
        defer { runner.stop() }

        let clients = 32
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: clients) { i in
            do {
                let fd = try dialLoopback(port)
                defer { Glibc.close(fd) }
                var rng = SystemRandomNumberGenerator()
                for round in 0..<20 {
                    let n = 1 + Int.random(in: 0..<12000, using: &rng)
                    let msg = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i &+ round) }
                    guard writeAll(fd, msg), let back = readExactly(fd, n) else {
                        failures.withLock { $0.append("client \(i) round \(round): io failed (errno \(errno))") }
                        return
                    }
                    if back != msg { failures.withLock { $0.append("client \(i) round \(round): bytes differ") } }
                }
            } catch {
                failures.withLock { $0.append("client \(i): \(error)") }
            }
        }
        #expect(failures.withLock { $0 } == [])
        #expect(waitUntil { runner.onLoop { server.openConnections } == 0 })
        #expect(runner.onLoop { server.connectionsAccepted } == clients)
    }

    @Test("ENOBUFS: a 2-buffer group runs dry, the receive is re-armed once buffers return, all data arrives")
    func enobufsRearm() throws {
        final class Holder: IOHandler, @unchecked Sendable {
            let loop: IOUringLoop
            let group: BufferGroup
            let memory: UnsafeMutableRawPointer
            var id: HandlerID!
            var held: [UInt16] = []
            var recycleAtOnce = false
            let received = Mutex<[UInt8]>([])
            init(loop: IOUringLoop) throws {
                self.loop = loop
                group = try loop.makeBufferGroup(id: 7, entries: 2)
                memory = .allocate(byteCount: 2 * 16, alignment: 64)
                group.add(bufferID: 0, address: memory, length: 16)
                group.add(bufferID: 1, address: memory + 16, length: 16)
                group.commit()
            }
            func complete(_ c: IOCompletion) {
                guard c.op == .recv, let bid = c.bufferID, c.result > 0 else { return }
                let bytes = UnsafeRawBufferPointer(start: memory + Int(bid) * 16, count: Int(c.result))
                received.withLock { $0.append(contentsOf: bytes) }
                if recycleAtOnce { give(bid) } else { held.append(bid) }
            }
            func give(_ bid: UInt16) {
                group.add(bufferID: bid, address: memory + Int(bid) * 16, length: 16)
                group.commit()
            }
            func releaseAll() {
                recycleAtOnce = true
                for b in held { give(b) }
                held.removeAll()
            }
        }
        let runner = try LoopRunner()
        let holder = try Holder(loop: runner.loop)
        holder.id = runner.loop.register(holder)
        let listener = try Sockets.tcpListener(SocketAddress(ip: "127.0.0.1", port: 0))
        defer { Glibc.close(listener) }
        let port = try Sockets.localAddress(listener).port
        runner.start()
        defer { runner.stop() }

        let client = try dialLoopback(port)
        defer { Glibc.close(client) }
        var peer = sockaddr_storage(); var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let serverSide = withUnsafeMutablePointer(to: &peer) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.accept(listener, $0, &len) }
        }
        #expect(serverSide >= 0)
        defer { Glibc.close(serverSide) }
        let payload = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        #expect(writeAll(client, payload))     // 1000 bytes ≫ 2 × 16 bytes of buffers
        _ = runner.onLoop { holder.loop.recv(holder.id, fd: serverSide, group: holder.group, tag: 1) }

        // Both buffers get used, then the kernel ends the multishot receive with ENOBUFS.
        #expect(waitUntil { holder.received.withLock { $0.count } == 32 })
        #expect(waitUntil { runner.onLoop { holder.group.parkedCount } == 1 })
        usleep(50_000)
        #expect(holder.received.withLock { $0.count } == 32)     // stalled until buffers come back
        #expect(runner.onLoop { holder.group.parksTotal } == 1, "counted: peerhost_plugin_receive_pauses_total")
        _ = runner.onLoop { holder.releaseAll() }
        #expect(waitUntil { holder.received.withLock { $0.count } == payload.count })
        #expect(holder.received.withLock { $0 } == payload)
        #expect(runner.onLoop { holder.loop.outstandingOperations(holder.id) } == 1)   // still armed
    }

    @Test("timers fire in order and a cancelled timer completes with ECANCELED")
    func timersInOrderAndCancel() throws {
        let runner = try LoopRunner()
        let h = RecordingHandler()
        let id = runner.loop.register(h)
        for (ms, tag) in [(60, 3), (20, 1), (40, 2), (300, 4)] {
            runner.loop.timeout(id, nanoseconds: UInt64(ms) * 1_000_000, tag: UInt32(tag))
        }
        runner.loop.cancelTimeout(id, tag: 4)
        runner.start()
        defer { runner.stop() }
        #expect(waitUntil { h.completions.count == 4 })
        let fired = h.completions.filter { $0.result == -ETIME }.map(\.tag)
        #expect(fired == [1, 2, 3])
        #expect(h.completions.first { $0.tag == 4 }?.result == -ECANCELED)
        #expect(runner.onLoop { runner.loop.outstandingOperations(id) } == 0)
    }

    @Test("execute() from another thread wakes a sleeping loop")
    func executeWakesLoop() throws {
        let runner = try LoopRunner()
        runner.start()
        defer { runner.stop() }
        usleep(50_000)   // let the loop go to sleep in io_uring_enter
        for _ in 0..<100 {
            let ran = Mutex(false)
            let inLoop = Mutex(false)
            let loop = runner.loop
            let start = Date()
            Thread.detachNewThread {
                loop.execute { ran.withLock { $0 = true }; inLoop.withLock { $0 = loop.inLoop } }
            }
            #expect(waitUntil(seconds: 2) { ran.withLock { $0 } })
            #expect(inLoop.withLock { $0 })
            #expect(Date().timeIntervalSince(start) < 2)
        }
    }

    @Test("connect to a closed port completes with ECONNREFUSED")
    func connectRefused() throws {
        // A bound socket that does not listen: connecting to its port is refused, and nobody else
        // can take the port meanwhile.
        let bound = try Sockets.udpSocket(bound: SocketAddress(ip: "127.0.0.1", port: 0))
        Glibc.close(bound)
        let tcp = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { Glibc.close(tcp) }
        var a = try SocketAddress(ip: "127.0.0.1", port: 0).storage
        _ = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(tcp, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        let port = try Sockets.localAddress(tcp).port

        let runner = try LoopRunner()
        let h = RecordingHandler()
        let id = runner.loop.register(h)
        let fd = try Sockets.tcpSocket()
        defer { Glibc.close(fd) }
        runner.loop.connect(id, fd: fd, to: try SocketAddress(ip: "127.0.0.1", port: port), tag: 9)
        runner.start()
        defer { runner.stop() }
        #expect(waitUntil { h.completions.count == 1 })
        #expect(h.completions.first?.op == .connect)
        #expect(h.completions.first?.result == -ECONNREFUSED)
        #expect(h.completions.first?.tag == 9)
    }

    @Test("UDP round trip with recvmsg/sendmsg and the peer's address")
    func udpRoundTrip() throws {
        let runner = try LoopRunner()
        let h = RecordingHandler()
        let id = runner.loop.register(h)
        let a = try Sockets.udpSocket(bound: SocketAddress(ip: "127.0.0.1", port: 0))
        let b = try Sockets.udpSocket(bound: SocketAddress(ip: "127.0.0.1", port: 0))
        defer { Glibc.close(a); Glibc.close(b) }
        let addrA = try Sockets.localAddress(a), addrB = try Sockets.localAddress(b)
        nonisolated(unsafe) let bufA = UnsafeMutableRawPointer.allocate(byteCount: 2048, alignment: 16)
        nonisolated(unsafe) let bufB = UnsafeMutableRawPointer.allocate(byteCount: 2048, alignment: 16)
        let peerA = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: 1)
        nonisolated(unsafe) let peerB = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: 1)
        defer { bufA.deallocate(); bufB.deallocate(); peerA.deallocate(); peerB.deallocate() }
        let ping: [UInt8] = Array("ping over io_uring".utf8)
        let out = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 16)
        defer { out.deallocate() }
        out.copyMemory(from: ping, byteCount: ping.count)

        try runner.loop.recvmsg(id, fd: a, into: bufA, length: 2048, peer: UnsafeMutableRawPointer(peerA), tag: 1)
        runner.loop.sendmsg(id, fd: b, from: out, length: ping.count, to: addrA, tag: 2)
        runner.start()
        defer { runner.stop() }
        #expect(waitUntil { h.completions.count == 2 })
        let got = h.completions.first { $0.tag == 1 }
        #expect(got?.op == .recvmsg)
        #expect(got?.result == Int32(ping.count))
        #expect(Array(UnsafeRawBufferPointer(start: bufA, count: ping.count)) == ping)
        let from = try SocketAddress(copying: peerA, length: socklen_t(MemoryLayout<sockaddr_in>.size))
        #expect(from == addrB)

        // and back, to the address the datagram came from
        _ = runner.onLoop {
            try? runner.loop.recvmsg(id, fd: b, into: bufB, length: 2048, peer: UnsafeMutableRawPointer(peerB), tag: 3)
            runner.loop.sendmsg(id, fd: a, from: bufA, length: ping.count, to: from, tag: 4)
        }
        #expect(waitUntil { h.completions.count == 4 })
        #expect(h.completions.first { $0.tag == 3 }?.result == Int32(ping.count))
        #expect(Array(UnsafeRawBufferPointer(start: bufB, count: ping.count)) == ping)
    }

    @Test("openat2 beneath refuses ../x, absolute paths and symlinks out; read/write/fsync work")
    func filesBeneath() throws {
        var template = Array("/tmp/peerhost-loop-XXXXXX".utf8CString)
        let dirPath = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        defer { _ = try? FileManager.default.removeItem(atPath: dirPath) }
        #expect(symlink("/etc", dirPath + "/abs-out") == 0)
        #expect(symlink("../", dirPath + "/rel-out") == 0)
        let dirfd = open(dirPath, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        #expect(dirfd >= 0)
        defer { Glibc.close(dirfd) }

        let runner = try LoopRunner()
        let h = RecordingHandler()
        let id = runner.loop.register(h)
        let escapes = ["../x", "/etc/passwd", "abs-out/passwd", "rel-out/x", "sub/../../x"]
        #expect(mkdir(dirPath + "/sub", 0o755) == 0)
        for (i, p) in escapes.enumerated() {
            try runner.loop.openBeneath(id, directory: dirfd, path: p, flags: O_RDONLY, tag: UInt32(i))
        }
        try runner.loop.openBeneath(id, directory: dirfd, path: "data.bin", flags: O_RDWR | O_CREAT, mode: 0o600, tag: 100)
        runner.start()
        defer { runner.stop() }
        #expect(waitUntil { h.completions.count == escapes.count + 1 })
        for (i, p) in escapes.enumerated() {
            let r = h.completions.first { $0.tag == UInt32(i) }?.result
            #expect(r == -EXDEV || r == -ELOOP, "openat2 of \(p) gave \(r.map { errnoName(-$0) } ?? "nothing")")
        }
        let fdResult = h.completions.first { $0.tag == 100 }?.result ?? -1
        #expect(fdResult >= 0)
        guard fdResult >= 0 else { return }
        let fd = fdResult
        defer { Glibc.close(fd) }

        let text: [UInt8] = Array("written by io_uring at an offset".utf8)
        nonisolated(unsafe) let wbuf = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 16)
        nonisolated(unsafe) let rbuf = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 16)
        defer { wbuf.deallocate(); rbuf.deallocate() }
        wbuf.copyMemory(from: text, byteCount: text.count)
        _ = runner.onLoop { runner.loop.write(id, fd: fd, from: wbuf, length: UInt32(text.count), offset: 4096, tag: 200) }
        #expect(waitUntil { h.completions.contains { $0.tag == 200 } })
        #expect(h.completions.first { $0.tag == 200 }?.result == Int32(text.count))
        _ = runner.onLoop { runner.loop.fsync(id, fd: fd, tag: 201) }
        #expect(waitUntil { h.completions.contains { $0.tag == 201 } })
        #expect(h.completions.first { $0.tag == 201 }?.result == 0)
        _ = runner.onLoop { runner.loop.read(id, fd: fd, into: rbuf, length: UInt32(text.count), offset: 4096, tag: 202) }
        #expect(waitUntil { h.completions.contains { $0.tag == 202 } })
        #expect(h.completions.first { $0.tag == 202 }?.result == Int32(text.count))
        #expect(Array(UnsafeRawBufferPointer(start: rbuf, count: text.count)) == text)
        var st = stat()
        #expect(fstat(fd, &st) == 0 && st.st_size == 4096 + text.count)
    }

    @Test("cancelAll completes every outstanding operation and reports when they reach zero")
    func cancelAllDrains() throws {
        let runner = try LoopRunner()
        let h = RecordingHandler()
        let id = runner.loop.register(h)
        let group = try runner.loop.makeBufferGroup(id: 3, entries: 4)
        let mem = UnsafeMutableRawPointer.allocate(byteCount: 4 * 1024, alignment: 64)
        defer { mem.deallocate() }
        for i in 0..<4 { group.add(bufferID: UInt16(i), address: mem + i * 1024, length: 1024) }
        group.commit()

        var pair: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        var pair2: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair2) == 0)
        let listener = try Sockets.tcpListener(SocketAddress(ip: "127.0.0.1", port: 0))
        let efd = ph_test_eventfd()
        let eventBuf = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
        let plain = UnsafeMutableRawPointer.allocate(byteCount: 256, alignment: 16)
        defer {
            for fd in pair + pair2 + [listener, efd] { Glibc.close(fd) }
            eventBuf.deallocate(); plain.deallocate()
        }
        runner.loop.recv(id, fd: pair[0], group: group, tag: 1)                        // multishot, idle
        runner.loop.recv(id, fd: pair2[0], into: plain, length: 256, tag: 2)           // plain, idle
        runner.loop.accept(id, listener: listener, tag: 3)                             // multishot accept
        runner.loop.timeout(id, nanoseconds: 30_000_000_000, tag: 4)                   // 30 s timer
        runner.loop.read(id, fd: efd, into: eventBuf, length: 8, tag: 5)               // eventfd read
        #expect(runner.loop.outstandingOperations(id) == 5)
        runner.start()
        defer { runner.stop() }
        usleep(20_000)

        let drained = Mutex(false)
        let before = runner.onLoop { runner.loop.outstandingOperations(id) }
        #expect(before == 5)
        _ = runner.onLoop { runner.loop.cancelAll(id) { drained.withLock { $0 = true } } }
        #expect(waitUntil(seconds: 3) { drained.withLock { $0 } })
        #expect(runner.onLoop { runner.loop.outstandingOperations(id) } == 0)
        let finals = h.completions.filter { !$0.hasMore }
        #expect(Set(finals.map(\.tag)) == [1, 2, 3, 4, 5])
        #expect(finals.allSatisfy { $0.result == -ECANCELED || $0.result == -EINTR })
        _ = runner.onLoop { runner.loop.unregister(id) }
    }

    @Test("a refused io_uring gives one clear line")
    func unavailableMessage() {
        let e = EventLoopError.ioUringUnavailable(errno: EPERM)
        #expect(e.description == "io_uring is not available: io_uring_setup returned EPERM (kernel.io_uring_disabled, or a seccomp filter of the container?)")
    }
}

/// A non-blocking eventfd for the tests (Glibc does not import eventfd).
func ph_test_eventfd() -> Int32 { ph_eventfd(0, 1) }
