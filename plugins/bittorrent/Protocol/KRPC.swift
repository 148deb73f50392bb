// Mainline DHT (BEP 5): node ids, UDP endpoints and the KRPC message codec.

/// A 160-bit DHT node id (or an infohash used as a lookup target).
public struct NodeID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init?(_ bytes: [UInt8]) {
        guard bytes.count == 20 else { return nil }
        self.bytes = bytes
    }
    init(unchecked bytes: [UInt8]) { self.bytes = bytes }

    public static func random<G: RandomNumberGenerator>(using g: inout G) -> NodeID {
        var b: [UInt8] = []
        b.reserveCapacity(20)
        for _ in 0..<20 { b.append(UInt8.random(in: 0...255, using: &g)) }
        return NodeID(unchecked: b)
    }

    /// XOR distance, itself an id-sized number; compare distances with `<`.
    public func distance(to other: NodeID) -> NodeID {
        var b = bytes
        for i in 0..<20 { b[i] ^= other.bytes[i] }
        return NodeID(unchecked: b)
    }

    /// Unsigned big-endian comparison (what "smaller distance" means).
    public static func < (a: NodeID, b: NodeID) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }

    /// Is `a` closer to self than `b`?
    public func closer(_ a: NodeID, than b: NodeID) -> Bool {
        for i in 0..<20 {
            let x = a.bytes[i] ^ bytes[i], y = b.bytes[i] ^ bytes[i]
            if x != y { return x < y }
        }
        return false
    }

    /// Leading bits shared with `other` (160 when equal): the routing table's bucket index.
    public func commonPrefixLength(with other: NodeID) -> Int {
        for i in 0..<20 {
            let x = bytes[i] ^ other.bytes[i]
            if x != 0 { return i * 8 + x.leadingZeroBitCount }
        }
        return 160
    }

    public func bit(_ i: Int) -> Bool { bytes[i / 8] & (0x80 >> UInt8(i % 8)) != 0 }

    public var description: String { InetText.hex(bytes) }
}

/// A UDP endpoint given as an IP literal (4 or 16 bytes) and a port.
public struct UDPEndpoint: Hashable, Sendable, CustomStringConvertible {
    public let ip: [UInt8]
    public let port: UInt16

    public init?(ip: [UInt8], port: UInt16) {
        guard ip.count == 4 || ip.count == 16 else { return nil }
        self.ip = ip
        self.port = port
    }

    /// "1.2.3.4", "::1" (no brackets) and a port.
    public init?(host: String, port: UInt16) {
        guard let ip = InetText.parse(host) else { return nil }
        self.ip = ip
        self.port = port
    }

    /// "udp:1.2.3.4:6881", "udp:[::1]:6881", or the same without "udp:".
    public init?(address: String) {
        var s = Substring(address)
        if s.hasPrefix("udp:") { s = s.dropFirst(4) }
        guard let colon = s.lastIndex(of: ":"), let port = UInt16(s[s.index(after: colon)...]) else { return nil }
        var host = s[..<colon]
        if host.hasPrefix("[") && host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        guard let ip = InetText.parseIPv4(host) ?? InetText.parseIPv6(host) else { return nil }
        self.ip = ip
        self.port = port
    }

    public var host: String { InetText.format(ip) }
    /// The core's form: "udp:1.2.3.4:6881".
    public var address: String { "udp:" + InetText.hostPort(host, port) }
    public var description: String { InetText.hostPort(host, port) }
    public var isIPv4: Bool { ip.count == 4 }
}

/// A node as the DHT passes it around: id and where it listens.
public struct NodeInfo: Hashable, Sendable {
    public let id: NodeID
    public let endpoint: UDPEndpoint
    public init(id: NodeID, endpoint: UDPEndpoint) {
        self.id = id
        self.endpoint = endpoint
    }
}

public struct KRPCError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        case bencode(BencodeError)
        case notADictionary
        case missing(String)
        case badField(String, reason: String)
        case unknownType(String)
    }
    public let kind: Kind
    /// The message's "t" when it could be read: lets a node answer a bad query with error 203.
    public let transactionID: [UInt8]?
    /// True when the message said it was a query ("y" = "q").
    public let wasQuery: Bool

    public var description: String {
        switch kind {
        case .bencode(let e): "KRPC: \(e)"
        case .notADictionary: "KRPC: message is not a dictionary"
        case .missing(let k): "KRPC: key \"\(k)\" missing"
        case .badField(let k, let reason): "KRPC: key \"\(k)\": \(reason)"
        case .unknownType(let y): "KRPC: message type \"\(y)\" is not q, r or e"
        }
    }
}

public enum KRPC {
    public enum Query: Equatable, Sendable {
        case ping(id: NodeID)
        case findNode(id: NodeID, target: NodeID)
        case getPeers(id: NodeID, infoHash: NodeID)
        /// `impliedPort`: use the datagram's source port instead of `port` (BEP 5, NAT support).
        case announcePeer(id: NodeID, infoHash: NodeID, port: UInt16, token: [UInt8], impliedPort: Bool)
        /// A method we do not know; answered with error 204.
        case unknown(method: String, id: NodeID?)

        public var senderID: NodeID? {
            switch self {
            case .ping(let id), .findNode(let id, _), .getPeers(let id, _), .announcePeer(let id, _, _, _, _): id
            case .unknown(_, let id): id
            }
        }

        public var method: String {
            switch self {
            case .ping: "ping"
            case .findNode: "find_node"
            case .getPeers: "get_peers"
            case .announcePeer: "announce_peer"
            case .unknown(let m, _): m
            }
        }
    }

    /// Return values; which keys are present depends on the query answered.
    public struct Response: Equatable, Sendable {
        public var id: NodeID
        /// Compact node info, raw (decode with `KRPC.decodeNodes`).
        public var nodes: [UInt8]?
        /// get_peers: compact peer strings (6 bytes IPv4, 18 bytes IPv6).
        public var values: [[UInt8]]?
        public var token: [UInt8]?

        public init(id: NodeID, nodes: [UInt8]? = nil, values: [[UInt8]]? = nil, token: [UInt8]? = nil) {
            self.id = id
            self.nodes = nodes
            self.values = values
            self.token = token
        }

        /// Peers in "values" (entries of another length are skipped).
        public var peers: [PeerAddress] {
            (values ?? []).flatMap { v in
                v.count == 6 ? CompactPeers.lenientIPv4(v) : v.count == 18 ? CompactPeers.lenientIPv6(v) : []
            }
        }
    }

    public enum ErrorCode: Int64, Sendable {
        case generic = 201, server = 202, protocolError = 203, methodUnknown = 204
    }

    public enum Message: Equatable, Sendable {
        case query(transactionID: [UInt8], Query)
        case response(transactionID: [UInt8], Response)
        case error(transactionID: [UInt8], code: Int64, message: String)

        public var transactionID: [UInt8] {
            switch self {
            case .query(let t, _), .response(let t, _), .error(let t, _, _): t
            }
        }

        public func encoded() -> [UInt8] {
            var d: [[UInt8]: Bencode] = [:]
            func key(_ s: String) -> [UInt8] { Array(s.utf8) }
            switch self {
            case .query(let t, let q):
                d[key("t")] = .bytes(t)
                d[key("y")] = .string("q")
                d[key("q")] = .string(q.method)
                var a: [[UInt8]: Bencode] = [:]
                switch q {
                case .ping(let id):
                    a[key("id")] = .bytes(id.bytes)
                case .findNode(let id, let target):
                    a[key("id")] = .bytes(id.bytes); a[key("target")] = .bytes(target.bytes)
                case .getPeers(let id, let h):
                    a[key("id")] = .bytes(id.bytes); a[key("info_hash")] = .bytes(h.bytes)
                case .announcePeer(let id, let h, let port, let token, let implied):
                    a[key("id")] = .bytes(id.bytes); a[key("info_hash")] = .bytes(h.bytes)
                    a[key("port")] = .integer(Int64(port)); a[key("token")] = .bytes(token)
                    if implied { a[key("implied_port")] = .integer(1) }
                case .unknown(_, let id):
                    if let id { a[key("id")] = .bytes(id.bytes) }
                }
                d[key("a")] = .dictionary(a)
            case .response(let t, let r):
                d[key("t")] = .bytes(t)
                d[key("y")] = .string("r")
                var rd: [[UInt8]: Bencode] = [key("id"): .bytes(r.id.bytes)]
                if let n = r.nodes { rd[key("nodes")] = .bytes(n) }
                if let v = r.values { rd[key("values")] = .list(v.map { .bytes($0) }) }
                if let tok = r.token { rd[key("token")] = .bytes(tok) }
                d[key("r")] = .dictionary(rd)
            case .error(let t, let code, let message):
                d[key("t")] = .bytes(t)
                d[key("y")] = .string("e")
                d[key("e")] = .list([.integer(code), .string(message)])
            }
            return Bencode.dictionary(d).encoded()
        }

        /// Decodes one datagram with the small-message limits. Keys this codec does not know ("v",
        /// "ip", "ro", "want", "nodes6") are ignored, as BEP 5 wants for forward compatibility.
        public static func decode(_ datagram: [UInt8]) throws(KRPCError) -> Message {
            let root: Bencode
            do { root = try Bencode.decode(datagram, limits: .message) } catch {
                throw KRPCError(kind: .bencode(error), transactionID: nil, wasQuery: false)
            }
            guard root.dictionary != nil else { throw KRPCError(kind: .notADictionary, transactionID: nil, wasQuery: false) }
            guard let t = root["t"]?.bytes else { throw KRPCError(kind: .missing("t"), transactionID: nil, wasQuery: false) }
            guard let y = root["y"]?.bytes else { throw KRPCError(kind: .missing("y"), transactionID: t, wasQuery: false) }
            let isQuery = y == Array("q".utf8)
            func fail(_ k: KRPCError.Kind) -> KRPCError { KRPCError(kind: k, transactionID: t, wasQuery: isQuery) }
            func id20(_ dict: Bencode, _ k: String, in outer: String) throws(KRPCError) -> NodeID {
                guard let v = dict[k] else { throw fail(.missing("\(outer).\(k)")) }
                guard let b = v.bytes, let id = NodeID(b) else { throw fail(.badField("\(outer).\(k)", reason: "not a 20-byte string")) }
                return id
            }
            switch y {
            case Array("q".utf8):
                guard let qb = root["q"]?.bytes else { throw fail(.missing("q")) }
                guard let a = root["a"], a.dictionary != nil else { throw fail(.missing("a")) }
                let method = String(decoding: qb, as: UTF8.self)
                let id = try id20(a, "id", in: "a")
                let query: Query
                switch method {
                case "ping": query = .ping(id: id)
                case "find_node": query = .findNode(id: id, target: try id20(a, "target", in: "a"))
                case "get_peers": query = .getPeers(id: id, infoHash: try id20(a, "info_hash", in: "a"))
                case "announce_peer":
                    let h = try id20(a, "info_hash", in: "a")
                    guard let tok = a["token"]?.bytes else { throw fail(.missing("a.token")) }
                    let implied = (a["implied_port"]?.integer ?? 0) != 0
                    var port: UInt16 = 0
                    if let p = a["port"]?.integer {
                        guard p >= 0, p <= 65535 else { throw fail(.badField("a.port", reason: "\(p) is not a port")) }
                        port = UInt16(p)
                    } else if !implied { throw fail(.missing("a.port")) }
                    guard implied || port != 0 else { throw fail(.badField("a.port", reason: "0 is not a port")) }
                    query = .announcePeer(id: id, infoHash: h, port: port, token: tok, impliedPort: implied)
                default:
                    query = .unknown(method: String(method.prefix(64)), id: id)
                }
                return .query(transactionID: t, query)
            case Array("r".utf8):
                guard let r = root["r"], r.dictionary != nil else { throw fail(.missing("r")) }
                var resp = Response(id: try id20(r, "id", in: "r"))
                if let n = r["nodes"] {
                    guard let b = n.bytes else { throw fail(.badField("r.nodes", reason: "not a string")) }
                    resp.nodes = b
                }
                if let v = r["values"] {
                    guard let list = v.list else { throw fail(.badField("r.values", reason: "not a list")) }
                    var values: [[UInt8]] = []
                    for item in list {
                        guard let b = item.bytes else { throw fail(.badField("r.values", reason: "an entry is not a string")) }
                        values.append(b)
                    }
                    resp.values = values
                }
                if let tok = r["token"] {
                    guard let b = tok.bytes else { throw fail(.badField("r.token", reason: "not a string")) }
                    resp.token = b
                }
                return .response(transactionID: t, resp)
            case Array("e".utf8):
                guard let e = root["e"]?.list, e.count >= 2, let code = e[0].integer, let msg = e[1].bytes else {
                    throw fail(.badField("e", reason: "not a list [code, message]"))
                }
                return .error(transactionID: t, code: code, message: String(decoding: msg, as: UTF8.self))
            default:
                throw fail(.unknownType(String(decoding: y.prefix(8), as: UTF8.self)))
            }
        }
    }

    /// Compact node info (BEP 5): 26 bytes per IPv4 node.
    public static func encodeNodes(_ nodes: [NodeInfo]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(nodes.count * 26)
        for n in nodes where n.endpoint.isIPv4 {
            out.append(contentsOf: n.id.bytes)
            out.append(contentsOf: n.endpoint.ip)
            out.appendBE(n.endpoint.port)
        }
        return out
    }

    public struct NodesError: Error, Equatable, Sendable, CustomStringConvertible {
        public let length: Int
        public var description: String { "KRPC: compact node info of \(length) bytes is not a multiple of 26" }
    }

    /// Strict: the length must be a multiple of 26. Entries with port 0 are dropped.
    public static func decodeNodes(_ b: [UInt8]) throws(NodesError) -> [NodeInfo] {
        guard b.count % 26 == 0 else { throw NodesError(length: b.count) }
        var out: [NodeInfo] = []
        var i = 0
        while i < b.count {
            let port: UInt16 = readBE(b, i + 24)
            if port != 0, let ep = UDPEndpoint(ip: Array(b[(i + 20)..<(i + 24)]), port: port) {
                out.append(NodeInfo(id: NodeID(unchecked: Array(b[i..<(i + 20)])), endpoint: ep))
            }
            i += 26
        }
        return out
    }
}
