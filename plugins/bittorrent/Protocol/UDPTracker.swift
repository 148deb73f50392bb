// UDP tracker protocol (BEP 15): packet codecs and a per-tracker client state machine.
//
// The client never touches a socket or a clock: the plugin calls announce/scrape/receive/tick with
// the current time and sends the datagrams they return to `endpoint`. The machine keeps the
// connection id for 60 s (BEP 15: a client may use it for one minute), gives every packet a fresh
// random transaction id, ignores datagrams whose transaction id it did not send, and retransmits
// after 15·2^n s (n = 0…8, then the request fails). A request whose connection id expired while
// it waited goes back through connect, as in BEP 15's "announce times out" example.

public enum UDPTracker {
    public static let protocolID: UInt64 = 0x417_2710_1980

    public enum Action: UInt32, Sendable { case connect = 0, announce = 1, scrape = 2, error = 3 }

    public static func connectRequest(transactionID: UInt32) -> [UInt8] {
        var b: [UInt8] = []
        b.appendBE(protocolID); b.appendBE(Action.connect.rawValue); b.appendBE(transactionID)
        return b
    }

    public static func announceRequest(connectionID: UInt64, transactionID: UInt32, _ r: AnnounceRequest) -> [UInt8] {
        var b: [UInt8] = []
        b.reserveCapacity(98)
        b.appendBE(connectionID); b.appendBE(Action.announce.rawValue); b.appendBE(transactionID)
        b.append(contentsOf: fixed20(r.infoHash)); b.append(contentsOf: fixed20(r.peerID))
        b.appendBE(r.downloaded); b.appendBE(r.left); b.appendBE(r.uploaded)
        b.appendBE(r.event?.udpCode ?? 0)
        b.appendBE(UInt32(0))                        // IP address: 0 = the packet's source
        b.appendBE(r.key)
        b.appendBE(Int32(clamping: r.numWant))       // -1 = tracker's default
        b.appendBE(r.port)
        return b
    }

    public static func scrapeRequest(connectionID: UInt64, transactionID: UInt32, infoHashes: [[UInt8]]) -> [UInt8] {
        var b: [UInt8] = []
        b.appendBE(connectionID); b.appendBE(Action.scrape.rawValue); b.appendBE(transactionID)
        for h in infoHashes.prefix(maxScrapeHashes) { b.append(contentsOf: fixed20(h)) }
        return b
    }

    /// "Up to about 74 torrents can be scraped at once."
    public static let maxScrapeHashes = 74

    static func fixed20(_ b: [UInt8]) -> [UInt8] {
        b.count == 20 ? b : Array((b + [UInt8](repeating: 0, count: 20)).prefix(20))
    }

    /// A decoded tracker datagram.
    public enum Response: Sendable, Equatable {
        case connect(transactionID: UInt32, connectionID: UInt64)
        case announce(transactionID: UInt32, AnnounceResponse)
        case scrape(transactionID: UInt32, [ScrapeStats])
        case error(transactionID: UInt32, message: String)

        public var transactionID: UInt32 {
            switch self {
            case .connect(let t, _), .announce(let t, _), .scrape(let t, _), .error(let t, _): t
            }
        }
    }

    /// `ipv6`: the tracker was reached over IPv6, so announce replies carry 18-byte peers.
    public static func decodeResponse(_ d: [UInt8], ipv6: Bool = false) throws(TrackerError) -> Response {
        guard d.count >= 8 else { throw .udp("datagram of \(d.count) bytes is shorter than 8") }
        let actionRaw: UInt32 = readBE(d, 0)
        let tid: UInt32 = readBE(d, 4)
        guard let action = Action(rawValue: actionRaw) else { throw .udp("unknown action \(actionRaw)") }
        switch action {
        case .connect:
            guard d.count >= 16 else { throw .udp("connect response of \(d.count) bytes is shorter than 16") }
            return .connect(transactionID: tid, connectionID: readBE(d, 8))
        case .announce:
            guard d.count >= 20 else { throw .udp("announce response of \(d.count) bytes is shorter than 20") }
            let interval: UInt32 = readBE(d, 8), leechers: UInt32 = readBE(d, 12), seeders: UInt32 = readBE(d, 16)
            let list = Array(d[20...])
            let peers = ipv6 ? CompactPeers.lenientIPv6(list) : CompactPeers.lenientIPv4(list)
            return .announce(transactionID: tid, AnnounceResponse(
                interval: Int(min(interval, UInt32(Int32.max))), peers: peers,
                complete: Int(min(seeders, UInt32(Int32.max))), incomplete: Int(min(leechers, UInt32(Int32.max)))))
        case .scrape:
            var stats: [ScrapeStats] = []
            var i = 8
            while i + 12 <= d.count {
                let s: UInt32 = readBE(d, i), c: UInt32 = readBE(d, i + 4), l: UInt32 = readBE(d, i + 8)
                stats.append(ScrapeStats(complete: Int(s), downloaded: Int(c), incomplete: Int(l)))
                i += 12
            }
            return .scrape(transactionID: tid, stats)
        case .error:
            var msg = Array(d[8...])
            while msg.last == 0 { msg.removeLast() }   // some trackers NUL-terminate
            return .error(transactionID: tid, message: String(decoding: msg.prefix(512), as: UTF8.self))
        }
    }
}

public enum UDPTrackerEvent: Sendable, Equatable {
    case announced(request: Int, AnnounceResponse)
    /// Stats in the order of the request's infohashes.
    case scraped(request: Int, ScrapeResponse)
    /// The tracker's error packet, a malformed reply, or no reply after the last retransmission.
    case error(request: Int, TrackerError)
}

public struct UDPTrackerClient: Sendable {
    public let host: String
    public let port: UInt16
    /// BEP 15 timing; tests scale `timeoutBase` down.
    public var timeoutBase: Double = 15
    public var maxRetransmissions = 8
    public var connectionIDLifetime: Double = 60

    enum Kind: Sendable { case announce(AnnounceRequest), scrape([[UInt8]]) }
    struct Pending: Sendable {
        let id: Int
        let kind: Kind
        var n = 0                    // retransmission exponent
        var transactionID: UInt32?   // nil while waiting for a connection id
        var deadline = Double.infinity
    }

    var rng: SplitMix64
    var nextRequestID = 1
    var pending: [Pending] = []
    var connectionID: UInt64?
    var connectionIDTime = -Double.infinity
    var connectTransaction: UInt32?
    var connectN = 0
    var connectDeadline = Double.infinity

    public init(host: String, port: UInt16, rng seed: UInt64? = nil) {
        self.host = host
        self.port = port
        self.rng = SplitMix64(seed: seed)
    }

    /// Where to send the datagrams: "udp:host:port".
    public var endpoint: String { "udp:" + InetText.hostPort(host, port) }
    var ipv6: Bool { host.contains(":") }

    /// Requests not yet answered.
    public var pendingCount: Int { pending.count }

    /// Queues an announce; returns its request id and the datagrams to send now.
    public mutating func announce(_ r: AnnounceRequest, now: Double) -> (request: Int, send: [[UInt8]]) {
        enqueue(.announce(r), now: now)
    }

    public mutating func scrape(infoHashes: [[UInt8]], now: Double) -> (request: Int, send: [[UInt8]]) {
        enqueue(.scrape(Array(infoHashes.prefix(UDPTracker.maxScrapeHashes))), now: now)
    }

    mutating func enqueue(_ kind: Kind, now: Double) -> (request: Int, send: [[UInt8]]) {
        let id = nextRequestID
        nextRequestID += 1
        pending.append(Pending(id: id, kind: kind))
        return (id, flush(now: now))
    }

    /// Feeds one datagram from the tracker. Unknown transaction ids are ignored (no event, nothing to send).
    public mutating func receive(_ datagram: [UInt8], now: Double) -> (events: [UDPTrackerEvent], send: [[UInt8]]) {
        guard datagram.count >= 8 else { return ([], []) }
        let tid: UInt32 = readBE(datagram, 4)
        if tid == connectTransaction {
            connectTransaction = nil
            connectDeadline = .infinity
            switch Result(catching: { () throws(TrackerError) in try UDPTracker.decodeResponse(datagram, ipv6: ipv6) }) {
            case .success(.connect(_, let cid)):
                connectionID = cid
                connectionIDTime = now
                connectN = 0
                return ([], flush(now: now))
            case .success(.error(_, let message)):
                return (failWaiting(.udp("tracker refused connect: \(message)")), [])
            case .success(let other):
                return (failWaiting(.udp("expected a connect response, got \(other)")), [])
            case .failure(let e):
                return (failWaiting(e), [])
            }
        }
        guard let index = pending.firstIndex(where: { $0.transactionID == tid }) else { return ([], []) }
        let p = pending.remove(at: index)
        let event: UDPTrackerEvent
        switch Result(catching: { () throws(TrackerError) in try UDPTracker.decodeResponse(datagram, ipv6: ipv6) }) {
        case .success(.announce(_, let response)):
            if case .announce = p.kind { event = .announced(request: p.id, response) }
            else { event = .error(request: p.id, .udp("announce response to a scrape request")) }
        case .success(.scrape(_, let stats)):
            if case .scrape(let hashes) = p.kind {
                var files: [[UInt8]: ScrapeStats] = [:]
                for (h, s) in zip(hashes, stats) { files[h] = s }
                event = .scraped(request: p.id, ScrapeResponse(files: files))
            } else { event = .error(request: p.id, .udp("scrape response to an announce request")) }
        case .success(.error(_, let message)):
            event = .error(request: p.id, .udp("tracker error: \(message)"))
        case .success(.connect):
            event = .error(request: p.id, .udp("connect response to a request"))
        case .failure(let e):
            event = .error(request: p.id, e)
        }
        return ([event], [])
    }

    /// The earliest time `tick` has work (a retransmission), nil when idle.
    public var nextTimeout: Double? {
        let t = min(connectDeadline, pending.map(\.deadline).min() ?? .infinity)
        return t.isFinite ? t : nil
    }

    /// Retransmits what timed out; fails requests past their last retransmission.
    public mutating func tick(now: Double) -> (events: [UDPTrackerEvent], send: [[UInt8]]) {
        var events: [UDPTrackerEvent] = []
        var send: [[UInt8]] = []
        if connectTransaction != nil, now >= connectDeadline {
            connectTransaction = nil
            connectDeadline = .infinity
            if connectN >= maxRetransmissions {
                events += failWaiting(.udp("no connect response from \(endpoint) after \(connectN + 1) attempts"))
                connectN = 0
            } else {
                connectN += 1
            }
        }
        var i = 0
        while i < pending.count {
            guard pending[i].transactionID != nil, now >= pending[i].deadline else { i += 1; continue }
            if pending[i].n >= maxRetransmissions {
                let p = pending.remove(at: i)
                events.append(.error(request: p.id, .udp("no response from \(endpoint) after \(p.n + 1) attempts")))
                continue
            }
            pending[i].n += 1
            pending[i].transactionID = nil   // resent by flush, through connect if the id expired
            pending[i].deadline = .infinity
            connectN = max(connectN, pending[i].n)
            i += 1
        }
        send += flush(now: now)
        return (events, send)
    }

    /// Sends every waiting request if the connection id is fresh, else one connect.
    mutating func flush(now: Double) -> [[UInt8]] {
        let waiting = pending.indices.filter { pending[$0].transactionID == nil }
        guard !waiting.isEmpty else { return [] }
        if let cid = connectionID, now - connectionIDTime < connectionIDLifetime {
            var out: [[UInt8]] = []
            for i in waiting {
                let tid = freshTransactionID()
                pending[i].transactionID = tid
                pending[i].deadline = now + timeoutBase * Double(1 << pending[i].n)
                switch pending[i].kind {
                case .announce(let r): out.append(UDPTracker.announceRequest(connectionID: cid, transactionID: tid, r))
                case .scrape(let hashes): out.append(UDPTracker.scrapeRequest(connectionID: cid, transactionID: tid, infoHashes: hashes))
                }
            }
            return out
        }
        connectionID = nil
        guard connectTransaction == nil else { return [] }
        connectN = max(connectN, waiting.map { pending[$0].n }.max() ?? 0)
        let tid = freshTransactionID()
        connectTransaction = tid
        connectDeadline = now + timeoutBase * Double(1 << connectN)
        return [UDPTracker.connectRequest(transactionID: tid)]
    }

    mutating func failWaiting(_ error: TrackerError) -> [UDPTrackerEvent] {
        var events: [UDPTrackerEvent] = []
        pending.removeAll { p in
            guard p.transactionID == nil else { return false }
            events.append(.error(request: p.id, error))
            return true
        }
        return events
    }

    mutating func freshTransactionID() -> UInt32 {
        while true {
            let t = UInt32(truncatingIfNeeded: rng.next())
            if t != connectTransaction && !pending.contains(where: { $0.transactionID == t }) { return t }
        }
    }
}
