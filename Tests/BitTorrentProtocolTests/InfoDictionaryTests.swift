import Testing
@testable import BitTorrentProtocol

/// Piece geometry and the mapping of torrent bytes onto files.
@Suite struct InfoDictionaryTests {
    /// Files of the given lengths (names f0, f1, …) in 16 KiB pieces.
    static func make(_ lengths: [Int64], pieceLength: Int64 = 16384) throws -> InfoDictionary {
        let total = lengths.reduce(0, +)
        let count = Int((total + pieceLength - 1) / pieceLength)
        let info = Bencode.dict([
            ("name", .string("t")), ("piece length", .integer(pieceLength)),
            ("pieces", .bytes([UInt8](repeating: 0, count: 20 * count))),
            ("files", .list(lengths.enumerated().map { .dict([("length", .integer($0.element)), ("path", .list([.string("f\($0.offset)")]))]) })),
        ])
        return try InfoDictionary.parse(info.encoded())
    }

    /// The same mapping, computed byte by byte.
    static func bruteForce(_ info: InfoDictionary, offset: Int64, length: Int) -> [FileSpan] {
        var spans: [FileSpan] = []
        var position = offset
        while position < offset + Int64(length), position < info.totalLength {
            let i = info.files.firstIndex { $0.length > 0 && $0.offset <= position && position < $0.offset + $0.length }!
            let f = info.files[i]
            if let last = spans.last, last.file == i {
                spans[spans.count - 1] = FileSpan(file: i, offset: last.offset, length: last.length + 1)
            } else {
                spans.append(FileSpan(file: i, offset: position - f.offset, length: 1))
            }
            _ = f
            position += 1
        }
        return spans
    }

    @Test func pieceSizesAndOffsets() throws {
        let info = try Self.make([16384 * 2 + 100])
        #expect(info.pieceCount == 3)
        #expect([0, 1, 2].map(info.pieceSize) == [16384, 16384, 100])
        #expect(info.pieceOffset(2) == 32768)
        let exact = try Self.make([16384 * 2])
        #expect(exact.pieceSize(1) == 16384)
    }

    @Test func spansCrossFilesAndSkipEmptyOnes() throws {
        let info = try Self.make([10, 0, 5, 0, 0, 20000])
        #expect(info.spans(offset: 0, length: 10) == [FileSpan(file: 0, offset: 0, length: 10)])
        #expect(info.spans(offset: 8, length: 10) == [
            FileSpan(file: 0, offset: 8, length: 2), FileSpan(file: 2, offset: 0, length: 5), FileSpan(file: 5, offset: 0, length: 3),
        ])
        #expect(info.spans(offset: 15, length: 1) == [FileSpan(file: 5, offset: 0, length: 1)])
        #expect(info.spans(ofPiece: 1) == [FileSpan(file: 5, offset: 16384 - 15, length: 20015 - 16384)])
        #expect(info.spans(offset: 0, length: 0).isEmpty)
    }

    @Test func spansAreClampedToTheTorrent() throws {
        let info = try Self.make([100, 50])
        #expect(info.spans(offset: 140, length: 100) == [FileSpan(file: 1, offset: 40, length: 10)])
        #expect(info.spans(offset: 150, length: 1).isEmpty)
        #expect(info.spans(offset: -5, length: 10) == [FileSpan(file: 0, offset: 0, length: 5)])
        // Hostile offsets and lengths from a peer must not overflow.
        #expect(info.spans(offset: .max, length: .max).isEmpty)
        #expect(info.spans(offset: .min, length: .max).isEmpty)
        #expect(info.spans(offset: 149, length: .max) == [FileSpan(file: 1, offset: 49, length: 1)])
        #expect(info.spans(offset: 0, length: -1).isEmpty)
    }

    @Test func spansMatchABruteForceMapping() throws {
        let info = try Self.make([1, 0, 16383, 16385, 0, 7, 40000, 3], pieceLength: 32768)
        var generator = SystemRandomNumberGenerator()
        for index in 0..<info.pieceCount {
            let spans = info.spans(ofPiece: index)
            #expect(spans.reduce(0) { $0 + $1.length } == info.pieceSize(index))
            #expect(spans == Self.bruteForce(info, offset: info.pieceOffset(index), length: info.pieceSize(index)))
        }
        for _ in 0..<200 {
            let offset = Int64.random(in: 0..<info.totalLength, using: &generator)
            let length = Int.random(in: 0...20000, using: &generator)
            #expect(info.spans(offset: offset, length: length) == Self.bruteForce(info, offset: offset, length: length), "\(offset)+\(length)")
        }
    }

    @Test func relativePaths() throws {
        let multi = try Self.make([3, 4])
        #expect(multi.relativePath(ofFile: 1) == ["t", "f1"])
        let single = try InfoDictionary.parse(MetainfoTests.info().encoded())
        #expect(single.relativePath(ofFile: 0) == ["file.bin"])
        #expect(single.spans(offset: 0, length: 1000) == [FileSpan(file: 0, offset: 0, length: 1000)])
    }

    @Test func infoBytesMustBeCanonical() throws {
        // InfoDictionary.parse is what a magnet download calls on metadata from a peer.
        do { _ = try InfoDictionary.parse(Array("d4:name1:x4:name1:ye".utf8)); Issue.record("accepted a duplicate key") } catch {
            #expect(error.field == "info")
            #expect(error.bencode?.kind == .duplicateKey)
        }
    }
}
