import Testing
@testable import PeerhostCore

/// The shaper with a manual clock (nanoseconds): no sleeps.
@Suite("Shaper")
struct ShaperTests {
    static let ms: UInt64 = 1_000_000
    static let second: UInt64 = 1_000_000_000

    @Test func bucketRefillsAtItsRateAndGoesIntoDebt() {
        var b = TokenBucket(rate: 1_000_000, now: 0)
        #expect(b.ready)
        #expect(b.tokens == 50_000)                 // 50 ms of burst
        b.take(150_000)
        #expect(!b.ready)
        #expect(b.tokens == -100_000)
        #expect(b.nanosecondsUntilReady > 100 * Self.ms && b.nanosecondsUntilReady < 101 * Self.ms)
        b.refill(now: 100 * Self.ms)
        #expect(b.tokens == 0)
        b.refill(now: 10 * Self.second)             // idle: savings capped at the burst
        #expect(b.tokens == 50_000)
    }

    @Test func unlimitedBucketIsAlwaysReady() {
        var b = TokenBucket(rate: .infinity, now: 0)
        b.take(1 << 40)
        #expect(b.ready)
        #expect(b.nanosecondsUntilReady == 0)
    }

    @Test func loweringTheRateKeepsTheDebt() {
        var b = TokenBucket(rate: 1_000_000, now: 0)
        b.take(1_050_000)                           // 1 MB in debt
        b.setRate(500_000, now: 0)
        #expect(b.tokens == -1_000_000)             // still owed: a lowered cap stays honest
        #expect(b.nanosecondsUntilReady > 2 * Self.second - Self.ms)
    }

    @Test func fairShareByWeightWhenEveryoneWantsMore() {
        let s = weightedFairShare(capacity: 100, weights: [1, 3], demands: [.infinity, .infinity])
        #expect(abs(s[0] - 25) < 1e-6 && abs(s[1] - 75) < 1e-6)
    }

    @Test func fairShareGivesWhatALightChildDoesNotNeedToTheOthers() {
        let s = weightedFairShare(capacity: 100, weights: [1, 1, 2], demands: [10, .infinity, .infinity])
        #expect(abs(s[0] - 10) < 1e-6)
        #expect(abs(s[1] - 30) < 1e-6 && abs(s[2] - 60) < 1e-6)
    }

    @Test func fairShareSpreadsLeftoverWhenAllAreSatisfied() {
        let s = weightedFairShare(capacity: 100, weights: [1, 1], demands: [10, 30])
        #expect(abs(s[0] - 40) < 1e-6 && abs(s[1] - 60) < 1e-6)
        #expect(abs(s.reduce(0, +) - 100) < 1e-6)
    }

    /// Drives two saturating plugins on a saturated global limit for `seconds` of manual time,
    /// 1 ms steps, 16 KiB operations (one slot); returns the bytes each moved.
    static func simulate(global: UInt64, plugins: [(weight: UInt32, limit: UInt64, conns: [UInt32])],
                         direction: ShapingDirection, seconds: Double) -> [[Int]] {
        let shaper = direction == .up ? Shaper(up: global, down: 0, now: 0) : Shaper(up: 0, down: global, now: 0)
        var nodes: [(PluginShaper, [ConnShaper])] = []
        for (i, p) in plugins.enumerated() {
            let node = shaper.addPlugin("p\(i)", weight: p.weight, up: direction == .up ? p.limit : 0,
                                        down: direction == .down ? p.limit : 0, now: 0)
            let conns = p.conns.map { w -> ConnShaper in
                let c = node.openConnection(now: 0)
                c.setWeight(w)
                return c
            }
            nodes.append((node, conns))
        }
        var moved = plugins.map { [Int](repeating: 0, count: $0.conns.count) }
        var now: UInt64 = 0
        let end = UInt64(seconds * 1e9)
        var turn = 0
        while now < end {
            // Everyone tries, in a rotating order (no one is always first); like the session,
            // connections within their share go first, then those that borrow.
            for k in 0..<nodes.count {
                let (node, conns) = nodes[(k + turn) % nodes.count]
                let pi = (k + turn) % nodes.count
                for borrow in [false, true] {
                    for (ci, c) in conns.enumerated() where node.admit(c, direction, now: now, borrow: borrow) {
                        node.charge(c, direction, bytes: 16_384, now: now)
                        moved[pi][ci] += 16_384
                    }
                }
            }
            turn += 1
            now += Self.ms
        }
        return moved
    }

    @Test(arguments: [ShapingDirection.up, .down])
    func pluginLimitHoldsForASaturatingPlugin(direction: ShapingDirection) {
        let limit: UInt64 = 10 << 20
        let moved = Self.simulate(global: 0, plugins: [(1, limit, [100])], direction: direction, seconds: 3)
        let rate = Double(moved[0][0]) / 3
        #expect(rate <= 1.05 * Double(limit), "\(rate) B/s against \(limit)")
        #expect(rate >= 0.95 * Double(limit), "\(rate) B/s against \(limit)")
    }

    @Test func weightsOneToThreeSplitASaturatedGlobalLimit() {
        let moved = Self.simulate(global: 20 << 20, plugins: [(1, 0, [100]), (3, 0, [100])], direction: .up, seconds: 3)
        let a = Double(moved[0][0]), b = Double(moved[1][0])
        let share = a / (a + b)
        #expect(share > 0.22 && share < 0.28, "plugin of weight 1 got \(share)")
        #expect((a + b) / 3 <= 1.05 * Double(20 << 20))
    }

    @Test func oneHeavyConnectionDoesNotTakeItsSiblingsShare() {
        // Weights 100 and 300 inside one plugin's 8 MiB/s: the split follows the weights, whatever
        // the first connection's eagerness.
        let moved = Self.simulate(global: 0, plugins: [(1, 8 << 20, [100, 300])], direction: .down, seconds: 3)
        let share = Double(moved[0][0]) / Double(moved[0][0] + moved[0][1])
        #expect(share > 0.2 && share < 0.3, "connection of weight 100 got \(share)")
    }

    @Test func connectionRateStaysInsideThePluginGrant() {
        let shaper = Shaper(up: 0, down: 0, now: 0)
        let node = shaper.addPlugin("p", weight: 1, up: 1 << 20, down: 0, now: 0)
        let c = node.openConnection(now: 0)
        c.setRate(up: 100 << 20, down: 0, now: 0)   // asks for more than the plugin has
        var moved = 0
        var now: UInt64 = 0
        while now < 2 * Self.second {
            if node.admit(c, .up, now: now) { node.charge(c, .up, bytes: 16_384, now: now); moved += 16_384 }
            now += Self.ms
        }
        #expect(Double(moved) / 2 <= 1.05 * Double(1 << 20))
        // And a lower connection rate applies below the plugin's.
        let d = node.openConnection(now: now)
        d.setRate(up: 256 << 10, down: 0, now: now)
        moved = 0
        let start = now
        while now < start + 2 * Self.second {
            if node.admit(d, .up, now: now) { node.charge(d, .up, bytes: 16_384, now: now); moved += 16_384 }
            now += Self.ms
        }
        #expect(Double(moved) / 2 <= 1.1 * Double(256 << 10), "\(moved)")
        #expect(Double(moved) / 2 >= 0.8 * Double(256 << 10), "\(moved)")
    }

    @Test func aLimitChangedAtRunTimeAppliesAtOnceAndWaitsAreCounted() {
        let shaper = Shaper(up: 0, down: 0, now: 0)
        let node = shaper.addPlugin("p", weight: 1, up: 4 << 20, down: 0, now: 0)
        let c = node.openConnection(now: 0)
        func run(from: UInt64, seconds: UInt64) -> Double {
            var moved = 0, now = from
            while now < from + seconds * Self.second {
                if node.admit(c, .up, now: now) { node.charge(c, .up, bytes: 16_384, now: now); moved += 16_384 }
                now += Self.ms
            }
            return Double(moved) / Double(seconds)
        }
        let before = run(from: 0, seconds: 2)
        node.setLimit(up: 1 << 20, down: 0, now: 2 * Self.second)
        #expect(node.status.upLimit == 1 << 20)
        let after = run(from: 2 * Self.second, seconds: 2)
        #expect(before > 3.5 * Double(1 << 20) && before < 4.2 * Double(1 << 20))
        #expect(after < 1.1 * Double(1 << 20) && after > 0.5 * Double(1 << 20), "\(after)")
        #expect(node.waitNanoseconds[0] > Self.second)   // it waited most of the time
        #expect(node.takeUnpublishedWait()[0] == node.waitNanoseconds[0])
        #expect(node.takeUnpublishedWait()[0] == 0)
        node.setLimit(up: 0, down: 0, now: 4 * Self.second)
        #expect(!node.active)
    }
}
