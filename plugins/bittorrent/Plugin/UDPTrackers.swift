// UDP tracker announces and scrapes (BEP 15) on the plugin's UDP socket (DHT.swift binds it),
// through the UDPTrackerClient state machine (Protocol/UDPTracker.swift): one client per tracker
// host:port, its connection id shared by every torrent talking to it. A tracker named by a host name
// is resolved through the core first (UDP_SEND takes numeric addresses only). Results feed the same
// bookkeeping as HTTP ones (Trackers.swift).
import PeerhostSDK
import BitTorrentProtocol

/// What a torrent asks a UDP tracker.
enum UDPTrackerRequest {
    case announce(AnnounceRequest)
    case scrape

    var purpose: TrackerPurpose {
        switch self {
        case .announce(let r): .announce(r.event)
        case .scrape: .scrape
        }
    }
}

/// One UDP tracker (by "host:port" of its URL).
struct UDPTrackerEntry {
    /// nil while the host name is being resolved.
    var client: UDPTrackerClient?
    var resolveError: String?
    /// Requests waiting for the address: torrent, URL, request.
    var queued: [(InfoHash, String, UDPTrackerRequest)] = []
    /// Requests in flight → torrent, URL and what for.
    var requests: [Int: (InfoHash, String, TrackerPurpose)] = [:]
}

final class UDPTrackerState {
    var trackers: [String: UDPTrackerEntry] = [:]
    /// The client's numeric endpoint ("udp:IP:PORT") → tracker key, to route replies.
    var byEndpoint: [String: String] = [:]
}

extension BitTorrentPlugin {
    /// "udp://host:port/anything" → (host without brackets, port); nil when malformed.
    static func parseUDPTrackerURL(_ url: String) -> (host: String, port: UInt16)? {
        guard url.hasPrefix("udp://") else { return nil }
        var rest = url.dropFirst(6)
        if let end = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) { rest = rest[..<end] }
        guard let colon = rest.lastIndex(of: ":"), let port = UInt16(rest[rest.index(after: colon)...]), port > 0 else { return nil }
        var host = rest[..<colon]
        if host.hasPrefix("[") && host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        guard !host.isEmpty else { return nil }
        return (String(host), port)
    }

    /// A client for a numeric address. BEP 15's 8 retransmissions (15 s · 2^n) would keep a dead
    /// tracker's torrent from trying its next tracker for over an hour: 2 give up after 105 s.
    static func udpTrackerClient(_ ip: String, _ port: UInt16) -> UDPTrackerClient {
        var c = UDPTrackerClient(host: ip, port: port)
        c.maxRetransmissions = 2
        return c
    }

    /// Starts a UDP announce or scrape for `t` to `url` (Trackers.swift's `announce` and `scrape`
    /// dispatch here).
    func udpCall(_ t: Torrent, _ url: String, _ request: UDPTrackerRequest) {
        let purpose = request.purpose
        guard let (h, port) = Self.parseUDPTrackerURL(url) else {
            trackerCallFailed(t, url, purpose, "not a udp://HOST:PORT URL")
            return
        }
        guard dht.socket != nil else {
            trackerCallFailed(t, url, purpose, dht.bindError ?? "the UDP socket is not bound yet")
            return
        }
        let key = InetText.hostPort(h, port)
        t.setInFlight(purpose, true)
        if var e = udpTrackers.trackers[key] {
            if let error = e.resolveError, e.client == nil {
                trackerCallFailed(t, url, purpose, error)
                udpTrackers.trackers[key] = nil   // resolve again next time
                return
            }
            e.queued.append((t.infoHash, url, request))
            udpTrackers.trackers[key] = e
            udpTrackersFlush()
            return
        }
        var e = UDPTrackerEntry()
        e.queued.append((t.infoHash, url, request))
        if InetText.parse(h) != nil {
            e.client = Self.udpTrackerClient(h, port)
            udpTrackers.byEndpoint[e.client!.endpoint] = key
            udpTrackers.trackers[key] = e
            udpTrackersFlush()
        } else {
            udpTrackers.trackers[key] = e
            do {
                let r = try host.resolve(h)
                pending[r] = .udp(.trackerResolve(key))
            } catch {
                udpTrackerResolved(key, .failure(error), nil)
            }
        }
    }

    func udpTrackerResolved(_ key: String, _ result: Result<Int64, PluginError>, _ buffer: Buffer?) {
        guard var e = udpTrackers.trackers[key], let colon = key.lastIndex(of: ":"),
              let port = UInt16(key[key.index(after: colon)...]) else { return }
        var address: String?
        if case .success = result, let buffer {
            let lines = String(decoding: buffer.bytes, as: UTF8.self).split(separator: "\n").map(String.init)
            address = lines.first { InetText.parseIPv4($0) != nil } ?? lines.first
        }
        guard let address, InetText.parse(address) != nil else {
            let why: String
            if case .failure(let err) = result { why = "resolve: \(err)" } else { why = "resolve: no address" }
            e.resolveError = why
            let queued = e.queued
            e.queued = []
            udpTrackers.trackers[key] = e
            for (h, url, request) in queued { if let t = torrents[h] { trackerCallFailed(t, url, request.purpose, why) } }
            return
        }
        e.client = Self.udpTrackerClient(address, port)
        udpTrackers.byEndpoint[e.client!.endpoint] = key
        udpTrackers.trackers[key] = e
        udpTrackersFlush()
    }

    /// Hands queued requests to their clients and sends what they produce.
    func udpTrackersFlush() {
        guard dht.socket != nil else { return }
        let t0 = now
        for key in Array(udpTrackers.trackers.keys) {
            guard var e = udpTrackers.trackers[key], var client = e.client, !e.queued.isEmpty else { continue }
            for (h, url, request) in e.queued {
                let (id, send) = switch request {
                case .announce(let r): client.announce(r, now: t0)
                case .scrape: client.scrape(infoHashes: [h.bytes], now: t0)
                }
                e.requests[id] = (h, url, request.purpose)
                for d in send { udpSend(d, to: client.endpoint) }
            }
            e.queued = []
            e.client = client
            udpTrackers.trackers[key] = e
        }
    }

    /// A datagram from a tracker's endpoint: true when it was one (consumed).
    func udpTrackerDatagram(_ from: String, _ bytes: [UInt8]) -> Bool {
        guard let key = udpTrackers.byEndpoint[from], var e = udpTrackers.trackers[key], var client = e.client else { return false }
        let (events, send) = client.receive(bytes, now: now)
        for d in send { udpSend(d, to: client.endpoint) }
        e.client = client
        udpTrackers.trackers[key] = e
        udpTrackerEvents(key, events)
        return true
    }

    func udpTrackersTick() {
        let t0 = now
        for key in Array(udpTrackers.trackers.keys) {
            guard var e = udpTrackers.trackers[key], var client = e.client,
                  let due = client.nextTimeout, t0 >= due else { continue }
            let (events, send) = client.tick(now: t0)
            for d in send { udpSend(d, to: client.endpoint) }
            e.client = client
            udpTrackers.trackers[key] = e
            udpTrackerEvents(key, events)
        }
    }

    func udpTrackerEvents(_ key: String, _ events: [UDPTrackerEvent]) {
        for event in events {
            let id: Int
            switch event {
            case .announced(let r, _), .scraped(let r, _), .error(let r, _): id = r
            }
            guard let (hash, url, purpose) = udpTrackers.trackers[key]?.requests.removeValue(forKey: id),
                  let t = torrents[hash] else { continue }
            switch (event, purpose) {
            case (.announced(_, let response), .announce(let e)): announced(t, e, response)
            case (.scraped(_, let response), .scrape): scraped(t, url, response)
            case (.error(_, let error), _): trackerCallFailed(t, url, purpose, "\(error)")
            default: trackerCallFailed(t, url, purpose, "the reply is for another kind of request")   // the client matches kinds already
            }
        }
    }
}
