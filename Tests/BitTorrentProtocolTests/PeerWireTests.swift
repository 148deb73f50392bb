import Testing
@testable import BitTorrentProtocol

@Suite struct PeerWireTests {
    let hash = [UInt8](repeating: 0xAB, count: 20)
    let peer = Array("-PH0100-abcdefghijkl".utf8)

    @Test func handshakeRoundTripsAndAnnouncesExtensions() throws {
        let h = Handshake(infoHash: hash, peerID: peer)
        let bytes = h.encoded()
        #expect(bytes.count == 68)
        #expect(bytes[0] == 19)
        let back = try Handshake.decode(bytes)
        #expect(back == h)
        #expect(back.supportsExtensionProtocol && back.supportsFast && back.supportsDHT)
        var bad = bytes; bad[3] = 0
        #expect(throws: WireError.self) { try Handshake.decode(bad) }
    }

    @Test func messagesRoundTripThroughTheFramerAtEverySplit() throws {
        let messages: [PeerMessage] = [
            .keepAlive, .choke, .unchoke, .interested, .notInterested, .have(piece: 7), .bitfield([0xF0, 0x01]),
            .request(piece: 1, begin: 16384, length: 16384), .cancel(piece: 2, begin: 0, length: 100), .port(6881),
            .suggest(piece: 3), .haveAll, .haveNone, .reject(piece: 4, begin: 0, length: 16384), .allowedFast(piece: 9),
            .extended(id: 0, payload: Array("d1:md11:ut_metadatai1eee".utf8)),
        ]
        var stream = Handshake(infoHash: hash, peerID: peer).encoded()
        for m in messages { m.encode(into: &stream) }
        // A piece message with a 5-byte block.
        PeerMessage.pieceHeader(piece: 5, begin: 32, length: 5).encode(into: &stream)
        stream += [1, 2, 3, 4, 5]
        for split in [1, 3, 7, 68, 100, stream.count] {
            var framer = PeerWireFramer()
            var got: [PeerMessage] = []
            var block: [UInt8] = []
            var header: (Int, Int, Int)? = nil
            var ended = false
            var i = 0
            while i < stream.count {
                let chunk = Array(stream[i..<min(i + split, stream.count)])
                for e in try framer.feed(chunk) {
                    switch e {
                    case .handshake(let h): #expect(h.infoHash == hash)
                    case .message(let m): got.append(m)
                    case .blockStart(let p, let b, let l): header = (p, b, l)
                    case .blockData(let r): block += chunk[r]
                    case .blockEnd: ended = true
                    }
                }
                i += split
            }
            #expect(got == messages, "split \(split)")
            #expect(header.map { [$0.0, $0.1, $0.2] } == [5, 32, 5])
            #expect(block == [1, 2, 3, 4, 5])
            #expect(ended)
        }
    }

    @Test func refusesOversizedAndMalformedMessages() throws {
        var f = PeerWireFramer(expectHandshake: false)
        #expect(throws: WireError.tooLong(id: 5, length: 2_000_000, limit: 1 << 20)) {
            _ = try f.feed([0x00, 0x1E, 0x84, 0x80, 5])
        }
        var g = PeerWireFramer(expectHandshake: false)
        #expect(throws: WireError.badLength(id: 4, length: 3)) { _ = try g.feed([0, 0, 0, 3, 4, 0, 0]) }
        var h = PeerWireFramer(expectHandshake: false)
        #expect(throws: WireError.unknownMessage(99)) { _ = try h.feed([0, 0, 0, 1, 99]) }
        var k = PeerWireFramer(expectHandshake: false)
        // A piece message claiming a 1 MiB block.
        #expect(throws: WireError.self) { _ = try k.feed([0, 0x10, 0, 9, 7]) }
    }
}
