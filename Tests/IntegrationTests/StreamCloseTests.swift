import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    /// How the core ends a stream, through the stream-probe test plugin (Tests/Plugins/stream-probe):
    /// a close right after a send still delivers it, then FIN; a peer that stops reading is reset
    /// after the linger time and the plugin's slots come home; conn_reset is an abortive close.
    @Suite(.serialized) struct StreamCloseTests {
        /// `queue`: [tuning] send_queue_per_connection; `burst`: what the plugin sends on 7005.
        static func config(linger: Int = 15, queue: Int = 512 << 10, burst: Int = 448 << 10) -> String {
            """
            [host]
            data_dir = "@DATA@"
            http = "127.0.0.1:0"

            [tuning]
            close_linger_s = \(linger)
            send_queue_per_connection = \(queue)

            [[plugin]]
            name = "stream-probe"
            manifest = "@REPO@/Tests/Plugins/stream-probe/manifest.toml"
            config = { burst_bytes = \(burst) }
            """
        }

        static func pattern(_ i: Int) -> UInt8 { UInt8(truncatingIfNeeded: i &* 7 &+ (i >> 14)) }

        /// Reads a non-blocking socket until it ends (within 10 s): 0 for FIN, else the errno.
        static func drainToEnd(_ fd: Int32) -> Int32 {
            var buffer = [UInt8](repeating: 0, count: 65_536)
            let deadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < deadline {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
                if n > 0 { continue }
                if n == 0 { return 0 }
                if errno == EAGAIN { usleep(5_000); continue }
                return errno
            }
            return ETIMEDOUT
        }

        func stats(_ host: HostProcess) throws -> [String: Int] {
            let (status, out) = try host.cli(["ctl", "stream-probe", "stats"])
            guard status == 0, let doc = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Int] else {
                throw TestFailure("stats: \(out)")
            }
            return doc
        }

        func number(_ host: HostProcess, _ method: String) throws -> Int {
            let (status, out) = try host.cli(["ctl", "stream-probe", method])
            guard status == 0, let n = Int(out.trimmingCharacters(in: .whitespacesAndNewlines)) else { throw TestFailure("\(method): \(out)") }
            return n
        }

        /// Reads until EOF or an error; returns the bytes and how it ended (0 = FIN, else errno).
        func readToEnd(_ client: TCPClient) -> ([UInt8], Int32) {
            var result: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while true {
                let n = buffer.withUnsafeMutableBytes { recv(client.fd, $0.baseAddress!, $0.count, 0) }
                if n == 0 { return (result, 0) }
                if n < 0 { return (result, errno) }
                result += buffer[0..<n]
            }
        }

        @Test func aReplyFollowedAtOnceByCloseReachesEveryClient() throws {
            let host = try HostProcess(config: Self.config())
            defer { _ = host.stop() }
            try host.start()
            try waitUntil("stream-probe listens on 7003") { (try? TCPClient(port: 7003, timeoutSeconds: 2)).map { $0.close(); return true } ?? false }
            let outcomes = Locked<[String: Int]>([:])
            DispatchQueue.concurrentPerform(iterations: 100) { worker in
                for _ in 0..<10 {
                    let outcome: String
                    do {
                        let client = try TCPClient(port: 7003, timeoutSeconds: 10)
                        let (bytes, end) = readToEnd(client)
                        client.close()
                        outcome = bytes == Array("ok\n".utf8) && end == 0 ? "ok" : "got \(bytes.count) bytes, end errno \(end)"
                    } catch {
                        outcome = "\(error)"
                    }
                    outcomes.withLock { $0[outcome, default: 0] += 1 }
                }
                _ = worker
            }
            #expect(outcomes.value == ["ok": 1000], "1000 clients: \(outcomes.value)")
            let s = try stats(host)
            // The readiness probe above was one more client.
            #expect((s["replies_accepted"] ?? 0) >= 1000 && s["replies_sent"] == s["replies_accepted"], "\(s)")
        }

        @Test func everythingSentBeforeCloseArrivesThenFIN() throws {
            let host = try HostProcess(config: Self.config())
            defer { _ = host.stop() }
            try host.start()
            try waitUntil("stream-probe listens on 7004") { (try? TCPClient(port: 7004, timeoutSeconds: 2)).map { $0.close(); return true } ?? false }
            // 8 clients at once, reading 16 KiB every millisecond: the plugin meets the per-connection
            // bound (PH_EAGAIN, then on_writable) and closes with most of its 4 MiB still queued.
            let failures = Locked<[String]>([])
            DispatchQueue.concurrentPerform(iterations: 8) { i in
                do {
                    let client = try TCPClient(port: 7004, timeoutSeconds: 30)
                    defer { client.close() }
                    var received: [UInt8] = []
                    var buffer = [UInt8](repeating: 0, count: 16_384)
                    while true {
                        let n = buffer.withUnsafeMutableBytes { recv(client.fd, $0.baseAddress!, $0.count, 0) }
                        if n == 0 { break }
                        if n < 0 { failures.withLock { $0.append("client \(i): errno \(errno) after \(received.count) bytes") }; return }
                        received += buffer[0..<n]
                        usleep(1_000)
                    }
                    if received.count != 4 << 20 {
                        failures.withLock { $0.append("client \(i): \(received.count) bytes before FIN, not \(4 << 20)") }
                    } else if let bad = received.indices.first(where: { received[$0] != Self.pattern($0) }) {
                        failures.withLock { $0.append("client \(i): byte \(bad) differs") }
                    }
                } catch {
                    failures.withLock { $0.append("client \(i): \(error)") }
                }
            }
            #expect(failures.value.isEmpty, "\(failures.value)")
            let s = try stats(host)
            #expect((s["floods_closed"] ?? 0) >= 8, "\(s)")
            #expect((s["eagain"] ?? 0) > 0 && (s["writable"] ?? 0) > 0, "the per-connection bound pushed back: \(s)")
            let metrics = try host.metrics()
            #expect(series(metrics, "peerhost_plugin_stream_resets_total", ["plugin=\"stream-probe\""]) == 0)
        }

        @Test func aPeerThatStopsReadingIsResetAfterTheLingerAndTheSlotsComeHome() throws {
            // The plugin hands over 8 MiB at once (the bound is raised to take it), more than the
            // kernel's socket buffers hold, and closes.
            let host = try HostProcess(config: Self.config(linger: 1, queue: 16 << 20, burst: 8 << 20))
            defer { _ = host.stop() }
            try host.start()
            try waitUntil("stream-probe answers") { (try? number(host, "free_slots")) != nil }
            let free = try number(host, "free_slots")
            // A tiny receive buffer and no reads: most of the burst stays queued in the core.
            let fd = try EchoStress.connect(port: 7005, buffer: 4_096)
            defer { Glibc.close(fd) }
            try waitUntil("the plugin handed its burst over and closed") { try stats(host)["floods_closed"] == 1 }
            #expect(try number(host, "free_slots") < free, "the queued burst holds slots")
            try waitUntil("the core resets the stream after the linger", timeout: .seconds(15)) {
                series(try host.metrics(), "peerhost_plugin_stream_resets_total", ["plugin=\"stream-probe\"", "reason=\"linger\""]) == 1
            }
            try waitUntil("every slot is back") { try number(host, "free_slots") == free }
            let end = Self.drainToEnd(fd)
            #expect(end == ECONNRESET, "the client sees a reset, not a clean end (errno \(end))")
            #expect(series(try host.metrics(), "peerhost_plugin_lingering_connections", ["plugin=\"stream-probe\""]) == 0)
        }

        @Test func connResetIsAnAbortiveClose() throws {
            let host = try HostProcess(config: Self.config())
            defer { _ = host.stop() }
            try host.start()
            try waitUntil("stream-probe answers") { (try? number(host, "free_slots")) != nil }
            let free = try number(host, "free_slots")
            let fd = try EchoStress.connect(port: 7004, buffer: 4_096)
            defer { Glibc.close(fd) }
            try waitUntil("the plugin meets the per-connection bound") { (try stats(host)["eagain"] ?? 0) > 0 }
            #expect(try number(host, "reset_all") == 1)
            try waitUntil("every slot is back") { try number(host, "free_slots") == free }
            let end = Self.drainToEnd(fd)
            #expect(end == ECONNRESET, "the client sees a reset, not a clean end (errno \(end))")
            try waitUntil("the reset is counted") {
                series(try host.metrics(), "peerhost_plugin_stream_resets_total", ["plugin=\"stream-probe\"", "reason=\"plugin\""]) == 1
            }
        }
    }
}
