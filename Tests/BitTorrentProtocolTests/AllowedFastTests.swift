import Testing
@testable import BitTorrentProtocol

@Suite struct AllowedFastTests {
    let infoHash = [UInt8](repeating: 0xaa, count: 20)

    // The published examples in BEP 6: 1313 pieces, infohash aa…aa, peer 80.4.4.200.
    @Test func matchesBEP6Vectors() {
        #expect(AllowedFast.set(ipv4: (80, 4, 4, 200), infoHash: infoHash, pieceCount: 1313, count: 7)
                == [1059, 431, 808, 1217, 287, 376, 1188])
        #expect(AllowedFast.set(ipv4: (80, 4, 4, 200), infoHash: infoHash, pieceCount: 1313, count: 9)
                == [1059, 431, 808, 1217, 287, 376, 1188, 353, 508])
    }

    @Test func sameSubnetSameSetOtherSubnetDifferent() {
        let a = AllowedFast.set(ipv4: (80, 4, 4, 200), infoHash: infoHash, pieceCount: 1313)
        let b = AllowedFast.set(ipv4: (80, 4, 4, 1), infoHash: infoHash, pieceCount: 1313)
        let c = AllowedFast.set(ipv4: (80, 4, 5, 200), infoHash: infoHash, pieceCount: 1313)
        #expect(a.count == 10 && Set(a).count == 10)
        #expect(a == b)
        #expect(a != c)
    }

    @Test func smallTorrentsTerminate() {
        let s = AllowedFast.set(ipv4: (10, 0, 0, 1), infoHash: infoHash, pieceCount: 3, count: 10)
        #expect(s.sorted() == [0, 1, 2])
        #expect(AllowedFast.set(ipv4: (10, 0, 0, 1), infoHash: infoHash, pieceCount: 0).isEmpty)
    }
}
