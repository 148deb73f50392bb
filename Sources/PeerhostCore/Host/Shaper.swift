// The bandwidth shaper (DESIGN.md "Bandwidth, accounting, persistence, self-healing"): token
// buckets at three levels — global → plugin → connection — per direction, refilled from the event
// loop's monotonic clock (no thread of its own). Loop thread only.
//
// Enforcement is "debt" based: an operation may start when every bucket on its path has tokens
// (> 0); its bytes are then taken from all three, possibly driving them below zero. That works
// the same for sends (length known up front) and for receives (length known only when the data
// has arrived), and the overshoot is bounded by one slot per operation.
//
// Fair share: the global and plugin buckets are hard caps. Below them, each child's own bucket
// refills at its share of the parent, recomputed every `allocationInterval` by weighted
// water-filling: children that were blocked in the last window want unlimited, the others get
// what they used (with headroom), and the rest is divided by weight among those that want more.
// So two saturating plugins with weights 1:3 split a saturated global limit 1:3, and one heavy
// connection cannot take the share of its plugin's other busy connections.

/// Traffic direction: `up` = plugin → network (sends), `down` = network → plugin (receives).
public enum ShapingDirection: Int, Sendable, CaseIterable {
    case up = 0, down = 1
    public var label: String { self == .up ? "up" : "down" }
}

/// One token bucket. `rate` in bytes/s; `.infinity` = unlimited. `tokens` may be negative (debt).
public struct TokenBucket: Sendable, Equatable {
    public private(set) var rate: Double
    public private(set) var tokens: Double
    public private(set) var last: UInt64
    /// Burst: the most a bucket saves while idle (50 ms of its rate, at least 16 KiB: one slot).
    public var capacity: Double { rate.isFinite ? max(rate * 0.05, 16_384) : .infinity }

    public init(rate: Double, now: UInt64) {
        self.rate = rate
        self.tokens = rate.isFinite ? max(rate * 0.05, 16_384) : 0
        self.last = now
    }

    public var unlimited: Bool { !rate.isFinite }
    public var ready: Bool { unlimited || tokens > 0 }

    public mutating func refill(now: UInt64) {
        guard now > last else { return }
        if rate.isFinite { tokens = min(capacity, tokens + rate * Double(now - last) / 1e9) }
        last = now
    }

    public mutating func take(_ bytes: Int) {
        if rate.isFinite { tokens -= Double(bytes) }
    }

    /// Nanoseconds until tokens > 0 at the current rate (0 when ready).
    public var nanosecondsUntilReady: UInt64 {
        guard !ready else { return 0 }
        guard rate > 0 else { return UInt64.max / 2 }
        return UInt64((-tokens + 1) / rate * 1e9) + 1
    }

    /// Changes the rate, keeping the debt (a cap lowered stays honest); savings are clipped to the new burst.
    public mutating func setRate(_ newRate: Double, now: UInt64, forgiveDebtBeyond: Double? = nil) {
        refill(now: now)
        rate = newRate
        if !rate.isFinite { tokens = 0; return }
        tokens = min(tokens, capacity)
        if let floor = forgiveDebtBeyond { tokens = max(tokens, -floor) }
    }
}

/// Weighted max-min fair division of `capacity` among children with `weights` and `demands`
/// (bytes/s, `.infinity` = wants all it can get). Returns each child's share; a child never gets
/// more than it demands, and what one does not need goes to the others by weight. When every
/// demand is met, the capacity left over is spread by weight too (the parent's bucket still caps
/// the sum; a child that grows then needs no new round to get it).
public func weightedFairShare(capacity: Double, weights: [Double], demands: [Double]) -> [Double] {
    var shares = [Double](repeating: 0, count: weights.count)
    guard capacity.isFinite else { return [Double](repeating: .infinity, count: weights.count) }
    var remaining = capacity
    var open = Set(weights.indices.filter { weights[$0] > 0 })
    while !open.isEmpty, remaining > 1e-9 {
        let totalWeight = open.reduce(0.0) { $0 + weights[$1] }
        // Children whose demand fits in their weighted part are satisfied and leave the round.
        let satisfied = open.filter { demands[$0] - shares[$0] <= remaining * weights[$0] / totalWeight }
        if satisfied.isEmpty {
            for i in open { shares[i] += remaining * weights[i] / totalWeight }
            remaining = 0
            break
        }
        for i in satisfied {
            let extra = demands[i] - shares[i]
            shares[i] = demands[i]
            remaining -= extra
            open.remove(i)
        }
    }
    let totalWeight = weights.reduce(0, +)
    if remaining > 1e-9, totalWeight > 0 {
        for i in weights.indices { shares[i] += remaining * weights[i] / totalWeight }
    }
    return shares
}

/// The shaper of one host: the global buckets and every plugin's node.
public final class Shaper: @unchecked Sendable {
    /// How often shares are recomputed (the window over which demand is measured).
    public static let allocationInterval: UInt64 = 100_000_000
    /// Demand floor of an idle child: enough to start; it is blocked and wants more a window later.
    static let idleDemand: Double = 16_384

    public private(set) var globalLimit: [Double]      // per direction; .infinity = unlimited
    var global: [TokenBucket]
    public private(set) var plugins: [String: PluginShaper] = [:]
    private var lastAllocation: UInt64

    public init(up: UInt64, down: UInt64, now: UInt64) {
        globalLimit = [Self.rate(up), Self.rate(down)]
        global = globalLimit.map { TokenBucket(rate: $0, now: now) }
        lastAllocation = now
    }

    /// 0 = unlimited.
    static func rate(_ bytesPerSecond: UInt64) -> Double { bytesPerSecond == 0 ? .infinity : Double(bytesPerSecond) }

    @discardableResult
    public func addPlugin(_ name: String, weight: UInt32, up: UInt64, down: UInt64, now: UInt64) -> PluginShaper {
        let node = PluginShaper(shaper: self, name: name, weight: Double(max(1, weight)),
                                limit: [Self.rate(up), Self.rate(down)], now: now)
        plugins[name] = node
        allocate(now: now)
        return node
    }

    public func setGlobal(up: UInt64, down: UInt64, now: UInt64) {
        globalLimit = [Self.rate(up), Self.rate(down)]
        for d in 0..<2 { global[d].setRate(globalLimit[d], now: now, forgiveDebtBeyond: 0) }
        allocate(now: now)
    }

    /// Recomputes shares once the allocation interval has passed (called on every admit/charge).
    @inline(__always)
    func tick(now: UInt64) {
        if now &- lastAllocation >= Self.allocationInterval { allocate(now: now) }
    }

    /// Recomputes every share now and starts a new measuring window.
    public func allocate(now: UInt64) {
        let window = max(Double(now &- lastAllocation) / 1e9, 0.001)
        lastAllocation = now
        let nodes = plugins.values.sorted { $0.name < $1.name }
        for d in 0..<2 {
            global[d].refill(now: now)
            let demands = nodes.map { $0.demand(d, window: window) }
            let shares = weightedFairShare(capacity: globalLimit[d], weights: nodes.map(\.weight), demands: demands)
            for (node, share) in zip(nodes, shares) {
                if d == 0 {
                    node.active = globalLimit.contains { $0.isFinite } || node.limit.contains { $0.isFinite }
                        || node.conns.contains { $0.rate.contains { $0.isFinite } }
                }
                // A share never exceeds the plugin's own limit.
                node.setShare(d, min(node.limit[d], share), now: now)
                node.allocateConnections(d, window: window, now: now)
            }
        }
        for node in nodes { node.resetWindow() }
    }
}

/// A plugin's node: its limit (config ∧ manifest, changeable at run time), weight, current share,
/// bucket, and its connections. Lives as long as the host (across restarts of the plugin).
public final class PluginShaper: @unchecked Sendable {
    unowned let shaper: Shaper
    public let name: String
    public private(set) var weight: Double
    public private(set) var limit: [Double]
    public private(set) var share: [Double]
    var bucket: [TokenBucket]
    var conns: Set<ConnShaper> = []
    var bytesInWindow: [Double] = [0, 0]
    var blockedInWindow: [Bool] = [false, false]
    /// Time connections of this plugin spent waiting on tokens, per direction.
    public private(set) var waitNanoseconds: [UInt64] = [0, 0]

    init(shaper: Shaper, name: String, weight: Double, limit: [Double], now: UInt64) {
        self.shaper = shaper
        self.name = name
        self.weight = weight
        self.limit = limit
        share = limit
        bucket = limit.map { TokenBucket(rate: $0, now: now) }
    }

    /// Whether anything on this plugin's path is limited (else the session skips the shaper, and
    /// an unshaped plugin pays nothing). Updated by every allocation.
    public internal(set) var active = false

    public func setLimit(up: UInt64, down: UInt64, now: UInt64) {
        limit = [Shaper.rate(up), Shaper.rate(down)]
        shaper.allocate(now: now)
    }

    /// What the plugin asks of the global level for the next window.
    func demand(_ d: Int, window: Double) -> Double {
        if blockedInWindow[d] { return limit[d] }
        return min(limit[d], bytesInWindow[d] / window * 1.5 + Shaper.idleDemand)
    }

    func setShare(_ d: Int, _ rate: Double, now: UInt64) {
        share[d] = rate
        bucket[d].setRate(rate, now: now)
    }

    func allocateConnections(_ d: Int, window: Double, now: UInt64) {
        let list = Array(conns)
        guard !list.isEmpty else { return }
        let capacity = share[d]
        let demands = list.map { c -> Double in
            if c.blockedInWindow[d] { return c.rate[d] }
            return min(c.rate[d], c.bytesInWindow[d] / window * 1.5 + Shaper.idleDemand)
        }
        let shares = weightedFairShare(capacity: capacity, weights: list.map(\.weight), demands: demands)
        for (c, s) in zip(list, shares) {
            // A connection's own bucket is about fairness, not the cap (the plugin bucket is):
            // its debt is forgiven beyond one burst so a share that grows applies at once.
            c.bucket[d].setRate(min(c.rate[d], s), now: now, forgiveDebtBeyond: 65_536)
        }
    }

    func resetWindow() {
        bytesInWindow = [0, 0]
        blockedInWindow = [false, false]
        for c in conns {
            c.bytesInWindow = [0, 0]
            c.blockedInWindow = [false, false]
        }
    }

    /// A connection's node (TCP stream or UDP socket); `close` it when the socket goes.
    public func openConnection(now: UInt64) -> ConnShaper {
        let c = ConnShaper(plugin: self, now: now)
        conns.insert(c)
        return c
    }

    func closeConnection(_ c: ConnShaper, now: UInt64) {
        for d in 0..<2 { c.stopWaiting(d, now: now) }
        conns.remove(c)
    }

    // MARK: Admission

    /// Whether `conn` may start an operation in direction `d` now (every bucket on its path has
    /// tokens). When not, the wait starts counting and the connection counts as blocked.
    ///
    /// `borrow`: a connection without a rate of its own may go past its fair-share bucket while
    /// its plugin still has tokens (so the plugin's grant is used even when some connections are
    /// idle for a moment). The session first serves connections within their share, then the
    /// borrowers, so borrowing never takes a busy sibling's share.
    public func admit(_ conn: ConnShaper, _ direction: ShapingDirection, now: UInt64, borrow: Bool = true) -> Bool {
        let d = direction.rawValue
        shaper.tick(now: now)
        shaper.global[d].refill(now: now)
        bucket[d].refill(now: now)
        conn.bucket[d].refill(now: now)
        let own = conn.bucket[d].ready || (borrow && !conn.rate[d].isFinite)
        if shaper.global[d].ready && bucket[d].ready && own {
            conn.stopWaiting(d, now: now)
            return true
        }
        if conn.waitingSince[d] == 0 { conn.waitingSince[d] = max(now, 1) }
        conn.blockedInWindow[d] = true
        blockedInWindow[d] = true
        return false
    }

    /// Takes `bytes` from all three buckets.
    public func charge(_ conn: ConnShaper, _ direction: ShapingDirection, bytes: Int, now: UInt64) {
        let d = direction.rawValue
        shaper.tick(now: now)
        shaper.global[d].refill(now: now)
        bucket[d].refill(now: now)
        conn.bucket[d].refill(now: now)
        shaper.global[d].take(bytes)
        bucket[d].take(bytes)
        conn.bucket[d].take(bytes)
        bytesInWindow[d] += Double(bytes)
        conn.bytesInWindow[d] += Double(bytes)
    }

    /// Nanoseconds until `conn` may be admitted in `d`, if nothing else takes tokens meanwhile.
    public func delay(_ conn: ConnShaper, _ direction: ShapingDirection) -> UInt64 {
        let d = direction.rawValue
        return max(shaper.global[d].nanosecondsUntilReady, bucket[d].nanosecondsUntilReady,
                   conn.bucket[d].nanosecondsUntilReady)
    }

    fileprivate func addWait(_ d: Int, _ nanoseconds: UInt64) { waitNanoseconds[d] &+= nanoseconds }

    private var publishedWait: [UInt64] = [0, 0]
    /// Wait time (ns, per direction) added since the last call, for the metrics counter.
    public func takeUnpublishedWait() -> [UInt64] {
        defer { publishedWait = waitNanoseconds }
        return [waitNanoseconds[0] &- publishedWait[0], waitNanoseconds[1] &- publishedWait[1]]
    }
}

/// A connection's node: its rate (conn_set_rate; `.infinity` = only the plugin's grant), weight
/// (conn_set_weight, 1...1000, default 100) and bucket.
public final class ConnShaper: Hashable, @unchecked Sendable {
    unowned let plugin: PluginShaper
    public private(set) var weight: Double = 100
    public private(set) var rate: [Double] = [.infinity, .infinity]
    var bucket: [TokenBucket]
    var bytesInWindow: [Double] = [0, 0]
    var blockedInWindow: [Bool] = [false, false]
    var waitingSince: [UInt64] = [0, 0]

    init(plugin: PluginShaper, now: UInt64) {
        self.plugin = plugin
        bucket = [TokenBucket(rate: .infinity, now: now), TokenBucket(rate: .infinity, now: now)]
    }

    /// conn_set_rate: 0 = no rate of its own. Always inside the plugin's grant (the plugin
    /// bucket caps it whatever the value).
    public func setRate(up: UInt64, down: UInt64, now: UInt64) {
        rate = [Shaper.rate(up), Shaper.rate(down)]
        plugin.shaper.allocate(now: now)   // sets the bucket: min(rate, its share of the plugin)
    }

    /// conn_set_weight, clamped to 1...1000.
    public func setWeight(_ w: UInt32) { weight = Double(min(1000, max(1, w))) }

    public func close(now: UInt64) { plugin.closeConnection(self, now: now) }

    func stopWaiting(_ d: Int, now: UInt64) {
        guard waitingSince[d] != 0 else { return }
        if now > waitingSince[d] { plugin.addWait(d, now - waitingSince[d]) }
        waitingSince[d] = 0
    }

    public static func == (a: ConnShaper, b: ConnShaper) -> Bool { a === b }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }
}

extension PluginShaper {
    /// For /status: limits and shares in bytes/s (0 = unlimited).
    var status: StatusDocument.PluginStatus.RateStatus {
        func bytes(_ r: Double) -> UInt64 { r.isFinite ? UInt64(r) : 0 }
        return .init(upLimit: bytes(limit[0]), downLimit: bytes(limit[1]), upShare: bytes(share[0]), downShare: bytes(share[1]),
                     weight: Int(weight), waitSecondsUp: Double(waitNanoseconds[0]) / 1e9,
                     waitSecondsDown: Double(waitNanoseconds[1]) / 1e9)
    }
}
