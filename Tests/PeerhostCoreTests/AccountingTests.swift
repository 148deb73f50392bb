import CPeerhostShim
import Foundation
import PeerhostRing
import Testing
@testable import PeerhostCore

/// Accounting without processes: the usage log and its rotation, the per-peer table, the
/// ABI 1.1 peer tag on the ring, the backoff jitter and the status table.
@Suite struct AccountingTests {
    func record(_ plugin: String, bytes: UInt64) -> UsageRecord {
        UsageRecord(time: AuditEvent.now(), plugin: plugin, state: "running", pid: 7, restarts: 1, lastCause: "crash",
                    connections: 2, bytesIn: bytes, bytesOut: bytes / 2, messagesIn: 3, messagesOut: 4, cpuSeconds: 1.5,
                    memoryBytes: 1 << 20, cpuSource: "proc", memorySource: "cgroup_v1", downtimeSeconds: 0.25)
    }

    @Test func usageLogLinesAreJSONWithEveryKey() throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(dir) }
        let log = UsageLog(path: dir + "/usage.log")
        log.append([record("echo-c", bytes: 100), record("memory-hog", bytes: 0)])
        let lines = try String(contentsOfFile: dir + "/usage.log", encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 2)
        let first = try #require(try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        #expect(Set(first.keys) == ["time", "plugin", "state", "pid", "restarts", "last_cause", "connections", "bytes_in",
                                    "bytes_out", "messages_in", "messages_out", "cpu_seconds", "memory_bytes",
                                    "cpu_source", "memory_source", "downtime_s"])
        let decoded = try UsageLog.records(at: dir + "/usage.log")
        var expected = record("echo-c", bytes: 100)
        expected.time = decoded[0].time
        #expect(decoded[0] == expected, "a line decodes to the record written")
        #expect(decoded[1].plugin == "memory-hog" && decoded[1].bytesIn == 0)
    }

    /// The rotation the audit log and the usage log share (RotatingFile): small sizes, many lines.
    @Test func usageLogRotatesBySizeKeepingTheNewest() throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(dir) }
        let path = dir + "/usage.log"
        let log = UsageLog(path: path, maxBytes: 1200, keep: 2)
        for i in 0..<60 { log.append([record("p\(i)", bytes: UInt64(i))]) }
        let live = try UsageLog.records(at: path)
        let older = try UsageLog.records(at: path + ".1")
        let oldest = try UsageLog.records(at: path + ".2")
        #expect(!FileManager.default.fileExists(atPath: path + ".3"), "keep = 2: nothing older")
        #expect(live.last?.plugin == "p59", "the newest line is in the live file")
        #expect(older.last.map { Int($0.bytesIn) + 1 } == live.first.map { Int($0.bytesIn) }, "no line lost between files")
        #expect(oldest.last.map { Int($0.bytesIn) + 1 } == older.first.map { Int($0.bytesIn) })
        for file in [path, path + ".1", path + ".2"] {
            let size = try #require(try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int)
            #expect(size <= 1200, "\(file) is \(size) bytes")
        }
        #expect(log.file.takeError() == nil)
    }

    @Test func peerTableIsBoundedAndKeepsTheHeaviest() {
        let table = PeerTable(capacity: 4)
        table.add(peer: "big", inbound: 10_000)
        table.add(peer: "big", outbound: 5_000)
        for i in 0..<10 { table.add(peer: "small\(i)", inbound: UInt64(10 + i)) }
        #expect(table.entries.count == 4)
        #expect(table.evicted == 7)
        let top = table.top(2)
        #expect(top.map(\.peer) == ["big", "small9"])
        #expect(top[0].usage == { var u = PeerUsage(); u.bytesIn = 10_000; u.bytesOut = 5_000; u.messagesIn = 1; u.messagesOut = 1; return u }())
        #expect(PeerTable.key(Array("tcp:1".utf8)) == "7463703a31")
    }

    @Test func peerSeriesAreTheTopPeersOnly() {
        let metrics = HostMetrics()
        let plugin = metrics.plugin(named: "bt")
        var a = PeerUsage(); a.bytesIn = 300; a.messagesIn = 3
        var b = PeerUsage(); b.bytesOut = 200; b.messagesOut = 2
        plugin.publishPeers([("aa", a), ("bb", b)])
        a.bytesIn = 350
        plugin.publishPeers([("aa", a)])   // bb left the top list
        let text = String(decoding: metrics.render(), as: UTF8.self)
        #expect(text.contains(#"peerhost_peer_bytes_total{plugin="bt",peer="aa",direction="in"} 350"#), "\(text)")
        #expect(text.contains(#"peerhost_peer_messages_total{plugin="bt",peer="aa",direction="in"} 3"#))
        #expect(!text.contains(#"peer="bb""#), "a peer out of the top list has no series")
    }

    @Test func aPeerTagTravelsInTheDescriptorAndIsChecked() throws {
        let geometry = RegionGeometry(ringEntries: 8, slotSize: 4096, slotCount: 8, recvSlots: 4)
        var dec = RequestDecoder(region: try SharedRegion.create(name: "t", geometry: geometry))
        func tag(_ id: [UInt8], conn: UInt64 = 42, length: Int? = nil) throws -> PluginRequest {
            var d = ph_desc()
            d.type = UInt16(PH_MSG_CONN_PEER.rawValue)
            d.id = conn
            d.slot = PH_NO_SLOT
            d.length = UInt32(length ?? id.count)
            withUnsafeMutableBytes(of: &d) { raw in
                let start = MemoryLayout<ph_desc>.offset(of: \ph_desc.request)!
                for (i, b) in id.prefix(64 - start).enumerated() { raw[start + i] = b }
            }
            return try dec.decode(d, owns: { $0 == 42 })
        }
        let forty = (0..<40).map { UInt8($0 + 1) }
        #expect(try tag(forty) == .connPeer(conn: 42, peer: forty), "the longest id: 40 bytes")
        #expect(try tag(Array("peer".utf8)) == .connPeer(conn: 42, peer: Array("peer".utf8)))
        #expect(throws: Violation.self) { try tag([], length: 0) }
        #expect(throws: Violation.self) { try tag(forty, length: 41) }
        #expect(throws: Violation.self) { try tag(forty, conn: 7) }
    }

    /// Equal jitter: every delay in [d/2, d], and not all the same.
    @Test func backoffJitterStaysInItsRange() {
        let delays = (0..<200).map { _ in PluginSupervisor.jittered(1000) }
        #expect(delays.allSatisfy { (500...1000).contains($0) })
        #expect(Set(delays).count > 20, "jittered, not constant")
        #expect(PluginSupervisor.jittered(1) == 1)
    }

    @Test func statusTableShowsRatesCPUMemoryAndStorage() {
        var plugin = StatusDocument.PluginStatus(name: "echo-c", state: .running, pid: 12, restarts: 2, connections: 3,
                                                 bytesIn: 2048, bytesOut: 1024, cpuSeconds: 1.25, memoryBytes: 5 << 20,
                                                 storageBytes: 3 << 10)
        plugin.bytesInPerSecond = 4096
        plugin.bytesOutPerSecond = 512
        let doc = StatusDocument(host: .init(version: "t", pid: 1, uptimeSeconds: 5, ioBackend: "io_uring"), plugins: [plugin])
        let lines = doc.table.split(separator: "\n")
        let header = lines.first { $0.hasPrefix("PLUGIN") }.map(String.init) ?? ""
        #expect(header.split(separator: " ", omittingEmptySubsequences: true) ==
                ["PLUGIN", "STATE", "PID", "RESTARTS", "CONNS", "IN", "IN/S", "OUT", "OUT/S", "CPU", "MEM", "STORAGE", "REASON"])
        let row = lines.first { $0.hasPrefix("echo-c") }.map { $0.split(separator: " ").map(String.init) } ?? []
        #expect(row == ["echo-c", "running", "12", "2", "3", "2.0KiB", "4.0KiB", "1.0KiB", "512B", "1.25s", "5.0MiB", "3.0KiB"])
    }
}
