// Per-peer accounting (ABI 1.1 conn_set_peer): bytes and messages each way per (plugin, peer),
// in a bounded table. A BitTorrent swarm or a gossip mesh can show a plugin thousands of peers
// over a day, so neither memory nor Prometheus series may grow with them:
// - the table tracks at most `capacity` peers (Defaults.peerTableCapacity); a new peer arriving
//   at a full table evicts the one with the fewest bytes, so heavy peers stay and a peer that
//   climbs does so with its history;
// - only the top `exported` by bytes (Defaults.peerMetricsTop) become metric series.

public struct PeerUsage: Sendable, Equatable {
    public var bytesIn: UInt64 = 0
    public var bytesOut: UInt64 = 0
    public var messagesIn: UInt64 = 0
    public var messagesOut: UInt64 = 0
    public var bytes: UInt64 { bytesIn &+ bytesOut }
    public init() {}
}

/// Loop thread only (the supervisor owns it; each session of the plugin adds to it, so per-peer
/// totals survive restarts).
final class PeerTable {
    let capacity: Int
    private(set) var entries: [String: PeerUsage] = [:]
    /// Peers dropped to make room (for the operator: a large number means the table is small for
    /// this plugin's swarm).
    private(set) var evicted = 0

    init(capacity: Int = Defaults.peerTableCapacity) {
        self.capacity = max(1, capacity)
    }

    /// The label form of a peer id: lowercase hex (ids are opaque bytes; hex keeps label values
    /// printable and unambiguous).
    static func key(_ id: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(id.count * 2)
        for b in id { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }

    func add(peer: String, inbound bytes: UInt64) {
        update(peer) { $0.bytesIn &+= bytes; $0.messagesIn &+= 1 }
    }

    func add(peer: String, outbound bytes: UInt64) {
        update(peer) { $0.bytesOut &+= bytes; $0.messagesOut &+= 1 }
    }

    /// What a connection carried before it was tagged.
    func add(peer: String, usage: PeerUsage) {
        update(peer) {
            $0.bytesIn &+= usage.bytesIn; $0.bytesOut &+= usage.bytesOut
            $0.messagesIn &+= usage.messagesIn; $0.messagesOut &+= usage.messagesOut
        }
    }

    /// The `n` peers with the most bytes (both ways), most first; ties by id for a stable order.
    func top(_ n: Int) -> [(peer: String, usage: PeerUsage)] {
        entries.sorted { $0.value.bytes != $1.value.bytes ? $0.value.bytes > $1.value.bytes : $0.key < $1.key }
            .prefix(n).map { (peer: $0.key, usage: $0.value) }
    }

    private func update(_ peer: String, _ body: (inout PeerUsage) -> Void) {
        if entries[peer] == nil, entries.count >= capacity, let smallest = entries.min(by: { $0.value.bytes < $1.value.bytes }) {
            entries[smallest.key] = nil
            evicted += 1
        }
        body(&entries[peer, default: PeerUsage()])
    }
}
