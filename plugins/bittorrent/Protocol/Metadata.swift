// BEP 9 metadata exchange (ut_metadata): the info dictionary travels in 16 KiB pieces, each message
// a bencoded header {msg_type, piece[, total_size]} followed, for data, by the piece's bytes. The
// assembler collects the pieces of a magnet link's metadata and accepts the result only when its
// SHA-1 is the infohash; anything else (a size over the limit, a piece of the wrong length, a hash
// mismatch) is an error naming what was wrong, after which the engine restarts from other peers.
import Crypto

public enum MetadataError: Error, Equatable, Sendable, CustomStringConvertible {
    case bencode(BencodeError)
    case notADictionary
    case missingKey(String)
    case wrongType(key: String, expected: String)
    case outOfRange(key: String, value: Int64, allowed: String)
    case trailingData(msgType: Int, bytes: Int)
    case tooLarge(size: Int, limit: Int)
    case pieceOutOfRange(piece: Int, pieces: Int)
    case wrongPieceSize(piece: Int, got: Int, expected: Int)
    case totalSizeMismatch(got: Int, expected: Int)
    case hashMismatch

    public var description: String {
        let what: String
        switch self {
        case .bencode(let e): what = e.description
        case .notADictionary: what = "header is not a dictionary"
        case .missingKey(let k): what = "\"\(k)\" is missing"
        case .wrongType(let k, let expected): what = "\"\(k)\" is not \(expected)"
        case .outOfRange(let k, let v, let allowed): what = "\"\(k)\" is \(v), allowed \(allowed)"
        case .trailingData(let t, let n): what = "\(n) bytes follow a msg_type \(t) message"
        case .tooLarge(let size, let limit): what = "metadata of \(size) bytes is over the limit of \(limit)"
        case .pieceOutOfRange(let p, let n): what = "piece \(p) is out of range (\(n) pieces)"
        case .wrongPieceSize(let p, let got, let expected): what = "piece \(p) has \(got) bytes, expected \(expected)"
        case .totalSizeMismatch(let got, let expected): what = "total_size \(got) differs from metadata_size \(expected)"
        case .hashMismatch: what = "the assembled metadata does not hash to the infohash"
        }
        return "ut_metadata: \(what)"
    }
}

public enum MetadataMessage: Equatable, Sendable {
    public static let pieceSize = 16384

    case request(piece: Int)
    case data(piece: Int, totalSize: Int, data: [UInt8])
    case reject(piece: Int)
    /// A msg_type this version does not know: BEP 9 says ignore it.
    case unknown(msgType: Int64)

    public static func decode(_ payload: [UInt8]) throws(MetadataError) -> MetadataMessage {
        let header: Bencode
        let used: Int
        do { (header, used) = try Bencode.decodePrefix(payload, limits: .message) } catch { throw .bencode(error) }
        guard let dict = header.dictionary else { throw .notADictionary }
        func integer(_ key: String) throws(MetadataError) -> Int64 {
            guard let v = dict[Array(key.utf8)] else { throw .missingKey(key) }
            guard let i = v.integer else { throw .wrongType(key: key, expected: "an integer") }
            return i
        }
        let type = try integer("msg_type")
        guard (0...2).contains(type) else { return .unknown(msgType: type) }
        let piece = try integer("piece")
        // 8 MiB of metadata is 512 pieces; anything near Int32 is nonsense but still representable.
        guard piece >= 0 && piece <= Int64(Int32.max) else { throw .outOfRange(key: "piece", value: piece, allowed: "0...\(Int32.max)") }
        let rest = payload.count - used
        switch type {
        case 1:
            let total = try integer("total_size")
            guard total > 0 && total <= Int64(Int32.max) else { throw .outOfRange(key: "total_size", value: total, allowed: "1...\(Int32.max)") }
            guard rest <= pieceSize else { throw .wrongPieceSize(piece: Int(piece), got: rest, expected: pieceSize) }
            return .data(piece: Int(piece), totalSize: Int(total), data: Array(payload[used...]))
        default:
            guard rest == 0 else { throw .trailingData(msgType: Int(type), bytes: rest) }
            return type == 0 ? .request(piece: Int(piece)) : .reject(piece: Int(piece))
        }
    }

    public func encoded() -> [UInt8] {
        switch self {
        case .request(let piece):
            return Bencode.dict([("msg_type", .integer(0)), ("piece", .integer(Int64(piece)))]).encoded()
        case .reject(let piece):
            return Bencode.dict([("msg_type", .integer(2)), ("piece", .integer(Int64(piece)))]).encoded()
        case .data(let piece, let total, let data):
            return Bencode.dict([("msg_type", .integer(1)), ("piece", .integer(Int64(piece))),
                                 ("total_size", .integer(Int64(total)))]).encoded() + data
        case .unknown(let type):
            return Bencode.dict([("msg_type", .integer(type))]).encoded()
        }
    }

    /// Piece `index` of the metadata `info` (the serving side); nil when out of range.
    public static func piece(_ index: Int, of info: [UInt8]) -> [UInt8]? {
        let start = index * pieceSize
        guard index >= 0, start < info.count else { return nil }
        return Array(info[start..<min(start + pieceSize, info.count)])
    }

    /// The number of pieces for `totalSize` bytes.
    public static func pieceCount(totalSize: Int) -> Int { (totalSize + pieceSize - 1) / pieceSize }
}

/// Collects the metadata of a magnet link from ut_metadata data messages.
public struct MetadataAssembler: Sendable {
    public static let defaultMaxSize = 8 << 20

    public let infoHash: [UInt8]
    public let totalSize: Int
    public let pieceCount: Int
    var pieces: [[UInt8]?]
    var requested: Set<Int> = []
    public private(set) var receivedCount = 0

    /// `totalSize` from the peer's extension handshake ("metadata_size").
    public init(infoHash: [UInt8], totalSize: Int, maxSize: Int = MetadataAssembler.defaultMaxSize) throws(MetadataError) {
        guard totalSize > 0 else { throw .outOfRange(key: "metadata_size", value: Int64(totalSize), allowed: "1...\(maxSize)") }
        guard totalSize <= maxSize else { throw .tooLarge(size: totalSize, limit: maxSize) }
        self.infoHash = infoHash
        self.totalSize = totalSize
        self.pieceCount = MetadataMessage.pieceCount(totalSize: totalSize)
        self.pieces = [[UInt8]?](repeating: nil, count: pieceCount)
    }

    public var isComplete: Bool { receivedCount == pieceCount }

    /// A piece neither received nor requested, now marked requested; nil when none is left.
    public mutating func nextRequest() -> Int? {
        for i in 0..<pieceCount where pieces[i] == nil && !requested.contains(i) {
            requested.insert(i)
            return i
        }
        return nil
    }

    /// The peer rejected the request or went away: the piece can be requested again.
    public mutating func requestFailed(piece: Int) { requested.remove(piece) }

    /// The expected length of piece `i`.
    public func expectedSize(piece i: Int) -> Int {
        i == pieceCount - 1 ? totalSize - i * MetadataMessage.pieceSize : MetadataMessage.pieceSize
    }

    /// Adds a data message's piece. Returns the whole info dictionary once every piece is in and its
    /// SHA-1 is the infohash. A hash mismatch clears everything (start again, preferably from other
    /// peers) and throws.
    public mutating func add(piece: Int, data: [UInt8], totalSize: Int? = nil) throws(MetadataError) -> [UInt8]? {
        if let t = totalSize, t != self.totalSize { throw .totalSizeMismatch(got: t, expected: self.totalSize) }
        guard piece >= 0 && piece < pieceCount else { throw .pieceOutOfRange(piece: piece, pieces: pieceCount) }
        let expected = expectedSize(piece: piece)
        guard data.count == expected else { throw .wrongPieceSize(piece: piece, got: data.count, expected: expected) }
        requested.remove(piece)
        guard pieces[piece] == nil else { return nil }
        pieces[piece] = data
        receivedCount += 1
        guard isComplete else { return nil }
        var all: [UInt8] = []
        all.reserveCapacity(self.totalSize)
        for p in pieces { all += p! }
        guard Array(Insecure.SHA1.hash(data: all)) == infoHash else {
            reset()
            throw .hashMismatch
        }
        return all
    }

    /// Forget every piece.
    public mutating func reset() {
        pieces = [[UInt8]?](repeating: nil, count: pieceCount)
        requested = []
        receivedCount = 0
    }
}
