// Control methods (manifest [[control]]): what `peerhost ctl bittorrent …` calls. Plain C
// functions, called by the runner between callbacks on the plugin's thread. Results are JSON;
// a refused request answers {"error": "…"} naming the bad input.
import PeerhostSDK
import BitTorrentProtocol

struct AddError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

extension BitTorrentPlugin {
    func insert(_ t: Torrent) {
        torrents[t.infoHash] = t
        order.append(t.infoHash)
        if t.info != nil, t.picker == nil, t.state != .checking { t.makePicker() }
        t.nextAnnounce = 0
    }

    /// Adds a .torrent (bytes) or a magnet link (text starting "magnet:"). `dir` is "" for the
    /// default download directory or an absolute directory the operator granted; `peerList`
    /// holds HOST:PORT words.
    func add(_ input: [UInt8], dir: String, peerList: String) throws(AddError) -> Torrent {
        let saveRoot = dir.isEmpty ? settings.downloadDir : dir
        guard !saveRoot.split(separator: "/").contains("..") else { throw AddError("--dir \(dir): \"..\" is not allowed") }
        if !dir.isEmpty && !dir.hasPrefix("/") { throw AddError("--dir \(dir): must be an absolute path") }
        var peerAddresses: [String] = []
        for word in peerList.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\n" }) {
            guard let a = Self.peerAddress(String(word)) else { throw AddError("--peer \(word): expected HOST:PORT") }
            peerAddresses.append(a)
        }
        let t: Torrent
        if input.starts(with: Array("magnet:".utf8)) {
            let magnet: MagnetLink
            do { magnet = try MagnetLink.parse(String(decoding: input, as: UTF8.self)) } catch { throw AddError("\(error)") }
            if let existing = torrents[magnet.infoHash] { addPeers(existing, peerAddresses); return existing }
            t = Torrent(infoHash: magnet.infoHash, meta: nil, name: magnet.displayName ?? magnet.infoHash.hex, saveRoot: saveRoot,
                        trackers: magnet.trackers.map { [$0] }, paused: false)
            t.magnetURI = magnet.uri
            for p in magnet.peers { if let a = Self.peerAddress(p) { addAddress(t, a, source: "magnet") } }
            insert(t)
        } else {
            let meta: Metainfo
            do { meta = try Metainfo.parse(input) } catch { throw AddError("\(error)") }
            if let existing = torrents[meta.infoHash] { addPeers(existing, peerAddresses); return existing }
            t = Torrent(infoHash: meta.infoHash, meta: meta, name: meta.info.name, saveRoot: saveRoot,
                        trackers: meta.trackers, paused: false)
            insert(t)
            putInfo(t)
            startCheck(t)
        }
        addPeers(t, peerAddresses)
        t.startedAt = now
        saveResume(t)
        host.log(.info, "bittorrent: added \(t.displayName) (\(t.infoHash.hex)) → \(saveRoot)")
        return t
    }

    func addPeers(_ t: Torrent, _ addresses: [String]) {
        for a in addresses {
            if t.addresses[a] == nil { t.addresses[a] = AddressState(source: "peer") } else { t.addresses[a]!.source = "peer" }
            t.addresses[a]!.failures = 0
            t.addresses[a]!.lastAttempt = -1_000
        }
        if !addresses.isEmpty { t.resumeDirty = true; connectMore(t) }
    }

    /// "1.2.3.4:6881", "[::1]:6881", "host:6881" or "tcp:…" → "tcp:…".
    static func peerAddress(_ word: String) -> String? {
        let w = word.hasPrefix("tcp:") ? String(word.dropFirst(4)) : word
        guard let colon = w.lastIndex(of: ":"), let port = UInt16(w[w.index(after: colon)...]), port > 0 else { return nil }
        let hostPart = w[..<colon]
        guard !hostPart.isEmpty else { return nil }
        return "tcp:\(hostPart):\(port)"
    }

    func find(_ id: String) -> Torrent? {
        let key = id.lowercased()
        if let h = InfoHash(hex: key), let t = torrents[h] { return t }
        // A unique prefix of the infohash works too, like git's short ids.
        let matches = order.filter { $0.hex.hasPrefix(key) }
        return matches.count == 1 && key.count >= 4 ? torrents[matches[0]] : nil
    }

    func pause(_ t: Torrent) {
        guard !t.paused else { return }
        t.paused = true
        t.state = .paused
        for c in t.peers { if let p = peers[c] { dropPeer(p, reason: "paused") } }
        for a in t.assembling.values { a.free(host: host); blockSlotsHeld -= a.received }
        t.assembling.removeAll()
        t.makePicker()
        announce(t, event: .stopped)
        saveResume(t)
    }

    func resume(_ t: Torrent) {
        guard t.paused else { return }
        t.paused = false
        t.state = t.info == nil ? .metadata : (t.have.isComplete ? .seeding : .downloading)
        if t.info != nil && t.picker == nil { t.makePicker() }
        t.nextAnnounce = 0
        t.announcedStarted = false
        for k in t.addresses.keys { t.addresses[k]!.failures = 0; t.addresses[k]!.lastAttempt = -1_000 }
        saveResume(t)
        connectMore(t)
    }

    func remove(_ t: Torrent) {
        for c in t.peers { if let p = peers[c] { dropPeer(p, reason: "removed") } }
        for a in t.assembling.values { a.free(host: host); blockSlotsHeld -= a.received }
        for f in t.files where f.id != nil || f.opening { poolFilesOpen -= 1; if let id = f.id { try? host.fileClose(id) } }
        if let check = checks[t.infoHash] { for case let h? in check.handles { checkFilesOpen -= 1; try? host.fileClose(h) } }
        if t.active { announce(t, event: .stopped) }
        torrents[t.infoHash] = nil
        order.removeAll { $0 == t.infoHash }
        checks[t.infoHash] = nil
        openWaitingFiles()   // its files made room
        deleteResume(t.infoHash, infoLength: t.meta?.rawInfo.count ?? 0)
        host.log(.info, "bittorrent: removed \(t.displayName) (\(t.infoHash.hex)); its files stay in \(t.saveRoot)")
    }

    // MARK: JSON

    func describe(_ t: Torrent, into w: inout JSONWriter, detailed: Bool) {
        let t0 = now
        w.beginObject(nil)
        w.field("id", t.infoHash.hex)
        w.field("name", t.displayName)
        w.field("state", t.state.name)
        if case .failed(let why) = t.state { w.field("error", why) }
        w.field("progress", t.progress)
        w.field("size", t.info?.totalLength ?? 0)
        w.field("pieces", t.info?.pieceCount ?? 0)
        w.field("pieces_have", t.have.setCount)
        w.field("down_rate", t.downRate.rate(now: t0))
        w.field("up_rate", t.upRate.rate(now: t0))
        w.field("downloaded", t.totalDownloaded)
        w.field("uploaded", t.totalUploaded)
        if let a = t.startedAt, let c = t.completedAt { w.field("download_seconds", c - a) }
        w.field("ratio", t.ratio)
        w.field("peers", t.peers.count)
        w.field("dir", t.saveRoot)
        w.field("rate_limit_up", Int64(t.rateUp))
        w.field("rate_limit_down", Int64(t.rateDown))
        if let c = checks[t.infoHash], let info = t.info { w.field("checked", Double(c.nextPiece) / Double(max(info.pieceCount, 1))) }
        if detailed {
            w.field("hash_failures", t.hashFailures)
            w.field("saved_pieces", t.savedPieces)
            w.field("wasted", t.wasted)
            w.field("banned", t.bannedCount)
            w.field("known_peers", t.addresses.count)
            if let e = t.lastTrackerError { w.field("tracker_error", e) }
            w.field("announced", t.announcedStarted && t.lastTrackerError == nil)
            if let s = t.swarm {   // the tracker's last scrape (Trackers.swift)
                w.beginObject("swarm")
                w.field("seeders", s.stats.complete)
                w.field("leechers", s.stats.incomplete)
                w.field("downloaded", s.stats.downloaded)
                w.field("tracker", s.url)
                w.field("age_seconds", Int(t0 - s.at))
                w.endObject()
            }
            if let e = t.scrapeError { w.field("scrape_error", e) }
            w.beginArray("trackers"); for tier in t.trackers { for u in tier { w.field(nil, u) } }; w.endArray()
            if let info = t.info {
                w.field("piece_length", info.pieceLength)
                w.beginArray("files")
                for (i, f) in info.files.enumerated() {
                    w.beginObject(nil)
                    w.field("path", info.relativePath(ofFile: i).joined(separator: "/"))
                    w.field("size", f.length)
                    w.endObject()
                }
                w.endArray()
            }
            w.beginArray("peer_list")
            for c in t.peers {
                guard let p = peers[c] else { continue }
                w.beginObject(nil)
                w.field("address", p.address)
                w.field("client", String(decoding: p.remotePeerID.prefix(8), as: UTF8.self))
                w.field("down_rate", p.downRate.rate(now: t0))
                w.field("up_rate", p.upRate.rate(now: t0))
                w.field("choked", p.amChoking)
                w.field("choking_us", p.peerChoking)
                w.field("interested", p.peerInterested)
                w.field("interesting", p.amInterested)
                w.field("uploaded", p.uploaded)
                w.field("requests", p.outstanding.count)
                w.endObject()
            }
            w.endArray()
        }
        w.endObject()
    }

    func listJSON() -> String {
        var w = JSONWriter()
        w.beginObject()
        w.beginArray("torrents")
        for h in order { if let t = torrents[h] { describe(t, into: &w, detailed: false) } }
        w.endArray()
        w.endObject()
        return w.text
    }

    /// The status method's document: details for /status and peerhost_bt_* metrics.
    func statusJSON() -> String {
        var w = JSONWriter()
        w.beginObject()
        w.beginObject("details")
        w.field("listening", listening)
        if let e = listenError { w.field("listen_error", e) }
        w.field("connections", peers.count)
        w.beginObject("files")   // torrent files open (withFile's pool)
        w.field("open", poolFilesOpen + checkFilesOpen)
        w.field("peak", openFilesPeak)
        w.field("max", settings.maxOpenFiles)
        w.field("closed_for_room", filesClosedForRoom)
        w.field("synced_before_close", filesSyncedBeforeClose)
        w.endObject()
        w.beginObject("dht")   // DHT.swift
        w.field("enabled", dhtEnabled)
        w.field("nodes", dht.nodeCount)
        w.field("bootstrapped", dht.bootstrapped)
        w.field("peers_found", dht.peersFound)
        if let e = dht.bindError { w.field("udp_error", e) }
        w.endObject()
        w.beginObject("lpd")   // LocalDiscovery.swift
        w.field("enabled", settings.lpd)
        w.field("joined", lpd.socket != nil)
        w.field("announces_sent", lpd.announcesSent)
        w.field("announces_received", lpd.announcesReceived)
        w.field("peers_found", lpd.peersFound)
        if let e = lpd.error { w.field("error", e) }
        w.endObject()
        w.beginArray("torrents")
        for h in order { if let t = torrents[h] { describe(t, into: &w, detailed: false) } }
        w.endArray()
        // One line per torrent for `peerhost status` (the host prints details.summary as is).
        w.beginArray("summary")
        let t1 = now
        for h in order {
            guard let t = torrents[h] else { continue }
            let percent = String(Double(Int(t.progress * 1000)) / 10)
            w.field(nil, "\(h.hex.prefix(12)) \(t.state.name) \(percent)% down \(Self.rate(t.downRate.rate(now: t1))) up \(Self.rate(t.upRate.rate(now: t1))) peers \(t.peers.count) ratio \(String(Double(Int(t.ratio * 100)) / 100)) \(t.displayName)")
        }
        w.endArray()
        w.endObject()
        w.beginArray("metrics")
        func metric(_ name: String, _ type: String, _ help: String, _ value: Double, _ hash: String?) {
            w.beginObject(nil)
            w.field("name", name)
            w.field("type", type)
            w.field("help", help)
            if let hash { w.beginObject("labels"); w.field("infohash", hash); w.endObject() }
            w.field("value", value)
            w.endObject()
        }
        let t0 = now
        metric("peerhost_bt_torrents", "gauge", "Torrents in the session.", Double(torrents.count), nil)
        metric("peerhost_bt_connections", "gauge", "Peer connections open.", Double(peers.count), nil)
        metric("peerhost_bt_dht_nodes", "gauge", "Nodes in the DHT routing table.", Double(dht.nodeCount), nil)
        for h in order {
            guard let t = torrents[h] else { continue }
            let x = h.hex
            metric("peerhost_bt_downloaded_bytes_total", "counter", "Payload bytes downloaded.", Double(t.totalDownloaded), x)
            metric("peerhost_bt_uploaded_bytes_total", "counter", "Payload bytes uploaded.", Double(t.totalUploaded), x)
            metric("peerhost_bt_progress_ratio", "gauge", "Share of the torrent verified (0..1).", t.progress, x)
            metric("peerhost_bt_peers", "gauge", "Connected peers.", Double(t.peers.count), x)
            metric("peerhost_bt_download_rate_bytes", "gauge", "Download rate, bytes/s (5 s average).", t.downRate.rate(now: t0), x)
            metric("peerhost_bt_upload_rate_bytes", "gauge", "Upload rate, bytes/s (5 s average).", t.upRate.rate(now: t0), x)
            metric("peerhost_bt_pieces_verified_total", "counter", "Pieces that passed their SHA-1 check this session.", Double(t.piecesVerified), x)
            metric("peerhost_bt_hash_failures_total", "counter", "Pieces that failed their SHA-1 check.", Double(t.hashFailures), x)
            metric("peerhost_bt_wasted_bytes_total", "counter", "Bytes received that were not asked for or arrived twice.", Double(t.wasted), x)
            metric("peerhost_bt_banned_peers_total", "counter", "Peers banned for sending bad data.", Double(t.bannedCount), x)
            if let s = t.swarm {
                metric("peerhost_bt_swarm_seeders", "gauge", "Seeders the tracker counted in its last scrape.", Double(s.stats.complete), x)
                metric("peerhost_bt_swarm_leechers", "gauge", "Leechers the tracker counted in its last scrape.", Double(s.stats.incomplete), x)
            }
        }
        w.endArray()
        w.endObject()
        return w.text
    }

    static func rate(_ bytesPerSecond: Double) -> String {
        let units = ["B/s", "KiB/s", "MiB/s", "GiB/s"]
        var v = bytesPerSecond, i = 0
        while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        return "\(Double(Int(v * 10)) / 10) \(units[i])"
    }

    static func error(_ why: String) -> String {
        var w = JSONWriter()
        w.beginObject(); w.field("error", why); w.endObject()
        return w.text
    }
}

// ---- the exported control methods (manifest.toml) ----------------------------------------------

private var engine: BitTorrentPlugin? { PluginExport.current as? BitTorrentPlugin }

@_cdecl("bt_add")
public func btAdd(_ data: UnsafePointer<UInt8>?, _ count: Int, _ dir: UnsafePointer<CChar>?, _ peerList: UnsafePointer<CChar>?) -> ph_bytes {
    guard let e = engine else { return PluginExport.bytes(BitTorrentPlugin.error("the plugin is not started")) }
    do {
        let t = try e.add(PluginExport.array(data, count), dir: PluginExport.string(dir), peerList: PluginExport.string(peerList))
        var w = JSONWriter()
        e.describe(t, into: &w, detailed: false)
        return PluginExport.bytes(w.text)
    } catch {
        return PluginExport.bytes(BitTorrentPlugin.error(error.description))
    }
}

@_cdecl("bt_list")
public func btList() -> ph_bytes {
    guard let e = engine else { return PluginExport.bytes(BitTorrentPlugin.error("the plugin is not started")) }
    return PluginExport.bytes(e.listJSON())
}

@_cdecl("bt_info")
public func btInfo(_ id: UnsafePointer<CChar>?) -> ph_bytes {
    guard let e = engine else { return PluginExport.bytes(BitTorrentPlugin.error("the plugin is not started")) }
    let key = PluginExport.string(id)
    guard let t = e.find(key) else { return PluginExport.bytes(BitTorrentPlugin.error("no torrent \(key)")) }
    var w = JSONWriter()
    e.describe(t, into: &w, detailed: true)
    return PluginExport.bytes(w.text)
}

private func act(_ id: UnsafePointer<CChar>?, _ body: (BitTorrentPlugin, Torrent) -> Void) -> ph_bytes {
    guard let e = engine else { return PluginExport.bytes(BitTorrentPlugin.error("the plugin is not started")) }
    let key = PluginExport.string(id)
    guard let t = e.find(key) else { return PluginExport.bytes(BitTorrentPlugin.error("no torrent \(key)")) }
    body(e, t)
    var w = JSONWriter()
    e.describe(t, into: &w, detailed: false)
    return PluginExport.bytes(w.text)
}

@_cdecl("bt_pause")
public func btPause(_ id: UnsafePointer<CChar>?) -> ph_bytes { act(id) { e, t in e.pause(t) } }

@_cdecl("bt_resume")
public func btResume(_ id: UnsafePointer<CChar>?) -> ph_bytes { act(id) { e, t in e.resume(t) } }

@_cdecl("bt_remove")
public func btRemove(_ id: UnsafePointer<CChar>?) -> ph_bytes { act(id) { e, t in e.remove(t) } }

@_cdecl("bt_add_peer")
public func btAddPeer(_ id: UnsafePointer<CChar>?, _ address: UnsafePointer<CChar>?) -> ph_bytes {
    let word = PluginExport.string(address)
    guard let a = BitTorrentPlugin.peerAddress(word) else { return PluginExport.bytes(BitTorrentPlugin.error("peer \(word): expected HOST:PORT")) }
    return act(id) { e, t in e.addPeers(t, [a]) }
}

/// `peerhost ctl bittorrent limit ID UP DOWN`: bytes/s for the torrent as a whole (0 = none).
@_cdecl("bt_limit")
public func btLimit(_ id: UnsafePointer<CChar>?, _ up: Int64, _ down: Int64) -> ph_bytes {
    guard up >= 0, down >= 0 else { return PluginExport.bytes(BitTorrentPlugin.error("limits are bytes/s, 0 or more")) }
    return act(id) { e, t in
        t.rateUp = UInt64(up); t.rateDown = UInt64(down)
        t.resumeDirty = true
        e.applyRates(t)
    }
}

@_cdecl("bt_status")
public func btStatus() -> ph_bytes {
    guard let e = engine else { return PluginExport.bytes(BitTorrentPlugin.error("the plugin is not started")) }
    return PluginExport.bytes(e.statusJSON())
}
