import Testing
import BitTorrentProtocol
@testable import BitTorrentPlugin

@Suite struct RequestQueueTests {
    func block(_ i: Int) -> BlockRequest { BlockRequest(piece: i / 64, begin: (i % 64) * 16_384, length: 16_384) }

    @Test func answersInOrderOutOfOrderAndUnaskedForAreTold() {
        var q = RequestQueue()
        for i in 0..<5 { q.append(block(i)) }
        let first = q.remove(block(0)), outOfOrder = q.remove(block(3))
        let again = q.remove(block(3)), unasked = q.remove(block(9))
        #expect(first)
        #expect(outOfOrder, "an answer out of order is found too")
        #expect(!again, "answered once only")
        #expect(!unasked, "never asked for")
        #expect(q.count == 3 && Array(q) == [block(1), block(2), block(4)])
        q.removeAll()
        #expect(q.isEmpty && Array(q).isEmpty)
    }

    /// Past 64 answers the answered prefix is dropped; what is left keeps its order, and the queue
    /// keeps taking requests while it is being answered (a full pipe).
    @Test func aLongRunOfAnswersKeepsTheRestInOrder() {
        var q = RequestQueue()
        var sent = 0, answered = 0
        for _ in 0..<300 { q.append(block(sent)); sent += 1 }
        for round in 0..<800 {
            let found = q.remove(block(answered))
            #expect(found, "round \(round)")
            answered += 1
            if round % 3 != 0 { q.append(block(sent)); sent += 1 }   // the queue drains slowly
            if q.count != sent - answered { Issue.record("count \(q.count) at round \(round)"); break }
        }
        #expect(Array(q) == (answered..<sent).map(block))
        let last = q.remove(block(sent - 1))
        #expect(last && q.count == sent - answered - 1)
    }
}
