// The DHT routing table (BEP 5). Buckets are kept by shared-prefix length with our own id:
// bucket i holds nodes whose id shares exactly i leading bits with ours, except the last bucket,
// which holds everything sharing at least `buckets.count - 1` bits — that last bucket is the one
// whose range contains our id, and it is the only one ever split (BEP 5: "no more nodes may be
// added unless our own node ID falls within the range of the bucket").

public struct RoutingTable: Sendable {
    /// BEP 5 node states, from the times below.
    public enum Status: Sendable, Equatable { case good, questionable, bad }

    public struct Entry: Sendable, Equatable {
        public let id: NodeID
        public internal(set) var endpoint: UDPEndpoint
        /// Last reply to one of our queries.
        public internal(set) var lastResponse: Double?
        /// Last query it sent us.
        public internal(set) var lastQuery: Double?
        /// Consecutive queries it did not answer.
        public internal(set) var failures: Int = 0
        public internal(set) var everResponded: Bool = false

        public var info: NodeInfo { NodeInfo(id: id, endpoint: endpoint) }
        var lastSeen: Double { max(lastResponse ?? -.infinity, lastQuery ?? -.infinity) }

        /// "A good node is a node has responded to one of our queries within the last 15 minutes. A
        /// node is also good if it has ever responded to one of our queries and has sent us a query
        /// within the last 15 minutes. … Nodes become bad when they fail to respond to multiple
        /// queries in a row."
        public func status(now: Double, goodFor: Double = RoutingTable.goodFor, badAfter: Int = RoutingTable.badAfter) -> Status {
            if failures >= badAfter { return .bad }
            if let r = lastResponse, now - r < goodFor { return .good }
            if everResponded, let q = lastQuery, now - q < goodFor { return .good }
            return .questionable
        }
    }

    struct Bucket: Sendable {
        var nodes: [Entry] = []
        /// Nodes that did not fit, newest last: they replace bad nodes.
        var replacements: [Entry] = []
        var lastChanged: Double
    }

    public static let goodFor: Double = 15 * 60
    public static let badAfter = 2
    public static let refreshAfter: Double = 15 * 60

    public let own: NodeID
    public let k: Int
    var buckets: [Bucket]

    public init(own: NodeID, k: Int = 8, now: Double = 0) {
        self.own = own
        self.k = k
        self.buckets = [Bucket(lastChanged: now)]
    }

    public var count: Int { buckets.reduce(0) { $0 + $1.nodes.count } }
    public var bucketCount: Int { buckets.count }
    public var entries: [Entry] { buckets.flatMap(\.nodes) }

    func bucketIndex(_ id: NodeID) -> Int {
        min(own.commonPrefixLength(with: id), buckets.count - 1)
    }

    public func entry(_ id: NodeID) -> Entry? {
        buckets[bucketIndex(id)].nodes.first { $0.id == id }
    }

    public enum InsertResult: Sendable, Equatable {
        /// Added to its bucket (possibly after a split).
        case added
        /// Already there; times updated.
        case updated
        /// Took the place of a bad node.
        case replaced(NodeID)
        /// Bucket full of nodes that are not bad: the node waits in the replacement cache. `ping`
        /// is the least recently seen questionable node of the bucket, which the DHT should ping
        /// (BEP 5); if it fails twice it is replaced.
        case full(ping: NodeInfo?)
        /// Our own id, or the same id from another endpoint while the known one is not bad.
        case refused
    }

    /// A node replied to our query.
    @discardableResult
    public mutating func responded(_ node: NodeInfo, now: Double) -> InsertResult {
        insert(node, now: now, responded: true)
    }

    /// A node sent us a query. It enters the table as questionable (it has never answered us).
    @discardableResult
    public mutating func queried(_ node: NodeInfo, now: Double) -> InsertResult {
        insert(node, now: now, responded: false)
    }

    /// A node we heard of (restored from disk): questionable until it answers.
    @discardableResult
    public mutating func heardOf(_ node: NodeInfo, now: Double) -> InsertResult {
        insert(node, now: now, responded: nil)
    }

    /// `responded`: true = a reply, false = a query from it, nil = only heard of.
    mutating func insert(_ node: NodeInfo, now: Double, responded: Bool?) -> InsertResult {
        guard node.id != own else { return .refused }
        while true {
            let bi = bucketIndex(node.id)
            if let ni = buckets[bi].nodes.firstIndex(where: { $0.id == node.id }) {
                var e = buckets[bi].nodes[ni]
                if e.endpoint != node.endpoint {
                    // The same id from somewhere else: keep the known endpoint unless it stopped answering.
                    guard e.status(now: now) == .bad else { return .refused }
                    e.endpoint = node.endpoint
                    e.failures = 0
                }
                touch(&e, now: now, responded: responded)
                buckets[bi].nodes[ni] = e
                if responded == true { buckets[bi].lastChanged = now }
                return .updated
            }
            var e = Entry(id: node.id, endpoint: node.endpoint)
            touch(&e, now: now, responded: responded)
            if buckets[bi].nodes.count < k {
                buckets[bi].nodes.append(e)
                buckets[bi].replacements.removeAll { $0.id == node.id }
                buckets[bi].lastChanged = now
                return .added
            }
            if let badIndex = buckets[bi].nodes.firstIndex(where: { $0.status(now: now) == .bad }) {
                let old = buckets[bi].nodes[badIndex].id
                buckets[bi].nodes[badIndex] = e
                buckets[bi].lastChanged = now
                return .replaced(old)
            }
            if bi == buckets.count - 1 && buckets.count < 160 {
                split()
                continue
            }
            // Keep it as a replacement (good news first: a node that answered us is worth more).
            buckets[bi].replacements.removeAll { $0.id == node.id }
            buckets[bi].replacements.append(e)
            if buckets[bi].replacements.count > k { buckets[bi].replacements.removeFirst() }
            let q = buckets[bi].nodes.filter { $0.status(now: now) == .questionable }.min { $0.lastSeen < $1.lastSeen }
            return .full(ping: q?.info)
        }
    }

    func touch(_ e: inout Entry, now: Double, responded: Bool?) {
        switch responded {
        case true?: e.lastResponse = now; e.everResponded = true; e.failures = 0
        case false?: e.lastQuery = now
        case nil: break
        }
    }

    /// Splits the last bucket: nodes sharing exactly `last` bits stay, the rest move one deeper.
    mutating func split() {
        let last = buckets.count - 1
        let old = buckets[last]
        var stay = Bucket(lastChanged: old.lastChanged), deeper = Bucket(lastChanged: old.lastChanged)
        for n in old.nodes {
            if own.commonPrefixLength(with: n.id) == last { stay.nodes.append(n) } else { deeper.nodes.append(n) }
        }
        for n in old.replacements {
            if own.commonPrefixLength(with: n.id) == last { stay.replacements.append(n) } else { deeper.replacements.append(n) }
        }
        buckets[last] = stay
        buckets.append(deeper)
    }

    /// A query to the node went unanswered. Once bad, a waiting replacement takes its place.
    public mutating func failed(_ id: NodeID, now: Double) {
        let bi = bucketIndex(id)
        guard let ni = buckets[bi].nodes.firstIndex(where: { $0.id == id }) else { return }
        buckets[bi].nodes[ni].failures += 1
        guard buckets[bi].nodes[ni].status(now: now) == .bad else { return }
        if let r = buckets[bi].replacements.popLast() {
            buckets[bi].nodes[ni] = r
            buckets[bi].lastChanged = now
        } else if buckets[bi].nodes[ni].failures >= Self.badAfter + 3 {
            // Long dead and nobody to take its place: drop it so lookups stop trying it.
            buckets[bi].nodes.remove(at: ni)
        }
    }

    public mutating func remove(_ id: NodeID) {
        let bi = bucketIndex(id)
        buckets[bi].nodes.removeAll { $0.id == id }
    }

    /// The `count` nodes closest to `target` by XOR, bad ones left out, good ones first among equals
    /// is not needed: XOR distances are distinct per id.
    public func closest(to target: NodeID, count: Int, now: Double? = nil, includeQuestionable: Bool = true) -> [NodeInfo] {
        var all: [Entry] = []
        for b in buckets {
            for n in b.nodes {
                if let now {
                    let s = n.status(now: now)
                    if s == .bad || (!includeQuestionable && s == .questionable) { continue }
                } else if n.failures >= Self.badAfter { continue }
                all.append(n)
            }
        }
        all.sort { target.closer($0.id, than: $1.id) }
        return all.prefix(count).map(\.info)
    }

    /// Targets for buckets not changed for 15 minutes: a random id inside each such bucket's range,
    /// for a find_node lookup. Marks them changed so one refresh is started per period.
    public mutating func refreshTargets<G: RandomNumberGenerator>(now: Double, using g: inout G) -> [NodeID] {
        var out: [NodeID] = []
        for i in buckets.indices where now - buckets[i].lastChanged >= Self.refreshAfter {
            out.append(randomID(inBucket: i, using: &g))
            buckets[i].lastChanged = now
        }
        return out
    }

    /// Questionable nodes in full buckets, least recently seen first: ping them (BEP 5 upkeep).
    public func questionable(now: Double, limit: Int) -> [NodeInfo] {
        var out: [Entry] = []
        for b in buckets where b.nodes.count >= k {
            out += b.nodes.filter { $0.status(now: now) == .questionable }
        }
        return out.sorted { $0.lastSeen < $1.lastSeen }.prefix(limit).map(\.info)
    }

    /// A random id that lands in bucket `i`: our first i bits, then (for all but the last bucket)
    /// the opposite of our bit i, then random bits.
    public func randomID<G: RandomNumberGenerator>(inBucket i: Int, using g: inout G) -> NodeID {
        var b = NodeID.random(using: &g).bytes
        let fixed = i == buckets.count - 1 ? i : i + 1
        for bit in 0..<fixed {
            let mask: UInt8 = 0x80 >> UInt8(bit % 8)
            var want = own.bit(bit)
            if bit == i && i != buckets.count - 1 { want.toggle() }
            if want { b[bit / 8] |= mask } else { b[bit / 8] &= ~mask }
        }
        return NodeID(unchecked: b)
    }

    // MARK: persistence

    /// Format (version 1), all big-endian:
    ///   "PHRT" | version u8 = 1 | own id (20) | count u16 | count × (id (20) | family u8 4|6 | ip (4|16) | port u16)
    /// Times are not stored (they come from the plugin's monotonic clock, meaningless after a
    /// restart): restored nodes are questionable until they answer a ping.
    public func serialize() -> [UInt8] {
        var out: [UInt8] = Array("PHRT".utf8)
        out.append(1)
        out.append(contentsOf: own.bytes)
        let nodes = entries.filter { $0.failures < Self.badAfter }.prefix(Int(UInt16.max))
        out.appendBE(UInt16(nodes.count))
        for n in nodes {
            out.append(contentsOf: n.id.bytes)
            out.append(n.endpoint.isIPv4 ? 4 : 6)
            out.append(contentsOf: n.endpoint.ip)
            out.appendBE(n.endpoint.port)
        }
        return out
    }

    public struct DecodeError: Error, Equatable, Sendable, CustomStringConvertible {
        public let offset: Int
        public let reason: String
        public var description: String { "routing table data: at byte \(offset): \(reason)" }
    }

    /// Strict: magic, version, lengths and family bytes must be right and nothing may follow.
    public static func deserialize(_ b: [UInt8], k: Int = 8, now: Double = 0) throws(DecodeError) -> RoutingTable {
        guard b.count >= 27 else { throw DecodeError(offset: b.count, reason: "shorter than the 27-byte header") }
        guard Array(b[0..<4]) == Array("PHRT".utf8) else { throw DecodeError(offset: 0, reason: "magic is not \"PHRT\"") }
        guard b[4] == 1 else { throw DecodeError(offset: 4, reason: "version \(b[4]) is not 1") }
        var table = RoutingTable(own: NodeID(unchecked: Array(b[5..<25])), k: k, now: now)
        let count = Int(readBE(b, 25, as: UInt16.self))
        var i = 27
        for n in 0..<count {
            guard i + 21 <= b.count else { throw DecodeError(offset: i, reason: "node \(n) of \(count) is cut short") }
            let id = NodeID(unchecked: Array(b[i..<(i + 20)]))
            let family = b[i + 20]
            guard family == 4 || family == 6 else { throw DecodeError(offset: i + 20, reason: "address family \(family) is not 4 or 6") }
            let ipLen = family == 4 ? 4 : 16
            guard i + 21 + ipLen + 2 <= b.count else { throw DecodeError(offset: i, reason: "node \(n) of \(count) is cut short") }
            let ip = Array(b[(i + 21)..<(i + 21 + ipLen)])
            let port: UInt16 = readBE(b, i + 21 + ipLen)
            guard port != 0, let ep = UDPEndpoint(ip: ip, port: port) else { throw DecodeError(offset: i + 21 + ipLen, reason: "port 0") }
            table.heardOf(NodeInfo(id: id, endpoint: ep), now: now)
            i += 21 + ipLen + 2
        }
        guard i == b.count else { throw DecodeError(offset: i, reason: "\(b.count - i) bytes follow the last node") }
        return table
    }
}
