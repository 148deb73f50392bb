import Testing
@testable import BitTorrentProtocol

/// The fuzz target's properties, run on deterministic mutations in every `swift test` (the real
/// fuzzer is `make fuzz`): no input crashes a decoder, and what decodes re-encodes to the same value.
@Suite struct ExtensionDecoderRobustnessTests {
    static let seeds: [[UInt8]] = [
        ExtensionHandshake(messages: ["ut_metadata": 3, "ut_pex": 1], listenPort: 6881, client: "x",
                           metadataSize: 31235, requestQueueSize: 250, yourIP: [127, 0, 0, 1]).encoded(),
        MetadataMessage.request(piece: 2).encoded(),
        MetadataMessage.data(piece: 0, totalSize: 8, data: Array("12345678".utf8)).encoded(),
        PexMessage(added: [PexPeer(address: PeerAddress(ip: [10, 0, 0, 1], port: 6881)!, flags: .seed)],
                   dropped: [PeerAddress(host: "::1", port: 80)!]).encoded(),
    ]

    @Test func mutatedMessagesNeverCrashAndRoundTrip() {
        var rng = SplitMix64(seed: 2026)
        var decoded = 0, refused = 0
        for round in 0..<8_000 {
            var input = Self.seeds[round % Self.seeds.count]
            for _ in 0...Int(rng.next(upperBound: UInt64(4))) {
                let pos = Int(rng.next(upperBound: UInt64(input.count + 1)))
                switch rng.next(upperBound: UInt64(4)) {
                case 0 where pos < input.count: input[pos] = UInt8(truncatingIfNeeded: rng.next())
                case 1: input.insert(UInt8(truncatingIfNeeded: rng.next()), at: pos)
                case 2 where pos < input.count: input.remove(at: pos)
                default: input = Array(input.prefix(pos))
                }
            }
            var ok = false
            if let h = try? ExtensionHandshake.decode(input) {
                ok = true
                #expect((try? ExtensionHandshake.decode(h.encoded())) == h)
            }
            if let m = try? MetadataMessage.decode(input) {
                ok = true
                #expect((try? MetadataMessage.decode(m.encoded())) == m)
            }
            if let p = try? PexMessage.decode(input) {
                ok = true
                #expect((try? PexMessage.decode(p.encoded())) == p)
            }
            if ok { decoded += 1 } else { refused += 1 }
        }
        // Both paths were exercised.
        #expect(decoded > 200, "\(decoded) mutated inputs decoded")
        #expect(refused > 200, "\(refused) refused")
    }
}
