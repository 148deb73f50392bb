// BEP 11 peer exchange (ut_pex): the peers we are connected to, as a delta per recipient —
// "added" (with one flags byte each) and "dropped", IPv4 and IPv6 in separate compact strings. The
// engine sends at most one message a minute per peer (it owns the clock); PexState computes what to
// put in it: at most 50 added and 50 dropped, never the recipient itself, never an address both
// added and dropped.

public struct PexFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let prefersEncryption = PexFlags(rawValue: 0x01)
    public static let seed = PexFlags(rawValue: 0x02)
    public static let utp = PexFlags(rawValue: 0x04)
    public static let holepunch = PexFlags(rawValue: 0x08)
    /// We connected to it (so it accepts connections).
    public static let reachable = PexFlags(rawValue: 0x10)
}

public struct PexPeer: Hashable, Sendable {
    public var address: PeerAddress
    public var flags: PexFlags
    public init(address: PeerAddress, flags: PexFlags = []) { self.address = address; self.flags = flags }
}

public enum PexError: Error, Equatable, Sendable, CustomStringConvertible {
    case bencode(BencodeError)
    case notADictionary
    case wrongType(key: String)
    case badPeers(key: String, CompactPeersError)
    case flagsLength(key: String, got: Int, expected: Int)
    case tooMany(key: String, count: Int, limit: Int)
    case addedAndDropped(PeerAddress)

    public var description: String {
        let what: String
        switch self {
        case .bencode(let e): what = e.description
        case .notADictionary: what = "payload is not a dictionary"
        case .wrongType(let k): what = "\"\(k)\" is not a string"
        case .badPeers(let k, let e): what = "\"\(k)\": \(e)"
        case .flagsLength(let k, let got, let expected): what = "\"\(k)\" has \(got) bytes for \(expected) peers"
        case .tooMany(let k, let n, let limit): what = "\"\(k)\" lists \(n) peers, limit \(limit)"
        case .addedAndDropped(let a): what = "\(a) is both added and dropped"
        }
        return "ut_pex: \(what)"
    }
}

public struct PexMessage: Equatable, Sendable {
    /// Per field; generous for an initial message, small enough to bound the work per message.
    public static let maxPeersPerField = 1000

    public var added: [PexPeer]
    public var dropped: [PeerAddress]

    public init(added: [PexPeer] = [], dropped: [PeerAddress] = []) { self.added = added; self.dropped = dropped }

    public var isEmpty: Bool { added.isEmpty && dropped.isEmpty }

    public static func decode(_ payload: [UInt8]) throws(PexError) -> PexMessage {
        let value: Bencode
        do { value = try Bencode.decode(payload, limits: .message) } catch { throw .bencode(error) }
        guard let dict = value.dictionary else { throw .notADictionary }
        func bytes(_ key: String) throws(PexError) -> [UInt8]? {
            guard let v = dict[Array(key.utf8)] else { return nil }
            guard let b = v.bytes else { throw .wrongType(key: key) }
            return b
        }
        func peers(_ key: String, v6: Bool) throws(PexError) -> [PeerAddress] {
            guard let b = try bytes(key) else { return [] }
            let list: [PeerAddress]
            do { list = v6 ? try CompactPeers.decodeIPv6(b) : try CompactPeers.decodeIPv4(b) } catch {
                throw .badPeers(key: key, error)
            }
            guard list.count <= maxPeersPerField else { throw .tooMany(key: key, count: list.count, limit: maxPeersPerField) }
            return list
        }
        func withFlags(_ key: String, v6: Bool) throws(PexError) -> [PexPeer] {
            let list = try peers(key, v6: v6)
            guard let flags = try bytes(key + ".f") else { return list.map { PexPeer(address: $0) } }
            guard flags.count == list.count else { throw .flagsLength(key: key + ".f", got: flags.count, expected: list.count) }
            return zip(list, flags).map { PexPeer(address: $0, flags: PexFlags(rawValue: $1)) }
        }
        var seen = Set<PeerAddress>()
        var added: [PexPeer] = []
        for p in try withFlags("added", v6: false) + withFlags("added6", v6: true) where seen.insert(p.address).inserted {
            added.append(p)
        }
        var droppedSeen = Set<PeerAddress>()
        var dropped: [PeerAddress] = []
        for a in try peers("dropped", v6: false) + peers("dropped6", v6: true) where droppedSeen.insert(a).inserted {
            if seen.contains(a) { throw .addedAndDropped(a) }
            dropped.append(a)
        }
        return PexMessage(added: added, dropped: dropped)
    }

    public func encoded() -> [UInt8] {
        let v4 = added.filter { !$0.address.isIPv6 }
        let v6 = added.filter { $0.address.isIPv6 }
        var d: [(String, Bencode)] = []
        if !v4.isEmpty {
            d.append(("added", .bytes(CompactPeers.encode(v4.map(\.address)))))
            d.append(("added.f", .bytes(v4.map(\.flags.rawValue))))
        }
        if !v6.isEmpty {
            d.append(("added6", .bytes(CompactPeers.encode(v6.map(\.address), ipv6: true))))
            d.append(("added6.f", .bytes(v6.map(\.flags.rawValue))))
        }
        // BEP 11: a message carries at least one of the four lists, so "dropped" is always there.
        let dropped4 = dropped.filter { !$0.isIPv6 }
        let dropped6 = dropped.filter { $0.isIPv6 }
        d.append(("dropped", .bytes(CompactPeers.encode(dropped4))))
        if !dropped6.isEmpty { d.append(("dropped6", .bytes(CompactPeers.encode(dropped6, ipv6: true)))) }
        return Bencode.dict(d).encoded()
    }
}

/// What each recipient has been told, to build the next delta. Per torrent.
public struct PexState: Sendable {
    public var maxAddedPerMessage = 50
    public var maxDroppedPerMessage = 50

    /// The peers we are connected to now (with an established handshake).
    public private(set) var connected: [PeerAddress: PexFlags] = [:]
    /// Per recipient: the peers we told it we are connected to.
    var told: [PeerKey: Set<PeerAddress>] = [:]

    public init() {}

    public mutating func peerConnected(_ address: PeerAddress, flags: PexFlags = []) { connected[address] = flags }
    public mutating func peerDisconnected(_ address: PeerAddress) { connected[address] = nil }
    /// The recipient disconnected: forget what it was told.
    public mutating func forget(recipient: PeerKey) { told[recipient] = nil }

    /// The next message for `recipient` (whose own address is `recipientAddress`, never sent back
    /// to it), or nil when nothing changed since the last one. Records it as sent.
    public mutating func message(for recipient: PeerKey, recipientAddress: PeerAddress?) -> PexMessage? {
        let known = told[recipient] ?? []
        let added = connected.keys.filter { !known.contains($0) && $0 != recipientAddress }
            .sorted().prefix(maxAddedPerMessage)
        let dropped = known.filter { connected[$0] == nil }.sorted().prefix(maxDroppedPerMessage)
        guard !added.isEmpty || !dropped.isEmpty else { return nil }
        var now = known
        now.formUnion(added)
        now.subtract(dropped)
        told[recipient] = now
        return PexMessage(added: added.map { PexPeer(address: $0, flags: connected[$0]!) }, dropped: Array(dropped))
    }
}
