import Testing
@testable import BitTorrentProtocol

@Suite struct TorrentBuilderTests {
    /// Cross-check with mktorrent: the committed .torrent was made by `mktorrent -l 16` from the same
    /// bytes; the infohash must be equal (same info keys, same piece hashing).
    @Test func rebuildsTheMktorrentSingleFileVector() throws {
        var builder = TorrentBuilder(name: "single.bin", files: [(["single.bin"], 1_000_000)], pieceLength: 65536, isMultiFile: false)
        builder.feed(Vectors.stream(0..<1_000_000))
        let bytes = try builder.finish(trackers: [[Vectors.singleTracker]], createdBy: "mktorrent 1.1")
        let ours = try Metainfo.parse(bytes)
        let theirs = try Metainfo.parse(Vectors.read("mktorrent-single.torrent"))
        #expect(ours.infoHash.hex == Vectors.singleInfoHash)
        #expect(ours.rawInfo == theirs.rawInfo)
        // Same outer fields too, so the whole file is byte-identical.
        #expect(bytes == Vectors.read("mktorrent-single.torrent"))
    }

    @Test func rebuildsTheMktorrentMultiFileVector() throws {
        var builder = TorrentBuilder(name: "multi", files: Vectors.multiFiles, pieceLength: 32768, isMultiFile: true)
        // Fed in uneven chunks that straddle pieces and files.
        var position = 0
        var size = 1
        while position < 300_000 {
            let end = min(300_000, position + size)
            builder.feed(Vectors.stream(position..<end))
            position = end
            size = size * 3 % 70_001 + 1
        }
        let ours = try Metainfo.parse(try builder.finish(createdBy: "mktorrent 1.1"))
        #expect(ours.infoHash.hex == Vectors.multiInfoHash)
        #expect(ours.info.files.map(\.path) == Vectors.multiFiles.map(\.path))
    }

    @Test func chunkingDoesNotChangeTheResult() throws {
        let data = Vectors.stream(0..<100_003)
        func build(_ chunk: Int) throws -> [UInt8] {
            var b = TorrentBuilder(name: "x", files: [(["x"], 100_003)], pieceLength: 16384, isMultiFile: false)
            var i = 0
            while i < data.count { b.feed(Array(data[i..<min(data.count, i + chunk)])); i += chunk }
            return try b.finish(creationDate: 1)
        }
        let whole = try build(data.count)
        for chunk in [1, 7, 16383, 16384, 16385, 65536] { #expect(try build(chunk) == whole, "chunk \(chunk)") }
        let m = try Metainfo.parse(whole)
        #expect(m.info.pieceCount == 7)
        #expect(m.creationDate == 1)
    }

    @Test func refusesFedBytesThatDoNotMatchTheDeclaredLengths() {
        var short = TorrentBuilder(name: "x", files: [(["x"], 100)], pieceLength: 16384, isMultiFile: false)
        short.feed([UInt8](repeating: 1, count: 99))
        #expect(throws: TorrentBuilderError("read 99 bytes but the files declare 100 (did a file change while it was read?)")) {
            try short.finish()
        }
        var long = TorrentBuilder(name: "x", files: [(["x"], 100)], pieceLength: 16384, isMultiFile: false)
        long.feed([UInt8](repeating: 1, count: 101))
        #expect(throws: TorrentBuilderError.self) { try long.finish() }
    }

    @Test func refusesBadNamesPieceLengthsAndEmptyTorrents() {
        func attempt(name: String = "ok", files: [(path: [String], length: Int64)] = [(["a"], 1)], pieceLength: Int = 16384,
                     multi: Bool = true) -> String? {
            var b = TorrentBuilder(name: name, files: files, pieceLength: pieceLength, isMultiFile: multi)
            b.feed([UInt8](repeating: 0, count: Int(files.reduce(0) { $0 + max(0, $1.length) })))
            do { _ = try b.finish(); return nil } catch { return error.description }
        }
        #expect(attempt() == nil)
        #expect(attempt(name: "..") == "create torrent: name: component \"..\" is not allowed")
        #expect(attempt(files: [(["a", ""], 1)])?.contains("component is empty") == true)
        #expect(attempt(pieceLength: 1000)?.contains("piece length 1000") == true)
        #expect(attempt(files: [(["a"], 0)])?.contains("no data") == true)
        #expect(attempt(files: [(["a"], 1), (["b"], 1)], multi: false)?.contains("single-file torrent has 2 files") == true)
    }

    @Test func writesTrackersCommentAndPrivateFlag() throws {
        var b = TorrentBuilder(name: "x", files: [(["x"], 5)], pieceLength: 16384, isMultiFile: false)
        b.feed(Array("hello".utf8))
        let tiers = [["http://a/announce", "http://b/announce"], ["udp://c:6969"]]
        let m = try Metainfo.parse(try b.finish(trackers: tiers, comment: "hi", createdBy: "peerhost test", creationDate: 1_700_000_000, isPrivate: true))
        #expect(m.trackers == tiers)
        #expect(m.comment == "hi")
        #expect(m.createdBy == "peerhost test")
        #expect(m.creationDate == 1_700_000_000)
        #expect(m.info.isPrivate)
        // One tracker: `announce` only, as mktorrent writes it.
        var one = TorrentBuilder(name: "x", files: [(["x"], 5)], pieceLength: 16384, isMultiFile: false)
        one.feed(Array("hello".utf8))
        let doc = try Bencode.decode(try one.finish(trackers: [["http://a/"]]))
        #expect(doc["announce"]?.text == "http://a/")
        #expect(doc["announce-list"] == nil)
        #expect(doc["info"]?["private"] == nil)
    }

    @Test func defaultPieceLengthAimsForAbout1000To2000Pieces() {
        #expect(TorrentBuilder.defaultPieceLength(totalLength: 1) == 16 << 10)
        #expect(TorrentBuilder.defaultPieceLength(totalLength: 1 << 30) == 1 << 20)
        #expect(TorrentBuilder.defaultPieceLength(totalLength: 1 << 50) == 16 << 20)
        for total: Int64 in [40 << 20, 100_000_000, 3 << 30, 30 << 30] {
            let pl = TorrentBuilder.defaultPieceLength(totalLength: total)
            #expect(pl & (pl - 1) == 0, "power of two")
            let pieces = (total + Int64(pl) - 1) / Int64(pl)
            #expect(pieces > 1000 && pieces <= 2001, "\(total): \(pieces) pieces of \(pl)")
        }
    }
}
