import CPeerhostShim
import Testing
@testable import PeerhostRing

@Suite struct RingViewTests {
    let geometry = RegionGeometry(ringEntries: 8, slotSize: 4096, slotCount: 4, recvSlots: 2)

    @Test func fullRingPushesBackUntilTheConsumerFrees() throws {
        let region = try SharedRegion.create(name: "t", geometry: geometry)
        var producer = region.rxRing(as: .core)
        var consumer = region.rxRing(as: .plugin)
        for i in 0..<8 { let ok = producer.put(ph_desc(type: PH_MSG_DATA, id: UInt64(i))); #expect(ok) }
        let ninth = producer.put(ph_desc(type: PH_MSG_DATA, id: 8))
        #expect(!ninth, "the ninth entry must not fit")
        producer.publish()
        let ready = consumer.ready()
        #expect(ready == 8)
        let first = consumer.copy(at: 0)
        #expect(first.id == 0)
        consumer.consume(1)
        let again = producer.put(ph_desc(type: PH_MSG_DATA, id: 8))
        #expect(again, "one freed entry makes room for one")
        let over = producer.put(ph_desc(type: PH_MSG_DATA, id: 9))
        #expect(!over)
    }

    @Test func indicesWrapAroundUInt32WithoutLosingOrder() throws {
        let region = try SharedRegion.create(name: "t", geometry: geometry)
        let start: UInt32 = .max - 5
        ph_ring_ctl_force(region.rxControlBlock, start, start)
        var producer = region.rxRing(as: .core)
        var consumer = region.rxRing(as: .plugin)
        var next: UInt64 = 0
        var expected: UInt64 = 0
        for _ in 0..<50 {
            while producer.put(ph_desc(type: PH_MSG_DATA, id: next)) { next += 1 }
            producer.publish()
            let ready = consumer.ready()
            let n = try #require(ready)
            for i in 0..<n {
                let d = consumer.copy(at: i)
                #expect(d.id == expected)
                expected += 1
            }
            consumer.consume(n)
        }
        #expect(expected == next)
        #expect(ph_ring_ctl_tail(region.rxControlBlock) < start, "the index wrapped")
    }

    @Test func aProducerIndexTooFarAheadIsReportedNotTrusted() throws {
        let region = try SharedRegion.create(name: "t", geometry: geometry)
        var consumer = region.txRing(as: .core)
        ph_ring_ctl_force(region.txControlBlock, 1000, 0)   // a hostile plugin's tail
        let ready = consumer.ready()
        let sleep = consumer.prepareSleep()
        #expect(ready == nil)
        #expect(sleep == nil)
    }

    @Test func aConsumerHeadAheadOfTailReadsAsFull() throws {
        let region = try SharedRegion.create(name: "t", geometry: geometry)
        var producer = region.rxRing(as: .core)
        ph_ring_ctl_force(region.rxControlBlock, 0, 500)  // a hostile plugin's head
        // The producer's own count says 0 used; only after a full ring does it reload head,
        // and then it must not believe there is more room than the ring has.
        var written = 0
        while producer.put(ph_desc(type: PH_MSG_DATA)) { written += 1; if written > 100 { break } }
        #expect(written == 8)
    }

    @Test func wakeupIsRequestedOnlyWhenTheConsumerSleeps() throws {
        let region = try SharedRegion.create(name: "t", geometry: geometry)
        var producer = region.rxRing(as: .core)
        var consumer = region.rxRing(as: .plugin)
        producer.put(ph_desc(type: PH_MSG_DATA))
        producer.publish()
        let wants0 = producer.consumerWantsWakeup()
        #expect(!wants0)
        let arrived = consumer.prepareSleep()
        #expect(arrived == 1, "an entry arrived: don't sleep")
        consumer.consume(1)
        let none = consumer.prepareSleep()
        #expect(none == 0)
        producer.put(ph_desc(type: PH_MSG_DATA))
        producer.publish()
        let wants1 = producer.consumerWantsWakeup()
        #expect(wants1)
        consumer.awake()
        let wants2 = producer.consumerWantsWakeup()
        #expect(!wants2)
    }
}
