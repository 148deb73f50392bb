import Testing
@testable import BitTorrentProtocol

@Suite struct PexTests {
    func v4(_ last: UInt8, _ port: UInt16 = 6881) -> PeerAddress { PeerAddress(ip: [10, 0, 0, last], port: port)! }
    func b(_ s: String) -> [UInt8] { Array(s.utf8) }

    @Test func roundTripsBothFamiliesWithFlags() throws {
        let six = PeerAddress(host: "2001:db8::7", port: 51413)!
        let m = PexMessage(added: [PexPeer(address: v4(1), flags: [.seed, .reachable]), PexPeer(address: six, flags: .utp)],
                           dropped: [v4(9), PeerAddress(host: "::1", port: 1)!])
        let bytes = m.encoded()
        let dict = try Bencode.decode(bytes)
        #expect(dict["added"]?.bytes == [10, 0, 0, 1, 0x1a, 0xe1])
        #expect(dict["added.f"]?.bytes == [0x12])
        #expect(dict["added6.f"]?.bytes == [0x04])
        #expect(dict["dropped"]?.bytes == [10, 0, 0, 9, 0x1a, 0xe1])
        #expect(dict["dropped6"]?.bytes?.count == 18)
        #expect(try PexMessage.decode(bytes) == m)
    }

    @Test func decodesWithoutFlagsAndDropsDuplicates() throws {
        let payload = Bencode.dict([("added", .bytes(v4(1).compact + v4(1).compact + v4(2).compact))]).encoded()
        let m = try PexMessage.decode(payload)
        #expect(m.added.map(\.address) == [v4(1), v4(2)])
        #expect(m.added.allSatisfy { $0.flags == [] })
        #expect(m.dropped.isEmpty)
    }

    @Test func refusesMalformedMessages() {
        let cases: [([UInt8], PexError)] = [
            (b("le"), .notADictionary),
            (b("d5:addedi1ee"), .wrongType(key: "added")),
            (b("d5:added7:abcdefge"), .badPeers(key: "added", .badLength(bytes: 7, entrySize: 6))),
            (Bencode.dict([("added", .bytes(v4(1).compact)), ("added.f", .bytes([1, 2]))]).encoded(),
             .flagsLength(key: "added.f", got: 2, expected: 1)),
            (Bencode.dict([("added", .bytes(v4(1).compact)), ("dropped", .bytes(v4(1).compact))]).encoded(),
             .addedAndDropped(v4(1))),
            (Bencode.dict([("dropped6", .bytes([UInt8](repeating: 0, count: 18 * 1001)))]).encoded(),
             .tooMany(key: "dropped6", count: 1001, limit: 1000)),
        ]
        for (input, expected) in cases {
            do { _ = try PexMessage.decode(input); Issue.record("accepted \(expected)") } catch {
                #expect(error == expected)
                #expect(error.description.hasPrefix("ut_pex: "))
            }
        }
    }

    @Test func stateSendsDeltasOfAtMostFifty() throws {
        var s = PexState()
        for i in 1...60 { s.peerConnected(v4(UInt8(i)), flags: i == 1 ? .seed : []) }
        let recipient = v4(60)
        let firstMessage = s.message(for: 7, recipientAddress: recipient)
        let first = try #require(firstMessage)
        #expect(first.added.count == 50)
        #expect(first.added[0] == PexPeer(address: v4(1), flags: .seed))
        #expect(first.dropped.isEmpty)
        let secondMessage = s.message(for: 7, recipientAddress: recipient)
        let second = try #require(secondMessage)
        #expect(second.added.count == 9, "the rest, never the recipient itself")
        #expect(!(first.added + second.added).contains { $0.address == recipient })
        #expect(Set((first.added + second.added).map(\.address)).count == 59)
        #expect(s.message(for: 7, recipientAddress: recipient) == nil, "nothing changed")

        s.peerDisconnected(v4(3))
        s.peerConnected(v4(200))
        let thirdMessage = s.message(for: 7, recipientAddress: recipient)
        let third = try #require(thirdMessage)
        #expect(third.added.map(\.address) == [v4(200)])
        #expect(third.dropped == [v4(3)])
        // The encoded message decodes to the same delta.
        #expect(try PexMessage.decode(third.encoded()) == third)

        // A peer that came and went between two messages is never mentioned.
        s.peerConnected(v4(201))
        s.peerDisconnected(v4(201))
        #expect(s.message(for: 7, recipientAddress: recipient) == nil)

        // Another recipient gets the full current set; a forgotten one starts over.
        #expect(s.message(for: 8, recipientAddress: nil)?.added.count == 50)
        s.forget(recipient: 7)
        #expect(s.message(for: 7, recipientAddress: recipient)?.added.count == 50)
    }
}
