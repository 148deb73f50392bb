import Testing
@testable import PeerhostCore

@Suite struct MulticastSendBudgetTests {
    let second: UInt64 = 1_000_000_000

    /// Sends at each time (seconds) and returns which were allowed.
    func sends(_ budget: inout MulticastSendBudget, at times: [UInt64]) -> [Bool] {
        times.map { budget.take(now: $0 * second) }
    }

    @Test func aBurstThenOneDatagramPerInterval() {
        var budget = MulticastSendBudget(now: 100 * second)
        let burst = sends(&budget, at: Array(repeating: 100, count: MulticastSendBudget.burst))
        #expect(burst.allSatisfy { $0 }, "the whole burst goes out")
        #expect(sends(&budget, at: [100, 109, 110, 111, 120]) == [false, false, true, false, true],
                "spent; not yet one interval later; one per 10 s after that")
    }

    @Test func idleTimeRefillsNoMoreThanTheBurst() {
        var budget = MulticastSendBudget(now: 0)
        _ = sends(&budget, at: Array(repeating: 0, count: MulticastSendBudget.burst))
        let afterAnHour = sends(&budget, at: Array(repeating: 3_600, count: 20))
        #expect(afterAnHour.filter { $0 }.count == MulticastSendBudget.burst, "an hour of silence earns one burst, not 360 datagrams")
    }

    @Test func aFullBucketDoesNotBankTime() {
        var budget = MulticastSendBudget(now: 0)
        let burst = sends(&budget, at: Array(repeating: 1_000, count: MulticastSendBudget.burst))
        #expect(burst.allSatisfy { $0 })
        #expect(sends(&budget, at: [1_005, 1_010]) == [false, true], "the interval counts from the first send, not from creation")
    }
}
