// Helpers for the event-loop tests: run a loop on its own thread, run code on it and wait for the
// answer with a bound, blocking loopback clients with receive timeouts (nothing can hang a test).

import Foundation
import Synchronization
@testable import PeerhostCore
#if canImport(Glibc)
import Glibc
#endif

final class LoopRunner: @unchecked Sendable {
    let loop: IOUringLoop
    private let finished = DispatchSemaphore(value: 0)

    init(_ configure: (IOUringLoop) throws -> Void = { _ in }) throws {
        loop = try IOUringLoop()
        try configure(loop)
    }

    func start() {
        let loop = self.loop, finished = self.finished
        let t = Thread { loop.run(); finished.signal() }
        t.name = "test-io-uring-loop"
        t.start()
    }

    /// Runs `body` on the loop thread and returns its value (fails the wait after `seconds`).
    func onLoop<T: Sendable>(seconds: Double = 5, _ body: @escaping @Sendable () -> T) -> T? {
        let box = Mutex<T?>(nil)
        let sem = DispatchSemaphore(value: 0)
        loop.execute {
            let v = body()
            box.withLock { $0 = v }
            sem.signal()
        }
        guard sem.wait(timeout: .now() + seconds) == .success else { return nil }
        return box.withLock { $0 }
    }

    func stop() {
        loop.stop()
        _ = finished.wait(timeout: .now() + 5)
    }
}

/// Polls `condition` every millisecond until it holds or `seconds` pass.
func waitUntil(seconds: Double = 5, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(1000)
    }
    return condition()
}

/// A blocking TCP client socket to 127.0.0.1:port with a 5 s receive/send timeout.
func dialLoopback(_ port: UInt16) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var tv = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    let a = try SocketAddress(ip: "127.0.0.1", port: port)
    var s = a.storage
    let r = withUnsafePointer(to: &s) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, a.length) }
    }
    if r != 0 { let e = errno; Glibc.close(fd); throw EventLoopError.syscall(step: "test connect", errno: e) }
    return fd
}

func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var off = 0
    while off < bytes.count {
        let n = bytes[off...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        if n <= 0 { return false }
        off += n
    }
    return true
}

func readExactly(_ fd: Int32, _ count: Int) -> [UInt8]? {
    var out = [UInt8](repeating: 0, count: count)
    var off = 0
    while off < count {
        let n = out[off...].withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { return nil }
        off += n
    }
    return out
}

/// Records completions (loop thread writes, test thread reads under the lock).
final class RecordingHandler: IOHandler, @unchecked Sendable {
    let log = Mutex<[IOCompletion]>([])
    var onComplete: ((IOCompletion) -> Void)?
    func complete(_ c: IOCompletion) {
        log.withLock { $0.append(c) }
        onComplete?(c)
    }
    var completions: [IOCompletion] { log.withLock { $0 } }
}
