// The peer wire protocol (BEP 3) with the fast extension's messages (BEP 6), the extension
// protocol's envelope (BEP 10) and DHT's port message (BEP 5): the handshake, message encoding and
// a streaming framer.
//
// The framer is built for the plugin's data path: received bytes sit in pool slots shared with the
// core, and a 16 KiB block with its 13-byte header never fits one 16 KiB slot, so almost every
// block straddles two slots. Small messages are gathered in a little buffer of the framer's own;
// a piece message is reported as a header event, then ranges of the input buffer holding block
// bytes (the caller copies them straight into the block's own slot: the one copy of the data
// path), then an end event. The framer never holds a block.

/// BEP 3: "\x13BitTorrent protocol", 8 reserved bytes, infohash, peer id — 68 bytes.
public struct Handshake: Equatable, Sendable {
    public static let length = 68
    public static let protocolName = Array("BitTorrent protocol".utf8)

    public var reserved: [UInt8]
    public var infoHash: [UInt8]
    public var peerID: [UInt8]

    public init(infoHash: [UInt8], peerID: [UInt8], reserved: [UInt8] = Handshake.ourReserved) {
        self.reserved = reserved
        self.infoHash = infoHash
        self.peerID = peerID
    }

    /// What we announce: the extension protocol (BEP 10: byte 5, 0x10), fast (BEP 6: byte 7,
    /// 0x04) and DHT (BEP 5: byte 7, 0x01).
    public static let ourReserved: [UInt8] = [0, 0, 0, 0, 0, 0x10, 0, 0x05]

    public var supportsExtensionProtocol: Bool { reserved[5] & 0x10 != 0 }
    public var supportsFast: Bool { reserved[7] & 0x04 != 0 }
    public var supportsDHT: Bool { reserved[7] & 0x01 != 0 }

    public func encoded() -> [UInt8] {
        var out: [UInt8] = [19]
        out.reserveCapacity(Handshake.length)
        out += Handshake.protocolName
        out += reserved
        out += infoHash
        out += peerID
        return out
    }

    public static func decode(_ b: [UInt8]) throws(WireError) -> Handshake {
        guard b.count == length else { throw .badHandshake("\(b.count) bytes, expected \(length)") }
        guard b[0] == 19, Array(b[1..<20]) == protocolName else {
            throw .badHandshake("protocol string is not \"BitTorrent protocol\"")
        }
        return Handshake(infoHash: Array(b[28..<48]), peerID: Array(b[48..<68]), reserved: Array(b[20..<28]))
    }
}

/// Why a peer's bytes were refused. The plugin closes the connection and says why in its log.
public enum WireError: Error, Equatable, CustomStringConvertible, Sendable {
    case badHandshake(String)
    case tooLong(id: UInt8, length: Int, limit: Int)
    case badLength(id: UInt8, length: Int)
    case unknownMessage(UInt8)

    public var description: String {
        switch self {
        case .badHandshake(let why): return "peer wire: bad handshake: \(why)"
        case .tooLong(let id, let length, let limit): return "peer wire: message \(id) is \(length) bytes, limit \(limit)"
        case .badLength(let id, let length): return "peer wire: message \(id) has the wrong length \(length)"
        case .unknownMessage(let id): return "peer wire: unknown message id \(id)"
        }
    }
}

public enum PeerMessage: Equatable, Sendable {
    case keepAlive
    case choke, unchoke, interested, notInterested
    case have(piece: Int)
    case bitfield([UInt8])
    case request(piece: Int, begin: Int, length: Int)
    /// Only for encoding the header of an outgoing piece: the block follows in its own buffer.
    case pieceHeader(piece: Int, begin: Int, length: Int)
    case cancel(piece: Int, begin: Int, length: Int)
    case port(UInt16)
    // BEP 6
    case suggest(piece: Int)
    case haveAll, haveNone
    case reject(piece: Int, begin: Int, length: Int)
    case allowedFast(piece: Int)
    // BEP 10: id 0 is the extension handshake, others as the peer's "m" dictionary assigned them.
    case extended(id: UInt8, payload: [UInt8])

    public enum ID: UInt8 {
        case choke = 0, unchoke, interested, notInterested, have, bitfield, request, piece, cancel, port
        case suggest = 0x0D, haveAll = 0x0E, haveNone = 0x0F, reject = 0x10, allowedFast = 0x11
        case extended = 20
    }

    /// Appends the length-prefixed message.
    public func encode(into out: inout [UInt8]) {
        func u32(_ v: Int) { let x = UInt32(truncatingIfNeeded: v); out += [UInt8(x >> 24), UInt8(x >> 16 & 0xff), UInt8(x >> 8 & 0xff), UInt8(x & 0xff)] }
        func header(_ id: ID, _ payload: Int) { u32(1 + payload); out.append(id.rawValue) }
        switch self {
        case .keepAlive: u32(0)
        case .choke: header(.choke, 0)
        case .unchoke: header(.unchoke, 0)
        case .interested: header(.interested, 0)
        case .notInterested: header(.notInterested, 0)
        case .have(let p): header(.have, 4); u32(p)
        case .bitfield(let b): header(.bitfield, b.count); out += b
        case .request(let p, let b, let l): header(.request, 12); u32(p); u32(b); u32(l)
        case .pieceHeader(let p, let b, let l): header(.piece, 8 + l); u32(p); u32(b)
        case .cancel(let p, let b, let l): header(.cancel, 12); u32(p); u32(b); u32(l)
        case .port(let port): header(.port, 2); out += [UInt8(port >> 8), UInt8(port & 0xff)]
        case .suggest(let p): header(.suggest, 4); u32(p)
        case .haveAll: header(.haveAll, 0)
        case .haveNone: header(.haveNone, 0)
        case .reject(let p, let b, let l): header(.reject, 12); u32(p); u32(b); u32(l)
        case .allowedFast(let p): header(.allowedFast, 4); u32(p)
        case .extended(let id, let payload): header(.extended, 1 + payload.count); out.append(id); out += payload
        }
    }

    public func encoded() -> [UInt8] { var out: [UInt8] = []; encode(into: &out); return out }
}

/// Splits a byte stream into handshake, messages and block ranges. One per connection.
public struct PeerWireFramer {
    public enum Event: Equatable {
        case handshake(Handshake)
        case message(PeerMessage)
        /// A piece message's header: `length` block bytes follow as `blockData` events.
        case blockStart(piece: Int, begin: Int, length: Int)
        /// Block bytes at this range of the buffer passed to `feed`.
        case blockData(Range<Int>)
        case blockEnd
    }

    /// Largest non-piece message (a bitfield of 8 M pieces, an extension message with a 16 KiB
    /// metadata piece fit easily); a larger length prefix is a hostile or broken peer.
    public let maxMessageLength: Int
    /// Largest block in a piece message: we never request more than 16 KiB, peers may allow 128 KiB.
    public let maxBlockLength: Int

    enum State { case handshake, lengthPrefix, body(id: UInt8?, length: Int), pieceHeader(length: Int), block(remaining: Int) }
    var state: State
    var gathered: [UInt8] = []

    public init(expectHandshake: Bool = true, maxMessageLength: Int = 1 << 20, maxBlockLength: Int = 128 << 10) {
        state = expectHandshake ? .handshake : .lengthPrefix
        self.maxMessageLength = maxMessageLength
        self.maxBlockLength = maxBlockLength
        gathered.reserveCapacity(64)
    }

    /// True while a block is being streamed (the caller holds its destination).
    public var inBlock: Bool { if case .block = state { return true }; return false }

    /// Consumes all of `input`; events come in stream order. Throws on the first bad message; the
    /// connection is then unusable.
    public mutating func feed(_ input: UnsafeRawBufferPointer) throws(WireError) -> [Event] {
        var events: [Event] = []
        var i = 0
        let n = input.count
        while i < n {
            switch state {
            case .handshake:
                let take = min(Handshake.length - gathered.count, n - i)
                gathered += UnsafeRawBufferPointer(rebasing: input[i..<(i + take)])
                i += take
                if gathered.count == Handshake.length {
                    events.append(.handshake(try Handshake.decode(gathered)))
                    gathered.removeAll(keepingCapacity: true)
                    state = .lengthPrefix
                }
            case .lengthPrefix:
                let take = min(4 - gathered.count, n - i)
                gathered += UnsafeRawBufferPointer(rebasing: input[i..<(i + take)])
                i += take
                guard gathered.count == 4 else { continue }
                let length = Int(gathered[0]) << 24 | Int(gathered[1]) << 16 | Int(gathered[2]) << 8 | Int(gathered[3])
                gathered.removeAll(keepingCapacity: true)
                if length == 0 { events.append(.message(.keepAlive)); continue }
                state = .body(id: nil, length: length)
            case .body(let id, let length):
                if id == nil {
                    let messageID = input[i]
                    i += 1
                    if messageID == PeerMessage.ID.piece.rawValue {
                        guard length >= 9, length - 9 <= maxBlockLength else {
                            throw .tooLong(id: messageID, length: length, limit: maxBlockLength + 9)
                        }
                        state = .pieceHeader(length: length - 9)
                    } else {
                        guard length <= maxMessageLength else { throw .tooLong(id: messageID, length: length, limit: maxMessageLength) }
                        state = .body(id: messageID, length: length - 1)
                        if length == 1 { events.append(.message(try Self.message(messageID, []))); state = .lengthPrefix }
                    }
                    continue
                }
                let take = min(length - gathered.count, n - i)
                gathered += UnsafeRawBufferPointer(rebasing: input[i..<(i + take)])
                i += take
                if gathered.count == length {
                    events.append(.message(try Self.message(id!, gathered)))
                    gathered.removeAll(keepingCapacity: true)
                    state = .lengthPrefix
                }
            case .pieceHeader(let blockLength):
                let take = min(8 - gathered.count, n - i)
                gathered += UnsafeRawBufferPointer(rebasing: input[i..<(i + take)])
                i += take
                guard gathered.count == 8 else { continue }
                let piece = Self.u32(gathered, 0), begin = Self.u32(gathered, 4)
                gathered.removeAll(keepingCapacity: true)
                events.append(.blockStart(piece: piece, begin: begin, length: blockLength))
                if blockLength == 0 { events.append(.blockEnd); state = .lengthPrefix } else { state = .block(remaining: blockLength) }
            case .block(let remaining):
                let take = min(remaining, n - i)
                events.append(.blockData(i..<(i + take)))
                i += take
                if take == remaining { events.append(.blockEnd); state = .lengthPrefix } else { state = .block(remaining: remaining - take) }
            }
        }
        return events
    }

    /// Convenience for tests and small inputs.
    public mutating func feed(_ bytes: [UInt8]) throws(WireError) -> [Event] {
        let result: Result<[Event], WireError> = bytes.withUnsafeBytes { p in
            Result { () throws(WireError) -> [Event] in try self.feed(p) }
        }
        return try result.get()
    }

    static func u32(_ b: [UInt8], _ at: Int) -> Int {
        Int(b[at]) << 24 | Int(b[at + 1]) << 16 | Int(b[at + 2]) << 8 | Int(b[at + 3])
    }

    static func message(_ id: UInt8, _ p: [UInt8]) throws(WireError) -> PeerMessage {
        func expect(_ n: Int) throws(WireError) { if p.count != n { throw .badLength(id: id, length: p.count + 1) } }
        guard let known = PeerMessage.ID(rawValue: id) else { throw .unknownMessage(id) }
        switch known {
        case .choke: try expect(0); return .choke
        case .unchoke: try expect(0); return .unchoke
        case .interested: try expect(0); return .interested
        case .notInterested: try expect(0); return .notInterested
        case .have: try expect(4); return .have(piece: u32(p, 0))
        case .bitfield: return .bitfield(p)
        case .request: try expect(12); return .request(piece: u32(p, 0), begin: u32(p, 4), length: u32(p, 8))
        case .cancel: try expect(12); return .cancel(piece: u32(p, 0), begin: u32(p, 4), length: u32(p, 8))
        case .reject: try expect(12); return .reject(piece: u32(p, 0), begin: u32(p, 4), length: u32(p, 8))
        case .port: try expect(2); return .port(UInt16(p[0]) << 8 | UInt16(p[1]))
        case .suggest: try expect(4); return .suggest(piece: u32(p, 0))
        case .allowedFast: try expect(4); return .allowedFast(piece: u32(p, 0))
        case .haveAll: try expect(0); return .haveAll
        case .haveNone: try expect(0); return .haveNone
        case .extended:
            guard p.count >= 1 else { throw .badLength(id: id, length: 1) }
            return .extended(id: p[0], payload: Array(p[1...]))
        case .piece: throw .badLength(id: id, length: p.count)   // handled by the framer's piece path
        }
    }
}
