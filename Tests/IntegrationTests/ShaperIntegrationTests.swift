import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    /// The shaper against aggressive plugins (Tests/Plugins/flood, flood-b): they send from every
    /// free slot and read everything, so only the core's buckets hold them back. Up is measured at
    /// the test's sink (what reached the network), down by the core's bytes_in (what reached the
    /// plugin; the peer is held back by TCP once the core stops receiving). Each measurement starts
    /// after a warm-up so socket buffers are full on both sides. Bounds are DESIGN.md's (≤ 1.2×,
    /// ≥ 0.5× of a limit). Ports 7110, 7111.
    @Suite(.serialized) struct ShaperTests {
        static let mib = 1_048_576.0

        static func config(shaping: String = "", flood: String, floodB: String? = nil) -> String {
            var text = """
            [host]
            data_dir = "@DATA@"
            http = "127.0.0.1:0"
            \(shaping)

            [[plugin]]
            name = "flood"
            manifest = "@REPO@/Tests/Plugins/flood/manifest.toml"
            \(flood)
            """
            if let floodB {
                text += """


                [[plugin]]
                name = "flood-b"
                manifest = "@REPO@/Tests/Plugins/flood-b/manifest.toml"
                \(floodB)
                """
            }
            return text
        }

        /// Starts the plugin's flood towards `port` with `connections` connections.
        func flood(_ host: HostProcess, _ plugin: String, port: UInt16, connections: Int = 4) throws {
            try waitUntil("\(plugin) accepts the start call") {
                let (status, out) = try host.cli(["ctl", plugin, "start", "tcp:127.0.0.1:\(port) \(connections)"])
                return status == 0 && out.trimmingCharacters(in: .whitespacesAndNewlines) == "0"
            }
            try waitUntil("\(plugin) connected") {
                let (_, out) = try host.cli(["ctl", plugin, "stats"])
                let doc = try? JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any]
                return (doc?["connected"] as? Int) == connections
            }
        }

        func bytesIn(_ host: HostProcess, _ plugin: String) throws -> Double {
            (try status(host, plugin)["bytes_in"] as? NSNumber)?.doubleValue ?? 0
        }

        /// Bytes/s each way over `seconds`: (up at the sink, down into the plugin).
        func measure(_ host: HostProcess, _ plugin: String, _ sink: FloodPeer, seconds: Double) throws -> (up: Double, down: Double) {
            let up0 = sink.received.withLock { $0 }
            let down0 = try bytesIn(host, plugin)
            let t0 = ContinuousClock.now
            usleep(UInt32(seconds * 1e6))
            let up1 = sink.received.withLock { $0 }
            let down1 = try bytesIn(host, plugin)
            let elapsed = (ContinuousClock.now - t0) / .milliseconds(1) / 1000
            return (Double(up1 - up0) / elapsed, (down1 - down0) / elapsed)
        }

        @Test func pluginLimitHoldsBothWaysAgainstAFlood() throws {
            let sink = try FloodPeer(port: 7110)
            defer { sink.stop() }
            let host = try HostProcess(config: Self.config(flood: #"bandwidth = { up = "10MiB/s", down = "10MiB/s" }"#))
            try host.start()
            defer { _ = host.stop() }
            try flood(host, "flood", port: 7110)
            usleep(1_000_000)   // warm-up: buffers fill, shares settle
            let rate = try measure(host, "flood", sink, seconds: 3)
            let limit = 10 * Self.mib
            #expect(rate.up <= 1.2 * limit, "up \(rate.up / Self.mib) MiB/s against a 10 MiB/s limit")
            #expect(rate.up >= 0.5 * limit, "up \(rate.up / Self.mib) MiB/s against a 10 MiB/s limit")
            #expect(rate.down <= 1.2 * limit, "down \(rate.down / Self.mib) MiB/s against a 10 MiB/s limit")
            #expect(rate.down >= 0.5 * limit, "down \(rate.down / Self.mib) MiB/s against a 10 MiB/s limit")
            print("shaper: 10 MiB/s plugin limit, measured up \(String(format: "%.2f", rate.up / Self.mib)) MiB/s, down \(String(format: "%.2f", rate.down / Self.mib)) MiB/s")
            // The waits are counted, and status shows the limit.
            let metrics = try host.metrics()
            #expect(series(metrics, "peerhost_shaper_wait_seconds_total", ["plugin=\"flood\"", "direction=\"out\""]) > 0)
            #expect(series(metrics, "peerhost_shaper_wait_seconds_total", ["plugin=\"flood\"", "direction=\"in\""]) > 0)
            let shaping = try status(host, "flood")["rate"] as? [String: Any]
            #expect((shaping?["up_limit"] as? NSNumber)?.intValue == 10 << 20)
            #expect((shaping?["down_limit"] as? NSNumber)?.intValue == 10 << 20)
        }

        @Test func weightsOneToThreeSplitASaturatedGlobalLimit() throws {
            let sinkA = try FloodPeer(port: 7110)
            let sinkB = try FloodPeer(port: 7111)
            defer { sinkA.stop(); sinkB.stop() }
            let host = try HostProcess(config: Self.config(shaping: "\n[shaping]\nup = \"16MiB/s\"\ndown = \"16MiB/s\"\n",
                                                          flood: "weight = 1", floodB: "weight = 3"))
            try host.start()
            defer { _ = host.stop() }
            try flood(host, "flood", port: 7110)
            try flood(host, "flood-b", port: 7111)
            usleep(1_500_000)
            // Both at once: sample A and B around the same window.
            let a0 = sinkA.received.withLock { $0 }, b0 = sinkB.received.withLock { $0 }
            let ad0 = try bytesIn(host, "flood")
            let bd0 = try bytesIn(host, "flood-b")
            usleep(3_000_000)
            let a1 = sinkA.received.withLock { $0 }, b1 = sinkB.received.withLock { $0 }
            let ad1 = try bytesIn(host, "flood")
            let bd1 = try bytesIn(host, "flood-b")
            let upShare = Double(a1 - a0) / Double(a1 - a0 + b1 - b0)
            let downShare = (ad1 - ad0) / (ad1 - ad0 + bd1 - bd0)
            print("shaper: weights 1:3 on 16 MiB/s, weight-1 share up \(String(format: "%.1f", upShare * 100))%, down \(String(format: "%.1f", downShare * 100))%; total up \(String(format: "%.2f", Double(a1 - a0 + b1 - b0) / 3 / Self.mib)) MiB/s")
            #expect(upShare >= 0.15 && upShare <= 0.35, "weight 1 got \(upShare) of up")
            #expect(downShare >= 0.15 && downShare <= 0.35, "weight 1 got \(downShare) of down")
            let totalUp = Double(a1 - a0 + b1 - b0) / 3
            #expect(totalUp <= 1.2 * 16 * Self.mib, "total up \(totalUp / Self.mib) MiB/s against 16")
        }

        @Test func setRateChangesALimitAtRunTime() throws {
            let sink = try FloodPeer(port: 7110)
            defer { sink.stop() }
            let host = try HostProcess(config: Self.config(flood: #"bandwidth = { up = "24MiB/s", down = "24MiB/s" }"#))
            try host.start()
            defer { _ = host.stop() }
            try flood(host, "flood", port: 7110)
            usleep(1_000_000)
            let before = try measure(host, "flood", sink, seconds: 2)
            let (status1, out1) = try host.cli(["ctl", "host", "set-rate", "flood", "4MiB", "4MiB/s"])
            #expect(status1 == 0, "\(out1)")
            usleep(1_500_000)   // "within a second or two": the socket buffers drain in that time
            let after = try measure(host, "flood", sink, seconds: 2)
            print("shaper: set-rate 24 → 4 MiB/s: up \(String(format: "%.2f", before.up / Self.mib)) → \(String(format: "%.2f", after.up / Self.mib)) MiB/s, down \(String(format: "%.2f", before.down / Self.mib)) → \(String(format: "%.2f", after.down / Self.mib)) MiB/s")
            #expect(after.up <= 1.2 * 4 * Self.mib && after.up >= 0.5 * 4 * Self.mib, "up \(after.up / Self.mib) MiB/s after set-rate 4MiB")
            #expect(after.down <= 1.2 * 4 * Self.mib && after.down >= 0.5 * 4 * Self.mib, "down \(after.down / Self.mib) MiB/s after set-rate 4MiB")
            #expect(before.up > 2 * after.up, "the limit was not lower before: \(before.up) vs \(after.up)")
            // Audited, shown in status, and bad input is refused with a reason.
            #expect(try host.audit("flood", action: "set-rate").count == 1)
            let shaping = try status(host, "flood")["rate"] as? [String: Any]
            #expect((shaping?["up_limit"] as? NSNumber)?.intValue == 4 << 20)
            let (status2, out2) = try host.cli(["ctl", "host", "set-rate", "nope", "1MiB", "0"])
            #expect(status2 != 0 && out2.contains("nope"), "\(out2)")
            let (status3, out3) = try host.cli(["ctl", "host", "set-rate", "flood", "fast", "0"])
            #expect(status3 != 0 && out3.contains("fast"), "\(out3)")
            // The global limit too (unlimited again afterwards: 0).
            let (status4, out4) = try host.cli(["ctl", "host", "set-rate", "global", "8MiB", "0"])
            #expect(status4 == 0, "\(out4)")
            #expect(try host.audit("host", action: "set-rate").count == 1)
        }
    }
}

/// The far end of a flood: accepts connections on 127.0.0.1:port; on each, one thread writes
/// 64 KiB chunks as fast as the socket takes them and another reads and counts everything.
final class FloodPeer: @unchecked Sendable {
    let fd: Int32
    let received = Locked(0)
    let stopped = Locked(false)

    init(port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0, listen(fd, 64) == 0 else { let e = errno; close(fd); throw TestFailure("flood peer on \(port): errno \(e)") }
        Thread.detachNewThread { [self] in
            while true {
                let c = accept(fd, nil, nil)
                if c < 0 { return }
                Thread.detachNewThread { [self] in
                    var buf = [UInt8](repeating: 0x61, count: 65_536)
                    while !stopped.withLock({ $0 }) {
                        let n = buf.withUnsafeBytes { send(c, $0.baseAddress!, 65_536, Int32(MSG_NOSIGNAL)) }
                        if n <= 0 { break }
                    }
                    shutdown(c, Int32(SHUT_WR))
                }
                Thread.detachNewThread { [self] in
                    var buf = [UInt8](repeating: 0, count: 65_536)
                    while true {
                        let n = buf.withUnsafeMutableBytes { recv(c, $0.baseAddress!, 65_536, 0) }
                        if n <= 0 { break }
                        received.withLock { $0 += n }
                    }
                    close(c)
                }
            }
        }
    }

    func stop() {
        stopped.withLock { $0 = true }
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }
}
