import BitTorrentProtocol
import Crypto

// BitTorrent parsers read bytes from any peer, tracker or .torrent file. Invariants beyond "no crash":

/// Bytes → Bencode. An accepted input is canonical, so encoding it again gives the same bytes (the
/// property the infohash relies on); a prefix decode consumes exactly its value's encoding.
enum BencodeTarget {
    static func run(_ bytes: UnsafeRawBufferPointer) {
        let input = Array(bytes)
        if let value = try? Bencode.decode(input) {
            precondition(value.encoded() == input, "encode(decode(x)) != x")
        }
        if let (value, used) = try? Bencode.decodePrefix(input) {
            precondition(used > 0 && used <= input.count, "prefix length \(used) of \(input.count)")
            precondition(value.encoded() == Array(input[0..<used]), "prefix encode(decode(x)) != x")
        }
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
