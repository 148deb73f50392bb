import Testing
@testable import BitTorrentProtocol

@Suite struct PiecePickerTests {
    static let block = 16384

    /// `pieces` pieces of `blocks` full blocks each.
    func picker(pieces: Int, blocks: Int = 1, have: Bitfield? = nil, randomFirst: Int = 0, seed: UInt64 = 1) -> PiecePicker {
        PiecePicker(pieceCount: pieces, pieceSize: { _ in blocks * Self.block }, have: have ?? Bitfield(count: pieces),
                    randomFirstPieces: randomFirst, rng: seed)
    }

    func bits(_ count: Int, _ set: [Int]) -> Bitfield {
        var b = Bitfield(count: count)
        for i in set { b[i] = true }
        return b
    }

    @Test func splitsPiecesIntoBlocksWithAShortLastBlock() {
        var p = PiecePicker(pieceCount: 2, pieceSize: { $0 == 1 ? 40000 : 32768 }, have: Bitfield(count: 2), rng: 1)
        #expect(p.blockCount(piece: 0) == 2)
        #expect(p.blockCount(piece: 1) == 3)
        let got = p.pick(for: 1, peerHas: bits(2, [1]), count: 10)
        #expect(got == [BlockRequest(piece: 1, begin: 0, length: 16384), BlockRequest(piece: 1, begin: 16384, length: 16384),
                        BlockRequest(piece: 1, begin: 32768, length: 7232)])
    }

    @Test func picksRarestFirst() {
        var p = picker(pieces: 6)
        // availability: piece 0:3, 1:1, 2:2, 3:4, 4:1, 5:0 (nobody has 5)
        p.peerHas(bitfield: bits(6, [0, 1, 2, 3, 4]))
        p.peerHas(bitfield: bits(6, [0, 2, 3]))
        p.peerHas(bitfield: bits(6, [0, 3]))
        p.peerHas(piece: 3)
        #expect(p.availability == [3, 1, 2, 4, 1, 0])
        let all = bits(6, [0, 1, 2, 3, 4])
        var order: [Int] = []
        for _ in 0..<5 { order += p.pick(for: 9, peerHas: all, count: 1).map(\.piece) }
        #expect(Set(order.prefix(2)) == [1, 4])   // the two rarest, in random order
        #expect(Array(order.dropFirst(2)) == [2, 0, 3])
        #expect(p.pick(for: 9, peerHas: all, count: 1).isEmpty, "piece 5: this peer does not have it")
    }

    @Test func rarestTiesAreBrokenAtRandom() {
        var firsts = Set<Int>()
        for seed in UInt64(1)...20 {
            var p = picker(pieces: 8, seed: seed)
            p.peerHas(bitfield: Bitfield.full(count: 8))
            firsts.insert(p.pick(for: 1, peerHas: .full(count: 8), count: 1)[0].piece)
        }
        #expect(firsts.count > 3, "equally rare pieces are picked in varying order: \(firsts)")
    }

    @Test func firstPiecesAreRandomThenRarest() {
        // Piece 0 is the rarest; with random first pieces it is not always picked first.
        var firsts = Set<Int>()
        for seed in UInt64(1)...20 {
            var p = picker(pieces: 8, randomFirst: 4, seed: seed)
            p.peerHas(bitfield: Bitfield.full(count: 8))
            p.peerHas(bitfield: bits(8, [1, 2, 3, 4, 5, 6, 7]))
            firsts.insert(p.pick(for: 1, peerHas: .full(count: 8), count: 1)[0].piece)
        }
        #expect(firsts.count > 3, "random first pieces: \(firsts)")

        // Once `randomFirstPieces` pieces are verified, the rarest comes first every time.
        for seed in UInt64(1)...10 {
            var p = picker(pieces: 8, have: bits(8, [4, 5, 6, 7]), randomFirst: 4, seed: seed)
            p.peerHas(bitfield: Bitfield.full(count: 8))
            p.peerHas(bitfield: bits(8, [1, 2, 3, 4, 5, 6, 7]))
            #expect(p.pick(for: 1, peerHas: .full(count: 8), count: 1)[0].piece == 0)
        }
    }

    @Test func neverPicksPiecesWeHave() {
        var p = picker(pieces: 4, have: bits(4, [0, 2]))
        #expect(p.isInterested(in: bits(4, [1])))
        #expect(!p.isInterested(in: bits(4, [0, 2])))
        let got = p.pick(for: 1, peerHas: .full(count: 4), count: 10)
        #expect(Set(got.map(\.piece)) == [1, 3])
    }

    @Test func aPeerKeepsToItsOwnPiecesAndJoinsOthersOnlyWhenNoNewPieceIsLeft() {
        var p = picker(pieces: 2, blocks: 4)
        p.peerHas(bitfield: bits(2, [0]))   // piece 0 is more common than piece 1
        p.peerHas(bitfield: .full(count: 2))
        p.peerHas(bitfield: .full(count: 2))
        let a = p.pick(for: 1, peerHas: .full(count: 2), count: 2)
        #expect(a.map(\.piece) == [1, 1] && a.map(\.begin) == [0, 16384])
        // Peer 2 starts a piece of its own rather than share peer 1's (shared, a piece waits for
        // its slowest sender) ...
        let b = p.pick(for: 2, peerHas: .full(count: 2), count: 3)
        #expect(b.map(\.piece) == [0, 0, 0] && b.map(\.begin) == [0, 16384, 32768])
        // ... and joins piece 1 once no new piece is left, after finishing its own.
        let c = p.pick(for: 2, peerHas: .full(count: 2), count: 3)
        #expect(c.map(\.piece) == [0, 1, 1] && c.map(\.begin) == [49152, 32768, 49152])
        // Peer 1 continues its own piece first.
        p.requestFailed(c[1], peer: 2)
        #expect(p.pick(for: 1, peerHas: .full(count: 2), count: 1).map(\.begin) == [32768])
    }

    @Test func piecesNobodyFetchesAreContinuedBeforeNewOnes() {
        var p = picker(pieces: 3, blocks: 3)
        p.peerHas(bitfield: .full(count: 3))
        let a = p.pick(for: 1, peerHas: .full(count: 3), count: 2)
        _ = p.blockReceived(a[0], from: 1)
        p.peerGone(1)   // its other request comes back: the piece is partial and idle
        let b = p.pick(for: 2, peerHas: .full(count: 3), count: 2)
        #expect(b.map(\.piece) == [a[0].piece, a[0].piece], "the idle piece is finished before a new one starts")
    }

    @Test func withoutNewPiecesOnlyStartedOnesAreFinished() {
        var p = picker(pieces: 4, blocks: 4)
        p.peerHas(bitfield: .full(count: 4))
        let a = p.pick(for: 1, peerHas: .full(count: 4), count: 2)
        let b = p.pick(for: 2, peerHas: .full(count: 4), count: 8, startNew: false)
        #expect(b.map(\.piece) == [a[0].piece, a[0].piece], "only the started piece's two other blocks: \(b)")
        #expect(p.pick(for: 3, peerHas: .full(count: 4), count: 8, startNew: false).isEmpty || p.isEndgame)
    }

    @Test func allowedFastRestrictsThePick() {
        var p = picker(pieces: 10)
        p.peerHas(bitfield: .full(count: 10))
        let got = p.pick(for: 1, peerHas: .full(count: 10), count: 10, onlyFrom: [3, 7, 42])
        #expect(Set(got.map(\.piece)) == [3, 7])
    }

    @Test func suggestedPiecesComeBeforeRarest() {
        var p = picker(pieces: 4)
        p.peerHas(bitfield: .full(count: 4))
        p.peerHas(bitfield: bits(4, [1, 2, 3]))   // piece 0 is the rarest
        let got = p.pick(for: 1, peerHas: .full(count: 4), count: 2, onlyFrom: nil, suggested: [3, 9, 3])
        #expect(got.map(\.piece) == [3, 0], "the valid suggestion once, then rarest")
        // A suggestion for a piece we have or the peer lacks is ignored.
        var q = picker(pieces: 4, have: bits(4, [3]))
        q.peerHas(bitfield: .full(count: 4))
        #expect(q.pick(for: 1, peerHas: bits(4, [0, 3]), count: 1, onlyFrom: nil, suggested: [3, 1]).map(\.piece) == [0])
    }

    @Test func endgameAsksOtherPeersButNeverTheSamePeerTwice() {
        var p = picker(pieces: 1, blocks: 2)
        p.peerHas(bitfield: .full(count: 1))
        let all = Bitfield.full(count: 1)
        #expect(!p.isEndgame)
        let a = p.pick(for: 1, peerHas: all, count: 5)
        #expect(a.count == 2)
        #expect(p.isEndgame)
        #expect(p.pick(for: 1, peerHas: all, count: 5).isEmpty, "endgame never re-requests from the same peer")
        let b = p.pick(for: 2, peerHas: all, count: 5)
        #expect(Set(b) == Set(a))
        #expect(p.pick(for: 2, peerHas: all, count: 5).isEmpty)

        let first = p.blockReceived(a[0], from: 1)
        #expect(!first.pieceComplete)
        #expect(first.alsoRequestedFrom == [2], "the engine cancels it at peer 2")
        #expect(!p.outstanding(for: 2).contains(a[0]))
        #expect(!p.isNeeded(a[0]))
        // The late copy from peer 2 is a duplicate.
        let dup = p.blockReceived(a[0], from: 2)
        #expect(!dup.pieceComplete && dup.alsoRequestedFrom.isEmpty)
        // A third peer is only offered the block still missing.
        #expect(p.pick(for: 3, peerHas: all, count: 5) == [a[1]])
        // The cap: a block outstanding from 3 peers is not requested from a fourth.
        #expect(p.pick(for: 4, peerHas: all, count: 5).isEmpty)
        let last = p.blockReceived(a[1], from: 3)
        #expect(last.pieceComplete)
        #expect(Set(last.alsoRequestedFrom) == [1, 2])
        #expect(p.outstanding(for: 1).isEmpty && p.outstanding(for: 2).isEmpty)
    }

    @Test func failedPieceIsRequestedAgain() {
        var p = picker(pieces: 2, blocks: 2)
        p.peerHas(bitfield: .full(count: 2))
        let got = p.pick(for: 1, peerHas: .full(count: 2), count: 4)
        #expect(got.count == 4)
        let piece0 = got.filter { $0.piece == 0 }
        #expect(!p.blockReceived(piece0[0], from: 1).pieceComplete)
        #expect(p.blockReceived(piece0[1], from: 1).pieceComplete)
        #expect(p.awaitingVerification == [0])
        #expect(p.pick(for: 2, peerHas: bits(2, [0]), count: 4).isEmpty, "awaiting its hash check")
        #expect(p.pieceFailed(0) == [1], "the peer that sent the bad piece")
        #expect(!p.have[0])
        let again = p.pick(for: 2, peerHas: bits(2, [0]), count: 4)
        #expect(Set(again) == Set(piece0))

        for b in again { p.blockReceived(b, from: 2) }
        #expect(p.pieceVerified(0) == [2])
        #expect(p.have[0] && p.awaitingVerification.isEmpty)
        #expect(!p.isComplete)
        for b in got where b.piece == 1 { p.blockReceived(b, from: 1) }
        p.pieceVerified(1)
        #expect(p.isComplete && !p.isEndgame)
        #expect(p.pick(for: 1, peerHas: .full(count: 2), count: 4).isEmpty)
    }

    @Test func peerGoneReturnsItsBlocks() {
        var p = picker(pieces: 3, blocks: 2)
        p.peerHas(bitfield: .full(count: 3))
        let a = p.pick(for: 1, peerHas: .full(count: 3), count: 4)
        #expect(p.outstanding(for: 1) == Set(a))
        p.blockReceived(a[0], from: 1)
        p.peerGone(1)
        #expect(p.outstanding(for: 1).isEmpty)
        // Every block but the one that arrived is wanted again; the partial piece's block comes first.
        let b = p.pick(for: 2, peerHas: .full(count: 3), count: 10)
        #expect(b.first == a[1])
        #expect(Set(a.dropFirst()).isSubset(of: Set(b)))
        #expect(!b.contains(a[0]))
        #expect(b.count == 5)
    }

    @Test func rejectedRequestGoesBackAndPeerLostLowersAvailability() {
        var p = picker(pieces: 2)
        let peer1 = bits(2, [0, 1])
        p.peerHas(bitfield: peer1)
        p.peerHas(bitfield: bits(2, [1]))
        #expect(p.availability == [1, 2])
        let a = p.pick(for: 1, peerHas: peer1, count: 1)
        #expect(a.map(\.piece) == [0])
        p.requestFailed(a[0], peer: 1)
        #expect(p.outstanding(for: 1).isEmpty)
        #expect(p.pick(for: 2, peerHas: peer1, count: 1) == a)
        p.peerLost(bitfield: peer1)
        #expect(p.availability == [0, 1])
    }

    @Test func unknownOrMalformedBlocksAreIgnored() {
        var p = picker(pieces: 1, blocks: 2)
        p.peerHas(bitfield: .full(count: 1))
        _ = p.pick(for: 1, peerHas: .full(count: 1), count: 2)
        for bad in [BlockRequest(piece: 0, begin: 100, length: 16384), BlockRequest(piece: 0, begin: 0, length: 100),
                    BlockRequest(piece: 5, begin: 0, length: 16384), BlockRequest(piece: -1, begin: 0, length: 16384)] {
            let r = p.blockReceived(bad, from: 1)
            #expect(!r.pieceComplete && r.alsoRequestedFrom.isEmpty)
            #expect(!p.isNeeded(bad))
        }
        #expect(p.outstanding(for: 1).count == 2)
    }
}

@Suite struct RequestQueueDepthTests {
    @Test func coversTheBandwidthDelayProductWithinBounds() {
        var q = RequestQueueDepth(min: 4, max: 500)
        #expect(q.depth == 4)
        q.update(bytesPerSecond: 100_000, rttSeconds: 0.1)
        #expect(q.depth == 19)   // 100 kB/s × (3 s queue + 0.1 s RTT) / 16 KiB = 18.9
        q.update(bytesPerSecond: 200_000_000, rttSeconds: 0.001)
        #expect(q.depth == 500, "capped at max")
        q.update(bytesPerSecond: 0, rttSeconds: nil)
        #expect(q.depth < 500 && q.depth > 4, "shrinks gently, not at once: \(q.depth)")
        for _ in 0..<100 { q.update(bytesPerSecond: 0, rttSeconds: nil) }
        #expect(q.depth == 4, "and reaches min")
        q.update(bytesPerSecond: .nan, rttSeconds: 0.1)
        q.update(bytesPerSecond: .infinity, rttSeconds: 0.1)
        #expect(q.depth == 4, "nonsense rates are ignored")
    }
}
