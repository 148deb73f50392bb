import Testing
@testable import BitTorrentPlugin

@Suite struct JSONTests {
    @Test func parsesTheHostsConfigObject() throws {
        let v = try JSON.parse(Array(#"{"listen":["tcp:127.0.0.1:6881","udp:127.0.0.1:6881"],"max_peers_per_torrent":30,"dht":false,"name":"a\"b\u00e9"}"#.utf8))
        #expect(v["listen"]?.array?.count == 2)
        #expect(v["max_peers_per_torrent"]?.int == 30)
        #expect(v["dht"]?.bool == false)
        #expect(v["name"]?.string == "a\"bé")
        #expect(try JSON.parse([]) == .object([:]))
        let s = Settings(json: v)
        #expect(s.listen == "tcp:127.0.0.1:6881" && s.listenPort == 6881 && s.maxPeersPerTorrent == 30)
    }

    @Test func refusesBrokenInputWithAnOffset() {
        for bad in ["{", "{\"a\":}", "[1,2", "{\"a\":1}x", String(repeating: "[", count: 40) + String(repeating: "]", count: 40)] {
            #expect(throws: JSON.ParseError.self, "\(bad)") { try JSON.parse(Array(bad.utf8)) }
        }
    }

    @Test func writerEscapesAndSeparates() {
        var w = JSONWriter()
        w.beginObject()
        w.field("a", "x\"y\n")
        w.beginArray("b"); w.field(nil, 1); w.field(nil, true); w.endArray()
        w.field("c", 0.5)
        w.endObject()
        #expect(w.text == #"{"a":"x\"y\n","b":[1,true],"c":0.5}"#)
    }
}
