// How often a plugin may send to a multicast group it joined (DESIGN.md: multicast is
// "rate-limited"). A datagram to a group reaches every host on the link, so the core caps it per
// socket regardless of the plugin's bandwidth grant: a burst of `burst` datagrams, then one every
// `intervalNanoseconds`. BEP 14 asks a client for at most one announce a minute (several infohashes
// fit one datagram), so an honest plugin never meets the cap; a hostile one can send no more than
// 6 datagrams a minute after its burst. A refused datagram is dropped and counted as a denial.

struct MulticastSendBudget {
    static let burst = 8
    static let intervalNanoseconds: UInt64 = 10_000_000_000
    static let refusal = "multicast rate limit: \(burst) datagrams, then one every \(intervalNanoseconds / 1_000_000_000) s"

    private var tokens = burst
    private var refilledAt: UInt64 = 0

    init(now: UInt64 = 0) { refilledAt = now }

    /// Takes one datagram's worth; false when the budget is spent.
    mutating func take(now: UInt64) -> Bool {
        if now > refilledAt {
            let earned = (now - refilledAt) / Self.intervalNanoseconds
            if earned > 0 {
                tokens = min(Self.burst, tokens + Int(min(earned, UInt64(Self.burst))))
                refilledAt += earned * Self.intervalNanoseconds
            }
        }
        if tokens >= Self.burst { refilledAt = max(refilledAt, now) }   // a full bucket earns nothing while idle
        guard tokens > 0 else { return false }
        tokens -= 1
        return true
    }
}
