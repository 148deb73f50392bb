import Testing
@testable import BitTorrentProtocol

@Suite struct RoutingTableTests {
    let own = NodeID([UInt8](repeating: 0, count: 20))!

    /// An id sharing exactly `prefix` leading bits with the all-zero id, made unique by `tag`.
    func id(prefix: Int, tag: UInt8) -> NodeID {
        var b = [UInt8](repeating: 0, count: 20)
        b[prefix / 8] |= 0x80 >> UInt8(prefix % 8)
        b[19] |= tag
        if prefix / 8 == 19 { b[18] = tag }   // keep ids distinct when the set bit is in the last byte
        return NodeID(b)!
    }
    func node(_ id: NodeID, _ n: Int) -> NodeInfo {
        NodeInfo(id: id, endpoint: UDPEndpoint(ip: [10, 0, UInt8(n >> 8), UInt8(n & 0xff)], port: 6881)!)
    }

    @Test func splitsOnlyTheBucketHoldingOurOwnID() {
        var t = RoutingTable(own: own, k: 8)
        // 8 far nodes (first bit differs) fill the single bucket.
        for i in 0..<8 { #expect(t.responded(node(id(prefix: 0, tag: UInt8(i + 1)), i), now: 0) == .added) }
        #expect(t.bucketCount == 1)
        // The 9th far node splits the bucket (it holds our id) and then finds its half full.
        let ninth = t.responded(node(id(prefix: 0, tag: 9), 9), now: 0)
        #expect(t.bucketCount >= 2)
        guard case .full = ninth else { Issue.record("far bucket accepted a 9th node: \(ninth)"); return }
        // Nodes near us still get in: their bucket is the one with our id.
        for i in 0..<8 { #expect(t.responded(node(id(prefix: 5, tag: UInt8(i + 1)), 100 + i), now: 0) == .added) }
        #expect(t.count == 16)
        #expect(t.responded(node(own, 999), now: 0) == .refused)
    }

    @Test func statusFollowsBEP5Timing() {
        var t = RoutingTable(own: own)
        let a = node(id(prefix: 1, tag: 1), 1)
        t.responded(a, now: 0)
        #expect(t.entry(a.id)?.status(now: 10) == .good)
        #expect(t.entry(a.id)?.status(now: 15 * 60) == .questionable)
        // A query from a node that has answered us before makes it good again.
        t.queried(a, now: 1000)
        #expect(t.entry(a.id)?.status(now: 1001) == .good)
        // A node that only ever queried us is questionable.
        let b = node(id(prefix: 2, tag: 1), 2)
        t.queried(b, now: 1000)
        #expect(t.entry(b.id)?.status(now: 1001) == .questionable)
        // Two failures in a row: bad.
        t.failed(a.id, now: 1002)
        #expect(t.entry(a.id)?.status(now: 1002) == .good)
        t.failed(a.id, now: 1003)
        #expect(t.entry(a.id)?.status(now: 1003) == .bad)
        t.responded(a, now: 1004)
        #expect(t.entry(a.id)?.failures == 0)
    }

    @Test func badNodesAreReplacedAndFullBucketsAskForAPing() {
        var t = RoutingTable(own: own, k: 2)
        // Fill the far bucket after the table has split once (own bucket separate).
        t.responded(node(id(prefix: 0, tag: 1), 1), now: 0)
        t.responded(node(id(prefix: 0, tag: 2), 2), now: 0)
        t.responded(node(id(prefix: 3, tag: 1), 3), now: 0)   // splits
        let extra = node(id(prefix: 0, tag: 3), 4)
        guard case .full(let ping) = t.responded(extra, now: 1) else { Issue.record("expected full"); return }
        #expect(ping == nil)   // everyone there is good
        // Later the old nodes are questionable: the least recently seen is named for a ping.
        guard case .full(let ping2) = t.responded(extra, now: 2000) else { Issue.record("expected full"); return }
        #expect(ping2 != nil)
        // It fails twice: the waiting replacement takes its place.
        t.failed(ping2!.id, now: 2001)
        t.failed(ping2!.id, now: 2002)
        #expect(t.entry(ping2!.id) == nil)
        #expect(t.entry(extra.id) != nil)
    }

    @Test func closestIsSortedByXORAndSkipsBadNodes() {
        var t = RoutingTable(own: own, k: 8)
        var all: [NodeInfo] = []
        var g = SplitMix64(seed: 42)
        for i in 0..<200 {
            let n = node(NodeID.random(using: &g), i)
            if t.responded(n, now: 0) == .added { all.append(n) }
        }
        #expect(t.count == all.count && t.count > 20)
        let target = NodeID.random(using: &g)
        let got = t.closest(to: target, count: 8)
        let expected = all.sorted { target.closer($0.id, than: $1.id) }.prefix(8)
        #expect(got == Array(expected))
        t.failed(got[0].id, now: 1); t.failed(got[0].id, now: 1)
        #expect(!t.closest(to: target, count: 8).contains(got[0]))
    }

    @Test func refreshTargetsLandInTheirBuckets() {
        var t = RoutingTable(own: own, k: 2, now: 0)
        for i in 0..<30 { t.responded(node(id(prefix: i % 10, tag: UInt8(i + 1)), i), now: 0) }
        var g = SplitMix64(seed: 1)
        #expect(t.refreshTargets(now: 100, using: &g).isEmpty)
        let targets = t.refreshTargets(now: 15 * 60, using: &g)
        #expect(targets.count == t.bucketCount)
        for (i, target) in targets.enumerated() {
            #expect(min(own.commonPrefixLength(with: target), t.bucketCount - 1) == i)
        }
        #expect(t.refreshTargets(now: 15 * 60 + 1, using: &g).isEmpty)
    }

    @Test func serializationRoundTripsAndDecodesStrictly() throws {
        var t = RoutingTable(own: NodeID(Array("abcdefghij0123456789".utf8))!)
        for i in 0..<5 { t.responded(node(id(prefix: i, tag: 1), i), now: 0) }
        t.responded(NodeInfo(id: id(prefix: 7, tag: 2), endpoint: UDPEndpoint(host: "2001:db8::1", port: 7)!), now: 0)
        let data = t.serialize()
        #expect(Array(data[0..<5]) == Array("PHRT".utf8) + [1])
        let back = try RoutingTable.deserialize(data)
        #expect(back.own == t.own)
        #expect(Set(back.entries.map(\.info)) == Set(t.entries.map(\.info)))
        #expect(back.entries.allSatisfy { $0.status(now: 0) == .questionable })   // restored: unverified

        func refusal(_ b: [UInt8]) -> RoutingTable.DecodeError? {
            do { _ = try RoutingTable.deserialize(b); return nil } catch { return error }
        }
        #expect(refusal(Array(data.dropLast()))?.reason.contains("cut short") == true)
        #expect(refusal(data + [0])?.reason == "1 bytes follow the last node")
        var v2 = data; v2[4] = 2
        #expect(refusal(v2) == RoutingTable.DecodeError(offset: 4, reason: "version 2 is not 1"))
        var fam = data; fam[27 + 20] = 5
        #expect(refusal(fam) == RoutingTable.DecodeError(offset: 47, reason: "address family 5 is not 4 or 6"))
        #expect(refusal(Array("XXXX".utf8) + data.dropFirst(4))?.offset == 0)
        #expect(refusal([])?.reason.contains("shorter") == true)
    }
}
