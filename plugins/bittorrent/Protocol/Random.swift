// A small seedable generator (SplitMix64) so the picker, the choker, the DHT and the UDP tracker
// client are deterministic in tests and need nothing beyond the standard library; unseeded
// instances take their seed from the system generator.

public struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public init(seed: UInt64?) {
        if let seed { state = seed } else { var g = SystemRandomNumberGenerator(); state = g.next() }
    }
    public init() { var g = SystemRandomNumberGenerator(); state = g.next() }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    public mutating func bytes(_ n: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(n)
        while out.count < n {
            var v = next()
            for _ in 0..<8 where out.count < n { out.append(UInt8(v & 0xff)); v >>= 8 }
        }
        return out
    }
}
