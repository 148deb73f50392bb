// Creating v1 torrents (BEP 3), streaming: the caller declares the files, then feeds their bytes
// in order (the concatenation the torrent describes); pieces are hashed as they fill, so memory
// stays one piece's SHA-1 state whatever the input size. The info dictionary holds exactly the
// keys mktorrent and libtorrent write for v1 (files|length, name, piece length, pieces, private),
// so the same content, names and piece length give the same infohash as those tools.
import Crypto

/// Why a torrent could not be made: the input named and the reason.
public struct TorrentBuilderError: Error, CustomStringConvertible, Equatable, Sendable {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "create torrent: \(reason)" }
}

public struct TorrentBuilder {
    public let name: String
    public let files: [(path: [String], length: Int64)]
    public let pieceLength: Int
    public let isMultiFile: Bool
    /// Sum of the declared lengths.
    public let totalLength: Int64
    /// Bytes fed so far.
    public private(set) var bytesFed: Int64 = 0

    private var hasher = Insecure.SHA1()
    private var inPiece = 0
    private var pieces: [UInt8] = []

    /// A power of two from 16 KiB to 16 MiB giving about 1000–2000 pieces: small enough pieces that
    /// a swarm can share early, few enough that the .torrent (20 bytes a piece) stays small.
    public static func defaultPieceLength(totalLength: Int64) -> Int {
        var pl = 16 << 10
        while pl < 16 << 20, totalLength / Int64(pl) > 2000 { pl <<= 1 }
        return pl
    }

    /// `files` in the order their bytes will be fed (the CLI sorts a directory's files by path).
    /// For a single file (`isMultiFile` false) its path is ignored: the torrent's name is the file name.
    public init(name: String, files: [(path: [String], length: Int64)], pieceLength: Int, isMultiFile: Bool) {
        self.name = name
        self.files = files
        self.pieceLength = max(1, pieceLength)   // a bad length is reported by finish(); feeding must not divide by 0
        self.isMultiFile = isMultiFile
        var total: Int64 = 0
        for f in files { total &+= max(0, f.length) }
        self.totalLength = total
        pieces.reserveCapacity(Int(min(total / Int64(self.pieceLength) + 1, 1 << 22)) * 20)
    }

    public mutating func feed(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { feed($0) }
    }

    public mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        var rest = bytes
        bytesFed += Int64(rest.count)
        while !rest.isEmpty {
            let n = min(pieceLength - inPiece, rest.count)
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: rest[0..<n]))
            inPiece += n
            rest = UnsafeRawBufferPointer(rebasing: rest[n...])
            if inPiece == pieceLength { closePiece() }
        }
    }

    private mutating func closePiece() {
        pieces.append(contentsOf: hasher.finalize())
        hasher = Insecure.SHA1()
        inPiece = 0
    }

    /// The .torrent bytes. Throws if the names, piece length or fed byte count do not fit what was
    /// declared. `trackers` are tiers (BEP 12): `announce` is the first URL; `announce-list` is
    /// written when there is more than one URL.
    public mutating func finish(trackers: [[String]] = [], comment: String? = nil, createdBy: String? = nil,
                                creationDate: Int64? = nil, isPrivate: Bool = false) throws(TorrentBuilderError) -> [UInt8] {
        if let problem = InfoDictionary.componentProblem(Array(name.utf8)) { throw TorrentBuilderError("name: \(problem)") }
        guard pieceLength >= InfoDictionary.minPieceLength, pieceLength <= InfoDictionary.maxPieceLength,
              pieceLength % InfoDictionary.minPieceLength == 0 else {
            throw TorrentBuilderError("piece length \(pieceLength) is not a multiple of 16 KiB between 16 KiB and 256 MiB")
        }
        guard !files.isEmpty else { throw TorrentBuilderError("no files") }
        guard isMultiFile || files.count == 1 else { throw TorrentBuilderError("a single-file torrent has \(files.count) files") }
        for f in files {
            let shown = f.path.joined(separator: "/")
            guard f.length >= 0 else { throw TorrentBuilderError("\(shown): negative length \(f.length)") }
            if isMultiFile {
                guard !f.path.isEmpty else { throw TorrentBuilderError("a file has an empty path") }
                for c in f.path {
                    if let problem = InfoDictionary.componentProblem(Array(c.utf8)) { throw TorrentBuilderError("\(shown): \(problem)") }
                }
            }
        }
        guard totalLength > 0 else { throw TorrentBuilderError("the files hold no data (total length 0); a torrent needs at least one byte") }
        guard totalLength <= InfoDictionary.maxTotalLength else { throw TorrentBuilderError("total length \(totalLength) exceeds \(InfoDictionary.maxTotalLength)") }
        guard bytesFed == totalLength else {
            throw TorrentBuilderError("read \(bytesFed) bytes but the files declare \(totalLength) (did a file change while it was read?)")
        }
        if inPiece > 0 { closePiece() }

        var info: [(String, Bencode)] = [
            ("name", .string(name)),
            ("piece length", .integer(Int64(pieceLength))),
            ("pieces", .bytes(pieces)),
        ]
        if isMultiFile {
            info.append(("files", .list(files.map { f in
                .dict([("length", .integer(f.length)), ("path", .list(f.path.map { .string($0) }))])
            })))
        } else {
            info.append(("length", .integer(totalLength)))
        }
        if isPrivate { info.append(("private", .integer(1))) }

        let tiers = trackers.map { $0.filter { !$0.isEmpty } }.filter { !$0.isEmpty }
        var outer: [(String, Bencode)] = [("info", .dict(info))]
        if let first = tiers.first?.first { outer.append(("announce", .string(first))) }
        if tiers.joined().count > 1 {
            outer.append(("announce-list", .list(tiers.map { .list($0.map { .string($0) }) })))
        }
        if let comment { outer.append(("comment", .string(comment))) }
        if let createdBy { outer.append(("created by", .string(createdBy))) }
        if let creationDate { outer.append(("creation date", .integer(creationDate))) }
        let bytes = Bencode.dict(outer).encoded()

        // What we write must be what we read: parse it back (cheap next to hashing the content).
        do { _ = try Metainfo.parse(bytes) } catch {
            throw TorrentBuilderError("the torrent made does not parse back: \(error)")
        }
        return bytes
    }
}
