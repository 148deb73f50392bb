import BitTorrentProtocol

/// Bytes → the BitTorrent peer-wire framer, fed in chunks (the first byte picks the chunk size, as
/// a TCP stream arrives in arbitrary pieces). Invariants: no crash; every block range lies inside
/// the chunk it was reported for; the data of a block adds up to the length its header announced;
/// a message that was decoded re-encodes to bytes the framer decodes to the same message.
enum WireTarget {
    static func run(_ bytes: UnsafeRawBufferPointer) {
        guard let first = bytes.first else { return }
        let chunk = Int(first % 64) + 1
        var framer = PeerWireFramer(expectHandshake: first & 0x80 != 0)
        var blockLength = -1
        var blockGot = 0
        var offset = 1
        while offset < bytes.count {
            let end = min(offset + chunk, bytes.count)
            let piece = UnsafeRawBufferPointer(rebasing: bytes[offset..<end])
            guard let events = try? framer.feed(piece) else { return }
            for e in events {
                switch e {
                case .blockStart(_, _, let length):
                    precondition(blockLength < 0, "a block started inside another")
                    precondition(length >= 0 && length <= framer.maxBlockLength)
                    blockLength = length; blockGot = 0
                case .blockData(let r):
                    precondition(r.lowerBound >= 0 && r.upperBound <= piece.count && !r.isEmpty, "block range \(r) outside a \(piece.count)-byte chunk")
                    blockGot += r.count
                    precondition(blockGot <= blockLength)
                case .blockEnd:
                    precondition(blockGot == blockLength, "block of \(blockLength) bytes ended after \(blockGot)")
                    blockLength = -1
                case .message(let m):
                    var again = PeerWireFramer(expectHandshake: false)
                    let back = try? again.feed(m.encoded())
                    precondition(back == [.message(m)], "\(m) does not survive encode/decode")
                case .handshake(let h):
                    precondition(try! Handshake.decode(h.encoded()) == h)
                }
            }
            offset = end
        }
    }
}
