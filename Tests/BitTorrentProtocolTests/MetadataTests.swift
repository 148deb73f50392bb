import Crypto
import Testing
@testable import BitTorrentProtocol

@Suite struct MetadataTests {
    func b(_ s: String) -> [UInt8] { Array(s.utf8) }

    /// A real single-file info dictionary: 2,100 pieces of 16 KiB make a 42,000-byte `pieces`
    /// string, so the metadata spans three ut_metadata pieces, the last one short.
    func infoDictionary() -> [UInt8] {
        var pieces: [UInt8] = []
        var seed: UInt8 = 1
        for _ in 0..<(2100 * 20) { seed = seed &* 31 &+ 7; pieces.append(seed) }
        return Bencode.dict([
            ("length", .integer(2100 * 16384 - 5)),
            ("name", .string("test.bin")),
            ("piece length", .integer(16384)),
            ("pieces", .bytes(pieces)),
        ]).encoded()
    }

    @Test func messagesRoundTripAndMatchBEP9Examples() throws {
        #expect(MetadataMessage.request(piece: 0).encoded() == b("d8:msg_typei0e5:piecei0ee"))
        #expect(try MetadataMessage.decode(b("d8:msg_typei0e5:piecei0ee")) == .request(piece: 0))
        #expect(try MetadataMessage.decode(b("d8:msg_typei2e5:piecei3ee")) == .reject(piece: 3))
        let data = MetadataMessage.data(piece: 1, totalSize: 34256, data: [1, 2, 3, 0x65])
        #expect(data.encoded() == b("d8:msg_typei1e5:piecei1e10:total_sizei34256ee") + [1, 2, 3, 0x65])
        #expect(try MetadataMessage.decode(data.encoded()) == data)
        #expect(try MetadataMessage.decode(b("d8:msg_typei7e5:piecei0ee")) == .unknown(msgType: 7), "ignored, not an error")
    }

    @Test func refusesMalformedMessages() {
        let cases: [([UInt8], MetadataError)] = [
            (b("le"), .notADictionary),
            (b("d5:piecei0ee"), .missingKey("msg_type")),
            (b("d8:msg_typei0ee"), .missingKey("piece")),
            (b("d8:msg_typei1e5:piecei0ee") + [1], .missingKey("total_size")),
            (b("d8:msg_type1:05:piecei0ee"), .wrongType(key: "msg_type", expected: "an integer")),
            (b("d8:msg_typei0e5:piecei-1ee"), .outOfRange(key: "piece", value: -1, allowed: "0...2147483647")),
            (b("d8:msg_typei0e5:piecei0eexx"), .trailingData(msgType: 0, bytes: 2)),
            (b("d8:msg_typei1e5:piecei0e10:total_sizei0ee"), .outOfRange(key: "total_size", value: 0, allowed: "1...2147483647")),
            (b("d8:msg_typei1e5:piecei0e10:total_sizei99999ee") + [UInt8](repeating: 0, count: 16385),
             .wrongPieceSize(piece: 0, got: 16385, expected: 16384)),
        ]
        for (input, expected) in cases {
            do { _ = try MetadataMessage.decode(input); Issue.record("accepted \(String(decoding: input.prefix(60), as: UTF8.self))") } catch {
                #expect(error == expected)
            }
        }
    }

    @Test func assemblesARealInfoDictionaryAndChecksItsHash() throws {
        let info = infoDictionary()
        let infoHash = Array(Insecure.SHA1.hash(data: info))
        var a = try MetadataAssembler(infoHash: infoHash, totalSize: info.count)
        #expect(a.pieceCount == 3)
        #expect(a.expectedSize(piece: 2) == info.count - 2 * 16384)

        // Requests are handed out once each; a rejected one comes back.
        #expect(a.nextRequest() == 0)
        #expect(a.nextRequest() == 1)
        #expect(a.nextRequest() == 2)
        #expect(a.nextRequest() == nil)
        a.requestFailed(piece: 1)
        #expect(a.nextRequest() == 1)

        // Over the wire, out of order, one duplicate.
        var result: [UInt8]? = nil
        for piece in [2, 0, 0, 1] {
            let message = MetadataMessage.data(piece: piece, totalSize: info.count, data: MetadataMessage.piece(piece, of: info)!)
            guard case .data(let p, let total, let data) = try MetadataMessage.decode(message.encoded()) else {
                Issue.record("not a data message"); return
            }
            if let r = try a.add(piece: p, data: data, totalSize: total) { result = r }
        }
        #expect(result == info)
        #expect(a.isComplete)
        let decoded = try Bencode.decode(result!)
        #expect(decoded["name"]?.text == "test.bin")
        #expect(decoded["pieces"]?.bytes?.count == 42000)
    }

    @Test func wrongSizesAndHashesAreRefused() throws {
        let info = infoDictionary()
        let infoHash = Array(Insecure.SHA1.hash(data: info))
        var a = try MetadataAssembler(infoHash: infoHash, totalSize: info.count)
        do { _ = try a.add(piece: 0, data: [UInt8](repeating: 0, count: 100)); Issue.record("accepted a short piece") } catch {
            #expect(error == .wrongPieceSize(piece: 0, got: 100, expected: 16384))
            #expect(error.description == "ut_metadata: piece 0 has 100 bytes, expected 16384")
        }
        #expect(throws: MetadataError.pieceOutOfRange(piece: 3, pieces: 3)) { try a.add(piece: 3, data: []) }
        #expect(throws: MetadataError.totalSizeMismatch(got: 5, expected: info.count)) { try a.add(piece: 0, data: [], totalSize: 5) }

        // One flipped byte: the hash check fails and the assembler starts over.
        var bad = info
        bad[20000] ^= 0xff
        _ = try a.add(piece: 0, data: MetadataMessage.piece(0, of: bad)!)
        _ = try a.add(piece: 1, data: MetadataMessage.piece(1, of: bad)!)
        #expect(throws: MetadataError.hashMismatch) { try a.add(piece: 2, data: MetadataMessage.piece(2, of: bad)!) }
        #expect(a.receivedCount == 0 && !a.isComplete)
        #expect(a.nextRequest() == 0)

        #expect(throws: MetadataError.tooLarge(size: 9 << 20, limit: 8 << 20)) {
            try MetadataAssembler(infoHash: infoHash, totalSize: 9 << 20)
        }
        #expect(throws: MetadataError.self) { try MetadataAssembler(infoHash: infoHash, totalSize: 0) }
        #expect(MetadataMessage.piece(3, of: info) == nil)
    }
}
