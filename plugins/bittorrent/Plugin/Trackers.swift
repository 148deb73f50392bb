// Tracker announces and scrapes (BEP 3 HTTP with compact peers, BEP 23; BEP 48 scrape) over
// connections the core makes for us; udp:// URLs go to UDPTrackers.swift (BEP 15).
// One announce and one scrape at a time per torrent, both to the tracker the torrent is using: tiers
// are tried in order, the next URL after a failed announce. A scrape never moves to another tracker.
import PeerhostSDK
import BitTorrentProtocol

/// What a request to a tracker is for.
enum TrackerPurpose: Equatable {
    case announce(AnnounceEvent?)
    case scrape
}

/// One HTTP request to a tracker, waiting for its connection: the torrent, the URL, the bytes.
struct TrackerCall {
    let torrent: InfoHash
    let url: String
    let bytes: [UInt8]
    let purpose: TrackerPurpose
}

/// An HTTP request in progress on one connection.
final class TrackerSession {
    let call: TrackerCall
    var reader = HTTPResponseReader()
    var done = false
    init(_ call: TrackerCall) { self.call = call }
}

/// The swarm as the tracker counted it in its last scrape reply.
struct SwarmScrape {
    let stats: ScrapeStats
    let url: String
    let at: Double
}

extension Torrent {
    /// The announce URLs this plugin speaks, in tier order.
    var trackerURLs: [String] { trackers.flatMap { $0 }.filter { $0.hasPrefix("http://") || $0.hasPrefix("udp://") } }

    /// The tracker in use: announces move on from it after a failure, scrapes follow.
    var currentTrackerURL: String? {
        let urls = trackerURLs
        return urls.isEmpty ? nil : urls[trackerIndex % urls.count]
    }

    func setInFlight(_ purpose: TrackerPurpose, _ busy: Bool) {
        if purpose == .scrape { scraping = busy } else { announcing = busy }
    }
}

extension BitTorrentPlugin {
    var trackerPeerWant: Int { 80 }

    /// Seconds between scrapes of a running torrent's tracker. The swarm's counts are for people to
    /// read; 30 minutes (as Transmission) keeps a session of many torrents from loading the tracker.
    /// A started or completed announce brings the next scrape forward, so the counts include us.
    var scrapeInterval: Double { 1_800 }

    func announce(_ t: Torrent, event: AnnounceEvent?) {
        guard let url = t.currentTrackerURL, !t.announcing else {
            t.nextAnnounce = now + 1_800
            return
        }
        let request = AnnounceRequest(infoHash: t.infoHash.bytes, peerID: peerID, port: settings.listenPort,
                                      uploaded: t.totalUploaded, downloaded: t.totalDownloaded, left: t.bytesLeft,
                                      event: event, numWant: trackerPeerWant, key: trackerKey)
        if url.hasPrefix("udp://") {
            udpCall(t, url, .announce(request))   // BEP 15 (UDPTrackers.swift)
            return
        }
        guard let tracker = httpTracker(t, url, for: .announce(event)) else { return }
        httpCall(t, tracker, TrackerCall(torrent: t.infoHash, url: url, bytes: tracker.announceRequestBytes(request),
                                         purpose: .announce(event)))
    }

    /// Asks the torrent's tracker how many seeders and leechers it knows (BEP 48 / BEP 15 scrape).
    func scrape(_ t: Torrent) {
        t.nextScrape = now + scrapeInterval
        guard let url = t.currentTrackerURL, !t.scraping else { return }
        if url.hasPrefix("udp://") {
            udpCall(t, url, .scrape)
            return
        }
        guard let tracker = httpTracker(t, url, for: .scrape) else { return }
        guard let bytes = tracker.scrapeRequestBytes(infoHashes: [t.infoHash.bytes]) else {
            scrapeFailed(t, url, "no scrape URL: the path's last part does not start with \"announce\" (BEP 48)")
            return
        }
        httpCall(t, tracker, TrackerCall(torrent: t.infoHash, url: url, bytes: bytes, purpose: .scrape))
    }

    /// The URL's HTTP tracker; nil once the request is failed for a URL that is not one.
    func httpTracker(_ t: Torrent, _ url: String, for purpose: TrackerPurpose) -> HTTPTracker? {
        do {
            return try HTTPTracker(url: url)
        } catch {
            trackerCallFailed(t, url, purpose, "\(error)")
            return nil
        }
    }

    /// Opens the core-mediated connection for an HTTP tracker request.
    func httpCall(_ t: Torrent, _ tracker: HTTPTracker, _ call: TrackerCall) {
        do {
            let r = try host.connect(tracker.connectAddress)
            pending[r] = .trackerConnect(call)
            t.setInFlight(call.purpose, true)
        } catch {
            trackerCallFailed(t, call.url, call.purpose, "connect: \(error)")
        }
    }

    var trackerKey: UInt32 { UInt32(truncatingIfNeeded: peerID.prefix(12).suffix(4).reduce(0) { $0 << 8 | UInt32($1) }) }

    func trackerConnected(_ call: TrackerCall, _ result: Result<Int64, PluginError>) {
        guard let t = torrents[call.torrent] else {
            if case .success(let c) = result { try? host.close(Connection(c)) }
            return
        }
        switch result {
        case .failure(let e):
            trackerCallFailed(t, call.url, call.purpose, "connect: \(e)")
        case .success(let c):
            let conn = Connection(c)
            trackerSessions[conn] = TrackerSession(call)
            // A stopped announce is the torrent's last word: nothing waits for its reply.
            if call.purpose == .announce(.stopped) { t.announcing = false }
            do {
                var rest = call.bytes[...]
                while !rest.isEmpty {
                    let b = try host.allocBuffer(with: rest.prefix(16_384))
                    rest = rest.dropFirst(b.count)
                    try host.send(conn, b)
                }
            } catch {
                trackerSessions[conn] = nil
                try? host.close(conn)
                trackerCallFailed(t, call.url, call.purpose, "send: \(error)")
            }
        }
    }

    func trackerData(_ s: TrackerSession, _ buffer: Buffer) {
        defer { host.free(buffer) }
        guard !s.done else { return }
        do {
            if try s.reader.feed(buffer.array) { trackerFinished(s) }
        } catch {
            s.done = true
            if let t = torrents[s.call.torrent] { trackerCallFailed(t, s.call.url, s.call.purpose, "\(error)") }
        }
    }

    func trackerClosed(_ s: TrackerSession) {
        guard !s.done else { return }
        do {
            try s.reader.finishAtEOF()
            trackerFinished(s)
        } catch {
            s.done = true
            if let t = torrents[s.call.torrent] { trackerCallFailed(t, s.call.url, s.call.purpose, "\(error)") }
        }
    }

    func trackerFinished(_ s: TrackerSession) {
        s.done = true
        for (c, x) in trackerSessions where x === s { trackerSessions[c] = nil; try? host.close(c) }
        guard let t = torrents[s.call.torrent] else { return }
        do {
            switch s.call.purpose {
            case .announce(let event): announced(t, event, try AnnounceResponse.parse(bencoded: s.reader.body))
            case .scrape: scraped(t, s.call.url, try ScrapeResponse.parse(bencoded: s.reader.body))
            }
        } catch {
            trackerCallFailed(t, s.call.url, s.call.purpose, "\(error)")
        }
    }

    /// A tracker's announce reply, over HTTP or UDP.
    func announced(_ t: Torrent, _ event: AnnounceEvent?, _ response: AnnounceResponse) {
        t.announcing = false
        t.announcedStarted = true
        t.lastTrackerError = nil
        t.trackerPeers = response.peers.count
        for peer in response.peers { addAddress(t, peer.address, source: "tracker") }
        t.nextAnnounce = now + Double(max(response.minInterval ?? 60, min(response.interval, 3_600)))
        if event == .started || event == .completed { t.nextScrape = now }
        connectMore(t)
    }

    /// A tracker's scrape reply, over HTTP or UDP: the entry for this torrent's infohash.
    func scraped(_ t: Torrent, _ url: String, _ response: ScrapeResponse) {
        guard let stats = response.files[t.infoHash.bytes] else {
            scrapeFailed(t, url, "the reply has no entry for this torrent")
            return
        }
        t.scraping = false
        t.swarm = SwarmScrape(stats: stats, url: url, at: now)
        t.scrapeError = nil
    }

    func trackerCallFailed(_ t: Torrent, _ url: String, _ purpose: TrackerPurpose, _ why: String) {
        if purpose == .scrape { scrapeFailed(t, url, why) } else { trackerFailed(t, url, why) }
    }

    func trackerFailed(_ t: Torrent, _ url: String, _ why: String) {
        t.announcing = false
        t.lastTrackerError = "\(url): \(why)"
        t.trackerIndex += 1
        t.nextAnnounce = now + 30
        host.log(.info, "bittorrent: \(t.displayName): tracker \(url): \(why)")
    }

    /// A failed scrape keeps the last counts (they say when they were taken) and waits for the next
    /// scrape; it never moves the torrent to another tracker: announces decide that.
    func scrapeFailed(_ t: Torrent, _ url: String, _ why: String) {
        t.scraping = false
        t.scrapeError = "\(url): \(why)"
        host.log(.info, "bittorrent: \(t.displayName): scrape \(url): \(why)")
    }
}
