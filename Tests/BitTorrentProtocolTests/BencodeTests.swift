import Testing
@testable import BitTorrentProtocol

@Suite struct BencodeTests {
    func b(_ s: String) -> [UInt8] { Array(s.utf8) }

    @Test func roundTripsCanonicalInput() throws {
        for s in ["i0e", "i-42e", "i9223372036854775807e", "i-9223372036854775808e", "0:", "4:spam",
                  "le", "de", "l4:spami42ee", "d3:bar4:spam3:fooi42ee", "d1:ad1:bli1ei2eeee"] {
            let v = try Bencode.decode(b(s))
            #expect(v.encoded() == b(s), "\(s)")
        }
    }

    @Test func refusesNonCanonicalForms() {
        let cases: [(String, BencodeError.Kind)] = [
            ("i03e", .badInteger), ("i-0e", .badInteger), ("ie", .badInteger), ("i1x2e", .badInteger),
            ("i9223372036854775808e", .integerOverflow), ("03:abc", .badLength),
            ("d3:foo1:a3:bar1:be", .keysOutOfOrder), ("d3:foo1:a3:foo1:be", .duplicateKey),
            ("di1e1:ae", .keyNotString), ("4:abc", .truncated), ("l4:spam", .truncated),
            ("i1ei2e", .trailingBytes), ("x", .unexpectedByte(UInt8(ascii: "x"))),
        ]
        for (input, kind) in cases {
            #expect(throws: BencodeError.self, "\(input)") { try Bencode.decode(self.b(input)) }
            do { _ = try Bencode.decode(b(input)) } catch { #expect(error.kind == kind, "\(input): \(error)") }
        }
    }

    /// Tracker replies and peer/DHT messages are never hashed; real ones (chihaya's announce replies)
    /// do not sort their keys. Their limits take any order; a key given twice is still refused.
    @Test func messageAndReplyLimitsTakeKeysInAnyOrderButNeverTwice() throws {
        for limits in [Bencode.Limits.message, .reply] {
            let v = try Bencode.decode(b("d3:foo1:a3:bar1:be"), limits: limits)
            #expect(v["foo"]?.text == "a" && v["bar"]?.text == "b")
            #expect(v.encoded() == b("d3:bar1:b3:foo1:ae"), "encoding writes the canonical order")
            do { _ = try Bencode.decode(b("d3:foo1:a3:bar1:b3:foo1:ce"), limits: limits); Issue.record("accepted a key twice") } catch {
                #expect(error.kind == .duplicateKey)
                #expect(error.offset == 17, "the second foo")
            }
            let nested = try Bencode.decode(b("d1:zd1:yi1e1:xi2ee1:al1:bee"), limits: limits)
            #expect(nested["z"]?["x"]?.integer == 2 && nested["a"]?.list?.count == 1)
        }
        #expect(Bencode.Limits.default.keyOrder == .canonical, "metainfo and resume data stay canonical")
        #expect(throws: BencodeError.self) { try Bencode.decode(self.b("d3:foo1:a3:bar1:be")) }
    }

    @Test func limitsBoundDepthAndLength() {
        let deep = String(repeating: "l", count: 100) + String(repeating: "e", count: 100)
        do { _ = try Bencode.decode(b(deep)); Issue.record("accepted 100 levels") } catch {
            #expect(error.kind == .tooDeep(limit: 64))
        }
        let limits = Bencode.Limits(maxDepth: 4, maxStringLength: 8, maxItems: 100)
        do { _ = try Bencode.decode(b("9:123456789"), limits: limits); Issue.record("accepted a 9-byte string") } catch {
            #expect(error.kind == .tooLong(limit: 8))
            #expect(error.description.contains("at byte 0"))
        }
    }

    @Test func decodePrefixReportsTheLengthTaken() throws {
        let (v, n) = try Bencode.decodePrefix(b("d8:msg_typei1e5:piecei0eeRAWDATA"))
        #expect(n == 25)
        #expect(v["msg_type"]?.integer == 1)
    }
}
