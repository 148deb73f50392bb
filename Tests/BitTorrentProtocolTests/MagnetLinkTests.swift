import Testing
@testable import BitTorrentProtocol

@Suite struct MagnetLinkTests {
    static let hex = "94333329467b01d11b75e18571190c9105fa04a5"

    func refusal(_ uri: String) -> MagnetError? {
        do { _ = try MagnetLink.parse(uri); return nil } catch { return error }
    }

    @Test func parsesHexAndBase32InfoHashes() throws {
        let h = try #require(InfoHash(hex: Self.hex))
        #expect(try MagnetLink.parse("magnet:?xt=urn:btih:\(Self.hex)").infoHash == h)
        #expect(try MagnetLink.parse("MAGNET:?xt=urn:btih:\(Self.hex.uppercased())").infoHash == h)
        #expect(try MagnetLink.parse("magnet:?xt=urn:btih:\(h.base32)").infoHash == h)
        #expect(try MagnetLink.parse("magnet:?xt=urn:btih:\(h.base32.lowercased())").infoHash == h)
        #expect(h.base32.count == 32)
    }

    @Test func base32MatchesRFC4648() {
        #expect(Base32.encode(Array("foobar".utf8)) == "MZXW6YTBOI")
        #expect(Base32.decode("MZXW6YTBOI") == Array("foobar".utf8))
        #expect(Base32.decode("MZXW6YTBO1") == nil)
        // Leftover bits that are not zero are not the encoding of any bytes.
        #expect(Base32.decode("MZXW6YTBOJ") == nil)
        let zeros = [UInt8](repeating: 0, count: 20)
        #expect(InfoHash(bytes: zeros)!.base32 == String(repeating: "A", count: 32))
    }

    @Test func parsesNameTrackersAndPeers() throws {
        let uri = "magnet:?xt=urn:btih:\(Self.hex)&dn=My+File%20%C3%A9.iso&tr=http%3A%2F%2Ft.example%2Fannounce"
            + "&tr.1=udp://u.example:6969&tr=http%3A%2F%2Ft.example%2Fannounce&x.pe=10.0.0.1:6881&x.pe=%5B::1%5D:51413&ws=http://ignored/"
        let m = try MagnetLink.parse(uri)
        #expect(m.displayName == "My File é.iso")
        #expect(m.trackers == ["http://t.example/announce", "udp://u.example:6969"])
        #expect(m.peers == ["10.0.0.1:6881", "[::1]:51413"])
    }

    @Test func uriRoundTrips() throws {
        let m = MagnetLink(infoHash: InfoHash(hex: Self.hex)!, displayName: "a b&c=d/é", trackers: ["http://t/a?x=1&y=2"], peers: ["127.0.0.1:6881"])
        #expect(m.uri == "magnet:?xt=urn:btih:\(Self.hex)&dn=a%20b%26c%3Dd%2F%C3%A9&tr=http%3A%2F%2Ft%2Fa%3Fx%3D1%26y%3D2&x.pe=127.0.0.1%3A6881")
        #expect(try MagnetLink.parse(m.uri) == m)
        let bare = MagnetLink(infoHash: InfoHash(hex: Self.hex)!)
        #expect(bare.uri == "magnet:?xt=urn:btih:\(Self.hex)")
        #expect(try MagnetLink.parse(bare.uri) == bare)
    }

    @Test func refusals() {
        #expect(refusal("http://example/")?.description == "magnet: does not start with \"magnet:?\"")
        #expect(refusal("magnet:?dn=x")?.description == "magnet: xt: no urn:btih infohash")
        #expect(refusal("magnet:?xt=urn:btmh:1220" + String(repeating: "ab", count: 32))?.description
                == "magnet: xt: v2-only magnet links (urn:btmh) are not supported yet")
        #expect(refusal("magnet:?xt=urn:btih:abc")?.parameter == "xt")
        #expect(refusal("magnet:?xt=urn:btih:\(String(repeating: "g", count: 40))")?.parameter == "xt")
        #expect(refusal("magnet:?xt=urn:btih:\(Self.hex)&xt=urn:btih:\(String(repeating: "0", count: 40))")?.reason == "names two different infohashes")
        #expect(refusal("magnet:?xt=urn:btih:\(Self.hex)&dn=%zz")?.description == "magnet: dn: bad percent-encoding")
        #expect(refusal("magnet:?xt=urn:btih:\(Self.hex)&dn=%4")?.parameter == "dn")
        for pe in ["nohost", ":80", "h:0", "h:65536", "h:x", "::1:80", "[]:80"] {
            #expect(refusal("magnet:?xt=urn:btih:\(Self.hex)&x.pe=\(pe)")?.parameter == "x.pe", "\(pe)")
        }
        #expect(refusal("magnet:?xt=urn:btih:\(Self.hex)&tr=")?.parameter == "tr")
        #expect(refusal("magnet:?xt=urn:btih:\(Self.hex)&dn=" + String(repeating: "x", count: 70_000))?.reason.contains("longer") == true)
    }

    @Test func hybridMagnetUsesTheV1Hash() throws {
        let m = try MagnetLink.parse("magnet:?xt=urn:btmh:1220\(String(repeating: "cd", count: 32))&xt=urn:btih:\(Self.hex)")
        #expect(m.infoHash.hex == Self.hex)
    }

    @Test func infoHashTextForms() {
        #expect(InfoHash(hex: Self.hex)?.description == Self.hex)
        #expect(InfoHash(hex: Self.hex.uppercased())?.hex == Self.hex)
        #expect(InfoHash(hex: String(Self.hex.dropLast())) == nil)
        #expect(InfoHash(hex: Self.hex + "00") == nil)
        #expect(InfoHash(bytes: [1, 2, 3]) == nil)
        #expect(Hex.decode("0g") == nil)
        #expect(Hex.encode([0, 255, 16]) == "00ff10")
    }
}
