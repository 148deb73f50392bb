import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import BitTorrentProtocol

/// Reads a committed test vector from protocols/bittorrent/vectors (path from this file's location).
func vector(_ name: String) throws -> [UInt8] {
    let here = #filePath
    let root = here.split(separator: "/", omittingEmptySubsequences: false).dropLast(3).joined(separator: "/")
    let path = root + "/protocols/bittorrent/vectors/" + name
    guard let f = fopen(path, "rb") else { throw VectorMissing(path: path) }
    defer { fclose(f) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n <= 0 { break }
        out.append(contentsOf: buf[0..<n])
    }
    return out
}
struct VectorMissing: Error { let path: String }

@Suite struct HTTPTrackerTests {
    let bep3Hash: [UInt8] = [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf1, 0x23, 0x45,
                             0x67, 0x89, 0xab, 0xcd, 0xef, 0x12, 0x34, 0x56, 0x78, 0x9a]

    func text(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self) }
    func b(_ s: String) -> [UInt8] { Array(s.utf8) }

    @Test func percentEncodingMatchesTheSpecVector() {
        // The BEP 3 / BitTorrentSpecification example infohash.
        #expect(percentEncode(bep3Hash) == "%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A")
        #expect(percentEncode(Array("-_.~ /+&=".utf8)) == "-_.~%20%2F%2B%26%3D")
    }

    @Test func announceRequestIsAnHTTP10GetWithEveryParameter() throws {
        let t = try HTTPTracker(url: "http://tracker.example:6969/announce?passkey=abc")
        #expect(t.connectAddress == "tcp:tracker.example:6969")
        let r = AnnounceRequest(infoHash: bep3Hash, peerID: Array("-PH0001-abcdefghijkl".utf8), port: 6881,
                                uploaded: 1, downloaded: 2, left: 3, event: .started, numWant: 30, key: 0xdeadbeef,
                                trackerID: "tid 1")
        let req = text(t.announceRequestBytes(r))
        let lines = req.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines[0] == "GET /announce?passkey=abc&info_hash=%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A"
                + "&peer_id=-PH0001-abcdefghijkl&port=6881&uploaded=1&downloaded=2&left=3&compact=1&numwant=30"
                + "&key=deadbeef&event=started&trackerid=tid%201 HTTP/1.0")
        #expect(lines.contains("Host: tracker.example:6969"))
        #expect(lines.contains("Connection: close"))
        #expect(lines.contains { $0.hasPrefix("User-Agent: ") })
        #expect(req.hasSuffix("\r\n\r\n"))
    }

    @Test func urlParsing() throws {
        let a = try HTTPTracker(url: "http://10.0.0.1/announce")
        #expect(a.port == 80 && a.path == "/announce" && a.query == nil)
        #expect(text(a.announceRequestBytes(AnnounceRequest(infoHash: bep3Hash, peerID: bep3Hash, port: 1, left: 0)))
            .contains("\r\nHost: 10.0.0.1\r\n"))
        let v6 = try HTTPTracker(url: "HTTP://[::1]:8080")
        #expect(v6.host == "::1" && v6.port == 8080 && v6.path == "/")
        #expect(v6.connectAddress == "tcp:[::1]:8080")
        #expect(text(v6.announceRequestBytes(AnnounceRequest(infoHash: bep3Hash, peerID: bep3Hash, port: 1, left: 0)))
            .contains("\r\nHost: [::1]:8080\r\n"))

        func refusal(_ url: String) -> String? {
            do { _ = try HTTPTracker(url: url); return nil } catch { return error.description }
        }
        #expect(refusal("https://tracker.example/announce")?.contains("https trackers are not available to a plugin") == true)
        #expect(refusal("http://host:0/announce")?.contains("port") == true)
        #expect(refusal("http://host:99999/announce")?.contains("port") == true)
        #expect(refusal("http:///announce")?.contains("no host") == true)
        #expect(refusal("ftp://host/announce") != nil)
        #expect(refusal("http://host/an nounce") != nil)

        #expect(try TrackerURL.parse("udp://tracker.example:1337/announce") == .udp(host: "tracker.example", port: 1337))
        do { _ = try TrackerURL.parse("udp://tracker.example/announce"); Issue.record("accepted a udp URL without port") } catch {
            #expect(error.description.contains("no port"))
        }
    }

    @Test func scrapeFollowsTheBEP48Rule() throws {
        let t = try HTTPTracker(url: "http://example.com/x/announce.php?k=1")
        #expect(t.scrapePath == "/x/scrape.php")
        let req = try #require(t.scrapeRequestBytes(infoHashes: [bep3Hash, [UInt8](repeating: 0x41, count: 20)]))
        #expect(text(req).hasPrefix("GET /x/scrape.php?k=1&info_hash=%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A&info_hash=AAAAAAAAAAAAAAAAAAAA HTTP/1.0\r\n"))
        #expect(try HTTPTracker(url: "http://example.com/a").scrapeRequestBytes(infoHashes: [bep3Hash]) == nil)
        #expect(try HTTPTracker(url: "http://example.com/announce/x").scrapePath == nil)
        #expect(try HTTPTracker(url: "http://example.com/announce").scrapePath == "/scrape")
    }

    @Test func readsTheRealOpentrackerAnnounceReply() throws {
        let raw = try vector("opentracker-announce.http")
        var reader = HTTPResponseReader()
        // Byte by byte: the reader must not depend on how reads are split.
        var done = false
        for (i, b) in raw.enumerated() {
            done = try reader.feed([b])
            #expect(done == (i == raw.count - 1))
        }
        #expect(reader.status == 200)
        let r = try AnnounceResponse.parse(bencoded: reader.body)
        #expect(r.interval == 1672 && r.minInterval == 836)
        #expect(r.complete == 2 && r.incomplete == 2)
        #expect(Set(r.peers.map(\.address)) == ["tcp:127.0.0.1:6881", "tcp:127.0.0.1:6882", "tcp:127.0.0.1:6883", "tcp:127.0.0.1:6884"])
    }

    @Test func opentrackerRefusalIsAFailureWithItsText() throws {
        var reader = HTTPResponseReader()
        #expect(try reader.feed(try vector("opentracker-announce-refused.http")))
        #expect(throws: TrackerError.failure("Requested download is not authorized for use with this tracker.")) {
            try AnnounceResponse.parse(bencoded: reader.body)
        }
    }

    @Test func readsTheRealOpentrackerScrapeReply() throws {
        var reader = HTTPResponseReader()
        #expect(try reader.feed(try vector("opentracker-scrape.http")))
        let s = try ScrapeResponse.parse(bencoded: reader.body)
        #expect(s.files == [bep3Hash: ScrapeStats(complete: 2, downloaded: 0, incomplete: 2)])
    }

    @Test func chunkedAndReadUntilCloseBodies() throws {
        let bodyBytes: [UInt8] = Array("d8:intervali900e5:peers6:".utf8) + [0x7f, 0, 0, 1, 0x1a, 0xe1] + Array("e".utf8)
        var chunked: [UInt8] = Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
        chunked += Array("5;ext=1\r\n".utf8) + bodyBytes[0..<5] + Array("\r\n".utf8)
        chunked += Array(String(bodyBytes.count - 5, radix: 16).utf8) + Array("\r\n".utf8) + bodyBytes[5...] + Array("\r\n".utf8)
        chunked += Array("0\r\nX-Trailer: 1\r\n\r\n".utf8)
        var reader = HTTPResponseReader()
        #expect(try reader.feed(Array(chunked[0..<40])) == false)
        #expect(try reader.feed(Array(chunked[40...])))
        #expect(reader.body == bodyBytes)
        #expect(try AnnounceResponse.parse(bencoded: reader.body).peers == [PeerAddress(host: "127.0.0.1", port: 6881)])

        var untilClose = HTTPResponseReader()
        #expect(try untilClose.feed(Array("HTTP/1.0 200 OK\r\n\r\n".utf8) + bodyBytes) == false)
        try untilClose.finishAtEOF()
        #expect(untilClose.body == bodyBytes)

        var short = HTTPResponseReader()
        _ = try short.feed(Array("HTTP/1.0 200 OK\r\nContent-Length: 50\r\n\r\nabc".utf8))
        #expect(throws: TrackerError.truncated("after 3 of 50 body bytes (Content-Length)")) { try short.finishAtEOF() }
    }

    @Test func errorsNameTheStatusLineAndLimits() throws {
        var r = HTTPResponseReader()
        #expect(throws: TrackerError.httpStatus(line: "HTTP/1.1 404 Not Found", detail: nil)) {
            try r.feed(Array("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".utf8))
        }
        var withReason = HTTPResponseReader()
        #expect(throws: TrackerError.httpStatus(line: "HTTP/1.0 400 Bad Request", detail: "bad passkey")) {
            try withReason.feed(Array("HTTP/1.0 400 Bad Request\r\nContent-Length: 33\r\n\r\nd14:failure reason11:bad passkeye".utf8))
        }
        var huge = HTTPResponseReader()
        #expect(throws: TrackerError.tooLarge("header", limit: 16 << 10)) {
            try huge.feed(Array("HTTP/1.0 200 OK\r\n".utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: 17 << 10))
        }
        var bigBody = HTTPResponseReader()
        #expect(throws: TrackerError.self) { try bigBody.feed(Array("HTTP/1.0 200 OK\r\nContent-Length: 5000000\r\n\r\n".utf8)) }
        var garbage = HTTPResponseReader()
        #expect(throws: TrackerError.self) { try garbage.feed(Array("SSH-2.0-OpenSSH\r\n\r\n".utf8)) }
        var badChunk = HTTPResponseReader()
        #expect(throws: TrackerError.self) {
            try badChunk.feed(Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".utf8))
        }
    }

    /// chihaya writes its announce reply in the order interval, min interval, peers, complete,
    /// incomplete; opentracker sorts. Both parse to the same reply.
    @Test func aReplyWithUnsortedKeysIsRead() throws {
        let peer: [UInt8] = [127, 0, 0, 1, 0x1a, 0xe1]   // 127.0.0.1:6881
        let body = b("d8:intervali1800e12:min intervali900e5:peers6:") + peer + b("8:completei5e10:incompletei2ee")
        let r = try AnnounceResponse.parse(bencoded: body)
        #expect(r.interval == 1800 && r.minInterval == 900)
        #expect(r.complete == 5 && r.incomplete == 2)
        #expect(r.peers == [PeerAddress(host: "127.0.0.1", port: 6881)])
        let hash = [UInt8](repeating: 0xab, count: 20)
        let scrape = b("d5:filesd20:") + hash + b("d10:incompletei3e8:completei4e10:downloadedi9eeee")
        #expect(try ScrapeResponse.parse(bencoded: scrape).files[hash] == ScrapeStats(complete: 4, downloaded: 9, incomplete: 3))
        do { _ = try AnnounceResponse.parse(bencoded: b("d8:intervali1800e5:peers0:8:intervali60ee")); Issue.record("accepted interval twice") } catch {
            #expect(error.description.contains("appears twice"), "\(error)")
        }
    }

    @Test func announceReplyForms() throws {
        // Non-compact list of dictionaries (BEP 3) plus peers6 (BEP 7).
        var v6 = InetText.parseIPv6("2001:db8::1")!
        v6 += [0x1a, 0xe1]
        let body: [UInt8] = Array("d8:intervali60e5:peersld2:ip8:10.0.0.17:peer id20:AAAAAAAAAAAAAAAAAAAA4:porti7000eed2:ip11:example.org4:porti80eee6:peers618:".utf8)
            + v6 + Array("10:tracker id2:t115:warning message6:bewaree".utf8)
        let r = try AnnounceResponse.parse(bencoded: body)
        // A host name in a non-compact list is dropped: peers are addresses (a tracker must not make
        // every client resolve names of its choosing).
        #expect(r.peers.map(\.address) == ["tcp:10.0.0.1:7000", "tcp:[2001:db8::1]:6881"])
        #expect(r.warning == "beware" && r.trackerID == "t1" && r.interval == 60)

        #expect(throws: TrackerError.badField(key: "interval", reason: "missing")) {
            try AnnounceResponse.parse(bencoded: Array("d5:peers0:e".utf8))
        }
        #expect(throws: TrackerError.badField(key: "peers", reason: "compact string of 5 bytes is not a multiple of 6")) {
            try AnnounceResponse.parse(bencoded: Array("d8:intervali1e5:peers5:abcdee".utf8))
        }
        #expect(throws: TrackerError.badField(key: "peers[0].port", reason: "missing or not 1...65535")) {
            try AnnounceResponse.parse(bencoded: Array("d8:intervali1e5:peersld2:ip3:1.2eee".utf8))
        }
        do { _ = try AnnounceResponse.parse(bencoded: Array("d8:intervali1e".utf8)); Issue.record("accepted truncated bencode") } catch {
            guard case .bencode = error else { Issue.record("wrong error \(error)"); return }
        }
    }
}
