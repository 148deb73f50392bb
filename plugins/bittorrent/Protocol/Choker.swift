// Choking (BEP 3 "choking", and what clients since have settled on). Every rechoke (the engine calls
// it every 10 s, and when an unchoked peer leaves or loses interest) unchokes the `slots` interested
// peers that give the most: when leeching, the best download rates to us (tit-for-tat; snubbed peers,
// which stopped sending to us, are left out), when seeding the best upload rates from us (the peers
// that can take data fastest spread it fastest). One more slot is the optimistic unchoke: a choked,
// interested peer chosen at random every 30 s, new peers three times as likely, so newcomers get a
// first piece to trade and better partners can be found.

public struct Choker: Sendable {
    public struct PeerStats: Sendable, Equatable {
        public var id: PeerKey
        public var interested: Bool
        /// Bytes per second the peer sends us.
        public var downloadRate: Double
        /// Bytes per second we send the peer.
        public var uploadRate: Double
        /// When the connection was made (seconds, same clock as `now`).
        public var connectedAt: Double
        /// The peer has sent us nothing for a while although we requested (anti-snubbing).
        public var isSnubbed: Bool

        public init(id: PeerKey, interested: Bool, downloadRate: Double = 0, uploadRate: Double = 0,
                    connectedAt: Double = 0, isSnubbed: Bool = false) {
            self.id = id; self.interested = interested; self.downloadRate = downloadRate
            self.uploadRate = uploadRate; self.connectedAt = connectedAt; self.isSnubbed = isSnubbed
        }
    }

    /// Regular unchoke slots; the optimistic unchoke comes on top.
    public let slots: Int
    public var optimisticInterval: Double = 30
    /// A peer connected less than this long ago counts as new (3× the optimistic chance).
    public var newPeerAge: Double = 60
    /// The current optimistic unchoke.
    public private(set) var optimistic: PeerKey?
    var optimisticSince: Double = -Double.infinity
    var rng: SplitMix64

    public init(slots: Int = 4, seed: UInt64? = nil) {
        precondition(slots >= 0, "negative unchoke slots")
        self.slots = slots
        self.rng = seed.map(SplitMix64.init(seed:)) ?? SplitMix64()
    }

    /// The peers to unchoke now; every other peer is choked.
    public mutating func rechoke(peers: [PeerStats], seeding: Bool, now: Double) -> Set<PeerKey> {
        // Random tie-break, so that at start (all rates 0) the same low ids are not always chosen.
        let ranked = peers.filter { $0.interested && (seeding || !$0.isSnubbed) }
            .map { ($0, rng.next()) }
            .sorted { a, b in
                let ra = seeding ? a.0.uploadRate : a.0.downloadRate
                let rb = seeding ? b.0.uploadRate : b.0.downloadRate
                return ra != rb ? ra > rb : a.1 < b.1
            }
            .map(\.0.id)
        var unchoke = Set(ranked.prefix(slots))

        let stillValid = optimistic.flatMap { id in peers.first { $0.id == id } }.map { p in
            p.interested && !unchoke.contains(p.id) && now - optimisticSince < optimisticInterval
        } ?? false
        if !stillValid {
            optimistic = nil
            let choked = peers.filter { $0.interested && !unchoke.contains($0.id) }
                .sorted { $0.id < $1.id }   // deterministic order for a seeded generator
            let weights = choked.map { now - $0.connectedAt < newPeerAge ? 3 : 1 }
            let total = weights.reduce(0, +)
            if total > 0 {
                var r = Int(rng.next(upperBound: UInt64(total)))
                for (p, w) in zip(choked, weights) {
                    if r < w { optimistic = p.id; break }
                    r -= w
                }
                optimisticSince = now
            }
        }
        if let o = optimistic { unchoke.insert(o) }
        return unchoke
    }

    /// A shaping weight (1...1000, 100 = an even share) for the core's conn_set_weight: when
    /// leeching, peers that send us more than we send them get a larger share of our upload, and
    /// peers that take without giving a smaller one. When seeding every peer gets an even share.
    public func weight(for p: PeerStats, seeding: Bool = false) -> UInt32 {
        if seeding { return 100 }
        // 16 KiB/s of slack: slow or new peers sit near 100 instead of swinging to the extremes.
        let slack = 16384.0
        let down = p.downloadRate.isFinite ? Swift.max(0, p.downloadRate) : 0
        let up = p.uploadRate.isFinite ? Swift.max(0, p.uploadRate) : 0
        var w = 100 * (down + slack) / (up + slack)
        if p.isSnubbed { w = Swift.min(w, 10) }
        return UInt32(Swift.min(Swift.max(w.rounded(), 1), 1000))
    }
}
