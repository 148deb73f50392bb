import Testing
@testable import BitTorrentProtocol

/// Mutated real messages and random bytes into every decoder of this unit: each must refuse or
/// decode, never trap, and what it accepts must make sense.
@Suite struct HostileInputTests {
    func mutations(of seed: [UInt8], count: Int, rng: inout SplitMix64) -> [[UInt8]] {
        var out: [[UInt8]] = []
        for _ in 0..<count {
            var m = seed
            switch rng.next() % 5 {
            case 0 where !m.isEmpty:   // flip bytes
                for _ in 0..<(1 + Int(rng.next() % 4)) { m[Int(rng.next() % UInt64(m.count))] = UInt8(truncatingIfNeeded: rng.next()) }
            case 1 where !m.isEmpty:   // truncate
                m = Array(m.prefix(Int(rng.next() % UInt64(m.count))))
            case 2:                    // append junk
                m += rng.bytes(Int(rng.next() % 64))
            case 3 where m.count > 2:  // cut a piece out of the middle
                let a = Int(rng.next() % UInt64(m.count)), b = Int(rng.next() % UInt64(m.count))
                m.removeSubrange(min(a, b)..<max(a, b))
            default:                   // random bytes
                m = rng.bytes(Int(rng.next() % 200))
            }
            out.append(m)
        }
        return out
    }

    @Test func krpcAndTheDHTNodeSurviveGarbage() throws {
        var rng = SplitMix64(seed: 2024)
        var node = DHTNode(rng: 1, now: 0)
        let from = UDPEndpoint(host: "10.0.0.9", port: 6881)!
        let seeds = try ["libtorrent-dht-get_peers-query.bencode", "libtorrent-dht-announce_peer-query.bencode",
                         "libtorrent-dht-get_peers-response.bencode", "libtorrent-dht-announce_peer-badtoken-error.bencode"].map(vector)
            + [Array("d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q9:find_node1:t2:aa1:y1:qe".utf8)]
        var decoded = 0
        for seed in seeds {
            for m in mutations(of: seed, count: 800, rng: &rng) {
                if let msg = try? KRPC.Message.decode(m) {
                    decoded += 1
                    // Whatever decodes re-encodes to something that decodes to the same message.
                    #expect(try KRPC.Message.decode(msg.encoded()) == msg)
                }
                let replies = node.receive(m, from: from, now: 1)
                #expect(replies.count <= 2)   // one answer, plus at most one ping of a questionable node
                _ = try? KRPC.decodeNodes(m)
            }
        }
        #expect(decoded > 0)
        _ = node.tick(now: 100)
    }

    @Test func trackerDecodersSurviveGarbage() throws {
        var rng = SplitMix64(seed: 7)
        for seed in try ["opentracker-announce.http", "opentracker-scrape.http", "opentracker-announce-refused.http"].map(vector) {
            for m in mutations(of: seed, count: 800, rng: &rng) {
                var r = HTTPResponseReader()
                // Fed in two pieces at a random split, then EOF.
                let cut = m.isEmpty ? 0 : Int(rng.next() % UInt64(m.count))
                let complete = (try? r.feed(Array(m[..<cut]))).flatMap { done in done ? true : try? r.feed(Array(m[cut...])) }
                if complete != true { try? r.finishAtEOF() }
                #expect(r.body.count <= HTTPResponseReader.maxBodyBytes)
                if let a = try? AnnounceResponse.parse(bencoded: r.body) { #expect(a.interval >= 0) }
                _ = try? ScrapeResponse.parse(bencoded: r.body)
            }
        }
        for seed in try ["opentracker-udp-connect.bin", "opentracker-udp-announce.bin", "opentracker-udp-scrape.bin"].map(vector) {
            var c = UDPTrackerClient(host: "127.0.0.1", port: 6969, rng: 1)
            _ = c.announce(AnnounceRequest(infoHash: [UInt8](repeating: 1, count: 20), peerID: [UInt8](repeating: 2, count: 20), port: 1, left: 0), now: 0)
            for m in mutations(of: seed, count: 800, rng: &rng) {
                _ = try? UDPTracker.decodeResponse(m)
                _ = try? UDPTracker.decodeResponse(m, ipv6: true)
                _ = c.receive(m, now: 1)
            }
        }
        let lpd = LocalPeerDiscovery.encode(infoHashes: [[UInt8](repeating: 3, count: 20)], port: 6881, cookie: "x")
        for m in mutations(of: lpd, count: 2000, rng: &rng) {
            if let a = try? LocalPeerDiscovery.decode(m, ownCookie: nil) {
                #expect(a.port != 0 && !a.infoHashes.isEmpty && a.infoHashes.allSatisfy { $0.count == 20 })
            }
        }
    }

    @Test func routingTableDataSurvivesGarbage() {
        var rng = SplitMix64(seed: 9)
        var t = RoutingTable(own: NodeID.random(using: &rng))
        for i in 0..<40 {
            t.responded(NodeInfo(id: NodeID.random(using: &rng), endpoint: UDPEndpoint(ip: [10, 0, 0, UInt8(i)], port: 6881)!), now: 0)
        }
        let data = t.serialize()
        for m in mutations(of: data, count: 3000, rng: &rng) {
            if let back = try? RoutingTable.deserialize(m) {
                // Accepted data re-serializes to a prefix-identical, decodable table.
                #expect((try? RoutingTable.deserialize(back.serialize())) != nil)
                #expect(back.count <= 40 + 1000)
            }
        }
    }
}
