import CPeerhostShim
import CPeerhostTestSupport
import Glibc
import Testing
@testable import PeerhostRing

/// The ring between two real processes: a forked C peer on one side, the Swift RingView on the other.
@Suite(.serialized) struct TwoProcessRingTests {
    let geometry = RegionGeometry(ringEntries: 1024, slotSize: 4096, slotCount: 4, recvSlots: 2)

    private func peerConfig(_ region: SharedRegion, receive: UInt64, send: UInt64, rxWake: Int32 = -1,
                            txWake: Int32 = -1, echo: Bool = false) -> ph_peer_config {
        var c = ph_peer_config()
        c.rx_ctl = region.rxControlBlock
        c.rx_descs = region.rxDescriptors
        c.tx_ctl = region.txControlBlock
        c.tx_descs = region.txDescriptors
        c.entries = region.geometry.ringEntries
        c.receive_count = receive
        c.send_count = send
        c.rx_wakeup_fd = rxWake
        c.tx_wakeup_fd = txWake
        c.seed = 0x5EED
        c.batch = 32
        c.echo = echo ? 1 : 0
        return c
    }

    @Test func tenMillionMessagesEachWayArriveInOrder() throws {
        let count: UInt64 = 10_000_000
        let region = try SharedRegion.create(name: "t", geometry: geometry)
        var config = peerConfig(region, receive: count, send: count)
        let pid = ph_test_fork_ring_peer(&config)
        #expect(pid > 0)
        var rx = region.rxRing(as: .core)
        var tx = region.txRing(as: .core)
        var sent: UInt64 = 0
        var received: UInt64 = 0
        var badOrder = 0, badCheck = 0
        var seed: UInt64 = 0xC0FFEE
        while sent < count || received < count {
            var put = 0
            while put < 64 && sent < count {
                seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17
                let length = UInt32(truncatingIfNeeded: seed % 16384)
                if !rx.put(ph_desc(type: PH_MSG_DATA, id: sent, arg: ph_test_check(sent, length), length: length)) { break }
                sent += 1; put += 1
            }
            if put > 0 { rx.publish() }
            guard let n = tx.ready() else { Issue.record("corrupt TX index"); break }
            for i in 0..<n {
                let d = tx.copy(at: i)
                if d.id != received { badOrder += 1 }
                if d.arg != ph_test_check(d.id, d.length) { badCheck += 1 }
                received += 1
            }
            if n > 0 { tx.consume(n) }
        }
        #expect(badOrder == 0)
        #expect(badCheck == 0)
        #expect(received == count)
        #expect(ph_test_wait(pid) == 0, "the peer saw every message in order (exit 0)")
    }

    @Test func sleepingConsumerIsWokenAndWakeupsAreFewUnderLoad() throws {
        let region = try SharedRegion.create(name: "t", geometry: geometry)
        let rxWake = try Wakeup.make(nonBlocking: false)
        let txWake = try Wakeup.make(nonBlocking: true)
        defer { rxWake.close(); txWake.close() }
        let count: UInt64 = 200_000
        var config = peerConfig(region, receive: count + 1, send: 0, rxWake: rxWake.fd)
        let pid = ph_test_fork_ring_peer(&config)
        var rx = region.rxRing(as: .core)
        var signals = 0

        // Phase 1: wait until the peer has gone to sleep, then one message must wake it.
        let deadline = ContinuousClock.now + .seconds(10)
        while ph_ring_ctl_need_wakeup(region.rxControlBlock) == 0 && ContinuousClock.now < deadline { usleep(1000) }
        #expect(ph_ring_ctl_need_wakeup(region.rxControlBlock) == 1, "the idle peer asked to be woken")
        rx.put(ph_desc(type: PH_MSG_DATA, id: 0, arg: ph_test_check(0, 0)))
        rx.publish()
        let wants = rx.consumerWantsWakeup()
        #expect(wants)
        rxWake.signal(); signals += 1

        // Phase 2: a burst; the producer writes the eventfd only when asked.
        var sent: UInt64 = 1
        while sent <= count {
            var put = 0
            while put < 256 && sent <= count && rx.put(ph_desc(type: PH_MSG_DATA, id: sent, arg: ph_test_check(sent, 0))) {
                sent += 1; put += 1
            }
            guard put > 0 else { continue }  // a real producer publishes (and may signal) only new entries
            rx.publish()
            if rx.consumerWantsWakeup() { rxWake.signal(); signals += 1 }
        }
        #expect(ph_test_wait(pid) == 0)
        #expect(signals < Int(count / 100), "eventfd writes (\(signals)) must be far fewer than messages (\(count))")
    }
}
