// ABI 1.2 in the SDK: an async control method reaches its plugin through `user` (no globals) and
// answers now, later or as a stream; kv_scan_from's page value decodes.
import PeerhostSDK
import PeerhostTesting
import Testing

final class TallyPlugin: Plugin {
    let host: Host
    var count = 0
    var watcher: ControlCall?
    init(host: Host) { self.host = host }
    func onData(conn: Connection, buffer: Buffer) {
        count += 1
        if let watcher { try? host.reply(watcher, Array("got \(count)".utf8), more: true) }
        host.free(buffer)
    }
}

@_cdecl("sdk_test_tally_count")
func sdkTestTallyCount(_ user: UnsafeMutableRawPointer?, _ call: ph_call) -> ph_status {
    guard let tally = PluginExport.plugin(TallyPlugin.self, from: user) else { return PH_EINVAL }
    do { try tally.host.reply(ControlCall(call), Array("\(tally.count)".utf8)) } catch { return error.status }
    return PH_OK
}

@_cdecl("sdk_test_tally_watch")
func sdkTestTallyWatch(_ user: UnsafeMutableRawPointer?, _ call: ph_call) -> ph_status {
    guard let tally = PluginExport.plugin(TallyPlugin.self, from: user) else { return PH_EINVAL }
    tally.watcher = ControlCall(call)
    return PH_OK   // the answers come from onData
}

// Serialized: PluginExport's registration table is process-global (the SDK issue 14 still has to retire).
@Suite(.serialized) struct AsyncControlTests {
    let entry = PluginExport.entry(for: TallyPlugin.self, name: "tally", version: "0.1.0", features: [.streams, .control])

    @Test func anAsyncMethodReachesItsPluginAndAnswersOnce() throws {
        let fake = FakeHost()
        #expect(fake.start(entry) == PH_OK)
        _ = fake.deliver(conn: 5, Array("x".utf8))
        #expect(sdkTestTallyCount(fake.user, 41) == PH_OK)
        #expect(fake.replies == [.init(call: 41, bytes: Array("1".utf8), flags: 0)])
        // The call is over: a second answer is refused as the runner would.
        let plugin = try #require(PluginExport.plugin(TallyPlugin.self, from: fake.user))
        #expect(throws: PluginError.notConnected) { try plugin.host.reply(ControlCall(41), [1]) }
        #expect(PluginExport.plugin(TimerPlugin.self, from: fake.user) == nil, "another type is not this plugin")
    }

    @Test func aStreamAnswersFromCallbacksUntilItEnds() throws {
        let fake = FakeHost()
        #expect(fake.start(entry) == PH_OK)
        #expect(sdkTestTallyWatch(fake.user, 7) == PH_OK)
        for _ in 0..<3 { _ = fake.deliver(conn: 5, Array("y".utf8)) }
        #expect(fake.replies.map { String(decoding: $0.bytes, as: UTF8.self) } == ["got 1", "got 2", "got 3"])
        #expect(fake.replies.allSatisfy { $0.call == 7 && $0.flags == PH_REPLY_MORE })
        let plugin = try #require(PluginExport.plugin(TallyPlugin.self, from: fake.user))
        try plugin.host.fail(ControlCall(7), "stopped")
        #expect(fake.replies.last == .init(call: 7, bytes: Array("stopped".utf8), flags: PH_REPLY_ERROR))
    }

    @Test func aScanPageSaysWhetherMoreKeysRemain() {
        #expect(KVScanPage(value: 3) == KVScanPage(value: 3))
        #expect(KVScanPage(value: 3).count == 3 && !KVScanPage(value: 3).more)
        let page = KVScanPage(value: Int64(PH_KV_MORE) | 250)
        #expect(page.count == 250 && page.more)
        #expect(KVScanPage.start(after: Array("peer/9".utf8)) == Array("peer/9".utf8) + [0])
    }
}
