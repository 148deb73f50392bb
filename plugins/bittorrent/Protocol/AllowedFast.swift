// BEP 6 allowed-fast set: the canonical algorithm, so that two peers offering k pieces to the same
// receiver offer the same k. The receiver's IPv4 address masked to /24 (one set per subnet, so a
// peer with many addresses on one network gets one set), then the infohash, hashed with SHA-1
// repeatedly; each 20-byte digest gives five big-endian 32-bit numbers taken modulo the piece count.
import Crypto

public enum AllowedFast {
    /// The first `count` pieces of the allowed-fast set of a peer at `ipv4` (at most `pieceCount`).
    public static func set(ipv4: (UInt8, UInt8, UInt8, UInt8), infoHash: [UInt8], pieceCount: Int, count: Int = 10) -> [Int] {
        guard pieceCount > 0, count > 0 else { return [] }
        let k = min(count, pieceCount)   // more than the torrent has would never finish
        var x: [UInt8] = [ipv4.0, ipv4.1, ipv4.2, 0] + infoHash
        var set: [Int] = []
        var seen = Set<Int>()
        while set.count < k {
            x = Array(Insecure.SHA1.hash(data: x))
            var i = 0
            while i < 5 && set.count < k {
                let j = i * 4
                let y = UInt32(x[j]) << 24 | UInt32(x[j + 1]) << 16 | UInt32(x[j + 2]) << 8 | UInt32(x[j + 3])
                let index = Int(UInt64(y) % UInt64(pieceCount))
                if seen.insert(index).inserted { set.append(index) }
                i += 1
            }
        }
        return set
    }
}
