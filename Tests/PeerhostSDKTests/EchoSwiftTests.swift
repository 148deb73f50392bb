// EchoSwift's logic through the SDK's C trampolines, driven by FakeHost: no runner, no rings.
@testable import EchoSwiftPlugin
import Foundation
import PeerhostSDK
import PeerhostTesting
import Testing

/// Plugin globals (echoStats, PluginExport's table) are process-wide and single-threaded by the ABI
/// contract, so every suite of this target runs serialized under one parent.
@Suite(.serialized)
enum PeerhostSDKSuite {}

extension PeerhostSDKSuite {
@Suite
struct EchoSwiftTests {
    func started(config: String = #"{"listen":"tcp:127.0.0.1:9000"}"#) -> FakeHost {
        echoStats = EchoStats()
        let host = FakeHost()
        #expect(host.start(peerhostPluginV1(), config: config) == PH_OK)
        return host
    }

    @Test func startListensOnTheConfiguredAddress() {
        let host = started()
        #expect(host.requests == [FakeHost.RequestRecord(id: 1, kind: "listen", text: "tcp:127.0.0.1:9000")])
        let defaults = started(config: "")
        #expect(defaults.requests.first?.text == EchoSwift.defaultListen)
    }

    @Test func dataIsEchoedZeroCopy() {
        let host = started()
        host.complete(1, value: 100)
        host.accept(listener: 100, conn: 7)
        let slot = host.deliver(conn: 7, Array("ping".utf8), offset: 3)
        #expect(host.sends == [FakeHost.Sent(conn: 7, slot: slot!, bytes: Array("ping".utf8))], "the received slot goes back")
        #expect(host.violations.isEmpty)
        host.completeSends()
        #expect(host.slotsOwnedByPlugin == 0)
    }

    @Test func eagainQueuesAndOnWritableRetriesInOrder() {
        let host = started()
        host.accept(listener: 100, conn: 7)
        host.sendResults = [PH_EAGAIN]
        host.deliver(conn: 7, Array("one".utf8))     // EAGAIN → queued
        host.deliver(conn: 7, Array("two".utf8))     // queued behind "one" (order per connection)
        host.deliver(conn: 8, Array("other".utf8))   // another connection is not held up
        #expect(host.sends.map { String(decoding: $0.bytes, as: UTF8.self) } == ["other"])
        host.sendResults = [PH_EAGAIN]
        host.writable(conn: 7)                        // "one" meets EAGAIN again: both stay
        #expect(host.sends.count == 1)
        host.writable(conn: 7)
        #expect(host.sends.map { String(decoding: $0.bytes, as: UTF8.self) } == ["other", "one", "two"])
        #expect(host.violations.isEmpty)
    }

    @Test func closingAConnectionFreesItsQueuedBuffers() {
        let host = started()
        host.accept(listener: 100, conn: 7)
        host.sendResults = [PH_EAGAIN]
        host.deliver(conn: 7, Array("lost".utf8))
        #expect(host.slotsOwnedByPlugin == 1)
        host.close(conn: 7)
        #expect(host.slotsOwnedByPlugin == 0)
        #expect(host.violations.isEmpty)
    }

    @Test func greetingGoesToNewConnectionsAndStatsCount() throws {
        let host = started()
        #expect(echoSwiftSetGreeting("hello\n") == 6)
        host.accept(listener: 100, conn: 9)
        #expect(host.sends.last == FakeHost.Sent(conn: 9, slot: host.sends.last!.slot, bytes: Array("hello\n".utf8)))
        host.deliver(conn: 9, [1, 2, 3])
        let stats = echoSwiftStats()
        defer { free(stats.data) }
        let json = try #require(try JSONSerialization.jsonObject(with: Data(bytes: stats.data!, count: stats.len)) as? [String: Any])
        #expect(json["connections"] as? Int == 1)
        #expect(json["bytes"] as? Int == 3)
        #expect(json["greeting"] as? String == "hello\n")
    }

    @Test func controlMethodsOfEveryType() {
        #expect(echoSwiftAdd(40, 2) == 42)
        #expect(echoSwiftScale(1.5, 3) == 4.5)
        #expect(echoSwiftToggle(true) == 1 && echoSwiftToggle(false) == 0)
        let blob: [UInt8] = [1, 0, 2, 0, 250]
        #expect(echoSwiftChecksum(blob, blob.count) == 253)
        let r = echoSwiftEchoBytes(blob, blob.count, "ok")
        defer { free(r.data) }
        #expect(Array(UnsafeBufferPointer(start: r.data, count: r.len)) == blob + Array("ok".utf8))
    }
}
}
