import Testing
@testable import BitTorrentProtocol

@Suite struct TrackerTiersTests {
    @Test func tiersAreTriedInOrderAndSuccessMovesToTheFront() {
        var g = SplitMix64(seed: 3)
        var t = TrackerTiers(announceList: [["a1", "a2", "a3"], [], ["b1"]], announce: "ignored", using: &g)
        #expect(t.tiers.count == 2 && Set(t.tiers[0]) == ["a1", "a2", "a3"] && t.tiers[1] == ["b1"])
        var tried: [String] = []
        var wrapped = false
        while !wrapped, let u = t.current {
            tried.append(u)
            wrapped = t.failed(u)
        }
        #expect(tried.count == 4 && tried.last == "b1" && Set(tried.prefix(3)) == ["a1", "a2", "a3"])
        // After a full round, tier 0 again; a success moves that URL first.
        let second = t.tiers[0][1]
        _ = t.failed(t.current!)
        #expect(t.current == second)
        t.succeeded(second)
        #expect(t.tiers[0][0] == second && t.current == second)
        let notCurrent = t.failed("not-current")
        #expect(notCurrent == false)

        var single = TrackerTiers(announceList: [], announce: "http://x/announce", using: &g)
        #expect(single.current == "http://x/announce")
        let wrappedAround = single.failed("http://x/announce")
        #expect(wrappedAround)
        #expect(TrackerTiers(announceList: [], announce: nil, using: &g).current == nil)
    }

    @Test func scheduleHonoursIntervalsAndBacksOff() {
        var s = AnnounceSchedule(now: 0)
        #expect(s.isDue(now: 0))
        s.succeeded(interval: 1800, minInterval: 900, now: 0)
        #expect(!s.isDue(now: 1799) && s.isDue(now: 1800))
        // An event may go early, but not inside min interval.
        let early = s.announceEarly(now: 100)
        #expect(!early)
        #expect(s.next == 900)
        let later = s.announceEarly(now: 901)
        #expect(later && s.isDue(now: 901))
        // A tracker asking for 0 s still waits 30 s.
        s.succeeded(interval: 0, minInterval: nil, now: 1000)
        #expect(s.next == 1030)
        s.failed(now: 2000); #expect(s.next == 2060)
        s.failed(now: 2060); #expect(s.next == 2180)
        for _ in 0..<20 { s.failed(now: 5000) }
        #expect(s.next == 5000 + 3600 && s.failures == 22)
    }
}
