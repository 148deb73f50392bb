// The SDK's own pieces: PluginError, Buffer bounds, default callbacks (no leaked slots), timers on
// a ManualClock, and the exported descriptor.
import PeerhostSDK
#if canImport(Glibc)
import Glibc
#endif
import PeerhostTesting
import Testing

final class TimerPlugin: Plugin {
    let host: Host
    var fired: [(TimerID, UInt64)] = []
    var cancelled: TimerID = 0
    nonisolated(unsafe) static weak var last: TimerPlugin?
    init(host: Host) { self.host = host; TimerPlugin.last = self }
    func start(config: [UInt8]) throws(PluginError) {
        _ = try host.timer(after: 2_000_000, tag: 2)
        _ = try host.timer(after: 1_000_000, tag: 1)
        cancelled = try host.timer(after: 1_500_000, tag: 99)
        try host.cancelTimer(cancelled)
        host.log(.info, "timers armed")
    }
    func onTimer(id: TimerID, tag: UInt64) { fired.append((id, tag)) }
}

final class FailingPlugin: Plugin {
    let host: Host
    init(host: Host) { self.host = host }
    func start(config: [UInt8]) throws(PluginError) { throw .denied }
}

extension PeerhostSDKSuite {
@Suite
struct SDKTests {
    @Test func pluginErrorNamesAndMapping() {
        #expect(PluginError(checking: PH_OK) == nil)
        #expect(PluginError(checking: PH_EAGAIN) == .again)
        #expect(PluginError.denied.name == "PH_EDENIED")
        #expect("\(PluginError(code: -99))" == "ph_status(-99)")
    }

    @Test func kvScanRecordsDecode() {
        var bytes: [UInt8] = [2, 0, 0, 0, 0x61, 0x62, 1, 0, 0, 0, 0x31,   // "ab" → "1"
                              1, 0, 0, 0, 0xFF, 0, 0, 0, 0]                 // [0xFF] → ""
        bytes.withUnsafeMutableBufferPointer { p in
            let whole = Buffer(raw: ph_buffer(data: p.baseAddress, slot: 0, offset: 0, length: UInt32(p.count), capacity: UInt32(p.count)))
            let records = whole.kvRecords
            #expect(records?.map(\.key) == [[0x61, 0x62], [0xFF]])
            #expect(records?.map(\.value) == [[0x31], []])
            // A record cut short is not silently dropped.
            let torn = Buffer(raw: ph_buffer(data: p.baseAddress, slot: 0, offset: 0, length: 10, capacity: UInt32(p.count)))
            #expect(torn.kvRecords == nil)
        }
    }

    @Test func descriptorCarriesNameVersionFeaturesAndABI() {
        let p = PluginExport.entry(for: TimerPlugin.self, name: "timer-test", version: "0.1.0", features: [.timers])
        let d = p.assumingMemoryBound(to: ph_plugin.self).pointee
        #expect(String(cString: d.name) == "timer-test")
        #expect(String(cString: d.version) == "0.1.0")
        #expect(d.features == Features.timers.rawValue)
        #expect(d.abi_version >> 16 == UInt32(PH_ABI_MAJOR))
        #expect(d.size == UInt32(MemoryLayout<ph_plugin>.size))
        // The same type twice → the same descriptor.
        #expect(PluginExport.entry(for: TimerPlugin.self, name: "timer-test", version: "0.1.0", features: [.timers]) == p)
    }

    @Test func timersFireInOrderOnTheManualClock() throws {
        let host = FakeHost()
        #expect(host.start(PluginExport.entry(for: TimerPlugin.self, name: "timer-test", version: "0.1.0", features: [.timers])) == PH_OK)
        #expect(host.pendingTimers == 2)
        #expect(host.logs.map(\.text) == ["timers armed"])
        let plugin = try #require(TimerPlugin.last)
        host.advance(by: 999_999)
        #expect(plugin.fired.isEmpty)
        host.advance(by: 5_000_000)
        #expect(plugin.fired.map(\.1) == [1, 2])
        host.stop()
    }

    @Test func defaultCallbacksFreeBuffersTheyDoNotHandle() {
        let host = FakeHost()
        host.start(PluginExport.entry(for: TimerPlugin.self, name: "timer-test", version: "0.1.0", features: [.timers]))
        host.deliver(conn: 3, [1, 2, 3])
        host.deliverDatagram(socket: 4, from: "udp:1.2.3.4:5", [9])
        host.complete(77, bytes: [1])
        #expect(host.slotsOwnedByPlugin == 0)
        #expect(host.violations.isEmpty)
    }

    @Test func startErrorIsReturnedAsStatus() {
        let host = FakeHost()
        #expect(host.start(PluginExport.entry(for: FailingPlugin.self, name: "fail", version: "0", features: [])) == PH_EDENIED)
    }

    @Test func bufferAccessIsBounded() throws {
        let host = FakeHost(slotSize: 8, slotCount: 2)
        host.start(PluginExport.entry(for: TimerPlugin.self, name: "timer-test", version: "0.1.0", features: [.timers]))
        let h = Host(host.host)
        var b = try h.allocBuffer(with: [1, 2, 3])
        #expect(b.array == [1, 2, 3] && b[2] == 3)
        try b.append([4, 5])
        b.consume(1)
        #expect(b.array == [2, 3, 4, 5] && b.offset == 1)
        #expect(throws: PluginError.invalid) { try b.append([0, 0, 0, 0]) }
        #expect(throws: PluginError.invalid) { try b.set([UInt8](repeating: 0, count: 9)) }
        _ = try h.allocBuffer()
        #expect(throws: PluginError.noMemory) { try h.allocBuffer() }
        h.free(b)
        #expect(host.slotsOwnedByPlugin == 1)
    }

    /// ABI 1.1: setPeer calls conn_set_peer on a 1.1 table, and refuses (notSupported) a table
    /// whose size ends before the call, as a 1.0 host's does, without reading past it.
    @Test func setPeerNeedsA1_1HostTable() throws {
        let host = FakeHost()
        let h = Host(host.host)
        try h.setPeer(7, id: Array("-TR3000-abcdefghijkl".utf8))
        #expect(throws: PluginError.invalid) { try h.setPeer(7, id: [UInt8](repeating: 1, count: 41)) }
        var old = host.host.pointee
        old.size = UInt32(MemoryLayout<ph_host>.offset(of: \ph_host.conn_set_peer)!)   // a 1.0 table
        try withUnsafePointer(to: &old) { table in
            #expect(throws: PluginError.notSupported) { try Host(table).setPeer(7, id: [1]) }
        }
    }

    @Test func bytesHelperMallocsACopy() {
        let r = PluginExport.bytes("{}")
        defer { free(r.data) }
        #expect(r.len == 2 && r.data?[0] == UInt8(ascii: "{"))
        #expect(PluginExport.array(nil, 0) == [])
        #expect(jsonEscape("a\"b\n") == "a\\\"b\\n")
    }
}
}
