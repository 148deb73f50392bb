// Tracker announces (BEP 3 HTTP with compact peers, BEP 23) over connections the core makes for us;
// udp:// URLs go to UDPTrackers.swift (BEP 15).
// One announce at a time per torrent; tiers are tried in order, the next URL after a failure.
import PeerhostSDK
import BitTorrentProtocol

/// An HTTP announce in progress on one connection.
final class TrackerSession {
    let torrent: InfoHash
    let url: String
    var reader = HTTPResponseReader()
    var done = false
    init(torrent: InfoHash, url: String) { self.torrent = torrent; self.url = url }
}

extension BitTorrentPlugin {
    var trackerPeerWant: Int { 80 }

    func announce(_ t: Torrent, event: AnnounceEvent?) {
        let urls = t.trackers.flatMap { $0 }.filter { $0.hasPrefix("http://") || $0.hasPrefix("udp://") }
        guard !urls.isEmpty, !t.announcing else {
            t.nextAnnounce = now + 1_800
            return
        }
        let url = urls[t.trackerIndex % urls.count]
        if url.hasPrefix("udp://") {
            // BEP 15 (UDPTrackers.swift); numWant -1 lets the tracker choose.
            udpAnnounce(t, url, AnnounceRequest(infoHash: t.infoHash.bytes, peerID: peerID, port: settings.listenPort,
                                                uploaded: t.totalUploaded, downloaded: t.totalDownloaded, left: t.bytesLeft,
                                                event: event, numWant: trackerPeerWant, key: trackerKey))
            return
        }
        let tracker: HTTPTracker
        do {
            tracker = try HTTPTracker(url: url)
        } catch {
            t.lastTrackerError = "\(error)"
            t.trackerIndex += 1
            t.nextAnnounce = now + 60
            return
        }
        let request = AnnounceRequest(infoHash: t.infoHash.bytes, peerID: peerID, port: settings.listenPort,
                                      uploaded: t.totalUploaded, downloaded: t.totalDownloaded, left: t.bytesLeft,
                                      event: event, numWant: trackerPeerWant, key: trackerKey)
        let bytes = tracker.announceRequestBytes(request)
        do {
            let r = try host.connect(tracker.connectAddress)
            pending[r] = .trackerConnect(t.infoHash)
            t.announcing = true
            pendingAnnounces[t.infoHash] = (url, bytes, event)
        } catch {
            trackerFailed(t, url, "connect: \(error)")
        }
    }

    var trackerKey: UInt32 { UInt32(truncatingIfNeeded: peerID.prefix(12).suffix(4).reduce(0) { $0 << 8 | UInt32($1) }) }

    func trackerConnected(_ hash: InfoHash, _ result: Result<Int64, PluginError>) {
        guard let t = torrents[hash], let (url, bytes, event) = pendingAnnounces.removeValue(forKey: hash) else {
            if case .success(let c) = result { try? host.close(Connection(c)) }
            return
        }
        switch result {
        case .failure(let e):
            trackerFailed(t, url, "connect: \(e)")
        case .success(let c):
            let conn = Connection(c)
            let s = TrackerSession(torrent: hash, url: url)
            trackerSessions[conn] = s
            if event == .stopped { t.announcing = false }
            do {
                var rest = bytes[...]
                while !rest.isEmpty {
                    let b = try host.allocBuffer(with: rest.prefix(16_384))
                    rest = rest.dropFirst(b.count)
                    try host.send(conn, b)
                }
            } catch {
                trackerSessions[conn] = nil
                try? host.close(conn)
                trackerFailed(t, url, "send: \(error)")
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
            if let t = torrents[s.torrent] { trackerFailed(t, s.url, "\(error)") }
        }
    }

    func trackerClosed(_ s: TrackerSession) {
        guard !s.done else { return }
        do {
            try s.reader.finishAtEOF()
            trackerFinished(s)
        } catch {
            s.done = true
            if let t = torrents[s.torrent] { trackerFailed(t, s.url, "\(error)") }
        }
    }

    func trackerFinished(_ s: TrackerSession) {
        s.done = true
        for (c, x) in trackerSessions where x === s { trackerSessions[c] = nil; try? host.close(c) }
        guard let t = torrents[s.torrent] else { return }
        t.announcing = false
        t.announcedStarted = true
        do {
            let response = try AnnounceResponse.parse(bencoded: s.reader.body)
            t.lastTrackerError = nil
            t.trackerPeers = response.peers.count
            for peer in response.peers { addAddress(t, peer.address, source: "tracker") }
            t.nextAnnounce = now + Double(max(response.minInterval ?? 60, min(response.interval, 3_600)))
            connectMore(t)
        } catch {
            trackerFailed(t, s.url, "\(error)")
        }
    }

    func trackerFailed(_ t: Torrent, _ url: String, _ why: String) {
        t.announcing = false
        t.lastTrackerError = "\(url): \(why)"
        t.trackerIndex += 1
        t.nextAnnounce = now + 30
        host.log(.info, "bittorrent: \(t.displayName): tracker \(url): \(why)")
    }
}
