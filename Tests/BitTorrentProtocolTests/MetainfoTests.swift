import Testing
@testable import BitTorrentProtocol

@Suite struct MetainfoTests {
    static let fakePieces = [UInt8](repeating: 0xab, count: 20)

    /// A single-file info dictionary of `length` bytes with correct `pieces`, plus overrides.
    static func info(_ overrides: [(String, Bencode?)] = [], length: Int64 = 1000, pieceLength: Int64 = 16384) -> Bencode {
        let count = pieceLength > 0 ? Int((length + pieceLength - 1) / pieceLength) : 1
        var d: [[UInt8]: Bencode] = [
            Array("name".utf8): .string("file.bin"),
            Array("piece length".utf8): .integer(pieceLength),
            Array("pieces".utf8): .bytes([UInt8](repeating: 7, count: 20 * count)),
            Array("length".utf8): .integer(length),
        ]
        for (k, v) in overrides { d[Array(k.utf8)] = v }
        return .dictionary(d)
    }

    static func multi(_ files: [(Bencode, Int64)], pieceLength: Int64 = 16384) -> Bencode {
        let total = files.reduce(0) { $0 + $1.1 }
        let count = Int((total + pieceLength - 1) / pieceLength)
        return .dict([
            ("name", .string("folder")), ("piece length", .integer(pieceLength)),
            ("pieces", .bytes([UInt8](repeating: 7, count: 20 * count))),
            ("files", .list(files.map { .dict([("length", .integer($0.1)), ("path", $0.0)]) })),
        ])
    }

    static func torrent(_ info: Bencode, _ extra: [(String, Bencode)] = []) -> [UInt8] {
        Bencode.dict([("info", info)] + extra).encoded()
    }

    func refusal(_ bytes: [UInt8]) -> MetainfoError? {
        do { _ = try Metainfo.parse(bytes); return nil } catch { return error }
    }

    @Test func parsesTheMktorrentSingleFileVector() throws {
        let bytes = Vectors.read("mktorrent-single.torrent")
        let m = try Metainfo.parse(bytes)
        #expect(m.infoHash.hex == Vectors.singleInfoHash)
        #expect(m.info.name == "single.bin")
        #expect(!m.info.isMultiFile)
        #expect(m.info.totalLength == 1_000_000)
        #expect(m.info.pieceLength == 65536)
        #expect(m.info.pieceCount == 16)
        #expect(m.info.files == [TorrentFile(path: ["single.bin"], length: 1_000_000, offset: 0)])
        #expect(m.trackers == [[Vectors.singleTracker]])
        #expect(m.createdBy == "mktorrent 1.1")
        #expect(m.creationDate == nil)   // made with -d
        #expect(!m.info.isPrivate)
        // rawInfo is the exact byte range of the file: that is what ut_metadata serves.
        let key = Array("4:info".utf8)
        let at = (0...(bytes.count - key.count)).first { Array(bytes[$0..<($0 + key.count)]) == key }!
        #expect(Array(bytes[(at + key.count)..<(at + key.count + m.rawInfo.count)]) == m.rawInfo)
        #expect(m.infoHash.bytes == sha1(m.rawInfo))
        // Piece hashes are the SHA-1 of the content formula.
        let piece0 = Vectors.stream(0..<65536)
        #expect(m.info.pieceHashes[0] == sha1(piece0))
        let last = Vectors.stream((15 * 65536)..<1_000_000)
        #expect(m.info.pieceHashes[15] == sha1(last))
        #expect(m.info.pieceSize(15) == last.count)
    }

    @Test func parsesTheMktorrentMultiFileVector() throws {
        let m = try Metainfo.parse(Vectors.read("mktorrent-multi.torrent"))
        #expect(m.infoHash.hex == Vectors.multiInfoHash)
        #expect(m.info.isMultiFile)
        #expect(m.info.name == "multi")
        #expect(m.info.files.map(\.path) == Vectors.multiFiles.map(\.path))
        #expect(m.info.files.map(\.length) == Vectors.multiFiles.map(\.length))
        #expect(m.info.files.map(\.offset) == [0, 1000, 80_000, 130_000, 200_000, 200_000])
        #expect(m.info.totalLength == 300_000)
        #expect(m.info.pieceCount == 10)
        #expect(m.trackers.isEmpty)
        #expect(m.info.relativePath(ofFile: 3) == ["multi", "a", "b"])
    }

    /// libtorrent 2.0 makes hybrid v1+v2 torrents by default, with BEP 47 padding files named
    /// ".pad/<size>" and files ordered by path component ("a/b" before "a-b", unlike mktorrent).
    @Test func parsesTheLibtorrentHybridVector() throws {
        let m = try Metainfo.parse(Vectors.read("libtorrent-hybrid.torrent"))
        #expect(m.infoHash.hex == Vectors.hybridInfoHash)
        #expect(m.info.files.count == 11)
        #expect(m.info.files.filter(\.isPadding).map(\.path) == [[".pad", "31768"], [".pad", "19304"], [".pad", "28304"], [".pad", "15536"], [".pad", "31072"]])
        #expect(m.info.files.filter { !$0.isPadding }.map(\.path) == [[".hidden"], ["B"], ["a", "b"], ["a-b"], ["sub", "empty"], ["sub", "z.bin"]])
        #expect(m.info.files[2].offset == 32768)   // B starts on a piece boundary
        #expect(m.info.totalLength == 425_984)
        #expect(m.info.pieceCount == 13)
        // Piece 1 is B's first 32 KiB: formula bytes 1000..<33768.
        #expect(m.info.pieceHashes[1] == sha1(Vectors.stream(1000..<33768)))
    }

    /// Transmission 3.00 on the same folder: leaves out hidden and empty files, orders by its own
    /// collation and writes `private` 0 — a different infohash for the same content, read fine.
    @Test func parsesTheTransmissionVector() throws {
        let m = try Metainfo.parse(Vectors.read("transmission-multi.torrent"))
        #expect(m.infoHash.hex == "4e21a6a3a5fcd3a1df3e5faf0348375358cdb15b")
        #expect(m.info.files.map(\.path) == [["a-b"], ["a", "b"], ["B"], ["sub", "z.bin"]])
        #expect(!m.info.isPrivate)
        #expect(m.trackers == [["http://x/a"]])
        #expect(m.createdBy == "Transmission/3.00 (bb6b5a062e)")
        #expect(m.creationDate == 1_795_636_383)
    }

    @Test func paddingFilesMayShareAPath() throws {
        let pad = Bencode.dict([("attr", .string("p")), ("length", .integer(16384 - 10)), ("path", .list([.string(".pad"), .string("16374")]))])
        let info = Bencode.dict([("name", .string("f")), ("piece length", .integer(16384)),
                                 ("pieces", .bytes([UInt8](repeating: 1, count: 60))),
                                 ("files", .list([.dict([("length", .integer(10)), ("path", .list([.string("a")]))]), pad,
                                                  .dict([("length", .integer(10)), ("path", .list([.string("b")]))]), pad,
                                                  .dict([("length", .integer(5)), ("path", .list([.string("c")]))])]))])
        let m = try Metainfo.parse(Self.torrent(info))
        #expect(m.info.files.map(\.isPadding) == [false, true, false, true, false])
        #expect(m.info.files[4].offset == 32768)
        // A padding file still may not climb out of the download directory.
        let bad = Bencode.dict([("attr", .string("p")), ("length", .integer(1)), ("path", .list([.string(".."), .string("x")]))])
        let badInfo = Bencode.dict([("name", .string("f")), ("piece length", .integer(16384)), ("pieces", .bytes([UInt8](repeating: 1, count: 20))),
                                    ("files", .list([bad]))])
        #expect(refusal(Self.torrent(badInfo))?.field == "info.files[0].path[0]")
    }

    @Test func initFromMetadataComputesTheSameInfoHash() throws {
        let m = try Metainfo.parse(Vectors.read("mktorrent-multi.torrent"))
        let info = try InfoDictionary.parse(m.rawInfo)
        let again = Metainfo(info: info, rawInfo: m.rawInfo, trackers: [["udp://t.example:80"]])
        #expect(again.infoHash == m.infoHash)
        #expect(again.trackers == [["udp://t.example:80"]])
        #expect(again.info.files == m.info.files)
    }

    @Test func metadataIsCheckedAgainstTheMagnetsInfoHash() throws {
        let m = try Metainfo.parse(Vectors.read("mktorrent-single.torrent"))
        let ok = try Metainfo.fromMetadata(m.rawInfo, expecting: m.infoHash, trackers: [["http://t/"]])
        #expect(ok.infoHash == m.infoHash && ok.trackers == [["http://t/"]] && ok.info.pieceCount == 16)
        var tampered = m.rawInfo
        tampered[tampered.count - 2] ^= 1   // inside `pieces`: still parses, but is not what was asked for
        do { _ = try Metainfo.fromMetadata(tampered, expecting: m.infoHash, trackers: []); Issue.record("accepted tampered metadata") } catch {
            #expect(error.description.hasPrefix("metainfo: info: metadata does not hash to \(m.infoHash.hex)"))
        }
    }

    @Test(arguments: [
        ("..", "component \"..\" is not allowed"), (".", "component \".\" is not allowed"),
        ("", "component is empty"), ("a/b", "contains \"/\""), ("a\u{0}b", "contains NUL"),
    ])
    func refusesUnsafePathComponents(component: String, reason: String) throws {
        let info = Self.multi([(.list([.string("ok"), .string(component)]), 10), (.list([.string("x")]), 5)])
        let error = try #require(refusal(Self.torrent(info)))
        #expect(error.field == "info.files[0].path[1]")
        #expect(error.description.contains(reason), "\(error)")
        #expect(error.description.hasPrefix("metainfo: info.files[0].path[1]: "))
    }

    @Test func refusesUnsafeNamesAndNonUTF8() throws {
        let e1 = try #require(refusal(Self.torrent(Self.info([("name", .string(".."))]))))
        #expect(e1.description == "metainfo: info.name: component \"..\" is not allowed")
        let e2 = try #require(refusal(Self.torrent(Self.info([("name", .bytes([0x66, 0xff]))]))))
        #expect(e2.description.contains("not valid UTF-8"))
        let e3 = try #require(refusal(Self.torrent(Self.info([("name", .string(String(repeating: "x", count: 256)))]))))
        #expect(e3.description.contains("longer than 255"))
        let e4 = try #require(refusal(Self.torrent(Self.info([("name", nil)]))))
        #expect(e4.description == "metainfo: info.name: is missing")
    }

    @Test func pieceLengthMustBeAMultipleOf16KiBInRange() throws {
        for bad: Int64 in [0, -16384, 1000, 8192, 16385, 40000, 512 << 20] {
            let e = try #require(refusal(Self.torrent(Self.info(pieceLength: bad))), "\(bad)")
            #expect(e.field == "info.piece length")
        }
        // BEP 3: "almost always a power of two" — 48 KiB is legal and read.
        for good: Int64 in [16384, 49152, 262_144, 256 << 20] {
            let m = try Metainfo.parse(Self.torrent(Self.info(length: 100_000, pieceLength: good)))
            #expect(m.info.pieceLength == Int(good))
        }
    }

    @Test func piecesMustMatchTheGeometryExactly() throws {
        let short = Self.info([("pieces", .bytes([UInt8](repeating: 1, count: 19 * 20)))], length: 20 * 16384)
        let e = try #require(refusal(Self.torrent(short)))
        #expect(e.description == "metainfo: info.pieces: is 380 bytes; 20 pieces of 16384 bytes for 327680 bytes need 400")
        let long = Self.info([("pieces", .bytes([UInt8](repeating: 1, count: 40)))], length: 16384)
        #expect(refusal(Self.torrent(long))?.field == "info.pieces")
        let m = try Metainfo.parse(Self.torrent(Self.info(length: 16385)))
        #expect(m.info.pieceCount == 2)
        #expect(m.info.pieceSize(0) == 16384 && m.info.pieceSize(1) == 1)
    }

    @Test func refusesBadLengthsAndShapes() throws {
        #expect(refusal(Self.torrent(Self.info([("length", .integer(-1))])))?.description == "metainfo: info.length: -1 is negative")
        #expect(refusal(Self.torrent(Self.info([("length", .string("12"))])))?.description == "metainfo: info.length: is not an integer")
        let huge = Self.info([("length", .integer((1 << 50) + 1)), ("pieces", .bytes([]))])
        #expect(refusal(Self.torrent(huge))?.description.contains("exceeds") == true)
        #expect(refusal(Self.torrent(Self.info([("files", .list([]))])))?.description.contains("both `length`") == true)
        #expect(refusal(Self.torrent(Self.info([("length", nil)])))?.description.contains("neither") == true)
        #expect(refusal(Self.torrent(Self.info([("length", .integer(0)), ("pieces", .bytes([]))])))?.description.contains("no data") == true)
        #expect(refusal(Self.torrent(.list([])))?.description == "metainfo: info: is not a dictionary")
        #expect(refusal(Bencode.dict([("announce", .string("x"))]).encoded())?.description == "metainfo: info: is missing")
        #expect(refusal(Array("le".utf8))?.description == "metainfo: the document is not a dictionary")
        let noPath = Bencode.dict([("name", .string("f")), ("piece length", .integer(16384)), ("pieces", .bytes(Self.fakePieces)),
                                   ("files", .list([.dict([("length", .integer(1))])]))])
        #expect(refusal(Self.torrent(noPath))?.description == "metainfo: info.files[0].path: is missing")
        let emptyPath = Self.multi([(.list([]), 3)])
        #expect(refusal(Self.torrent(emptyPath))?.description == "metainfo: info.files[0].path: is empty")
        let emptyFiles = Bencode.dict([("name", .string("f")), ("piece length", .integer(16384)), ("pieces", .bytes([])), ("files", .list([]))])
        #expect(refusal(Self.torrent(emptyFiles))?.description == "metainfo: info.files: is empty")
    }

    @Test func refusesPathsTwoFilesCannotShare() throws {
        let dup = Self.multi([(.list([.string("a")]), 3), (.list([.string("a")]), 4)])
        #expect(refusal(Self.torrent(dup))?.description == "metainfo: info.files[1].path: \"a\" is used by another file or directory")
        let fileThenDir = Self.multi([(.list([.string("a")]), 3), (.list([.string("a"), .string("b")]), 4)])
        #expect(refusal(Self.torrent(fileThenDir))?.description.contains("\"a\" is a file of this torrent") == true)
        let dirThenFile = Self.multi([(.list([.string("a"), .string("b")]), 3), (.list([.string("a")]), 4)])
        #expect(refusal(Self.torrent(dirThenFile))?.field == "info.files[1].path")
    }

    @Test func v2OnlyIsRefusedClearlyAndHybridIsReadAsV1() throws {
        let v2 = Bencode.dict([("name", .string("x")), ("piece length", .integer(16384)), ("meta version", .integer(2)),
                               ("file tree", .dict([("x", .dict([("", .dict([("length", .integer(5))]))]))]))])
        let e = try #require(refusal(Self.torrent(v2)))
        #expect(e.description.contains("v2-only torrents are not supported yet"))
        let hybrid = Self.info([("meta version", .integer(2)), ("file tree", .dict([]))])
        let m = try Metainfo.parse(Self.torrent(hybrid, [("piece layers", .dict([]))]))
        #expect(m.info.totalLength == 1000)
        #expect(m.infoHash.bytes == sha1(hybrid.encoded()))
    }

    @Test func nonCanonicalDocumentsAreRefusedWithTheReason() throws {
        // Outer keys out of order: "info" before "announce".
        var bytes = Array("d4:info".utf8) + Self.info().encoded() + Array("8:announce3:urle".utf8)
        var e = try #require(refusal(bytes))
        #expect(e.bencode?.kind == .keysOutOfOrder)
        #expect(e.description.contains("only canonical bencode is accepted"))
        #expect(e.description.contains("at byte \(bytes.count - 16)"))
        // A leading zero inside info would change the infohash if re-encoded.
        bytes = Array("d4:infod6:lengthi01ee".utf8)
        e = try #require(refusal(bytes))
        #expect(e.bencode?.kind == .badInteger)
        // Plain garbage says what it is without blaming canonical form.
        e = try #require(refusal(Array("d4:info".utf8)))
        #expect(e.bencode?.kind == .truncated)
        #expect(!e.description.contains("canonical"))
    }

    @Test func trackerTiersFollowBEP12() throws {
        let tiers = Bencode.list([.list([.string("http://a/ann"), .string("http://b/ann")]), .list([]), .list([.string("udp://c:80")])])
        var m = try Metainfo.parse(Self.torrent(Self.info(), [("announce", .string("http://x/")), ("announce-list", tiers)]))
        #expect(m.trackers == [["http://a/ann", "http://b/ann"], ["udp://c:80"]])
        m = try Metainfo.parse(Self.torrent(Self.info(), [("announce", .string("http://x/")), ("announce-list", .list([.string("http://flat/")]))]))
        #expect(m.trackers == [["http://flat/"]])
        m = try Metainfo.parse(Self.torrent(Self.info(), [("announce", .string("http://x/")), ("announce-list", .list([]))]))
        #expect(m.trackers == [["http://x/"]])
        m = try Metainfo.parse(Self.torrent(Self.info(), [("announce-list", .list([.list([.bytes([0xff]), .string("http://ok/")])]))]))
        #expect(m.trackers == [["http://ok/"]])
    }

    @Test func privateAndPaddingFlags() throws {
        #expect(try Metainfo.parse(Self.torrent(Self.info([("private", .integer(1))]))).info.isPrivate)
        #expect(try !Metainfo.parse(Self.torrent(Self.info([("private", .integer(0))]))).info.isPrivate)
        let pad = Bencode.dict([("attr", .string("p")), ("length", .integer(16384 - 10)), ("path", .list([.string(".pad"), .string("16374")]))])
        let info = Bencode.dict([("name", .string("f")), ("piece length", .integer(16384)),
                                 ("pieces", .bytes([UInt8](repeating: 1, count: 40))),
                                 ("files", .list([.dict([("length", .integer(10)), ("path", .list([.string("a")]))]), pad,
                                                  .dict([("length", .integer(5)), ("path", .list([.string("b")]))])]))])
        let m = try Metainfo.parse(Self.torrent(info))
        #expect(m.info.files.map(\.isPadding) == [false, true, false])
        #expect(m.info.files[2].offset == 16384)
    }

    @Test func magnetLinkOfATorrent() throws {
        let m = try Metainfo.parse(Vectors.read("mktorrent-single.torrent"))
        #expect(m.magnetLink.uri == "magnet:?xt=urn:btih:\(Vectors.singleInfoHash)&dn=single.bin&tr=http%3A%2F%2F127.0.0.1%3A6969%2Fannounce")
    }
}
