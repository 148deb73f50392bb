import Testing
@testable import PeerhostCore

/// PluginTimers: the user-space heap behind one io_uring timeout per plugin (issue 15).
@Suite struct PluginTimersTests {
    @Test func dueTimersComeOutInDeadlineOrderAndCancelledOnesNever() {
        var t = PluginTimers()
        t.set(1, deadline: 300)
        t.set(2, deadline: 100)
        t.set(3, deadline: 200)
        t.set(4, deadline: 150)
        let first = t.cancel(4), second = t.cancel(4)
        #expect(first && !second, "a second cancel finds nothing")
        let earliest = t.earliest()
        #expect(earliest == 100)
        let none = t.popDue(now: 99), some = t.popDue(now: 250)
        #expect(none.isEmpty)
        #expect(some == [2, 3])
        let next = t.earliest()
        #expect(t.count == 1 && next == 300)
        let rest = t.popDue(now: .max), after = t.earliest()
        #expect(rest == [1])
        #expect(t.isEmpty && after == nil)
    }

    @Test func settingAnIdAgainMovesItsDeadline() {
        var t = PluginTimers()
        t.set(7, deadline: 1_000)
        t.set(7, deadline: 10)
        #expect(t.count == 1)
        let due = t.popDue(now: 10), later = t.popDue(now: 5_000)
        #expect(due == [7])
        #expect(later.isEmpty, "the old deadline is gone with it")
    }

    @Test func manyTimersSetAndCancelledStayCheap() {
        var t = PluginTimers()
        for id in 0..<200_000 { t.set(UInt64(id), deadline: 3_600_000_000_000 + UInt64(id % 977)) }
        #expect(t.count == 200_000)
        for id in 0..<199_990 { t.cancel(UInt64(id)) }
        #expect(t.count == 10)
        let left = t.popDue(now: .max)
        #expect(left.count == 10)
        t.set(1, deadline: 5)
        t.removeAll()
        #expect(t.isEmpty)
    }
}
