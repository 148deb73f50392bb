import BitTorrentProtocol
import Crypto

// BitTorrent parsers read bytes from any peer, tracker or .torrent file. Invariants beyond "no crash":

/// Bytes → Bencode. An input accepted in canonical form encodes again to the same bytes (the
/// property the infohash relies on). The message and reply limits take keys in any order: what
/// they accept holds the same items, so its canonical encoding has the same length and decodes to
/// the same value; a prefix decode consumes exactly its value's encoding.
enum BencodeTarget {
    static func run(_ bytes: UnsafeRawBufferPointer) {
        let input = Array(bytes)
        let strict = try? Bencode.decode(input)
        if let strict { precondition(strict.encoded() == input, "encode(decode(x)) != x") }
        if let value = try? Bencode.decode(input, limits: .reply) {
            if let strict { precondition(value == strict, "a canonical input read two ways") }
            sameItems(value, input.count)
        } else {
            precondition(strict == nil, "canonical input refused by the any-order reader")
        }
        if let (value, used) = try? Bencode.decodePrefix(input) {
            precondition(used > 0 && used <= input.count, "prefix length \(used) of \(input.count)")
            sameItems(value, used)
        }
    }

    /// `value` came from `length` bytes with keys in any order: its canonical form is as long and
    /// reads back as the same value.
    static func sameItems(_ value: Bencode, _ length: Int) {
        let canonical = value.encoded()
        precondition(canonical.count == length, "canonical form of \(canonical.count) bytes from \(length)")
        precondition((try? Bencode.decode(canonical)) == value, "decode(encode(v)) != v")
    }
}

/// Bytes → Metainfo. An accepted torrent has a consistent geometry and only safe path components,
/// and its infohash is the SHA-1 of its raw info bytes.
enum MetainfoTarget {
    static func run(_ bytes: UnsafeRawBufferPointer) {
        guard let m = try? Metainfo.parse(Array(bytes)) else { return }
        var hasher = Insecure.SHA1()
        m.rawInfo.withUnsafeBytes { hasher.update(bufferPointer: $0) }
        precondition(m.infoHash.bytes == Array(hasher.finalize()), "infohash is not SHA-1(rawInfo)")
        let info = m.info
        precondition(info.pieceCount > 0 && info.pieceHashes.allSatisfy { $0.count == 20 })
        precondition(Int64(info.pieceCount - 1) * Int64(info.pieceLength) < info.totalLength)
        var sum: Int64 = 0
        for (i, f) in info.files.enumerated() {
            precondition(f.offset == sum && f.length >= 0)
            sum += f.length
            for c in info.relativePath(ofFile: i) {
                precondition(InfoDictionary.componentProblem(Array(c.utf8)) == nil, "unsafe component \(c)")
            }
        }
        precondition(sum == info.totalLength)
        // Bounded: at most 64 pieces checked per input.
        for p in 0..<min(info.pieceCount, 64) {
            let spans = info.spans(ofPiece: p)
            precondition(spans.reduce(0) { $0 + $1.length } == info.pieceSize(p), "spans of piece \(p) do not add up")
        }
    }
}

/// Text → MagnetLink. An accepted link survives its own `uri` unchanged.
enum MagnetTarget {
    static func run(_ bytes: UnsafeRawBufferPointer) {
        guard let text = String(validating: bytes, as: UTF8.self), let m = try? MagnetLink.parse(text) else { return }
        guard let again = try? MagnetLink.parse(m.uri) else { preconditionFailure("uri does not parse: \(m.uri)") }
        precondition(again == m, "uri round trip changed the link")
    }
}
