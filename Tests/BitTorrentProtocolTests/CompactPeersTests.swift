import Testing
@testable import BitTorrentProtocol

@Suite struct CompactPeersTests {
    @Test func ipv4AndIPv6RoundTrip() {
        let v4 = [PeerAddress(host: "127.0.0.1", port: 6881), PeerAddress(host: "255.254.0.9", port: 1)]
        let b4 = CompactPeers.encodeIPv4(v4)
        #expect(b4 == [127, 0, 0, 1, 0x1a, 0xe1, 255, 254, 0, 9, 0, 1])
        #expect(CompactPeers.decodeIPv4(b4) == v4)
        // A trailing partial entry and port-0 entries are dropped.
        #expect(CompactPeers.decodeIPv4(b4 + [1, 2, 3]) == v4)
        #expect(CompactPeers.decodeIPv4([1, 2, 3, 4, 0, 0]).isEmpty)

        let v6 = [PeerAddress(host: "2001:db8::1", port: 6881), PeerAddress(host: "::ffff:1.2.3.4", port: 2)]
        let b6 = CompactPeers.encodeIPv6(v6)
        #expect(b6.count == 36)
        #expect(CompactPeers.decodeIPv6(b6).map(\.address) == ["tcp:[2001:db8::1]:6881", "tcp:[::ffff:102:304]:2"])
        // Each encoder keeps only its own family.
        #expect(CompactPeers.encodeIPv4(v6).isEmpty && CompactPeers.encodeIPv6(v4).isEmpty)
        #expect(CompactPeers.encodeIPv4([PeerAddress(host: "example.org", port: 1)]).isEmpty)
    }

    @Test func addressText() {
        #expect(PeerAddress(host: "1.2.3.4", port: 6881).address == "tcp:1.2.3.4:6881")
        #expect(PeerAddress(host: "::1", port: 6881).address == "tcp:[::1]:6881")
        #expect(InetText.parseIPv4("01.2.3.4") == nil)
        #expect(InetText.parseIPv4("1.2.3.256") == nil)
        #expect(InetText.parseIPv4("1.2.3") == nil)
        #expect(InetText.parseIPv6("1:2:3:4:5:6:7:8") == [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8])
        #expect(InetText.parseIPv6("1::2::3") == nil)
        #expect(InetText.parseIPv6("1:2:3:4:5:6:7:8:9") == nil)
        #expect(InetText.parseIPv6("fe80::1%eth0") == nil)
        #expect(InetText.formatIPv6(InetText.parseIPv6("2001:0db8:0:0:1:0:0:1")!) == "2001:db8::1:0:0:1")
        #expect(InetText.formatIPv6([UInt8](repeating: 0, count: 16)) == "::")
        #expect(InetText.unhex("0aFf") == [0x0a, 0xff] && InetText.unhex("0g") == nil && InetText.unhex("abc") == nil)
    }
}
