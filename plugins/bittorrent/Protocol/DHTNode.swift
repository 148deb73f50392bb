// The Mainline DHT node (BEP 5) as a transport-agnostic state machine.
//
// The plugin owns the UDP socket and the clock: it passes each received datagram with its source
// to `receive`, calls `tick` now and then (at `nextTimeout`, and at least every minute for upkeep),
// sends every Outgoing it gets back, and drains `takeEvents()` for lookup results. Nothing here
// blocks, allocates a socket or reads a clock, so a test can run fifty nodes in one array.
//
// Lookups are iterative (α parallel queries, the K closest nodes must all have answered before a
// lookup ends); get_peers lookups can announce to the 8 closest nodes that gave a token. The node
// answers ping, find_node, get_peers (with a token) and announce_peer (checking it).

public struct DHTNode: Sendable {
    public struct Config: Sendable {
        public var k = 8
        public var alpha = 3
        /// Seconds before a query counts as unanswered.
        public var queryTimeout: Double = 5
        /// How many nodes an announcing lookup sends announce_peer to.
        public var announceCount = 8
        /// Peers per get_peers reply at most (keeps the reply in one datagram).
        public var maxValues = 50
        /// Candidates a lookup keeps, closest first.
        public var maxCandidates = 64
        /// Questionable nodes pinged per tick.
        public var pingsPerTick = 3
        /// Re-bootstrap this often while the table is empty.
        public var bootstrapRetry: Double = 60
        public init() {}
    }

    public struct Outgoing: Sendable, Equatable {
        public let datagram: [UInt8]
        public let endpoint: UDPEndpoint
        /// The core's address: "udp:IP:port".
        public var to: String { endpoint.address }
    }

    public typealias LookupID = Int

    public enum Event: Sendable, Equatable {
        /// New peers for a get_peers lookup (each peer reported once per lookup).
        case peersFound(lookup: LookupID, infoHash: [UInt8], peers: [PeerAddress])
        /// The lookup ended: how many nodes answered and how many accepted our announce_peer.
        case lookupDone(lookup: LookupID, infoHash: [UInt8], responded: Int, announcedTo: Int)
        /// The bootstrap lookup for our own id ended.
        case bootstrapped(tableSize: Int)
    }

    enum Purpose: Sendable, Equatable { case ping, lookup(LookupID), announce(LookupID) }

    struct Pending: Sendable {
        let endpoint: UDPEndpoint
        let nodeID: NodeID?
        let purpose: Purpose
        let deadline: Double
    }

    enum CandidateState: Sendable { case fresh, queried, responded, failed }
    struct Candidate: Sendable {
        var info: NodeInfo
        var state: CandidateState = .fresh
        var token: [UInt8]? = nil
    }

    enum Kind: Sendable, Equatable { case findNode, getPeers, bootstrap, refresh }

    struct Lookup: Sendable {
        let id: LookupID
        let target: NodeID
        let kind: Kind
        let announcePort: UInt16?
        let impliedPort: Bool
        var candidates: [Candidate] = []
        var inFlight = 0
        var responded = 0
        var peersSeen: Set<PeerAddress> = []
        var announcing = false
        var announcesOutstanding = 0
        var announcedTo = 0
    }

    public let config: Config
    public private(set) var table: RoutingTable
    var tokens: TokenIssuer
    public private(set) var store: PeerStore
    var rng: SplitMix64
    var nextTransaction: UInt16 = 0
    var pending: [[UInt8]: Pending] = [:]
    var lookups: [LookupID: Lookup] = [:]
    var nextLookup: LookupID = 1
    var events: [Event] = []
    var bootstrapNodes: [UDPEndpoint] = []
    var lastBootstrap = -Double.infinity
    var lastExpire: Double

    public var id: NodeID { table.own }

    public init(id: NodeID? = nil, config: Config = Config(), rng seed: UInt64? = nil, now: Double) {
        var rng = SplitMix64(seed: seed)
        let own = id ?? NodeID.random(using: &rng)
        self.init(table: RoutingTable(own: own, k: config.k, now: now), config: config, rng: rng, now: now)
    }

    /// Restores a table saved with `serializedTable()` (our id included, so it stays stable).
    public init(restoring data: [UInt8], config: Config = Config(), rng seed: UInt64? = nil, now: Double) throws(RoutingTable.DecodeError) {
        let table = try RoutingTable.deserialize(data, k: config.k, now: now)
        self.init(table: table, config: config, rng: SplitMix64(seed: seed), now: now)
    }

    init(table: RoutingTable, config: Config, rng: SplitMix64, now: Double) {
        self.config = config
        self.table = table
        var rng = rng
        self.tokens = TokenIssuer(now: now, rng: rng.next())
        self.store = PeerStore()
        self.rng = rng
        self.lastExpire = now
        self.nextTransaction = UInt16.random(in: 0...UInt16.max, using: &self.rng)
    }

    public func serializedTable() -> [UInt8] { table.serialize() }

    public mutating func takeEvents() -> [Event] {
        defer { events.removeAll() }
        return events
    }

    /// Earliest query deadline; nil when nothing is in flight (still tick about once a minute).
    public var nextTimeout: Double? { pending.values.map(\.deadline).min() }

    /// Number of lookups not yet finished.
    public var activeLookups: Int { lookups.count }

    // MARK: starting work

    /// Joins the DHT: a find_node lookup for our own id through the given nodes (and any nodes a
    /// restored table holds). Remembered, and retried while the table stays empty.
    public mutating func bootstrap(nodes: [UDPEndpoint], now: Double) -> [Outgoing] {
        bootstrapNodes = nodes
        lastBootstrap = now
        var out: [Outgoing] = []
        let lid = startLookup(target: id, kind: .bootstrap, announcePort: nil, impliedPort: false)
        for ep in nodes {
            out.append(send(.findNode(id: id, target: id), to: ep, nodeID: nil, purpose: .lookup(lid), now: now))
            lookups[lid]!.inFlight += 1
        }
        out += advance(lid, now: now)
        return out
    }

    /// Finds peers for an infohash; with `announcePort`, announces us to the closest nodes that
    /// answered with a token (`impliedPort`: let them take the port from our UDP source port).
    public mutating func getPeers(infoHash: [UInt8], announcePort: UInt16? = nil, impliedPort: Bool = false,
                                  now: Double) -> (lookup: LookupID, send: [Outgoing]) {
        let target = NodeID(infoHash) ?? NodeID(unchecked: Array((infoHash + [UInt8](repeating: 0, count: 20)).prefix(20)))
        let lid = startLookup(target: target, kind: .getPeers, announcePort: announcePort, impliedPort: impliedPort)
        // Peers announced to this node count too: in a small swarm we may be the closest node.
        let local = store.values(infoHash: target.bytes, now: now, max: config.maxValues, using: &rng).flatMap {
            $0.count == 6 ? CompactPeers.lenientIPv4($0) : CompactPeers.lenientIPv6($0)
        }
        if !local.isEmpty {
            lookups[lid]!.peersSeen.formUnion(local)
            events.append(.peersFound(lookup: lid, infoHash: target.bytes, peers: local))
        }
        return (lid, advance(lid, now: now))
    }

    /// A find_node lookup (bucket refresh, or to find nodes near an id).
    public mutating func findNode(target: NodeID, now: Double) -> (lookup: LookupID, send: [Outgoing]) {
        let lid = startLookup(target: target, kind: .findNode, announcePort: nil, impliedPort: false)
        return (lid, advance(lid, now: now))
    }

    /// Pings an endpoint (BEP 5: a peer's PORT message names its DHT node); it joins the table if it answers.
    public mutating func ping(_ endpoint: UDPEndpoint, now: Double) -> [Outgoing] {
        [send(.ping(id: id), to: endpoint, nodeID: nil, purpose: .ping, now: now)]
    }

    mutating func startLookup(target: NodeID, kind: Kind, announcePort: UInt16?, impliedPort: Bool) -> LookupID {
        let lid = nextLookup
        nextLookup += 1
        var l = Lookup(id: lid, target: target, kind: kind, announcePort: announcePort, impliedPort: impliedPort)
        l.candidates = table.closest(to: target, count: config.maxCandidates).map { Candidate(info: $0) }
        lookups[lid] = l
        return lid
    }

    // MARK: receiving

    public mutating func receive(_ datagram: [UInt8], from source: UDPEndpoint, now: Double) -> [Outgoing] {
        let message: KRPC.Message
        do { message = try KRPC.Message.decode(datagram) } catch {
            // A query we cannot read still gets an answer (203) when its transaction id is known.
            if error.wasQuery, let t = error.transactionID {
                return [Outgoing(datagram: KRPC.Message.error(transactionID: t, code: KRPC.ErrorCode.protocolError.rawValue,
                                                              message: error.description).encoded(), endpoint: source)]
            }
            return []
        }
        switch message {
        case .query(let t, let q):
            return answer(q, transactionID: t, from: source, now: now)
        case .response(let t, let r):
            return handleResponse(r, transactionID: t, from: source, now: now)
        case .error(let t, _, _):
            return handleError(transactionID: t, from: source, now: now)
        }
    }

    mutating func answer(_ q: KRPC.Query, transactionID t: [UInt8], from source: UDPEndpoint, now: Double) -> [Outgoing] {
        func reply(_ m: KRPC.Message) -> [Outgoing] { [Outgoing(datagram: m.encoded(), endpoint: source)] }
        func error(_ code: KRPC.ErrorCode, _ text: String) -> [Outgoing] {
            reply(.error(transactionID: t, code: code.rawValue, message: text))
        }
        var out: [Outgoing] = []
        if let sender = q.senderID, sender != id, source.isIPv4 {
            if case .full(let p?) = table.queried(NodeInfo(id: sender, endpoint: source), now: now) { out += pingIfIdle(p, now: now) }
        }
        switch q {
        case .ping:
            return out + reply(.response(transactionID: t, KRPC.Response(id: id)))
        case .findNode(let sender, let target):
            let nodes = closestExcluding(sender, to: target, now: now)
            return out + reply(.response(transactionID: t, KRPC.Response(id: id, nodes: KRPC.encodeNodes(nodes))))
        case .getPeers(let sender, let h):
            var r = KRPC.Response(id: id, token: tokens.token(for: source.ip))
            let values = store.values(infoHash: h.bytes, now: now, max: config.maxValues, using: &rng)
            if !values.isEmpty { r.values = values }
            // Nodes too, even with values: the asker's lookup keeps converging on the closest nodes.
            r.nodes = KRPC.encodeNodes(closestExcluding(sender, to: h, now: now))
            return out + reply(.response(transactionID: t, r))
        case .announcePeer(_, let h, let port, let token, let implied):
            guard tokens.isValid(token, for: source.ip) else {
                return out + error(.protocolError, "bad token")
            }
            store.add(infoHash: h.bytes, ip: source.ip, port: implied ? source.port : port, now: now)
            return out + reply(.response(transactionID: t, KRPC.Response(id: id)))
        case .unknown(let method, _):
            return out + error(.methodUnknown, "Method Unknown: \(method)")
        }
    }

    /// The K closest nodes without the asker itself (libtorrent, seeing itself in a reply, spends a
    /// query on its own address that never gets an answer).
    func closestExcluding(_ asker: NodeID, to target: NodeID, now: Double) -> [NodeInfo] {
        Array(table.closest(to: target, count: config.k + 1, now: now).filter { $0.id != asker }.prefix(config.k))
    }

    mutating func handleResponse(_ r: KRPC.Response, transactionID t: [UInt8], from source: UDPEndpoint, now: Double) -> [Outgoing] {
        guard let p = pending[t], p.endpoint == source else { return [] }   // not ours, or spoofed source
        pending[t] = nil
        var out: [Outgoing] = []
        if r.id != id {
            if case .full(let q?) = table.responded(NodeInfo(id: r.id, endpoint: source), now: now) { out += pingIfIdle(q, now: now) }
        }
        switch p.purpose {
        case .ping:
            break
        case .announce(let lid):
            guard var l = lookups[lid] else { break }
            l.announcesOutstanding -= 1
            l.announcedTo += 1
            lookups[lid] = l
            out += advance(lid, now: now)
        case .lookup(let lid):
            guard var l = lookups[lid] else { break }
            l.inFlight -= 1
            l.responded += 1
            let info = NodeInfo(id: r.id, endpoint: source)
            if let ci = l.candidates.firstIndex(where: { $0.info.endpoint == source && ($0.info.id == r.id || $0.info.id == p.nodeID) }) {
                l.candidates[ci].state = .responded
                l.candidates[ci].token = r.token
                l.candidates[ci].info = info
            } else if r.id != id {
                insertCandidate(&l, Candidate(info: info, state: .responded, token: r.token))
            }
            if let nodesBytes = r.nodes, let nodes = try? KRPC.decodeNodes(nodesBytes) {
                for n in nodes where n.id != id && !l.candidates.contains(where: { $0.info.id == n.id }) {
                    insertCandidate(&l, Candidate(info: n))
                }
            }
            if l.kind == .getPeers {
                let fresh = r.peers.filter { !l.peersSeen.contains($0) }
                if !fresh.isEmpty {
                    l.peersSeen.formUnion(fresh)
                    events.append(.peersFound(lookup: lid, infoHash: l.target.bytes, peers: fresh))
                }
            }
            lookups[lid] = l
            out += advance(lid, now: now)
        }
        return out
    }

    mutating func handleError(transactionID t: [UInt8], from source: UDPEndpoint, now: Double) -> [Outgoing] {
        guard let p = pending[t], p.endpoint == source else { return [] }
        pending[t] = nil
        // It answered, so it is alive, but the query failed: the lookup treats it as a dead end.
        switch p.purpose {
        case .ping: return []
        case .announce(let lid):
            guard lookups[lid] != nil else { return [] }
            lookups[lid]!.announcesOutstanding -= 1
            return advance(lid, now: now)
        case .lookup(let lid):
            guard var l = lookups[lid] else { return [] }
            l.inFlight -= 1
            if let ci = l.candidates.firstIndex(where: { $0.info.endpoint == source && $0.state == .queried }) { l.candidates[ci].state = .failed }
            lookups[lid] = l
            return advance(lid, now: now)
        }
    }

    mutating func insertCandidate(_ l: inout Lookup, _ c: Candidate) {
        let target = l.target
        let at = l.candidates.firstIndex { target.closer(c.info.id, than: $0.info.id) } ?? l.candidates.endIndex
        guard at < config.maxCandidates else { return }
        l.candidates.insert(c, at: at)
        if l.candidates.count > config.maxCandidates {
            // Drop the farthest one not waiting for an answer.
            if let drop = l.candidates.lastIndex(where: { $0.state != .queried }) { l.candidates.remove(at: drop) }
        }
    }

    // MARK: time

    /// Timeouts, token rotation, store expiry, bucket refresh, pings of questionable nodes and
    /// re-bootstrap while the table is empty.
    public mutating func tick(now: Double) -> [Outgoing] {
        var out: [Outgoing] = []
        for (t, p) in pending where now >= p.deadline {
            pending[t] = nil
            if let nid = p.nodeID { table.failed(nid, now: now) }
            switch p.purpose {
            case .ping: break
            case .announce(let lid):
                if lookups[lid] != nil { lookups[lid]!.announcesOutstanding -= 1; out += advance(lid, now: now) }
            case .lookup(let lid):
                guard var l = lookups[lid] else { break }
                l.inFlight -= 1
                if let ci = l.candidates.firstIndex(where: { $0.info.endpoint == p.endpoint && $0.state == .queried }) {
                    l.candidates[ci].state = .failed
                }
                lookups[lid] = l
                out += advance(lid, now: now)
            }
        }
        tokens.rotateIfNeeded(now: now)
        if now - lastExpire >= 60 {
            store.expire(now: now)
            lastExpire = now
        }
        if table.count == 0 {
            if !bootstrapNodes.isEmpty, now - lastBootstrap >= config.bootstrapRetry,
               !lookups.values.contains(where: { $0.kind == .bootstrap }) {
                out += bootstrap(nodes: bootstrapNodes, now: now)
            }
        } else {
            for target in table.refreshTargets(now: now, using: &rng) {
                let lid = startLookup(target: target, kind: .refresh, announcePort: nil, impliedPort: false)
                out += advance(lid, now: now)
            }
            for n in table.questionable(now: now, limit: config.pingsPerTick) { out += pingIfIdle(n, now: now) }
        }
        return out
    }

    mutating func pingIfIdle(_ n: NodeInfo, now: Double) -> [Outgoing] {
        guard !pending.values.contains(where: { $0.nodeID == n.id && $0.purpose == .ping }) else { return [] }
        return [send(.ping(id: id), to: n.endpoint, nodeID: n.id, purpose: .ping, now: now)]
    }

    // MARK: lookups

    /// Queries the closest fresh candidates (α at a time) among the K closest live ones; ends the
    /// search when those K have all answered, then announces if asked to.
    mutating func advance(_ lid: LookupID, now: Double) -> [Outgoing] {
        guard var l = lookups[lid] else { return [] }
        var out: [Outgoing] = []
        if !l.announcing {
            var live = 0
            var unanswered = false
            for i in l.candidates.indices {
                if live >= config.k { break }
                switch l.candidates[i].state {
                case .failed: continue
                case .responded: live += 1
                case .queried: live += 1; unanswered = true
                case .fresh:
                    live += 1
                    unanswered = true
                    if l.inFlight < config.alpha {
                        let c = l.candidates[i].info
                        let q: KRPC.Query = l.kind == .getPeers ? .getPeers(id: id, infoHash: l.target) : .findNode(id: id, target: l.target)
                        out.append(send(q, to: c.endpoint, nodeID: c.id, purpose: .lookup(lid), now: now))
                        l.candidates[i].state = .queried
                        l.inFlight += 1
                    }
                }
            }
            if unanswered || l.inFlight > 0 {
                lookups[lid] = l
                return out
            }
            // Search over.
            if l.kind == .getPeers, let port = l.announcePort {
                l.announcing = true
                let targets = l.candidates.filter { $0.state == .responded && $0.token != nil }.prefix(config.announceCount)
                for c in targets {
                    let q = KRPC.Query.announcePeer(id: id, infoHash: l.target, port: port, token: c.token!, impliedPort: l.impliedPort)
                    out.append(send(q, to: c.info.endpoint, nodeID: c.info.id, purpose: .announce(lid), now: now))
                    l.announcesOutstanding += 1
                }
            }
        }
        if l.announcesOutstanding > 0 {
            lookups[lid] = l
            return out
        }
        lookups[lid] = nil
        switch l.kind {
        case .getPeers, .findNode:
            events.append(.lookupDone(lookup: lid, infoHash: l.target.bytes, responded: l.responded, announcedTo: l.announcedTo))
        case .bootstrap:
            events.append(.bootstrapped(tableSize: table.count))
        case .refresh:
            break
        }
        return out
    }

    mutating func send(_ q: KRPC.Query, to endpoint: UDPEndpoint, nodeID: NodeID?, purpose: Purpose, now: Double) -> Outgoing {
        var t: [UInt8]
        repeat {
            nextTransaction &+= 1
            t = [UInt8(nextTransaction >> 8), UInt8(nextTransaction & 0xff)]
        } while pending[t] != nil
        pending[t] = Pending(endpoint: endpoint, nodeID: nodeID, purpose: purpose, deadline: now + config.queryTimeout)
        return Outgoing(datagram: KRPC.Message.query(transactionID: t, q).encoded(), endpoint: endpoint)
    }
}
