import Testing
@testable import PeerhostCore

/// StreamSendQueue: the order-keeping queue of one connection's sends (the invariant in its comment).
@Suite struct StreamSendQueueTests {
    /// Slots 1…n of `length` bytes each.
    func queue(_ lengths: [UInt32]) -> StreamSendQueue {
        var q = StreamSendQueue()
        for (i, length) in lengths.enumerated() { q.append(slot: UInt32(i + 1), offset: 8, length: length) }
        return q
    }

    func started(_ q: inout StreamSendQueue, limit: Int = StreamSendQueue.maxGather) -> [(slot: UInt32, offset: UInt32, length: UInt32)] {
        var parts: [(UInt32, UInt32, UInt32)] = []
        _ = q.startSend(limit: limit) { _, e in parts.append((e.slot, e.offset, e.remaining)) }
        return parts
    }

    @Test func aShortSendContinuesWhereTheKernelStoppedAndFinishesInOrder() {
        var q = queue([100, 200, 300])
        #expect(q.queuedBytes == 600)
        #expect(started(&q).map(\.slot) == [1, 2, 3])
        var done: [UInt32] = []
        // The kernel takes 150 bytes: slot 1 whole, 50 of slot 2.
        q.sendCompleted(sent: 150) { done.append($0.slot) }
        #expect(done == [1])
        #expect(q.queuedBytes == 450)
        let next = started(&q)
        #expect(next.map(\.slot) == [2, 3])
        #expect(next[0].offset == 8 + 50 && next[0].length == 150, "the rest of slot 2 goes first")
        q.sendCompleted(sent: 450) { done.append($0.slot) }
        #expect(done == [1, 2, 3])
        #expect(q.isEmpty && q.queuedBytes == 0 && !q.sendInFlight)
    }

    @Test func aSendTakingNothingLeavesTheQueueAsItWas() {
        var q = queue([10, 20])
        _ = started(&q)
        q.sendCompleted(sent: 0) { _ in Issue.record("nothing finished") }
        #expect(q.count == 2 && q.queuedBytes == 30 && !q.sendInFlight)
    }

    @Test func sendsQueuedWhileOneIsInFlightGoNextInOrder() {
        var q = queue([10])
        _ = started(&q)
        q.append(slot: 7, offset: 0, length: 5)
        q.append(slot: 8, offset: 0, length: 5)
        var done: [UInt32] = []
        q.sendCompleted(sent: 10) { done.append($0.slot) }
        #expect(started(&q).map(\.slot) == [7, 8])
        q.sendCompleted(sent: 10) { done.append($0.slot) }
        #expect(done == [1, 7, 8])
    }

    @Test func gatheringIsBoundedByTheLimitAndMaxGather() {
        var q = queue(Array(repeating: 1, count: StreamSendQueue.maxGather + 10))
        #expect(started(&q, limit: 1).count == 1)
        q.sendCompleted(sent: 1) { _ in }
        #expect(started(&q).count == StreamSendQueue.maxGather)
    }

    @Test func anAbortGivesBackOnlyWhatNoSendCovers() {
        var q = queue([10, 10, 10, 10])
        _ = started(&q, limit: 2)
        var removed: [UInt32] = []
        q.removeUnsent { removed.append($0.slot) }
        #expect(removed == [3, 4], "slots 1 and 2 are in the kernel until the send completes")
        #expect(q.queuedBytes == 20)
        var done: [UInt32] = []
        q.sendCompleted(sent: 5) { done.append($0.slot) }
        q.removeUnsent { removed.append($0.slot) }
        #expect(removed == [3, 4, 1, 2] && done.isEmpty && q.isEmpty && q.queuedBytes == 0)
    }

    @Test func theLengthReportedBackIsWhatThePluginHandedOver() {
        var q = queue([16_384])
        _ = started(&q)
        q.sendCompleted(sent: 1_000) { _ in }
        _ = started(&q)
        var lengths: [UInt32] = []
        q.sendCompleted(sent: 15_384) { lengths.append($0.length) }
        #expect(lengths == [16_384])
    }
}
