import Testing
@testable import BitTorrentProtocol

@Suite struct ExtensionHandshakeTests {
    func b(_ s: String) -> [UInt8] { Array(s.utf8) }

    @Test func decodesTheBEP10Example() throws {
        // BEP 10's example with its string lengths counted in UTF-8 bytes ("µ" is two bytes; the
        // BEP's text says 6:µT_PEX, which only fits a one-byte µ).
        let h = try ExtensionHandshake.decode(b("d1:md11:LT_metadatai1e7:µT_PEXi2ee1:pi6881e1:v13:µTorrent 1.2e"))
        #expect(h.messages == ["LT_metadata": 1, "µT_PEX": 2])
        #expect(h.listenPort == 6881)
        #expect(h.client == "µTorrent 1.2")
        #expect(h.id(for: "LT_metadata") == 1)
        #expect(h.id(for: ExtensionHandshake.utPex) == nil)
    }

    /// Clients do not all sort the handshake's keys (BEP 10 does not ask them to be read sorted).
    @Test func decodesAHandshakeWithUnsortedKeys() throws {
        let h = try ExtensionHandshake.decode(b("d1:v13:Peer 0.1 beta1:pi6881e1:md6:ut_pexi2e11:ut_metadatai1eee"))
        #expect(h.messages == ["ut_metadata": 1, "ut_pex": 2])
        #expect(h.listenPort == 6881 && h.client == "Peer 0.1 beta")
    }

    @Test func roundTripsEveryField() throws {
        let h = ExtensionHandshake(messages: ["ut_metadata": 3, "ut_pex": 1, "lt_donthave": 0], listenPort: 51413,
                                   client: "Peerhost 0.1", metadataSize: 31235, requestQueueSize: 500,
                                   yourIP: [127, 0, 0, 1], ipv4: [10, 0, 0, 2], ipv6: [UInt8](repeating: 0, count: 15) + [1],
                                   uploadOnly: true)
        let bytes = h.encoded()
        #expect(try Bencode.decode(bytes).encoded() == bytes, "canonical bencode")
        let back = try ExtensionHandshake.decode(bytes)
        #expect(back == h)
        #expect(back.id(for: "ut_metadata") == 3)
        #expect(back.id(for: "lt_donthave") == nil, "0 means disabled")
        #expect(back.metadataSize == 31235)
    }

    @Test func ignoresUnknownKeysAndTreatsPortZeroAsNone() throws {
        let h = try ExtensionHandshake.decode(b("d1:ei0e1:mde1:pi0e4:zzzzl1:xee"))
        #expect(h.messages.isEmpty)
        #expect(h.listenPort == nil)
    }

    @Test func refusesBadFieldsNamingTheKey() {
        let cases: [(String, ExtensionHandshakeError)] = [
            ("le", .notADictionary),
            ("d1:mi1ee", .wrongType(key: "m", expected: "a dictionary")),
            ("d1:md6:ut_pex3:abcee", .wrongType(key: "m.ut_pex", expected: "an integer")),
            ("d1:md6:ut_pexi300eee", .outOfRange(key: "m.ut_pex", value: 300, allowed: "0...255")),
            ("d1:md11:ut_metadatai2e6:ut_pexi2eee", .duplicateMessageID(id: 2, names: ["ut_metadata", "ut_pex"])),
            ("d1:pi70000ee", .outOfRange(key: "p", value: 70000, allowed: "0...65535")),
            ("d1:p4:6881e", .wrongType(key: "p", expected: "an integer")),
            ("d13:metadata_sizei-1ee", .outOfRange(key: "metadata_size", value: -1, allowed: "0...2147483647")),
            ("d6:youripi1ee", .wrongType(key: "yourip", expected: "a string")),
            ("d6:yourip5:abcdee", .badAddressLength(key: "yourip", bytes: 5)),
        ]
        for (input, expected) in cases {
            do {
                _ = try ExtensionHandshake.decode(b(input))
                Issue.record("accepted \(input)")
            } catch {
                #expect(error == expected, "\(input)")
                #expect(error.description.hasPrefix("extension handshake: "))
            }
        }
        do { _ = try ExtensionHandshake.decode(b("d1:m")); Issue.record("accepted truncated input") } catch {
            guard case .bencode = error else { Issue.record("\(error)"); return }
        }
        #expect(ExtensionHandshakeError.outOfRange(key: "p", value: 70000, allowed: "0...65535").description
                == "extension handshake: \"p\" is 70000, allowed 0...65535")
    }
}
