// A small seedable generator (SplitMix64) so the picker and the choker are deterministic in tests
// and need nothing beyond the standard library; unseeded instances take their seed from the system
// generator.

public struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public init() { var g = SystemRandomNumberGenerator(); state = g.next() }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
