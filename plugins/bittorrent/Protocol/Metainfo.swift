// Metainfo (BEP 3 .torrent files), v1 only, read strictly. What is refused and why is listed in
// protocols/bittorrent/README.md; in short: anything that could make the plugin write outside the
// download directory (path components "", ".", "..", containing "/" or NUL), anything that makes the
// piece geometry inconsistent (a `pieces` string whose length is not 20 per piece), and encodings
// that would make the infohash differ from the SHA-1 of the bytes we read (non-canonical bencode).
import Crypto

/// Why a .torrent or an info dictionary was refused: the field (a path such as
/// `info.files[2].path`) and the reason.
public struct MetainfoError: Error, CustomStringConvertible, Equatable, Sendable {
    /// Where: `info.piece length`, `info.files[2].path[0]`, `announce-list`… Empty for the document.
    public let field: String
    public let reason: String
    /// Set when the bytes were not (canonical) bencode; its offset is the byte that failed.
    public let bencode: BencodeError?

    public init(field: String, reason: String, bencode: BencodeError? = nil) {
        self.field = field
        self.reason = reason
        self.bencode = bencode
    }

    init(_ field: String, _ reason: String) { self.init(field: field, reason: reason) }

    static func from(_ error: BencodeError, in what: String) -> MetainfoError {
        let nonCanonical: Bool
        switch error.kind {
        case .badInteger, .badLength, .keysOutOfOrder, .duplicateKey: nonCanonical = true
        default: nonCanonical = false
        }
        let reason = nonCanonical
            ? "\(error) — only canonical bencode is accepted, so that the infohash is the SHA-1 of the bytes as read"
            : "\(error)"
        return MetainfoError(field: what, reason: reason, bencode: error)
    }

    public var description: String { field.isEmpty ? "metainfo: \(reason)" : "metainfo: \(field): \(reason)" }
}

/// One file of a torrent.
public struct TorrentFile: Sendable, Equatable {
    /// Path components below the torrent's name (multi-file), or `[name]` (single-file). Each
    /// component is non-empty UTF-8 without "/" or NUL and is not "." or "..".
    public let path: [String]
    public let length: Int64
    /// Where the file starts in the torrent's byte stream (the concatenation of all files).
    public let offset: Int64
    /// A BEP 47 padding file (attr contains "p"): zeros that align the next file to a piece. It
    /// is part of the byte stream and of the piece hashes; a client need not write it to disk.
    public let isPadding: Bool

    public init(path: [String], length: Int64, offset: Int64, isPadding: Bool = false) {
        self.path = path
        self.length = length
        self.offset = offset
        self.isPadding = isPadding
    }
}

/// A piece of a file: `length` bytes at `offset` in file number `file`.
public struct FileSpan: Sendable, Equatable {
    public let file: Int
    public let offset: Int64
    public let length: Int

    public init(file: Int, offset: Int64, length: Int) {
        self.file = file
        self.offset = offset
        self.length = length
    }
}

/// The `info` dictionary: what the infohash names.
public struct InfoDictionary: Sendable {
    public let name: String
    public let pieceLength: Int
    /// 20-byte SHA-1 of each piece.
    public let pieceHashes: [[UInt8]]
    public let files: [TorrentFile]
    public let isMultiFile: Bool
    /// BEP 27 `private=1`: no DHT, PEX or local discovery for this torrent.
    public let isPrivate: Bool
    public let totalLength: Int64

    public var pieceCount: Int { pieceHashes.count }

    /// Limits of what we read. 16 KiB is the request block everyone uses (BEP 3's "2^14"); the
    /// upper bound is what mktorrent and libtorrent can create (2^28), so any torrent they make is
    /// readable, while a hostile file cannot ask for gigabyte pieces.
    public static let minPieceLength = 16 << 10
    public static let maxPieceLength = 256 << 20
    /// 1 PiB: far beyond any real torrent, and keeps every offset sum far from Int64 overflow.
    public static let maxTotalLength: Int64 = 1 << 50

    /// Bytes in piece `index`: `pieceLength`, except the last piece, which holds the remainder.
    public func pieceSize(_ index: Int) -> Int {
        precondition(index >= 0 && index < pieceCount, "piece \(index) of \(pieceCount)")
        if index == pieceCount - 1 {
            return Int(totalLength - Int64(index) * Int64(pieceLength))
        }
        return pieceLength
    }

    /// Where piece `index` starts in the torrent's byte stream.
    public func pieceOffset(_ index: Int) -> Int64 { Int64(index) * Int64(pieceLength) }

    /// The file spans covering torrent bytes [offset, offset+length), in order, skipping empty
    /// files. The range is clamped to the torrent (a range past the end yields fewer bytes, so the
    /// caller compares the sum with what it asked for when the range came from a peer).
    public func spans(offset: Int64, length: Int) -> [FileSpan] {
        // Written so that no sum overflows, whatever offset a peer sent.
        guard length > 0, offset < totalLength else { return [] }
        let end = offset < 0 ? min(totalLength, offset + Int64(length))
                             : (Int64(length) >= totalLength - offset ? totalLength : offset + Int64(length))
        var start = max(0, offset)
        guard start < end else { return [] }
        // First file whose end lies after `start` (ends are non-decreasing).
        var lo = 0, hi = files.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if files[mid].offset + files[mid].length <= start { lo = mid + 1 } else { hi = mid }
        }
        var result: [FileSpan] = []
        var i = lo
        while start < end, i < files.count {
            let f = files[i]
            if f.length > 0 {
                let inFile = start - f.offset
                let n = min(end, f.offset + f.length) - start
                result.append(FileSpan(file: i, offset: inFile, length: Int(n)))
                start += n
            }
            i += 1
        }
        return result
    }

    /// The spans of piece `index`.
    public func spans(ofPiece index: Int) -> [FileSpan] { spans(offset: pieceOffset(index), length: pieceSize(index)) }

    /// A file's path inside the download directory: single-file → [name]; multi-file → [name] + path.
    public func relativePath(ofFile index: Int) -> [String] {
        isMultiFile ? [name] + files[index].path : [name]
    }

    /// Parses bencoded info bytes (from a .torrent, or from ut_metadata once their SHA-1 matched).
    public static func parse(_ infoBytes: [UInt8]) throws(MetainfoError) -> InfoDictionary {
        let value: Bencode
        do { value = try Bencode.decode(infoBytes) } catch { throw MetainfoError.from(error, in: "info") }
        return try parse(value: value)
    }

    static func parse(value: Bencode) throws(MetainfoError) -> InfoDictionary {
        guard let dict = value.dictionary else { throw MetainfoError("info", "is not a dictionary") }
        func key(_ k: String) -> Bencode? { dict[Array(k.utf8)] }

        guard let nameValue = key("name") else { throw MetainfoError("info.name", "is missing") }
        let name = try component(nameValue, field: "info.name")

        guard let piecesValue = key("pieces") else {
            // BEP 52: a v2-only torrent has `meta version` 2 and a `file tree` but no `pieces`; a
            // hybrid has both and is read as v1 here (its v1 infohash is the SHA-1 of this dictionary).
            if key("meta version")?.integer == 2 || key("file tree") != nil {
                throw MetainfoError("info", "v2-only torrents are not supported yet (BEP 52 without v1 `pieces`)")
            }
            throw MetainfoError("info.pieces", "is missing")
        }
        guard let pieces = piecesValue.bytes else { throw MetainfoError("info.pieces", "is not a byte string") }

        guard let plValue = key("piece length") else { throw MetainfoError("info.piece length", "is missing") }
        guard let pl = plValue.integer else { throw MetainfoError("info.piece length", "is not an integer") }
        // BEP 3 says the piece length is "almost always a power of two", not always; libtorrent
        // accepts any. We accept any multiple of 16 KiB in range: that keeps the 16 KiB request
        // grid aligned with piece boundaries (only the last piece is irregular), which the picker
        // and the wire code rely on, and every mainstream creator produces such lengths.
        guard pl >= Int64(minPieceLength), pl <= Int64(maxPieceLength), pl % Int64(minPieceLength) == 0 else {
            throw MetainfoError("info.piece length", "\(pl) is not a multiple of 16 KiB between 16 KiB and 256 MiB")
        }
        let pieceLength = Int(pl)

        var files: [TorrentFile] = []
        var total: Int64 = 0
        let isMultiFile: Bool
        switch (key("length"), key("files")) {
        case (.some, .some):
            throw MetainfoError("info", "has both `length` (single-file) and `files` (multi-file)")
        case (nil, nil):
            if key("file tree") != nil {
                throw MetainfoError("info", "v2-only torrents are not supported yet (BEP 52 `file tree` without v1 `files`)")
            }
            throw MetainfoError("info", "has neither `length` nor `files`")
        case (.some(let lengthValue), nil):
            isMultiFile = false
            total = try fileLength(lengthValue, field: "info.length")
            files = [TorrentFile(path: [name], length: total, offset: 0)]
        case (nil, .some(let filesValue)):
            isMultiFile = true
            guard let list = filesValue.list else { throw MetainfoError("info.files", "is not a list") }
            guard !list.isEmpty else { throw MetainfoError("info.files", "is empty") }
            files.reserveCapacity(list.count)
            var filePaths = Set<[String]>()
            var dirPaths = Set<[String]>()
            for (i, entry) in list.enumerated() {
                let field = "info.files[\(i)]"
                guard entry.dictionary != nil else { throw MetainfoError(field, "is not a dictionary") }
                guard let lv = entry["length"] else { throw MetainfoError("\(field).length", "is missing") }
                let length = try fileLength(lv, field: "\(field).length")
                guard let pv = entry["path"] else { throw MetainfoError("\(field).path", "is missing") }
                guard let comps = pv.list else { throw MetainfoError("\(field).path", "is not a list") }
                guard !comps.isEmpty else { throw MetainfoError("\(field).path", "is empty") }
                var path: [String] = []
                for (j, c) in comps.enumerated() { path.append(try component(c, field: "\(field).path[\(j)]")) }
                let padding = entry["attr"]?.bytes?.contains(UInt8(ascii: "p")) ?? false
                // Two files at one path, or a file where another needs a directory, cannot both be
                // written: refuse rather than let pieces fail verification forever. Padding files
                // are exempt: libtorrent names them ".pad/<size>", so two pads of one size share a
                // path (all zeros, so writing both is harmless, and they need not be written at all).
                if padding {
                    files.append(TorrentFile(path: path, length: length, offset: total, isPadding: true))
                    total += length
                    guard total <= maxTotalLength else {
                        throw MetainfoError("info.files", "total length exceeds \(maxTotalLength) bytes")
                    }
                    continue
                }
                guard filePaths.insert(path).inserted, !dirPaths.contains(path) else {
                    throw MetainfoError("\(field).path", "\"\(path.joined(separator: "/"))\" is used by another file or directory")
                }
                for k in 1..<path.count {
                    let dir = Array(path[0..<k])
                    guard !filePaths.contains(dir) else {
                        throw MetainfoError("\(field).path", "\"\(dir.joined(separator: "/"))\" is a file of this torrent and cannot be a directory")
                    }
                    dirPaths.insert(dir)
                }
                files.append(TorrentFile(path: path, length: length, offset: total))
                total += length
                guard total <= maxTotalLength else {
                    throw MetainfoError("info.files", "total length exceeds \(maxTotalLength) bytes")
                }
            }
        }
        guard total > 0 else { throw MetainfoError("info", "the torrent holds no data (total length 0)") }

        let pieceCount = Int((total + Int64(pieceLength) - 1) / Int64(pieceLength))
        guard pieces.count == pieceCount * 20 else {
            throw MetainfoError("info.pieces", "is \(pieces.count) bytes; \(pieceCount) pieces of \(pieceLength) bytes for \(total) bytes need \(pieceCount * 20)")
        }
        var hashes: [[UInt8]] = []
        hashes.reserveCapacity(pieceCount)
        var p = 0
        while p < pieces.count { hashes.append(Array(pieces[p..<(p + 20)])); p += 20 }

        let isPrivate = key("private")?.integer == 1
        return InfoDictionary(name: name, pieceLength: pieceLength, pieceHashes: hashes, files: files,
                              isMultiFile: isMultiFile, isPrivate: isPrivate, totalLength: total)
    }

    static func fileLength(_ v: Bencode, field: String) throws(MetainfoError) -> Int64 {
        guard let n = v.integer else { throw MetainfoError(field, "is not an integer") }
        guard n >= 0 else { throw MetainfoError(field, "\(n) is negative") }
        guard n <= maxTotalLength else { throw MetainfoError(field, "\(n) exceeds \(maxTotalLength) bytes") }
        return n
    }

    /// A name or path component that is safe to use as one directory entry.
    static func component(_ v: Bencode, field: String) throws(MetainfoError) -> String {
        guard let bytes = v.bytes else { throw MetainfoError(field, "is not a byte string") }
        if let reason = componentProblem(bytes) { throw MetainfoError(field, reason) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Why these bytes cannot be one path component, or nil when they can. Shared with TorrentBuilder.
    public static func componentProblem(_ bytes: [UInt8]) -> String? {
        guard !bytes.isEmpty else { return "component is empty" }
        guard let text = String(validating: bytes, as: UTF8.self) else { return "component is not valid UTF-8" }
        // Shown escaped so a hostile name cannot forge log lines.
        let shown = "\"" + text.unicodeScalars.map { $0.escaped(asASCII: false) }.joined() + "\""
        if text == "." || text == ".." { return "component \(shown) is not allowed" }
        if bytes.contains(UInt8(ascii: "/")) { return "component \(shown) contains \"/\"" }
        if bytes.contains(0) { return "component \(shown) contains NUL" }
        // NAME_MAX on Linux file systems: a longer name could never be created.
        if bytes.count > 255 { return "component is \(bytes.count) bytes, longer than 255" }
        return nil
    }
}

/// SHA-1 of `bytes` (through the streaming API: swift-crypto's one-shot `hash(data:)` wants
/// Foundation's DataProtocol).
func sha1(_ bytes: [UInt8]) -> [UInt8] {
    var hasher = Insecure.SHA1()
    bytes.withUnsafeBytes { hasher.update(bufferPointer: $0) }
    return Array(hasher.finalize())
}

/// A parsed .torrent: the info dictionary, its infohash and the outer fields we use.
public struct Metainfo: Sendable {
    public let info: InfoDictionary
    public let infoHash: InfoHash
    /// The info dictionary's bytes, canonical (equal to what was read): serve ut_metadata from these.
    public let rawInfo: [UInt8]
    /// Tracker tiers (BEP 12): `announce-list` when it has any URL, else `[[announce]]`, else [].
    public let trackers: [[String]]
    public let comment: String?
    public let createdBy: String?
    public let creationDate: Int64?

    /// For magnet downloads once the metadata has arrived (and its SHA-1 was checked by the caller).
    public init(info: InfoDictionary, rawInfo: [UInt8], trackers: [[String]]) {
        self.info = info
        self.rawInfo = rawInfo
        self.infoHash = InfoHash(bytes: sha1(rawInfo))!
        self.trackers = trackers
        self.comment = nil
        self.createdBy = nil
        self.creationDate = nil
    }

    /// Metadata assembled from ut_metadata pieces (BEP 9): checked against the infohash the magnet
    /// named before anything in it is believed, then parsed like a .torrent's info dictionary.
    public static func fromMetadata(_ bytes: [UInt8], expecting infoHash: InfoHash, trackers: [[String]]) throws(MetainfoError) -> Metainfo {
        guard sha1(bytes) == infoHash.bytes else {
            throw MetainfoError("info", "metadata does not hash to \(infoHash.hex) (SHA-1 \(Hex.encode(sha1(bytes))))")
        }
        return Metainfo(info: try InfoDictionary.parse(bytes), rawInfo: bytes, trackers: trackers)
    }

    init(info: InfoDictionary, rawInfo: [UInt8], trackers: [[String]], comment: String?, createdBy: String?, creationDate: Int64?) {
        self.info = info
        self.rawInfo = rawInfo
        self.infoHash = InfoHash(bytes: sha1(rawInfo))!
        self.trackers = trackers
        self.comment = comment
        self.createdBy = createdBy
        self.creationDate = creationDate
    }

    /// Parses a .torrent file's bytes. The whole document must be canonical bencode (sorted keys,
    /// no leading zeros): strict decoding is what guarantees re-encoding `info` gives the bytes read.
    public static func parse(_ torrentBytes: [UInt8]) throws(MetainfoError) -> Metainfo {
        let doc: Bencode
        do { doc = try Bencode.decode(torrentBytes) } catch { throw MetainfoError.from(error, in: "") }
        guard doc.dictionary != nil else { throw MetainfoError("", "the document is not a dictionary") }
        guard let infoValue = doc["info"] else { throw MetainfoError("info", "is missing") }
        let info = try InfoDictionary.parse(value: infoValue)
        return Metainfo(info: info, rawInfo: infoValue.encoded(), trackers: trackerTiers(doc),
                        comment: doc["comment.utf-8"]?.text ?? doc["comment"]?.text,
                        createdBy: doc["created by"]?.text,
                        creationDate: doc["creation date"]?.integer)
    }

    /// Trackers are hints, not part of the infohash: entries that are not UTF-8 text are skipped
    /// rather than refusing the torrent; a flat list of strings (seen in the wild) counts as one
    /// tier per URL.
    static func trackerTiers(_ doc: Bencode) -> [[String]] {
        var tiers: [[String]] = []
        if let list = doc["announce-list"]?.list {
            for tier in list {
                if let urls = tier.list {
                    let t = urls.compactMap { $0.text }.filter { !$0.isEmpty }
                    if !t.isEmpty { tiers.append(t) }
                } else if let url = tier.text, !url.isEmpty {
                    tiers.append([url])
                }
            }
        }
        if tiers.isEmpty, let url = doc["announce"]?.text, !url.isEmpty { tiers = [[url]] }
        return tiers
    }

    /// A magnet link for this torrent (infohash, name, every tracker).
    public var magnetLink: MagnetLink {
        MagnetLink(infoHash: infoHash, displayName: info.name, trackers: trackers.flatMap { $0 }, peers: [])
    }
}
