import Testing
@testable import BitTorrentProtocol

@Suite struct BitfieldTests {
    @Test func wireOrderIsHighBitFirst() throws {
        var b = Bitfield(count: 10)
        b[0] = true
        b[9] = true
        #expect(b.wire == [0x80, 0x40])
        #expect(b.setCount == 2)
        #expect(b.indices == [0, 9])
        b[0] = true   // setting twice does not count twice
        #expect(b.setCount == 2)
        b[0] = false
        #expect(b.wire == [0x00, 0x40])
        #expect(b.setCount == 1)
        let decoded = try Bitfield(count: 10, wire: [0x80, 0x40])
        #expect(decoded[0] && decoded[9] && !decoded[1])
        #expect(decoded.setCount == 2)
    }

    @Test func refusesWrongLengthAndSpareBits() {
        #expect(throws: BitfieldError.wrongLength(got: 1, expected: 2, pieces: 10)) { try Bitfield(count: 10, wire: [0xff]) }
        #expect(throws: BitfieldError.wrongLength(got: 3, expected: 2, pieces: 10)) { try Bitfield(count: 10, wire: [0, 0, 0]) }
        // 10 pieces: the low 6 bits of byte 1 are spare.
        #expect(throws: BitfieldError.spareBitsSet(pieces: 10)) { try Bitfield(count: 10, wire: [0, 0x01]) }
        #expect(BitfieldError.spareBitsSet(pieces: 10).description.contains("after piece 9"))
        #expect((try? Bitfield(count: 16, wire: [0xff, 0xff]))?.isComplete == true)
    }

    @Test func fullAndEmpty() {
        let f = Bitfield.full(count: 10)
        #expect(f.wire == [0xff, 0xc0])
        #expect(f.isComplete && !f.isEmpty && f.setCount == 10)
        #expect(Bitfield.full(count: 8).wire == [0xff])
        let e = Bitfield(count: 10)
        #expect(e.isEmpty && !e.isComplete)
        #expect(Bitfield(count: 0).isComplete && Bitfield(count: 0).wire.isEmpty)
    }

    @Test func setOperations() {
        var mine = Bitfield(count: 12)
        mine[1] = true; mine[5] = true
        var theirs = Bitfield(count: 12)
        theirs[1] = true; theirs[11] = true
        #expect(theirs.hasAny(notIn: mine))
        #expect(theirs.subtracting(mine).indices == [11])
        #expect(theirs.subtracting(mine).setCount == 1)
        theirs[11] = false
        #expect(!theirs.hasAny(notIn: mine))
    }
}
