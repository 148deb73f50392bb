import Testing
@testable import BitTorrentProtocol

@Suite struct LPDTests {
    let h1: [UInt8] = InetText.unhex("123456789abcdef123456789abcdef123456789a")!
    let h2: [UInt8] = [UInt8](repeating: 0xab, count: 20)

    @Test func encodesTheBEP14Format() {
        let d = LocalPeerDiscovery.encode(infoHashes: [h1, h2], port: 6881, cookie: "ph-1")
        #expect(String(decoding: d, as: UTF8.self) ==
            "BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\n"
            + "Infohash: 123456789abcdef123456789abcdef123456789a\r\n"
            + "Infohash: abababababababababababababababababababab\r\ncookie: ph-1\r\n\r\n\r\n")
        let v6 = String(decoding: LocalPeerDiscovery.encode(infoHashes: [h1], port: 1, cookie: nil, ipv6: true), as: UTF8.self)
        #expect(v6.contains("\r\nHost: [ff15::efc0:988f]:6771\r\n") && !v6.contains("cookie"))
        #expect(LocalPeerDiscovery.groupAddress() == "udp:239.192.152.143:6771")
    }

    @Test func decodesToleratingCaseAndIgnoresOwnCookie() throws {
        let text = "BT-SEARCH * HTTP/1.1\r\nhost: 239.192.152.143:6771\r\nPORT: 7000\r\n"
            + "INFOHASH: 123456789ABCDEF123456789ABCDEF123456789A\r\ninfohash: abababababababababababababababababababab\r\n"
            + "X-Unknown: whatever\r\nCookie: theirs\r\n\r\n\r\n"
        let a = try #require(try LocalPeerDiscovery.decode(Array(text.utf8), ownCookie: "mine"))
        #expect(a.port == 7000 && a.infoHashes == [h1, h2] && a.cookie == "theirs")
        #expect(a.peers(sourceHost: "192.168.1.5") == [PeerAddress(host: "192.168.1.5", port: 7000)])
        // Our own announce looped back by multicast.
        let own = LocalPeerDiscovery.encode(infoHashes: [h1], port: 6881, cookie: "mine")
        #expect(try LocalPeerDiscovery.decode(own, ownCookie: "mine") == nil)
        // Bare LF line ends (seen from some clients) are accepted too.
        let lf = "BT-SEARCH * HTTP/1.1\nHost: 239.192.152.143:6771\nPort: 6881\nInfohash: \(InetText.hex(h2))\n\n\n"
        #expect(try LocalPeerDiscovery.decode(Array(lf.utf8), ownCookie: nil)?.infoHashes == [h2])
    }

    @Test func refusesWhatIsNotAnAnnounce() {
        #expect(throws: LocalPeerDiscovery.DecodeError.notLSD("M-SEARCH * HTTP/1.1")) {
            try LocalPeerDiscovery.decode(Array("M-SEARCH * HTTP/1.1\r\n\r\n".utf8), ownCookie: nil)
        }
        #expect(throws: LocalPeerDiscovery.DecodeError.missing("Port")) {
            try LocalPeerDiscovery.decode(Array("BT-SEARCH * HTTP/1.1\r\nInfohash: \(InetText.hex(self.h1))\r\n\r\n".utf8), ownCookie: nil)
        }
        #expect(throws: LocalPeerDiscovery.DecodeError.badHeader(name: "Port", value: "99999")) {
            try LocalPeerDiscovery.decode(Array("BT-SEARCH * HTTP/1.1\r\nPort: 99999\r\n\r\n".utf8), ownCookie: nil)
        }
        #expect(throws: LocalPeerDiscovery.DecodeError.badHeader(name: "Infohash", value: "xyz")) {
            try LocalPeerDiscovery.decode(Array("BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: xyz\r\n\r\n".utf8), ownCookie: nil)
        }
    }

    @Test func splitsAtFourteenHundredBytesAndPaces() {
        let many = (0..<40).map { i in [UInt8](repeating: UInt8(i), count: 20) }
        let packets = LocalPeerDiscovery.encodeAll(infoHashes: many, port: 6881, cookie: "c")
        #expect(packets.count > 1)
        #expect(packets.allSatisfy { $0.count <= LocalPeerDiscovery.maxDatagram })
        let decoded = packets.flatMap { (try? LocalPeerDiscovery.decode($0, ownCookie: nil))??.infoHashes ?? [] }
        #expect(decoded == many)

        var s = LocalPeerDiscovery.Scheduler()
        #expect(s.due(infoHashes: [h1], port: 1, cookie: nil, now: 0) != nil)
        #expect(s.due(infoHashes: [h1], port: 1, cookie: nil, now: 299) == nil)
        #expect(s.due(infoHashes: [h1], port: 1, cookie: nil, now: 300) != nil)
        // With several packets: spread, but never more than one a minute.
        var m = LocalPeerDiscovery.Scheduler()
        var sent = 0
        for t in stride(from: 0.0, to: 600, by: 1) where m.due(infoHashes: many, port: 1, cookie: nil, now: t) != nil { sent += 1 }
        #expect(sent >= 2 && sent <= 10)
    }
}
