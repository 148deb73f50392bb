// The have-bitfield of BEP 3: one bit per piece, in wire order — bit 7 (the high bit) of byte 0 is
// piece 0. A bitfield from a peer must be exactly ceil(count/8) bytes with the spare bits of the
// last byte clear; anything else is a protocol violation the engine answers by dropping the peer.

/// Why a peer's bitfield was refused.
public enum BitfieldError: Error, Equatable, Sendable, CustomStringConvertible {
    case wrongLength(got: Int, expected: Int, pieces: Int)
    case spareBitsSet(pieces: Int)

    public var description: String {
        switch self {
        case .wrongLength(let got, let expected, let pieces):
            return "bitfield: \(got) bytes, expected \(expected) for \(pieces) pieces"
        case .spareBitsSet(let pieces):
            return "bitfield: spare bits after piece \(pieces - 1) are set"
        }
    }
}

public struct Bitfield: Equatable, Hashable, Sendable {
    /// Number of pieces.
    public let count: Int
    /// Wire-order bytes; spare bits are always 0, so equality of `bytes` is equality of sets.
    public private(set) var wire: [UInt8]
    public private(set) var setCount: Int

    public init(count: Int) {
        precondition(count >= 0, "negative piece count")
        self.count = count
        self.wire = [UInt8](repeating: 0, count: (count + 7) / 8)
        self.setCount = 0
    }

    /// A bitfield as received in a `bitfield` message.
    public init(count: Int, wire: [UInt8]) throws(BitfieldError) {
        precondition(count >= 0, "negative piece count")
        let expected = (count + 7) / 8
        guard wire.count == expected else { throw .wrongLength(got: wire.count, expected: expected, pieces: count) }
        let spare = expected * 8 - count
        if spare > 0, wire[expected - 1] & UInt8(truncatingIfNeeded: (1 << spare) - 1) != 0 {
            throw .spareBitsSet(pieces: count)
        }
        self.count = count
        self.wire = wire
        self.setCount = wire.reduce(0) { $0 + $1.nonzeroBitCount }
    }

    /// Every piece set (a seed; BEP 6 "have all").
    public static func full(count: Int) -> Bitfield {
        var b = Bitfield(count: count)
        guard count > 0 else { return b }
        for i in 0..<b.wire.count { b.wire[i] = 0xff }
        let spare = b.wire.count * 8 - count
        if spare > 0 { b.wire[b.wire.count - 1] = UInt8(truncatingIfNeeded: 0xff << spare) }
        b.setCount = count
        return b
    }

    public subscript(i: Int) -> Bool {
        get {
            precondition(i >= 0 && i < count, "piece \(i) out of range 0..<\(count)")
            return wire[i >> 3] & (0x80 >> UInt8(i & 7)) != 0
        }
        set {
            precondition(i >= 0 && i < count, "piece \(i) out of range 0..<\(count)")
            let mask: UInt8 = 0x80 >> UInt8(i & 7)
            let old = wire[i >> 3] & mask != 0
            guard old != newValue else { return }
            if newValue { wire[i >> 3] |= mask; setCount += 1 } else { wire[i >> 3] &= ~mask; setCount -= 1 }
        }
    }

    public var isComplete: Bool { setCount == count }
    public var isEmpty: Bool { setCount == 0 }

    /// Indices of the set bits, ascending.
    public var indices: [Int] {
        var out: [Int] = []
        out.reserveCapacity(setCount)
        for (byteIndex, byte) in wire.enumerated() where byte != 0 {
            var b = byte
            while b != 0 {
                let bit = b.leadingZeroBitCount
                out.append(byteIndex * 8 + bit)
                b &= ~(0x80 >> UInt8(bit))
            }
        }
        return out
    }

    /// Pieces set here and not in `other` (what a peer has that we lack: `peer.subtracting(have)`).
    public func subtracting(_ other: Bitfield) -> Bitfield {
        precondition(other.count == count, "bitfields of different sizes")
        var r = self
        var n = 0
        for i in 0..<wire.count { r.wire[i] = wire[i] & ~other.wire[i]; n += r.wire[i].nonzeroBitCount }
        r.setCount = n
        return r
    }

    /// True when this has at least one piece `other` lacks (are we interested in a peer?).
    public func hasAny(notIn other: Bitfield) -> Bool {
        precondition(other.count == count, "bitfields of different sizes")
        for i in 0..<wire.count where wire[i] & ~other.wire[i] != 0 { return true }
        return false
    }
}
