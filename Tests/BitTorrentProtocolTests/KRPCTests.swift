import Testing
@testable import BitTorrentProtocol

/// The example packets of BEP 5, verbatim.
@Suite struct KRPCTests {
    func b(_ s: String) -> [UInt8] { Array(s.utf8) }
    func id(_ s: String) -> NodeID { NodeID(Array(s.utf8))! }
    let aa: [UInt8] = Array("aa".utf8)

    /// Some DHT nodes write "t" and "y" before "q" and "a": the message means the same.
    @Test func aQueryWithUnsortedKeysIsRead() throws {
        let q = "d1:t2:aa1:y1:q1:q4:ping1:ad2:id20:abcdefghij0123456789ee"
        #expect(try KRPC.Message.decode(b(q)) == .query(transactionID: aa, .ping(id: id("abcdefghij0123456789"))))
    }

    @Test func pingExamples() throws {
        let q = "d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"
        #expect(try KRPC.Message.decode(b(q)) == .query(transactionID: aa, .ping(id: id("abcdefghij0123456789"))))
        #expect(KRPC.Message.query(transactionID: aa, .ping(id: id("abcdefghij0123456789"))).encoded() == b(q))
        let r = "d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re"
        #expect(try KRPC.Message.decode(b(r)) == .response(transactionID: aa, KRPC.Response(id: id("mnopqrstuvwxyz123456"))))
        #expect(KRPC.Message.response(transactionID: aa, KRPC.Response(id: id("mnopqrstuvwxyz123456"))).encoded() == b(r))
    }

    @Test func findNodeExamples() throws {
        let q = "d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q9:find_node1:t2:aa1:y1:qe"
        let msg = KRPC.Message.query(transactionID: aa, .findNode(id: id("abcdefghij0123456789"), target: id("mnopqrstuvwxyz123456")))
        #expect(try KRPC.Message.decode(b(q)) == msg)
        #expect(msg.encoded() == b(q))
        // The example's "def456..." stands for real node info: the message decodes, the node list
        // (9 bytes, not a multiple of 26) does not.
        let r = "d1:rd2:id20:0123456789abcdefghij5:nodes9:def456...e1:t2:aa1:y1:re"
        guard case .response(_, let resp) = try KRPC.Message.decode(b(r)) else { Issue.record("not a response"); return }
        #expect(resp.id == id("0123456789abcdefghij") && resp.nodes == b("def456..."))
        #expect(throws: KRPC.NodesError(length: 9)) { try KRPC.decodeNodes(resp.nodes!) }
    }

    @Test func getPeersExamples() throws {
        let q = "d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:y1:qe"
        let msg = KRPC.Message.query(transactionID: aa, .getPeers(id: id("abcdefghij0123456789"), infoHash: id("mnopqrstuvwxyz123456")))
        #expect(try KRPC.Message.decode(b(q)) == msg)
        #expect(msg.encoded() == b(q))
        let withPeers = "d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re"
        let peersMsg = KRPC.Message.response(transactionID: aa, KRPC.Response(id: id("abcdefghij0123456789"),
                                             values: [b("axje.u"), b("idhtnm")], token: b("aoeusnth")))
        #expect(try KRPC.Message.decode(b(withPeers)) == peersMsg)
        #expect(peersMsg.encoded() == b(withPeers))
        // "axje.u" read as compact peer info: 97.120.106.101, port 0x2e75.
        guard case .response(_, let r) = peersMsg else { return }
        #expect(r.peers.first == PeerAddress(host: "97.120.106.101", port: 0x2e75))
        let withNodes = "d1:rd2:id20:abcdefghij01234567895:nodes9:def456...5:token8:aoeusnthe1:t2:aa1:y1:re"
        let nodesMsg = KRPC.Message.response(transactionID: aa, KRPC.Response(id: id("abcdefghij0123456789"),
                                             nodes: b("def456..."), token: b("aoeusnth")))
        #expect(try KRPC.Message.decode(b(withNodes)) == nodesMsg)
        #expect(nodesMsg.encoded() == b(withNodes))
    }

    @Test func announcePeerExamples() throws {
        let q = "d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe"
        let msg = KRPC.Message.query(transactionID: aa, .announcePeer(id: id("abcdefghij0123456789"), infoHash: id("mnopqrstuvwxyz123456"),
                                                                      port: 6881, token: b("aoeusnth"), impliedPort: true))
        #expect(try KRPC.Message.decode(b(q)) == msg)
        #expect(msg.encoded() == b(q))
        let r = "d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re"
        #expect(try KRPC.Message.decode(b(r)) == .response(transactionID: aa, KRPC.Response(id: id("mnopqrstuvwxyz123456"))))
    }

    @Test func errorExample() throws {
        let e = "d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee"
        let msg = KRPC.Message.error(transactionID: aa, code: 201, message: "A Generic Error Ocurred")
        #expect(try KRPC.Message.decode(b(e)) == msg)
        #expect(msg.encoded() == b(e))
    }

    @Test func malformedMessagesAreTypedErrorsWithTheTransactionID() {
        func err(_ s: String) -> KRPCError? {
            do { _ = try KRPC.Message.decode(b(s)); return nil } catch { return error }
        }
        #expect(err("d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe")
                == KRPCError(kind: .badField("a.id", reason: "not a 20-byte string"), transactionID: aa, wasQuery: true))
        #expect(err("d1:ad2:id20:abcdefghij0123456789e1:q9:get_peers1:t2:aa1:y1:qe")
                == KRPCError(kind: .missing("a.info_hash"), transactionID: aa, wasQuery: true))
        #expect(err("d1:t2:aa1:y1:xe")?.kind == .unknownType("x"))
        #expect(err("d1:y1:qe")?.kind == .missing("t"))
        #expect(err("le")?.kind == .notADictionary)
        if case .bencode? = err("d1:t2:aa")?.kind {} else { Issue.record("truncated input not a bencode error") }
        // announce_peer with a port that is not a port.
        #expect(err("d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti70000e5:token1:xe1:q13:announce_peer1:t2:aa1:y1:qe")?.kind
                == .badField("a.port", reason: "70000 is not a port"))
        // Unknown methods decode (so a node can answer 204).
        #expect((try? KRPC.Message.decode(b("d1:ad2:id20:abcdefghij0123456789e1:q4:vote1:t2:aa1:y1:qe"))
                == .query(transactionID: aa, .unknown(method: "vote", id: id("abcdefghij0123456789")))) == true)
    }

    @Test func compactNodeInfoRoundTrips() throws {
        let n1 = NodeInfo(id: id("abcdefghij0123456789"), endpoint: UDPEndpoint(host: "10.1.2.3", port: 6881)!)
        let n2 = NodeInfo(id: id("mnopqrstuvwxyz123456"), endpoint: UDPEndpoint(host: "192.168.0.1", port: 1)!)
        let v6 = NodeInfo(id: id("00000000000000000000"), endpoint: UDPEndpoint(host: "::1", port: 1)!)
        let bytes = KRPC.encodeNodes([n1, v6, n2])
        #expect(bytes.count == 52)   // the IPv6 node has no place in 26-byte node info
        #expect(Array(bytes[20..<26]) == [10, 1, 2, 3, 0x1a, 0xe1])
        #expect(try KRPC.decodeNodes(bytes) == [n1, n2])
        #expect(throws: KRPC.NodesError(length: 25)) { try KRPC.decodeNodes(Array(bytes[0..<25])) }
    }

    @Test func nodeIDDistanceAndEndpoints() {
        let zero = NodeID([UInt8](repeating: 0, count: 20))!
        var b = [UInt8](repeating: 0, count: 20); b[0] = 0x10
        let x = NodeID(b)!
        #expect(zero.commonPrefixLength(with: x) == 3)
        #expect(zero.commonPrefixLength(with: zero) == 160)
        #expect(zero.distance(to: x) == x)
        var c = b; c[19] = 1
        #expect(zero.closer(x, than: NodeID(c)!))
        #expect(NodeID([1, 2, 3]) == nil)
        #expect(UDPEndpoint(address: "udp:1.2.3.4:6881")?.address == "udp:1.2.3.4:6881")
        #expect(UDPEndpoint(address: "udp:[::1]:6881")?.host == "::1")
        #expect(UDPEndpoint(address: "udp:1.2.3:6881") == nil)
        #expect(UDPEndpoint(address: "udp:example.org:6881") == nil)
    }

    /// Real libtorrent 2.0.8 messages (capture-libtorrent-dht.py): extra keys ("v", "ip", "p",
    /// "bs", "seed", an "r" inside an error) are ignored, the fields we use come through.
    @Test func decodesRealLibtorrentMessages() throws {
        let hash = NodeID(InetText.unhex("123456789abcdef123456789abcdef123456789a")!)!
        guard case .query(_, .getPeers(let ltID, _)) = try KRPC.Message.decode(try vector("libtorrent-dht-get_peers-query.bencode")) else {
            Issue.record("libtorrent's bootstrap get_peers did not decode as get_peers"); return
        }
        guard case .query(_, .announcePeer(let id2, hash, 17001, let token, true)) =
                try KRPC.Message.decode(try vector("libtorrent-dht-announce_peer-query.bencode")) else {
            Issue.record("libtorrent's announce_peer did not decode with implied_port"); return
        }
        #expect(id2 == ltID && token == b("tok12345"))
        for name in ["ping", "find_node", "announce_peer"] {
            guard case .response(_, let r) = try KRPC.Message.decode(try vector("libtorrent-dht-\(name)-response.bencode")) else {
                Issue.record("\(name) response"); continue
            }
            #expect(r.id == ltID)
        }
        guard case .response(let t, let gp) = try KRPC.Message.decode(try vector("libtorrent-dht-get_peers-response.bencode")) else {
            Issue.record("get_peers response"); return
        }
        #expect(t == b("g1") && gp.token?.count == 4 && gp.nodes == [] && gp.values == nil)
        #expect(try KRPC.Message.decode(try vector("libtorrent-dht-announce_peer-badtoken-error.bencode"))
                == .error(transactionID: b("a2"), code: 203, message: "invalid token"))
    }
}
