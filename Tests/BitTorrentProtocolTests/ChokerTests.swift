import Testing
@testable import BitTorrentProtocol

@Suite struct ChokerTests {
    typealias Stats = Choker.PeerStats

    func swarm() -> [Stats] {
        // Six interested peers with download rates 10…60 (ids 1…6) and one uninterested fast peer.
        var peers: [Stats] = []
        for i in 1...6 {
            let rate = Double(i * 10)
            peers.append(Stats(id: PeerKey(i), interested: true, downloadRate: rate, uploadRate: 70 - rate, connectedAt: -1000))
        }
        peers.append(Stats(id: 99, interested: false, downloadRate: 1000, uploadRate: 1000, connectedAt: -1000))
        return peers
    }

    @Test func leechingUnchokesTheBestUploadersToUsPlusOneOptimistic() {
        var c = Choker(slots: 4, seed: 7)
        let u = c.rechoke(peers: swarm(), seeding: false, now: 0)
        #expect(u.isSuperset(of: [6, 5, 4, 3]))
        #expect(u.count == 5)
        #expect(!u.contains(99), "not interested: stays choked")
        #expect(c.optimistic == 1 || c.optimistic == 2)
        #expect(u.contains(c.optimistic!))
    }

    @Test func seedingRanksByUploadRate() {
        var c = Choker(slots: 2, seed: 7)
        let u = c.rechoke(peers: swarm(), seeding: true, now: 0)
        #expect(u.isSuperset(of: [1, 2]))
        #expect(u.count == 3)
    }

    @Test func snubbedPeersLoseTheirRegularSlotWhenLeeching() {
        var peers = swarm()
        peers[5].isSnubbed = true   // id 6, the fastest
        var c = Choker(slots: 3, seed: 3)
        let u = c.rechoke(peers: peers, seeding: false, now: 0)
        #expect(u.isSuperset(of: [5, 4, 3]))
        #expect(u.count == 4)
    }

    @Test func optimisticUnchokeRotatesEvery30Seconds() {
        var c = Choker(slots: 1, seed: 11)
        // Distinct rates: peer 8 holds the regular slot, 1…7 compete for the optimistic one.
        let peers = (1...8).map { Stats(id: PeerKey($0), interested: true, downloadRate: Double($0), connectedAt: -1000) }
        _ = c.rechoke(peers: peers, seeding: false, now: 0)
        let first = c.optimistic
        #expect(first != nil)
        _ = c.rechoke(peers: peers, seeding: false, now: 10)
        _ = c.rechoke(peers: peers, seeding: false, now: 20)
        #expect(c.optimistic == first, "kept for 30 s")
        var seen = Set<PeerKey>()
        for t in stride(from: 30.0, through: 600, by: 30) {
            _ = c.rechoke(peers: peers, seeding: false, now: t)
            seen.insert(c.optimistic!)
        }
        #expect(seen.count > 3, "rotates among choked peers: \(seen)")
        #expect(!seen.contains(8), "never the peer that holds a regular slot")
    }

    @Test func optimisticIsReplacedWhenItLeaves() {
        var c = Choker(slots: 0, seed: 5)
        let peers = [Stats(id: 1, interested: true), Stats(id: 2, interested: true)]
        _ = c.rechoke(peers: peers, seeding: false, now: 0)
        let o = c.optimistic!
        let u = c.rechoke(peers: peers.filter { $0.id != o }, seeding: false, now: 1)
        #expect(u == [o == 1 ? 2 : 1])
        #expect(c.rechoke(peers: [], seeding: false, now: 2).isEmpty)
        #expect(c.optimistic == nil)
    }

    @Test func newPeersAreThreeTimesAsLikelyToBeOptimistic() {
        var c = Choker(slots: 0, seed: 42)
        var newWins = 0
        let rounds = 2000
        for r in 0..<rounds {
            let now = Double(r) * 30
            let peers = [Stats(id: 1, interested: true, connectedAt: now - 10),      // new
                         Stats(id: 2, interested: true, connectedAt: now - 10_000)]  // old
            _ = c.rechoke(peers: peers, seeding: false, now: now)
            if c.optimistic == 1 { newWins += 1 }
        }
        let share = Double(newWins) / Double(rounds)
        #expect(share > 0.70 && share < 0.80, "new peer share \(share), expected 0.75")
    }

    @Test func weightFollowsContribution() {
        let c = Choker()
        let giver = Stats(id: 1, interested: true, downloadRate: 1_000_000, uploadRate: 100_000)
        let taker = Stats(id: 2, interested: true, downloadRate: 0, uploadRate: 1_000_000)
        let even = Stats(id: 3, interested: true, downloadRate: 50_000, uploadRate: 50_000)
        #expect(c.weight(for: giver) > 100)
        #expect(c.weight(for: taker) < 100)
        #expect(c.weight(for: even) == 100)
        #expect(c.weight(for: Stats(id: 4, interested: true, downloadRate: 1e12, uploadRate: 0)) == 1000)
        #expect(c.weight(for: Stats(id: 5, interested: true, downloadRate: 0, uploadRate: 1e12)) == 1)
        var snubbed = even
        snubbed.isSnubbed = true
        #expect(c.weight(for: snubbed) <= 10)
        #expect(c.weight(for: taker, seeding: true) == 100)
    }
}
