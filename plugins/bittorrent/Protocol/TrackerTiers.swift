// Which tracker to announce to, and when (BEP 12 multitracker "announce-list" tiers, plus the
// timing rules of BEP 3/15: announce again after "interval", never sooner than "min interval",
// back off after failures).

/// BEP 12: tiers are tried in order; inside a tier the URLs are shuffled once, and a URL that
/// answers moves to the front of its tier. A torrent without "announce-list" is one tier of its
/// "announce" URL.
public struct TrackerTiers: Sendable, Equatable {
    public private(set) var tiers: [[String]]
    var tier = 0
    var index = 0

    public init<G: RandomNumberGenerator>(announceList: [[String]], announce: String? = nil, using g: inout G) {
        var t = announceList.map { $0.filter { !$0.isEmpty } }.filter { !$0.isEmpty }
        if t.isEmpty, let announce, !announce.isEmpty { t = [[announce]] }
        for i in t.indices { t[i].shuffle(using: &g) }
        tiers = t
    }

    public var isEmpty: Bool { tiers.isEmpty }

    /// The URL to try now; nil when there is none.
    public var current: String? { tiers.isEmpty ? nil : tiers[tier][index] }

    /// `url` answered: it goes to the front of its tier and the next round starts from tier 0.
    public mutating func succeeded(_ url: String) {
        guard let ti = tiers.firstIndex(where: { $0.contains(url) }), let ui = tiers[ti].firstIndex(of: url) else { return }
        tiers[ti].remove(at: ui)
        tiers[ti].insert(url, at: 0)
        tier = 0
        index = 0
    }

    /// `url` failed: the next URL of its tier, then the next tier; true when every URL has been tried
    /// in this round (start again at the first, after a back-off).
    @discardableResult
    public mutating func failed(_ url: String) -> Bool {
        guard current == url else { return false }
        index += 1
        if index < tiers[tier].count { return false }
        index = 0
        tier += 1
        if tier < tiers.count { return false }
        tier = 0
        return true
    }
}

/// When the next announce to one tracker is due.
public struct AnnounceSchedule: Sendable, Equatable {
    /// First retry after a failure, doubled per consecutive failure, at most `maxBackoff`.
    public var firstBackoff: Double = 60
    public var maxBackoff: Double = 3600
    public private(set) var failures = 0
    public private(set) var next: Double
    var minInterval: Double = 0
    var lastAnnounce = -Double.infinity

    public init(now: Double) { next = now }

    public func isDue(now: Double) -> Bool { now >= next }

    /// A reply came: next regular announce after `interval` (at least `min interval`, and at least
    /// 30 s whatever a tracker says).
    public mutating func succeeded(interval: Int, minInterval: Int?, now: Double) {
        failures = 0
        lastAnnounce = now
        self.minInterval = Double(max(minInterval ?? 0, 0))
        next = now + max(Double(interval), self.minInterval, 30)
    }

    public mutating func failed(now: Double) {
        failures += 1
        next = now + min(maxBackoff, firstBackoff * Double(1 << min(failures - 1, 16)))
    }

    /// An event (completed, stopped) or a need for peers may announce early, but not before
    /// "min interval" has passed since the last announce. Returns whether it may go now.
    public mutating func announceEarly(now: Double) -> Bool {
        guard now - lastAnnounce >= minInterval else { next = lastAnnounce + minInterval; return false }
        next = now
        return true
    }
}
