import Testing
@testable import BitTorrentProtocol

@Suite struct CompactPeersTests {
    @Test func decodesAndEncodesIPv4() throws {
        let peers = try CompactPeers.decodeIPv4([1, 2, 3, 4, 0x1a, 0xe1, 10, 0, 0, 255, 0, 80])
        #expect(peers.map(\.address) == ["tcp:1.2.3.4:6881", "tcp:10.0.0.255:80"])
        #expect(peers[0].host == "1.2.3.4" && peers[0].port == 6881)
        #expect(CompactPeers.encode(peers) == [1, 2, 3, 4, 0x1a, 0xe1, 10, 0, 0, 255, 0, 80])
        #expect(throws: CompactPeersError.badLength(bytes: 7, entrySize: 6)) { try CompactPeers.decodeIPv4([UInt8](repeating: 1, count: 7)) }
        #expect(try CompactPeers.decodeIPv4([]).isEmpty)
    }

    @Test func decodesAndEncodesIPv6() throws {
        let loopback = [UInt8](repeating: 0, count: 15) + [1]
        let peers = try CompactPeers.decodeIPv6(loopback + [0x1a, 0xe1])
        #expect(peers.map(\.address) == ["tcp:[::1]:6881"])
        #expect(CompactPeers.encode(peers, ipv6: true) == loopback + [0x1a, 0xe1])
        #expect(CompactPeers.encode(peers) == [], "an IPv4 list skips IPv6 peers")
        #expect(throws: CompactPeersError.badLength(bytes: 17, entrySize: 18)) { try CompactPeers.decodeIPv6(loopback + [1]) }
    }

    @Test func formatsIPv6PerRFC5952() {
        func text(_ groups: [UInt16]) -> String {
            PeerAddress(ip: groups.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xff)] }, port: 1)!.host
        }
        #expect(text([0x2001, 0xdb8, 0, 0, 1, 0, 0, 1]) == "2001:db8::1:0:0:1")
        #expect(text([0x2001, 0xdb8, 0, 1, 1, 1, 1, 1]) == "2001:db8:0:1:1:1:1:1", "one zero group is not shortened")
        #expect(text([0, 0, 0, 0, 0, 0, 0, 0]) == "::")
        #expect(text([0xfe80, 0, 0, 0, 0xabc, 0, 0, 0]) == "fe80::abc:0:0:0", "the first of two equal runs")
        #expect(text([0, 0, 0, 0, 0, 0xffff, 0x0102, 0x0304]) == "::ffff:1.2.3.4")
    }

    @Test func parsesHostPortText() {
        #expect(PeerAddress(parsing: "1.2.3.4:6881")?.compact == [1, 2, 3, 4, 0x1a, 0xe1])
        #expect(PeerAddress(parsing: "[::1]:6881")?.address == "tcp:[::1]:6881")
        #expect(PeerAddress(parsing: "[2001:DB8:0:0:1::1]:80")?.host == "2001:db8::1:0:0:1")
        #expect(PeerAddress(parsing: "[::ffff:1.2.3.4]:80")?.ip == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4])
        for bad in ["1.2.3.4", "1.2.3.256:1", "1.2.3:1", "01.2.3.4:1", "1.2.3.4:65536", "1.2.3.4:", "[::1]", "::1:80",
                    "[1::2::3]:1", "[12345::]:1", "[::g]:1", "[+1::]:1", "[1:2:3:4:5:6:7:8:9]:1", "host.example:80"] {
            #expect(PeerAddress(parsing: bad) == nil, "\(bad)")
        }
        #expect(PeerAddress(host: "1:2:3:4:5:6:7:8", port: 1)?.host == "1:2:3:4:5:6:7:8")
        #expect(PeerAddress(ip: [1, 2, 3], port: 1) == nil)
    }

    @Test func trackerAndDHTListsAreReadLeniently() {
        let v4 = [PeerAddress(host: "127.0.0.1", port: 6881)!, PeerAddress(host: "255.254.0.9", port: 1)!]
        let b4 = CompactPeers.encodeIPv4(v4)
        #expect(b4 == [127, 0, 0, 1, 0x1a, 0xe1, 255, 254, 0, 9, 0, 1])
        // A trailing partial entry and port-0 entries are dropped, not the whole list.
        #expect(CompactPeers.lenientIPv4(b4 + [1, 2, 3]) == v4)
        #expect(CompactPeers.lenientIPv4([1, 2, 3, 4, 0, 0]).isEmpty)
        let v6 = [PeerAddress(host: "2001:db8::1", port: 6881)!]
        #expect(CompactPeers.lenientIPv6(CompactPeers.encodeIPv6(v6) + [9]) == v6)
    }
}
