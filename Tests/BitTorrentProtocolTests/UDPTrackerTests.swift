import Testing
@testable import BitTorrentProtocol

@Suite struct UDPTrackerTests {
    let hash: [UInt8] = InetText.unhex("123456789abcdef123456789abcdef123456789a")!

    func request(port: UInt16 = 6886) -> AnnounceRequest {
        AnnounceRequest(infoHash: hash, peerID: Array("-PH0001-udpudpudp006".utf8), port: port, uploaded: 0,
                        downloaded: 0, left: 1000, event: .started, numWant: 50, key: 0x1122_3344)
    }

    /// A recorded reply with its transaction id replaced by the one the client chose.
    func reply(_ recorded: [UInt8], to sent: [UInt8]) -> [UInt8] {
        var r = recorded
        let tidOffset = 12   // in every request: connection id (8), action (4), transaction id
        r.replaceSubrange(4..<8, with: sent[tidOffset..<(tidOffset + 4)])
        return r
    }

    @Test func announcePacketIsByteIdenticalToTheOneOpentrackerAnswered() throws {
        let recorded = try vector("opentracker-udp-announce-request.bin")
        let cid: UInt64 = readBE(recorded, 0)
        let built = UDPTracker.announceRequest(connectionID: cid, transactionID: 0x0102_0304, request())
        #expect(built.count == 98)
        #expect(built == recorded)
        #expect(UDPTracker.connectRequest(transactionID: 0x0a0b_0c0d)
                == [0, 0, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0, 0x0a, 0x0b, 0x0c, 0x0d])
    }

    @Test func decodesRealOpentrackerReplies() throws {
        let c = try UDPTracker.decodeResponse(try vector("opentracker-udp-connect.bin"))
        guard case .connect(0x0a0b_0c0d, let cid) = c else { Issue.record("\(c)"); return }
        #expect(cid == readBE(try vector("opentracker-udp-announce-request.bin"), 0, as: UInt64.self))

        let a = try UDPTracker.decodeResponse(try vector("opentracker-udp-announce.bin"))
        guard case .announce(0x0102_0304, let r) = a else { Issue.record("\(a)"); return }
        #expect(r.interval == 1838 && r.complete == 2 && r.incomplete == 3)
        #expect(Set(r.peers.map(\.port)) == [6881, 6882, 6883, 6884, 6886])
        #expect(r.peers.allSatisfy { $0.host == "127.0.0.1" })

        let s = try UDPTracker.decodeResponse(try vector("opentracker-udp-scrape.bin"))
        #expect(s == .scrape(transactionID: 0x0506_0708, [ScrapeStats(complete: 2, downloaded: 0, incomplete: 3)]))

        #expect(try UDPTracker.decodeResponse([0, 0, 0, 3, 1, 2, 3, 4] + Array("go away".utf8) + [0])
                == .error(transactionID: 0x0102_0304, message: "go away"))
        #expect(throws: TrackerError.udp("datagram of 5 bytes is shorter than 8")) { try UDPTracker.decodeResponse([0, 0, 0, 1, 0]) }
        #expect(throws: TrackerError.udp("announce response of 12 bytes is shorter than 20")) {
            try UDPTracker.decodeResponse([0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0])
        }
        #expect(throws: TrackerError.udp("unknown action 9")) { try UDPTracker.decodeResponse([0, 0, 0, 9, 0, 0, 0, 1]) }
    }

    @Test func clientConnectsAnnouncesAndReusesTheConnectionID() throws {
        var c = UDPTrackerClient(host: "127.0.0.1", port: 6969, rng: 7)
        #expect(c.endpoint == "udp:127.0.0.1:6969")
        let (id, first) = c.announce(request(), now: 0)
        #expect(first.count == 1 && first[0].count == 16)               // a connect
        // A datagram with a transaction id we never sent is ignored.
        #expect(c.receive(reply(try vector("opentracker-udp-connect.bin"), to: [UInt8](repeating: 9, count: 16)), now: 1).send.isEmpty)
        let afterConnect = c.receive(reply(try vector("opentracker-udp-connect.bin"), to: first[0]), now: 1)
        #expect(afterConnect.events.isEmpty)
        #expect(afterConnect.send.count == 1 && afterConnect.send[0].count == 98)
        #expect(Array(afterConnect.send[0][0..<8]) == Array(try vector("opentracker-udp-connect.bin")[8..<16]))
        let done = c.receive(reply(try vector("opentracker-udp-announce.bin"), to: afterConnect.send[0]), now: 2)
        guard case .announced(id, let r)? = done.events.first else { Issue.record("\(done.events)"); return }
        #expect(r.peers.count == 5)
        #expect(c.pendingCount == 0 && c.nextTimeout == nil)

        // Within 60 s the connection id is reused: the scrape goes out directly.
        let (sid, s) = c.scrape(infoHashes: [hash], now: 30)
        #expect(s.count == 1 && s[0].count == 36)
        let scraped = c.receive(reply(try vector("opentracker-udp-scrape.bin"), to: s[0]), now: 31)
        #expect(scraped.events == [.scraped(request: sid, ScrapeResponse(files: [hash: ScrapeStats(complete: 2, downloaded: 0, incomplete: 3)]))])
        // After 60 s a new connect comes first.
        let (_, later) = c.announce(request(), now: 62)
        #expect(later.count == 1 && later[0].count == 16)
    }

    /// BEP 15's "announce times out" example: announces at 2, 17, 47, then connects at 107 (the id
    /// expired) and 227.
    @Test func retransmitScheduleFollowsBEP15() throws {
        var c = UDPTrackerClient(host: "127.0.0.1", port: 6969, rng: 1)
        let (_, first) = c.announce(request(), now: 0)
        _ = c.receive(reply(try vector("opentracker-udp-connect.bin"), to: first[0]), now: 1)
        // The announce went out at 1 here; replay the example with a fresh announce at t = 2.
        var c2 = c
        c2.pending.removeAll()
        let (_, a0) = c2.announce(request(), now: 2)
        #expect(a0.count == 1 && a0[0].count == 98)
        var sends: [(Double, Int)] = []
        var t = 2.0
        while t <= 230 {
            t += 1
            let r = c2.tick(now: t)
            for d in r.send { sends.append((t, d.count)) }
        }
        #expect(sends.map(\.0) == [17, 47, 107, 227])
        #expect(sends.map(\.1) == [98, 98, 16, 16])
        #expect(c2.nextTimeout == Double(227 + 15 * 16), "\(c2.nextTimeout.map { $0 - 467 } ?? -1)")
    }

    @Test func givesUpAfterTheLastRetransmissionAndReportsTrackerErrors() throws {
        var c = UDPTrackerClient(host: "127.0.0.1", port: 6969, rng: 3)
        c.timeoutBase = 0.01     // scaled schedule
        c.maxRetransmissions = 2
        let (id, _) = c.announce(request(), now: 0)
        var events: [UDPTrackerEvent] = []
        var t = 0.0
        var connects = 0
        while t < 1 {
            t += 0.005
            let r = c.tick(now: t)
            events += r.events
            connects += r.send.filter { $0.count == 16 }.count
        }
        #expect(connects == 2)   // retransmissions after the first send
        guard case .error(id, let e)? = events.first else { Issue.record("\(events)"); return }
        #expect(e.description.contains("no connect response from udp:127.0.0.1:6969 after 3 attempts"))

        var d = UDPTrackerClient(host: "127.0.0.1", port: 6969, rng: 4)
        let (id2, s) = d.announce(request(), now: 0)
        let err = d.receive([0, 0, 0, 3] + Array(s[0][12..<16]) + Array("banned".utf8), now: 1)
        #expect(err.events == [.error(request: id2, .udp("tracker refused connect: banned"))])
    }

    @Test func ipv6TrackerRepliesCarry18BytePeers() throws {
        var reply: [UInt8] = [0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 0, 60, 0, 0, 0, 0, 0, 0, 0, 1]
        reply += InetText.parseIPv6("2001:db8::2")! + [0x1a, 0xe1]
        guard case .announce(_, let r) = try UDPTracker.decodeResponse(reply, ipv6: true) else { Issue.record("not an announce"); return }
        #expect(r.peers == [PeerAddress(host: "2001:db8::2", port: 6881)])
        #expect(UDPTrackerClient(host: "::1", port: 6969).endpoint == "udp:[::1]:6969")
    }
}
