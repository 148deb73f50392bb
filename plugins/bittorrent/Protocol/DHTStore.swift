// DHT write tokens and the announce_peer store (BEP 5).

import Crypto

/// Tokens handed out with get_peers replies: the first 8 bytes of SHA-1(secret ‖ IP). The secret
/// changes every 5 minutes and the previous one is still accepted, so a token stays valid for 5 to
/// 10 minutes — the BitTorrent reference behaviour BEP 5 describes. Only the IP is bound, not the
/// port (BEP 5: "checks the token against the querying node's IP address").
public struct TokenIssuer: Sendable {
    public static let rotation: Double = 5 * 60
    public static let length = 8

    var rng: SplitMix64
    var current: [UInt8]
    var previous: [UInt8]
    public private(set) var rotatedAt: Double

    public init(now: Double, rng seed: UInt64? = nil) {
        rng = SplitMix64(seed: seed)
        current = rng.bytes(16)
        previous = rng.bytes(16)
        rotatedAt = now
    }

    /// Rotates the secret when 5 minutes have passed (call from the DHT's tick).
    public mutating func rotateIfNeeded(now: Double) {
        guard now - rotatedAt >= Self.rotation else { return }
        // After a long pause both secrets are stale: tokens from before it must not pass.
        previous = now - rotatedAt >= 2 * Self.rotation ? rng.bytes(16) : current
        current = rng.bytes(16)
        rotatedAt = now
    }

    public func token(for ip: [UInt8]) -> [UInt8] { Self.make(secret: current, ip: ip) }

    public func isValid(_ token: [UInt8], for ip: [UInt8]) -> Bool {
        token == Self.make(secret: current, ip: ip) || token == Self.make(secret: previous, ip: ip)
    }

    static func make(secret: [UInt8], ip: [UInt8]) -> [UInt8] {
        var h = Insecure.SHA1()
        h.update(data: secret)
        h.update(data: ip)
        return Array(h.finalize().prefix(length))
    }
}

/// Peers announced to us with announce_peer, per infohash, bounded and expiring.
public struct PeerStore: Sendable {
    public static let expiry: Double = 30 * 60
    public let maxPeersPerHash: Int
    public let maxHashes: Int

    struct Peer: Sendable { var ip: [UInt8]; var port: UInt16; var time: Double }
    var torrents: [[UInt8]: [Peer]] = [:]

    public init(maxPeersPerHash: Int = 100, maxHashes: Int = 1000) {
        self.maxPeersPerHash = maxPeersPerHash
        self.maxHashes = maxHashes
    }

    public var hashCount: Int { torrents.count }
    public func peerCount(_ infoHash: [UInt8]) -> Int { torrents[infoHash]?.count ?? 0 }

    /// Stores or refreshes a peer. A full list drops its oldest peer; a full store drops the
    /// infohash with the stalest newest announce.
    public mutating func add(infoHash: [UInt8], ip: [UInt8], port: UInt16, now: Double) {
        if var list = torrents[infoHash] {
            if let i = list.firstIndex(where: { $0.ip == ip && $0.port == port }) {
                list[i].time = now
            } else {
                if list.count >= maxPeersPerHash, let oldest = list.indices.min(by: { list[$0].time < list[$1].time }) {
                    list.remove(at: oldest)
                }
                list.append(Peer(ip: ip, port: port, time: now))
            }
            torrents[infoHash] = list
            return
        }
        if torrents.count >= maxHashes {
            expire(now: now)
            if torrents.count >= maxHashes,
               let stalest = torrents.min(by: { ($0.value.map(\.time).max() ?? 0) < ($1.value.map(\.time).max() ?? 0) })?.key {
                torrents[stalest] = nil
            }
        }
        torrents[infoHash] = [Peer(ip: ip, port: port, time: now)]
    }

    /// Up to `max` compact peer strings (6 or 18 bytes), a random sample when there are more, so a
    /// reply stays well inside one datagram.
    public func values<G: RandomNumberGenerator>(infoHash: [UInt8], now: Double, max: Int = 50, using g: inout G) -> [[UInt8]] {
        guard let list = torrents[infoHash] else { return [] }
        var live = list.filter { now - $0.time < Self.expiry }
        if live.count > max { live.shuffle(using: &g); live = Array(live.prefix(max)) }
        return live.map { p in
            var v = p.ip
            v.appendBE(p.port)
            return v
        }
    }

    public mutating func expire(now: Double) {
        for (h, list) in torrents {
            let live = list.filter { now - $0.time < Self.expiry }
            torrents[h] = live.isEmpty ? nil : live
        }
    }
}
