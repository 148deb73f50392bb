import Testing
@testable import BitTorrentProtocol

/// Fifty DHT nodes exchanging datagrams in memory: no sockets, a simulated clock.
struct SimNetwork {
    var nodes: [DHTNode] = []
    var endpoints: [UDPEndpoint] = []
    var index: [UDPEndpoint: Int] = [:]
    var queue: [(from: UDPEndpoint, out: DHTNode.Outgoing)] = []
    var dead: Set<Int> = []
    var events: [Int: [DHTNode.Event]] = [:]
    var now = 0.0
    var delivered = 0

    init(count: Int, seed: UInt64) {
        var config = DHTNode.Config()
        config.queryTimeout = 2
        for i in 0..<count {
            let ep = UDPEndpoint(ip: [10, 0, UInt8(i >> 8), UInt8(i & 0xff)], port: 6881)!
            nodes.append(DHTNode(config: config, rng: seed &+ UInt64(i), now: 0))
            endpoints.append(ep)
            index[ep] = i
        }
    }

    mutating func post(from i: Int, _ outs: [DHTNode.Outgoing]) {
        for o in outs { queue.append((endpoints[i], o)) }
    }

    /// Delivers everything queued (and what the deliveries produce), then steps the clock and
    /// ticks every node, until `done` holds or `maxSeconds` of simulated time pass.
    mutating func run(maxSeconds: Double, until done: (SimNetwork) -> Bool = { _ in false }) {
        let end = now + maxSeconds
        while now < end {
            while !queue.isEmpty {
                let (from, o) = queue.removeFirst()
                guard let to = index[o.endpoint], !dead.contains(to) else { continue }
                delivered += 1
                let replies = nodes[to].receive(o.datagram, from: from, now: now)
                post(from: to, replies)
                events[to, default: []] += nodes[to].takeEvents()
            }
            if done(self) { return }
            now += 0.5
            for i in nodes.indices where !dead.contains(i) {
                post(from: i, nodes[i].tick(now: now))
                events[i, default: []] += nodes[i].takeEvents()
            }
        }
    }

    mutating func bootstrapAll(via router: Int) {
        for i in nodes.indices where i != router {
            post(from: i, nodes[i].bootstrap(nodes: [endpoints[router]], now: now))
            run(maxSeconds: 0.5)   // stagger, so later nodes find earlier ones
        }
        run(maxSeconds: 30) { net in net.nodes.allSatisfy { $0.activeLookups == 0 } }
    }
}

@Suite struct DHTNodeTests {
    let infoHash: [UInt8] = InetText.unhex("123456789abcdef123456789abcdef123456789a")!

    func lookupDone(_ events: [DHTNode.Event], _ lid: Int) -> (responded: Int, announcedTo: Int)? {
        for e in events { if case .lookupDone(lid, _, let r, let a) = e { return (r, a) } }
        return nil
    }
    func peers(_ events: [DHTNode.Event], _ lid: Int) -> [PeerAddress] {
        events.flatMap { e -> [PeerAddress] in
            if case .peersFound(lid, _, let p) = e { return p }
            return []
        }
    }

    @Test func oneNodeAnnouncesAndAnotherFindsIt() {
        var net = SimNetwork(count: 50, seed: 1000)
        net.bootstrapAll(via: 0)
        #expect(net.events.values.flatMap { $0 }.contains { if case .bootstrapped(let n) = $0 { return n > 0 }; return false })
        let tableSizes = net.nodes.map { $0.table.count }
        #expect(tableSizes.min()! >= 8, "table sizes \(tableSizes)")

        let (announceLookup, out) = net.nodes[10].getPeers(infoHash: infoHash, announcePort: 7000, now: net.now)
        net.post(from: 10, out)
        net.run(maxSeconds: 60) { net in net.nodes[10].activeLookups == 0 }
        let announced = lookupDone(net.events[10] ?? [], announceLookup)
        #expect(announced != nil)
        #expect((announced?.announcedTo ?? 0) >= 4 && (announced?.announcedTo ?? 99) <= 8, "\(String(describing: announced))")
        let storing = net.nodes.filter { $0.store.peerCount(infoHash) > 0 }.count
        #expect(storing == announced?.announcedTo)

        let (findLookup, out2) = net.nodes[40].getPeers(infoHash: infoHash, now: net.now)
        net.post(from: 40, out2)
        net.run(maxSeconds: 60) { net in net.nodes[40].activeLookups == 0 }
        #expect(lookupDone(net.events[40] ?? [], findLookup) != nil)
        #expect(peers(net.events[40] ?? [], findLookup) == [PeerAddress(host: "10.0.0.10", port: 7000)])
    }

    @Test func lookupsFinishDespiteDeadNodesAndImpliedPortUsesTheSourcePort() {
        var net = SimNetwork(count: 50, seed: 77)
        net.bootstrapAll(via: 0)
        // A fifth of the network disappears without a word.
        for i in stride(from: 5, to: 50, by: 5) { net.dead.insert(i) }
        let (a, out) = net.nodes[1].getPeers(infoHash: infoHash, announcePort: 1, impliedPort: true, now: net.now)
        net.post(from: 1, out)
        net.run(maxSeconds: 120) { net in net.nodes[1].activeLookups == 0 }
        #expect((lookupDone(net.events[1] ?? [], a)?.announcedTo ?? 0) > 0)
        let (b, out2) = net.nodes[2].getPeers(infoHash: infoHash, now: net.now)
        net.post(from: 2, out2)
        net.run(maxSeconds: 120) { net in net.nodes[2].activeLookups == 0 }
        #expect(lookupDone(net.events[2] ?? [], b) != nil)
        #expect(peers(net.events[2] ?? [], b) == [PeerAddress(host: "10.0.0.1", port: 6881)])   // the DHT port, implied
        // The dead nodes were noticed.
        let failures = net.nodes[1].table.entries.filter { $0.failures > 0 }.count + net.nodes[2].table.entries.filter { $0.failures > 0 }.count
        #expect(failures > 0)
    }

    @Test func answersQueriesAndChecksTokens() throws {
        var node = DHTNode(id: NodeID(Array("mnopqrstuvwxyz123456".utf8))!, rng: 3, now: 0)
        let asker = UDPEndpoint(host: "10.9.9.9", port: 5000)!
        let askerID = NodeID(Array("abcdefghij0123456789".utf8))!
        let h = NodeID(infoHash)!
        func ask(_ q: KRPC.Query, from: UDPEndpoint? = nil) throws -> KRPC.Message {
            let out = node.receive(KRPC.Message.query(transactionID: [1, 2], q).encoded(), from: from ?? asker, now: 10)
            #expect(out.count == 1 && out[0].endpoint == (from ?? asker))
            return try KRPC.Message.decode(out[0].datagram)
        }
        #expect(try ask(.ping(id: askerID)) == .response(transactionID: [1, 2], KRPC.Response(id: node.id)))
        #expect(node.table.entry(askerID)?.status(now: 10) == .questionable)   // a querier, never answered us

        guard case .response(_, let gp) = try ask(.getPeers(id: askerID, infoHash: h)) else { Issue.record("no get_peers reply"); return }
        let token = try #require(gp.token)
        #expect(gp.values == nil)
        // The asker is in our table now, but a reply never names the asker itself.
        #expect(node.table.entry(askerID) != nil)
        #expect(try KRPC.decodeNodes(gp.nodes ?? []).isEmpty)

        // A token given to another IP is refused with 203.
        let other = UDPEndpoint(host: "10.9.9.8", port: 5000)!
        #expect(try ask(.announcePeer(id: askerID, infoHash: h, port: 7000, token: token, impliedPort: false), from: other)
                == .error(transactionID: [1, 2], code: 203, message: "bad token"))
        #expect(try ask(.announcePeer(id: askerID, infoHash: h, port: 7000, token: token, impliedPort: false))
                == .response(transactionID: [1, 2], KRPC.Response(id: node.id)))
        guard case .response(_, let gp2) = try ask(.getPeers(id: askerID, infoHash: h)) else { Issue.record("no reply"); return }
        #expect(gp2.peers == [PeerAddress(host: "10.9.9.9", port: 7000)])

        #expect(try ask(.unknown(method: "vote", id: askerID)) == .error(transactionID: [1, 2], code: 204, message: "Method Unknown: vote"))
        // A query it cannot read: 203 with the transaction id.
        let bad = node.receive(Array("d1:ad2:id3:abce1:q4:ping1:t2:zz1:y1:qe".utf8), from: asker, now: 10)
        guard case .error(let t, 203, _)? = try bad.first.map({ try KRPC.Message.decode($0.datagram) }) else {
            Issue.record("no 203 for a malformed query"); return
        }
        #expect(t == Array("zz".utf8))
        // Garbage and unsolicited responses get no answer.
        #expect(node.receive([1, 2, 3], from: asker, now: 10).isEmpty)
        #expect(node.receive(KRPC.Message.response(transactionID: [9, 9], KRPC.Response(id: askerID)).encoded(), from: asker, now: 10).isEmpty)
    }

    @Test func responsesFromAnotherAddressAreIgnored() throws {
        var node = DHTNode(rng: 11, now: 0)
        let real = UDPEndpoint(host: "10.0.0.2", port: 6881)!
        let out = node.ping(real, now: 0)
        let q = try KRPC.Message.decode(out[0].datagram)
        let peerID = NodeID([UInt8](repeating: 7, count: 20))!
        let reply = KRPC.Message.response(transactionID: q.transactionID, KRPC.Response(id: peerID)).encoded()
        _ = node.receive(reply, from: UDPEndpoint(host: "10.0.0.3", port: 6881)!, now: 1)
        #expect(node.table.count == 0)
        _ = node.receive(reply, from: real, now: 1)
        #expect(node.table.entry(peerID)?.status(now: 1) == .good)
    }

    @Test func tableSurvivesARestart() throws {
        var net = SimNetwork(count: 20, seed: 5)
        net.bootstrapAll(via: 0)
        let saved = net.nodes[3].serializedTable()
        let oldID = net.nodes[3].id
        var config = DHTNode.Config()
        config.queryTimeout = 2
        // Restart node 3 from its saved table, bootstrapping with no router at all.
        net.nodes[3] = try DHTNode(restoring: saved, config: config, rng: 99, now: net.now)
        #expect(net.nodes[3].id == oldID)
        #expect(net.nodes[3].table.count > 0)
        net.post(from: 3, net.nodes[3].bootstrap(nodes: [], now: net.now))
        net.run(maxSeconds: 30) { net in net.nodes[3].activeLookups == 0 }
        #expect(net.nodes[3].table.entries.filter { $0.status(now: net.now) == .good }.count >= 8)
        #expect(throws: RoutingTable.DecodeError.self) { try DHTNode(restoring: Array(saved.dropLast(3)), now: 0) }
    }

    /// libtorrent's own get_peers and announce_peer (recorded) against our node: it gets a token,
    /// and its announce with our token (put in place of the one it got from the capture's fake
    /// node) stores it under its UDP source port (implied_port).
    @Test func answersRealLibtorrentQueries() throws {
        var node = DHTNode(rng: 21, now: 0)
        let lt = UDPEndpoint(host: "127.0.0.1", port: 17001)!
        let gp = node.receive(try vector("libtorrent-dht-get_peers-query.bencode"), from: lt, now: 1)
        guard case .response(_, let r)? = try gp.first.map({ try KRPC.Message.decode($0.datagram) }) else {
            Issue.record("no reply to libtorrent's get_peers"); return
        }
        let token = try #require(r.token)
        guard case .query(let t, .announcePeer(let id, let h, let port, _, let implied)) =
                try KRPC.Message.decode(try vector("libtorrent-dht-announce_peer-query.bencode")) else {
            Issue.record("announce_peer vector"); return
        }
        // As recorded (a token from another node): refused.
        let refused = node.receive(try vector("libtorrent-dht-announce_peer-query.bencode"), from: lt, now: 2)
        #expect(try refused.first.map { try KRPC.Message.decode($0.datagram) } == .error(transactionID: t, code: 203, message: "bad token"))
        let withOurToken = KRPC.Message.query(transactionID: t, .announcePeer(id: id, infoHash: h, port: port, token: token, impliedPort: implied))
        let ok = node.receive(withOurToken.encoded(), from: lt, now: 2)
        #expect(try ok.first.map { try KRPC.Message.decode($0.datagram) } == .response(transactionID: t, KRPC.Response(id: node.id)))
        var g = SplitMix64(seed: 1)
        #expect(node.store.values(infoHash: h.bytes, now: 3, using: &g) == [[127, 0, 0, 1, 0x42, 0x69]])   // 17001
        // Our own lookup reports what was announced to us, even with nobody else to ask.
        let (lid, sent) = node.getPeers(infoHash: h.bytes, now: 4)
        let events = node.takeEvents()
        #expect(events.first == .peersFound(lookup: lid, infoHash: h.bytes, peers: [PeerAddress(host: "127.0.0.1", port: 17001)!]))
        #expect(sent.isEmpty || sent.allSatisfy { $0.endpoint == lt })
    }
}
