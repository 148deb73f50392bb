import Testing
@testable import BitTorrentProtocol

@Suite struct TokenTests {
    let ipA: [UInt8] = [10, 0, 0, 1]
    let ipB: [UInt8] = [10, 0, 0, 2]

    @Test func tokenIsSHA1OfSecretAndIP() {
        // First 8 bytes of SHA-1(00 01 … 0f ‖ 0a 00 00 01), computed with Python's hashlib.
        #expect(InetText.hex(TokenIssuer.make(secret: Array(0..<16), ip: ipA)) == "35d3884ba0e8b429")
        let t = TokenIssuer(now: 0, rng: 5)
        #expect(t.token(for: ipA) == TokenIssuer.make(secret: t.current, ip: ipA))
        #expect(t.token(for: ipA) != t.token(for: ipB))
        #expect(t.isValid(t.token(for: ipA), for: ipA))
        #expect(!t.isValid(t.token(for: ipA), for: ipB))
    }

    @Test func previousSecretIsAcceptedForOneMoreRotation() {
        var t = TokenIssuer(now: 0, rng: 9)
        let old = t.token(for: ipA)
        t.rotateIfNeeded(now: 299)
        #expect(t.token(for: ipA) == old)          // not yet 5 minutes
        t.rotateIfNeeded(now: 300)
        #expect(t.token(for: ipA) != old)
        #expect(t.isValid(old, for: ipA))          // 5–10 minutes old: still good
        t.rotateIfNeeded(now: 600)
        #expect(!t.isValid(old, for: ipA))         // older than 10 minutes: refused
        // After a long pause neither old secret survives.
        let recent = t.token(for: ipA)
        t.rotateIfNeeded(now: 5000)
        #expect(!t.isValid(recent, for: ipA))
    }

    @Test func peerStoreIsBoundedAndExpires() {
        var s = PeerStore(maxPeersPerHash: 3, maxHashes: 2)
        let h1 = [UInt8](repeating: 1, count: 20), h2 = [UInt8](repeating: 2, count: 20), h3 = [UInt8](repeating: 3, count: 20)
        var g = SplitMix64(seed: 1)
        for p in 1...4 { s.add(infoHash: h1, ip: ipA, port: UInt16(p), now: Double(p)) }
        #expect(s.peerCount(h1) == 3)
        // The oldest (port 1) went.
        #expect(Set(s.values(infoHash: h1, now: 10, using: &g)) == Set([2, 3, 4].map { ipA + [0, UInt8($0)] }))
        // Re-announcing refreshes instead of duplicating.
        s.add(infoHash: h1, ip: ipA, port: 2, now: 20)
        #expect(s.peerCount(h1) == 3)
        s.add(infoHash: h2, ip: ipB, port: 9, now: 30)
        s.add(infoHash: h3, ip: ipB, port: 9, now: 40)
        #expect(s.hashCount == 2 && s.peerCount(h1) == 0)   // h1's newest announce (20) was the stalest
        #expect(s.values(infoHash: h2, now: 30 + 30 * 60, using: &g).isEmpty)   // expired after 30 minutes
        s.expire(now: 30 + 30 * 60)
        #expect(s.hashCount == 1)
        // At most `max` values, sampled.
        var big = PeerStore()
        for p in 1...120 { big.add(infoHash: h1, ip: ipA, port: UInt16(p), now: 0) }
        #expect(big.peerCount(h1) == 100)
        #expect(big.values(infoHash: h1, now: 1, max: 50, using: &g).count == 50)
    }
}
