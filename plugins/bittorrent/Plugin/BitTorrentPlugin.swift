// The BitTorrent plugin: a BitTorrent client on PeerhostSDK. The core owns every socket and file;
// this code speaks the protocol. Data path for a downloaded block: the core receives into a pool
// slot → the framer names the block's byte ranges → they are copied once into the block's own
// slot → the piece's SHA-1 is computed over those slots → each slot is written to its file by the
// core (file_write, no copy) → the slot comes back and is freed. Uploads: file_read into a slot
// (the core reads straight into it) → that slot is sent after a 13-byte header.
//
// Everything runs on the plugin's one thread (ABI contract); nothing blocks.
import PeerhostSDK
import BitTorrentProtocol
#if canImport(Glibc)
import Glibc
#endif

/// Operator settings: the plugin's table in peerhost.toml, passed as JSON.
struct Settings {
    var listen = "tcp:0.0.0.0:6881"
    /// Default save root: a storage grant of the manifest (relative to <data_dir>/bittorrent/).
    var downloadDir = "downloads"
    var maxPeersPerTorrent = 50
    var maxConnections = 200
    /// Peers unchoked by tit-for-tat (plus one optimistic).
    var uploadSlots = 4
    /// Slots the plugin may hold for blocks being assembled or written (of its pool's send half).
    var blockSlotBudget = 640
    /// Slots the plugin may hold for uploads being read or sent.
    var uploadSlotBudget = 192
    /// Pipelined requests per peer: the adaptive depth stays between these.
    var minQueueDepth = 8
    var maxQueueDepth = 256
    /// Announce our address in PEX and to trackers as this port (default: the listen port).
    var announcePort: UInt16?
    /// Time without a block from a peer with requests outstanding before its requests go elsewhere.
    var snubSeconds = 20.0
    /// Per-peer limits, bytes/s (0 = none), applied by the core's per-connection token buckets.
    var peerRateUp: UInt64 = 0
    var peerRateDown: UInt64 = 0
    /// Seconds between resume records while downloading (each waits for an fsync of the files).
    var resumeInterval = 30.0
    /// Local peer discovery (BEP 14) on the `net.multicast` grant (`lpd`, default on).
    var lpd = true
    /// Torrent files kept open at once, all torrents together; past it the least recently used
    /// idle one is closed (synced first if written). Each is a descriptor the core holds for us,
    /// counted in the host's `[tuning] plugin_descriptors` with every peer connection: a torrent of
    /// thousands of files must not spend them. 128 covers the files a few hundred peers read from.
    var maxOpenFiles = 128
    /// DHT and UDP socket settings (DHT.swift): `dht`, `dht_bootstrap`, `udp_listen`.
    var udp = UDPSettings(json: .object([:]))

    init(json: JSON) {
        udp = UDPSettings(json: json)   // DHT/UDP hook
        // The host passes the effective listen grants: the first TCP one is where peers reach us.
        if let s = json["listen"]?.string { listen = s }
        if let a = json["listen"]?.array, let tcp = a.compactMap(\.string).first(where: { $0.hasPrefix("tcp:") }) { listen = tcp }
        if let s = json["download_dir"]?.string { downloadDir = s }
        if let n = json["max_peers_per_torrent"]?.int, n > 0 { maxPeersPerTorrent = n }
        if let n = json["max_connections"]?.int, n > 0 { maxConnections = n }
        if let n = json["upload_slots"]?.int, n >= 0 { uploadSlots = n }
        if let n = json["announce_port"]?.int, n > 0, n < 65536 { announcePort = UInt16(n) }
        if let n = json["max_queue_depth"]?.int, n >= 1 { maxQueueDepth = n }
        if let n = json["peer_rate_up"]?.int, n >= 0 { peerRateUp = UInt64(n) }
        if let n = json["peer_rate_down"]?.int, n >= 0 { peerRateDown = UInt64(n) }
        if let n = json["resume_interval_s"]?.number, n >= 1, n <= 3600 { resumeInterval = n }
        if let b = json["lpd"]?.bool { lpd = b }
        if let n = json["max_open_files"]?.int, n >= 2 { maxOpenFiles = n }
    }

    var listenPort: UInt16 {
        if let p = announcePort { return p }
        if let colon = listen.lastIndex(of: ":"), let p = UInt16(listen[listen.index(after: colon)...]) { return p }
        return 6881
    }
}

/// What an outstanding host call was for.
enum Pending {
    case listen
    case connect(InfoHash, String)
    case trackerConnect(TrackerCall)
    case fileOpen(InfoHash, Int)
    case checkOpen(InfoHash, Int)
    case write(WriteJob)
    case read(ReadJob)
    case sync(InfoHash)
    /// The sync of a file closed to make room (torrent, file index).
    case evictSync(InfoHash, Int)
    case resumePut(InfoHash)
    case kvWrite
    case restore
    case restoreInfo(InfoHash, Int)
    /// DHT / UDP tracker calls (DHT.swift).
    case udp(UDPPending)
}

/// A verified block (or the part of it in one file) on its way to disk.
struct WriteJob {
    let torrent: InfoHash
    let piece: Int
    let span: FileSpan
}

/// A block being read, for an upload or a check: one file_read per file span into the same slot.
struct ReadJob {
    enum Purpose { case upload(Connection), check(piece: Int, block: Int) }
    let torrent: InfoHash
    let purpose: Purpose
    let request: BlockRequest
    let spans: [FileSpan]
    /// Read-only handles of a check; nil = the torrent's own files.
    var handles: [FileID?]? = nil
    var next = 0
    var filled = 0
}

func monotonicNow() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

public final class BitTorrentPlugin: Plugin {
    public let host: Host
    var settings = Settings(json: .object([:]))
    let peerID: [UInt8]
    var torrents: [InfoHash: Torrent] = [:]
    /// Order of addition, for stable listings.
    var order: [InfoHash] = []
    var peers: [Connection: PeerConnection] = [:]
    var trackerSessions: [Connection: TrackerSession] = [:]
    /// Resume saves waiting for their file syncs: torrent → syncs outstanding and the snapshot.
    var resumeSyncs: [InfoHash: (left: Int, value: [UInt8])] = [:]
    var pending: [Request: Pending] = [:]
    var listening = false
    var listenError: String?
    var restored = false
    var tickTimer: TimerID?
    var checks: [InfoHash: TorrentCheck] = [:]
    var restoring: [InfoHash: RestoreState] = [:]
    var tickCount = 0
    var choker = Choker()
    var blockSlotsHeld = 0
    /// Requests outstanding over every peer (the sum of their `outstanding` counts), kept as
    /// requests are sent, answered, rejected or returned: each needs a slot when its block arrives.
    var requestsOutstanding = 0
    var uploadSlotsHeld = 0
    /// Torrent files open or opening for reads and writes (bounded by `max_open_files`: withFile),
    /// a check's read-only ones (one piece's files), the most of both at once, and the clock that
    /// orders the uses. A check's files stay outside the bound: it holds only the few one piece
    /// spans, and could not wait for room that blocks waiting on its slots might hold.
    var poolFilesOpen = 0
    var checkFilesOpen = 0
    var openFilesPeak = 0
    /// Files closed to make room, and of those the ones synced first (answered PH_OK).
    var filesClosedForRoom = 0
    var filesSyncedBeforeClose = 0
    var fileUseClock: UInt64 = 0
    /// Files waiting for room to open, in the order they were asked for.
    var fileOpensWaiting: [(torrent: InfoHash, index: Int)] = []
    var connectsInFlight = 0
    var startedAt = monotonicNow()
    // DHT / UDP tracker hook: their state lives in DHT.swift and UDPTrackers.swift.
    let dht = DHTState()
    var lpd = LocalDiscoveryState()
    let udpTrackers = UDPTrackerState()

    public init(host: Host) {
        self.host = host
        var rng = SystemRandomNumberGenerator()
        // Azureus-style id: client "PH", version 0.1.0, then random bytes.
        peerID = Array("-PH0100-".utf8) + (0..<12).map { _ in UInt8.random(in: 0x30...0x7a, using: &rng) }
    }

    var now: Double { monotonicNow() }

    public func start(config: [UInt8]) throws(PluginError) {
        do {
            settings = Settings(json: try JSON.parse(config))
        } catch {
            host.log(.error, "bittorrent: config: \(error)")
            throw .invalid
        }
        let r = try host.listen(settings.listen)
        pending[r] = .listen
        udpStart()   // DHT / UDP tracker hook
        lpdStart()   // LocalDiscovery.swift
        // Resume: every torrent this plugin knew, from the store.
        try startRestore()
        tickTimer = try host.timer(after: 1_000_000_000, tag: 1)
        host.log(.info, "bittorrent: peer id \(String(decoding: peerID.prefix(8), as: UTF8.self))…, listening on \(settings.listen)")
    }

    public func stop() {
        for p in peers.values { p.releaseBuffers(host: host) }
        for t in torrents.values { for a in t.assembling.values { a.free(host: host) } }
    }

    // MARK: callbacks

    public func onAccept(listener: Connection, conn: Connection, peer: String) {
        guard peers.count < settings.maxConnections else { try? host.close(conn); return }
        let p = PeerConnection(conn: conn, outgoing: false, address: peer, now: now)
        peers[conn] = p
    }

    public func onData(conn: Connection, buffer: Buffer) {
        if let s = trackerSessions[conn] {
            trackerData(s, buffer)
            return
        }
        guard let p = peers[conn] else { host.free(buffer); return }
        receive(p, buffer)
    }

    public func onWritable(conn: Connection) {
        guard let p = peers[conn] else { return }
        p.blocked = false
        flush(p)
        serveUploads(p)
    }

    public func onClosed(conn: Connection, reason: PluginError?) {
        if let s = trackerSessions.removeValue(forKey: conn) {
            trackerClosed(s)
            return
        }
        guard let p = peers[conn] else { return }
        dropPeer(p, reason: reason.map { "closed: \($0)" } ?? "closed by peer", closeConnection: false)
    }

    public func onDatagram(socket: Connection, from: String, buffer: Buffer) {
        datagram(socket, from, buffer)   // DHT / UDP tracker hook
    }

    public func onTimer(id: TimerID, tag: UInt64) {
        tick()
        tickTimer = try? host.timer(after: 1_000_000_000, tag: 1)
    }

    public func onComplete(request: Request, result: Result<Int64, PluginError>, buffer: Buffer?) {
        guard let what = pending.removeValue(forKey: request) else {
            if let buffer { host.free(buffer) }
            return
        }
        switch what {
        case .listen:
            switch result {
            case .success: listening = true
            case .failure(let e):
                listenError = "listen on \(settings.listen): \(e)"
                host.log(.error, "bittorrent: \(listenError!) (outgoing connections still work)")
            }
            if let buffer { host.free(buffer) }
        case .connect(let hash, let address):
            connectsInFlight -= 1
            if let buffer { host.free(buffer) }
            connected(hash, address, result)
        case .trackerConnect(let call):
            if let buffer { host.free(buffer) }
            trackerConnected(call, result)
        case .fileOpen(let hash, let index):
            if let buffer { host.free(buffer) }
            fileOpened(hash, index, result)
        case .checkOpen(let hash, let index):
            if let buffer { host.free(buffer) }
            checkOpened(hash, index, result)
        case .write(let job):
            writeDone(job, result, buffer)
        case .read(let job):
            readDone(job, result, buffer)
        case .sync(let hash):
            if let buffer { host.free(buffer) }
            syncDone(hash, result)
        case .evictSync(let hash, let index):
            if let buffer { host.free(buffer) }
            evictionSynced(hash, index, result)
        case .resumePut(let hash):
            if let buffer { host.free(buffer) }
            torrents[hash]?.resumeSaving = false
            if case .success = result, let t = torrents[hash] { t.savedPieces = t.savingPieces }
            if case .failure(let e) = result { host.log(.warn, "bittorrent: saving resume data for \(hash.hex): \(e)") }
        case .kvWrite:
            if let buffer { host.free(buffer) }
            if case .failure(let e) = result { host.log(.warn, "bittorrent: store write: \(e)") }
        case .restore:
            restore(result, buffer)
        case .restoreInfo(let hash, let chunk):
            restoreInfo(hash, chunk, result, buffer)
        case .udp(let what):
            udpComplete(what, result, buffer)   // DHT / UDP tracker hook
        }
    }

    // MARK: the one-second tick

    func tick() {
        tickCount += 1
        let t0 = now
        for hash in order {
            guard let t = torrents[hash] else { continue }
            t.downRate.roll(t0); t.upRate.roll(t0)
            guard t.active else { continue }
            // No announce while checking: `left` is not known yet, and peers could not be used
            // (connectMore waits too). finishCheck makes the announce due.
            if t.state != .checking {
                if t0 >= t.nextAnnounce, !t.announcing { announce(t, event: t.announcedStarted ? nil : .started) }
                if t0 >= t.nextScrape, !t.scraping { scrape(t) }
            }
            connectMore(t)
            // Resume records wait for an fsync of the torrent's files: while data streams in, that
            // sync (and the writeback it forces) would throttle every write behind it, so a
            // downloading torrent records its progress every `resume_interval_s` (30); anything
            // else every 2 s.
            let every: Double = t.state == .downloading ? settings.resumeInterval : 2
            if t.resumeDirty, !t.resumeSaving, t0 - t.lastResumeSave >= every { saveResume(t) }
        }
        for p in Array(peers.values) {
            guard !p.closed else { continue }
            if !p.outstanding.isEmpty, t0 - p.lastPieceAt > settings.snubSeconds {
                // Snubbed: its requests go back to the picker for other peers.
                p.snubbed = true
                returnRequests(p)
            }
            if t0 - p.lastReceive > 180 { dropPeer(p, reason: "idle for 3 minutes"); continue }
            if p.remote == nil, t0 - p.connectedAt > 20 { dropPeer(p, reason: "no handshake within 20 s"); continue }
            if t0 - p.lastSend > 90 { send(p, .keepAlive) }
            if let t = p.torrent, tickCount % 60 == 0 { sendPex(p, t) }
            flush(p)
        }
        if tickCount % 10 == 0 { rechoke() }
        udpTick()   // DHT / UDP tracker hook
        // A check that ran out of slots goes on once some came back.
        for (hash, c) in checks where c.current == nil && c.opensPending == 0 {
            if let t = torrents[hash] { checkNextPiece(t, c) }
        }
    }

    // MARK: peers: connecting

    func connectMore(_ t: Torrent) {
        guard t.state != .checking, t.peers.count < settings.maxPeersPerTorrent, peers.count + connectsInFlight < settings.maxConnections else { return }
        let t0 = now
        var started = 0
        let seeding = t.state == .seeding
        for (address, state) in t.addresses where !state.connected && !state.ourselves && !(seeding && state.seed) && started < 8 {
            let backoff = state.failures == 0 ? 0 : min(300.0, 5.0 * Double(1 << min(state.failures, 6)))
            guard t0 - state.lastAttempt >= max(backoff, 1), !t.banned.contains(PeerConnection.banKey(of: address)) else { continue }
            t.addresses[address]!.lastAttempt = t0
            t.addresses[address]!.connected = true   // in flight: not tried twice
            do {
                let r = try host.connect(address)
                pending[r] = .connect(t.infoHash, address)
                connectsInFlight += 1
                started += 1
            } catch {
                t.addresses[address]!.connected = false
                t.addresses[address]!.failures += 1
                host.log(.debug, "bittorrent: connect \(address): \(error)")
            }
        }
    }

    func connected(_ hash: InfoHash, _ address: String, _ result: Result<Int64, PluginError>) {
        guard let t = torrents[hash] else {
            if case .success(let c) = result { try? host.close(Connection(c)) }
            return
        }
        switch result {
        case .failure(let e):
            t.addresses[address]?.connected = false
            t.addresses[address]?.failures += 1
            host.log(.debug, "bittorrent: \(t.displayName): connect \(address): \(e)")
        case .success(let c):
            let conn = Connection(c)
            guard t.active else { try? host.close(conn); t.addresses[address]?.connected = false; return }
            t.addresses[address]?.failures = 0
            let p = PeerConnection(conn: conn, outgoing: true, address: address, now: now)
            p.torrent = t
            peers[conn] = p
            t.peers.insert(conn)
            sendHandshake(p, t)
            flush(p)
        }
    }

    /// Adds a peer address to dial; true when it is new and kept (not known, not banned, under the
    /// 2000-address cap).
    @discardableResult
    func addAddress(_ t: Torrent, _ address: String, source: String) -> Bool {
        guard t.addresses[address] == nil, !t.banned.contains(PeerConnection.banKey(of: address)) else { return false }
        guard t.addresses.count < 2000 else { return false }
        t.addresses[address] = AddressState(source: source)
        return true
    }

    // MARK: peers: receiving

    func receive(_ p: PeerConnection, _ buffer: Buffer) {
        defer { host.free(buffer) }
        p.lastReceive = now
        let events: [PeerWireFramer.Event]
        do {
            events = try p.framer.feed(buffer.bytes)
        } catch {
            dropPeer(p, reason: "\(error)")
            return
        }
        let bytes = buffer.bytes
        for e in events {
            guard !p.closed else { return }
            switch e {
            case .handshake(let h): handshakeReceived(p, h)
            case .message(let m): handle(p, m)
            case .blockStart(let piece, let begin, let length): blockStarted(p, BlockRequest(piece: piece, begin: begin, length: length))
            case .blockData(let range):
                guard var r = p.receiving else { continue }
                if let b = r.buffer, let base = b.raw.data {
                    UnsafeMutableRawPointer(base + r.filled).copyMemory(from: bytes.baseAddress! + range.lowerBound, byteCount: range.count)
                }
                r.filled += range.count
                p.receiving = r
                p.downloaded += Int64(range.count)
                p.downRate.add(range.count, now: p.lastReceive)
                if let t = p.torrent { t.downloaded += Int64(range.count); t.downRate.add(range.count, now: p.lastReceive) }
            case .blockEnd: blockFinished(p)
            }
        }
        flush(p)
    }

    func handshakeReceived(_ p: PeerConnection, _ h: Handshake) {
        guard let hash = InfoHash(bytes: h.infoHash) else { dropPeer(p, reason: "bad infohash"); return }
        if p.outgoing {
            guard p.torrent?.infoHash == hash else { dropPeer(p, reason: "handshake for another torrent"); return }
        } else {
            guard let t = torrents[hash], t.active else {
                dropPeer(p, reason: "handshake for unknown torrent \(hash.hex)")
                return
            }
            guard t.state != .checking else { dropPeer(p, reason: "torrent is being checked"); return }
            guard !t.banned.contains(p.banKey) else { dropPeer(p, reason: "banned"); return }
            guard t.peers.count < settings.maxPeersPerTorrent else { dropPeer(p, reason: "peer limit"); return }
            p.torrent = t
            t.peers.insert(p.conn)
        }
        guard h.peerID != peerID else {
            if p.outgoing { p.torrent?.addresses[p.address]?.ourselves = true }
            dropPeer(p, reason: "connected to ourselves")
            return
        }
        if let t = p.torrent, t.peers.contains(where: { $0 != p.conn && peers[$0]?.remote?.peerID == h.peerID }) {
            dropPeer(p, reason: "already connected to this peer")
            return
        }
        p.remote = h
        try? host.setPeer(p.conn, id: h.peerID)
        guard let t = p.torrent else { return }
        applyRates(t)
        if !p.outgoing { sendHandshake(p, t) }
        sendInitialState(p, t)
    }

    func sendHandshake(_ p: PeerConnection, _ t: Torrent) {
        guard !p.handshakeSent else { return }
        p.handshakeSent = true
        enqueue(p, bytes: Handshake(infoHash: t.infoHash.bytes, peerID: peerID, reserved: handshakeReserved(t)).encoded())
    }

    /// After both handshakes: the extension handshake, then what we have.
    func sendInitialState(_ p: PeerConnection, _ t: Torrent) {
        if p.supportsExtensions {
            var ext = ExtensionHandshake(messages: [ExtensionHandshake.utMetadata: Int(ExtensionIDs.metadata),
                                                    ExtensionHandshake.utPex: Int(ExtensionIDs.pex)],
                                         listenPort: settings.listenPort, client: "Peerhost 0.1.0")
            ext.requestQueueSize = 500
            if let m = t.meta { ext.metadataSize = m.rawInfo.count }
            send(p, .extended(id: 0, payload: ext.encoded()))
        }
        dhtSendPort(p, t)   // DHT hook (BEP 5 PORT)
        if t.info == nil {
            if p.supportsFast { send(p, .haveNone) }
        } else if p.supportsFast && t.have.isComplete {
            send(p, .haveAll)
        } else if p.supportsFast && t.have.setCount == 0 {
            send(p, .haveNone)
        } else if t.have.setCount > 0 {
            send(p, .bitfield(t.have.wire))
        }
    }

    func handle(_ p: PeerConnection, _ m: PeerMessage) {
        guard let t = p.torrent, p.remote != nil else { dropPeer(p, reason: "message before handshake"); return }
        switch m {
        case .keepAlive: break
        case .choke:
            p.peerChoking = true
            // Without the fast extension a choke drops every request; with it the peer rejects each.
            if !p.supportsFast { returnRequests(p) }
        case .unchoke:
            p.peerChoking = false
            requestBlocks(p)
        case .interested:
            p.peerInterested = true
            if p.amChoking, unchokedCount(t) < settings.uploadSlots { setChoked(p, false) }
        case .notInterested:
            p.peerInterested = false
        case .have(let piece):
            guard let info = t.info else { p.pendingHaves.append(piece); return }
            guard piece >= 0, piece < info.pieceCount else { dropPeer(p, reason: "have for piece \(piece) of \(info.pieceCount)"); return }
            if p.have == nil { p.have = Bitfield(count: info.pieceCount) }
            if !p.have![piece] {
                p.have![piece] = true
                t.picker?.peerHas(piece: piece)
                if !t.have[piece] && !p.amInterested { setInterested(p, true) }
                requestBlocks(p)
            }
        case .bitfield(let bits):
            guard let info = t.info else { p.pendingBitfield = bits; return }
            do {
                try peerBitfield(p, t, Bitfield(count: info.pieceCount, wire: bits))
            } catch {
                dropPeer(p, reason: "bad bitfield: \(error)")
            }
        case .haveAll:
            guard let info = t.info else { p.pendingHaveAll = true; return }
            peerBitfield(p, t, Bitfield.full(count: info.pieceCount))
        case .haveNone:
            if let info = t.info { peerBitfield(p, t, Bitfield(count: info.pieceCount)) }
        case .request(let piece, let begin, let length):
            uploadRequested(p, t, BlockRequest(piece: piece, begin: begin, length: length))
        case .cancel(let piece, let begin, let length):
            p.uploadQueue.removeAll { $0 == BlockRequest(piece: piece, begin: begin, length: length) }
        case .reject(let piece, let begin, let length):
            let r = BlockRequest(piece: piece, begin: begin, length: length)
            if p.outstanding.remove(r) {
                requestsOutstanding -= 1
                t.picker?.requestFailed(r, peer: p.conn)
            }
        case .allowedFast(let piece):
            if let info = t.info, piece >= 0, piece < info.pieceCount {
                p.allowedFast.insert(piece)
                if p.peerChoking { requestBlocks(p) }
            }
        case .suggest: break
        case .port(let port): dhtPeerPort(p, port)   // DHT hook
        case .pieceHeader: break   // the framer reports pieces as block events
        case .extended(let id, let payload): extensionMessage(p, t, id, payload)
        }
    }

    func peerBitfield(_ p: PeerConnection, _ t: Torrent, _ b: Bitfield) {
        if let old = p.have { t.picker?.peerLost(bitfield: old) }
        p.have = b
        t.picker?.peerHas(bitfield: b)
        var interesting = false
        for i in 0..<b.count where b[i] && !t.have[i] { interesting = true; break }
        setInterested(p, interesting)
        requestBlocks(p)
    }

    /// Once the metadata arrives, what peers told us before becomes bitfields.
    func applyPendingHaves(_ p: PeerConnection, _ t: Torrent) {
        guard let info = t.info else { return }
        if p.pendingHaveAll {
            peerBitfield(p, t, Bitfield.full(count: info.pieceCount))
        } else if let bits = p.pendingBitfield, let b = try? Bitfield(count: info.pieceCount, wire: bits) {
            var b = b
            for i in p.pendingHaves where i >= 0 && i < info.pieceCount { b[i] = true }
            peerBitfield(p, t, b)
        } else if !p.pendingHaves.isEmpty {
            var b = Bitfield(count: info.pieceCount)
            for i in p.pendingHaves where i >= 0 && i < info.pieceCount { b[i] = true }
            peerBitfield(p, t, b)
        }
        p.pendingBitfield = nil
        p.pendingHaves = []
        p.pendingHaveAll = false
    }

    // MARK: downloading

    func setInterested(_ p: PeerConnection, _ on: Bool) {
        guard p.amInterested != on else { return }
        p.amInterested = on
        send(p, on ? .interested : .notInterested)
    }

    func requestBlocks(_ p: PeerConnection) {
        guard let t = p.torrent, t.active, t.state == .downloading, t.picker != nil, let peerHas = p.have, !p.closed else { return }
        let choked = p.peerChoking
        if choked && (!p.supportsFast || p.allowedFast.isEmpty) { return }
        let rate = p.downRate.rate(now: now)
        p.queueDepth.update(bytesPerSecond: rate, rttSeconds: nil)
        let depth = min(max(p.queueDepth.depth, settings.minQueueDepth), settings.maxQueueDepth)
        var want = depth - p.outstanding.count
        // Every outstanding request will need a slot when its block arrives.
        assert(requestsOutstanding == peers.values.reduce(0) { $0 + $1.outstanding.count }, "requestsOutstanding out of step")
        let freeSlots = settings.blockSlotBudget - blockSlotsHeld - requestsOutstanding
        want = min(want, freeSlots)
        guard want > 0 else { return }
        // Requests go out in batches while the pipe is full (one message, and one send, per
        // received block cost more than the rest of the block's bookkeeping); a short queue is
        // topped up at once, so the blocks still due keep calling back here.
        let batch = min(16, depth / 8)
        if want < batch && p.outstanding.count >= batch { return }
        // With a quarter of the block slots left, only finish started pieces (PiecePicker.pick).
        let startNew = freeSlots >= settings.blockSlotBudget / 4
        var has = peerHas
        if choked {
            has = Bitfield(count: peerHas.count)
            for i in p.allowedFast where peerHas[i] { has[i] = true }
        }
        let blocks = t.picker!.pick(for: p.conn, peerHas: has, count: want, startNew: startNew)
        if blocks.isEmpty {
            if p.outstanding.isEmpty && !t.picker!.isEndgame {
                // Nothing more from this peer: tell it, so it can choke us and free a slot.
                var any = false
                for i in 0..<peerHas.count where peerHas[i] && !t.have[i] && t.assembling[i] == nil { any = true; break }
                if !any && t.writing.isEmpty { setInterested(p, false) }
            }
            return
        }
        if !p.amInterested { setInterested(p, true) }
        for b in blocks {
            p.outstanding.append(b)
            send(p, .request(piece: b.piece, begin: b.begin, length: b.length))
        }
        requestsOutstanding += blocks.count
        if p.outstanding.count == blocks.count { p.lastPieceAt = now }
    }

    /// Outstanding requests of a peer go back to the picker (choke without fast, snub, close).
    func returnRequests(_ p: PeerConnection) {
        requestsOutstanding -= p.outstanding.count
        guard let t = p.torrent else { p.outstanding.removeAll(); return }
        for r in p.outstanding { t.picker?.requestFailed(r, peer: p.conn) }
        p.outstanding.removeAll()
    }

    func blockStarted(_ p: PeerConnection, _ r: BlockRequest) {
        guard let t = p.torrent, let info = t.info else { dropPeer(p, reason: "piece before metadata"); return }
        guard r.piece >= 0, r.piece < info.pieceCount, r.begin >= 0, r.length > 0,
              r.begin + r.length <= info.pieceSize(r.piece) else {
            dropPeer(p, reason: "piece message outside the torrent: piece \(r.piece) begin \(r.begin) length \(r.length)")
            return
        }
        guard p.outstanding.remove(r) else {
            // Not asked for (cancelled in endgame, or a peer sending junk): skipped, counted as waste.
            p.receiving = (r, nil, 0)
            t.wasted += Int64(r.length)
            return
        }
        requestsOutstanding -= 1
        p.lastPieceAt = now
        p.snubbed = false
        guard r.length <= 16_384, let b = try? host.allocBuffer() else {
            t.picker?.requestFailed(r, peer: p.conn)
            p.receiving = (r, nil, 0)
            return
        }
        blockSlotsHeld += 1
        p.receiving = (r, b, 0)
    }

    func blockFinished(_ p: PeerConnection) {
        guard let r = p.receiving else { return }
        p.receiving = nil
        guard var b = r.buffer, let t = p.torrent else { return }
        b.raw.offset = 0
        b.raw.length = UInt32(r.request.length)
        let req = r.request
        guard t.picker != nil, !t.have[req.piece], t.writing[req.piece] == nil else {
            host.free(b); blockSlotsHeld -= 1
            requestBlocks(p)
            return
        }
        let others = t.picker!.blockReceived(req, from: p.conn).alsoRequestedFrom
        for o in others where o != p.conn {
            guard let q = peers[o], q.outstanding.remove(req) else { continue }
            requestsOutstanding -= 1
            send(q, .cancel(piece: req.piece, begin: req.begin, length: req.length))
        }
        let blockCount = (t.info!.pieceSize(req.piece) + 16_383) / 16_384
        let a: PieceAssembly
        if let existing = t.assembling[req.piece] { a = existing } else { a = PieceAssembly(blockCount: blockCount); t.assembling[req.piece] = a }
        let bi = req.begin / 16_384
        if a.blocks[bi] != nil {
            host.free(b); blockSlotsHeld -= 1   // a duplicate (endgame)
        } else {
            a.blocks[bi] = b
            a.from[bi] = p.banKey
            a.received += 1
        }
        if a.isComplete { verify(t, req.piece) }
        requestBlocks(p)
    }

    func verify(_ t: Torrent, _ piece: Int) {
        guard let a = t.assembling.removeValue(forKey: piece), let info = t.info else { return }
        if a.digest() == info.pieceHashes[piece] {
            t.picker?.pieceVerified(piece)
            t.piecesVerified += 1
            if let bad = t.failedBlocks.removeValue(forKey: piece) {
                // The piece failed before: whoever sent a block that differs from the good one lied.
                let good = a.blockDigests()
                for (i, old) in bad.enumerated() where i < good.count && !old.digest.isEmpty && old.digest != good[i] {
                    ban(t, old.peer, reason: "sent a block of piece \(piece) that failed the hash check")
                }
            }
            write(t, piece, a)
        } else {
            t.hashFailures += 1
            t.picker?.pieceFailed(piece)
            let senders = Set(a.from.filter { !$0.isEmpty })
            host.log(.warn, "bittorrent: \(t.displayName): piece \(piece) failed its SHA-1 check (from \(senders.sorted().joined(separator: ", ")))")
            if senders.count == 1 {
                ban(t, senders.first!, reason: "sent piece \(piece), which failed its hash check")
            } else {
                t.failedBlocks[piece] = zip(a.blockDigests(), a.from).map { ($0, $1) }
            }
            a.free(host: host)
            blockSlotsHeld -= a.received
        }
    }

    /// Bans an IP (a peer's address on loopback) for this torrent: its connections close and it is
    /// never connected again.
    func ban(_ t: Torrent, _ key: String, reason: String) {
        guard !t.banned.contains(key) else { return }
        t.banned.insert(key)
        t.bannedCount += 1
        host.log(.warn, "bittorrent: \(t.displayName): banned \(key): \(reason)")
        for c in t.peers { if let q = peers[c], q.banKey == key { dropPeer(q, reason: "banned: \(reason)") } }
    }

    // MARK: files

    /// Runs `body` with the file's id once the core opened it (nil when it cannot be opened).
    func withFile(_ t: Torrent, _ index: Int, _ body: @escaping (FileID?) -> Void) {
        guard index < t.files.count else { body(nil); return }
        fileUseClock &+= 1
        t.files[index].lastUse = fileUseClock
        if let id = t.files[index].id { body(id); return }
        if t.files[index].failed != nil { body(nil); return }
        t.files[index].waiting.append(body)
        guard !t.files[index].opening, !t.files[index].queuedForOpen else { return }
        guard makeRoomForAFile() else {
            t.files[index].queuedForOpen = true
            fileOpensWaiting.append((t.infoHash, index))
            return
        }
        openFile(t, index)
    }

    /// Asks the core to open a torrent file for reading and writing (there is room: withFile).
    func openFile(_ t: Torrent, _ index: Int) {
        t.files[index].opening = true
        countOpenFile()
        let flags = UInt32(PH_FILE_READ | PH_FILE_WRITE | PH_FILE_CREATE | PH_FILE_MKDIRS)
        do {
            let r = try host.fileOpen(t.path(ofFile: index), flags: flags)
            pending[r] = .fileOpen(t.infoHash, index)
        } catch {
            fileOpened(t.infoHash, index, .failure(error))
        }
    }

    func fileOpened(_ hash: InfoHash, _ index: Int, _ result: Result<Int64, PluginError>) {
        guard let t = torrents[hash], index < t.files.count else {
            if case .success(let id) = result { try? host.fileClose(FileID(id)) }
            return
        }
        t.files[index].opening = false
        let waiting = t.files[index].waiting
        t.files[index].waiting = []
        switch result {
        case .success(let id):
            t.files[index].id = FileID(id)
            for w in waiting { w(FileID(id)) }
        case .failure(let e):
            poolFilesOpen -= 1
            defer { openWaitingFiles() }
            let why = e == .quota
                ? "cannot open \(t.path(ofFile: index)): the host's descriptor budget for this plugin is spent ([tuning] plugin_descriptors; lower max_open_files or max_connections)"
                : "cannot open \(t.path(ofFile: index)): \(e)"
            t.files[index].failed = why
            fail(t, why)
            for w in waiting { w(nil) }
        }
    }

    func countOpenFile(check: Bool = false) {
        if check { checkFilesOpen += 1 } else { poolFilesOpen += 1 }
        openFilesPeak = max(openFilesPeak, poolFilesOpen + checkFilesOpen)
    }

    /// Keeps the open files within `max_open_files`: closes the least recently used torrent file
    /// that nothing reads or writes. False when every open file is busy: the open waits in
    /// `fileOpensWaiting` until one is answered (reads and writes always are).
    func makeRoomForAFile() -> Bool {
        while poolFilesOpen >= settings.maxOpenFiles {
            var victim: (torrent: Torrent, index: Int, lastUse: UInt64)?
            for hash in order {
                guard let t = torrents[hash] else { continue }
                for (i, f) in t.files.enumerated() where f.id != nil && f.inFlight == 0 {
                    if victim == nil || f.lastUse < victim!.lastUse { victim = (t, i, f.lastUse) }
                }
            }
            guard let victim else { return false }
            closeFile(victim.torrent, victim.index)
            filesClosedForRoom += 1
        }
        return true
    }

    /// Opens the waiting files there is room for now, in order.
    func openWaitingFiles() {
        while let (hash, index) = fileOpensWaiting.first {
            guard let t = torrents[hash], index < t.files.count, t.files[index].queuedForOpen else {
                fileOpensWaiting.removeFirst()   // its torrent went away
                continue
            }
            guard makeRoomForAFile() else { return }
            fileOpensWaiting.removeFirst()
            t.files[index].queuedForOpen = false
            openFile(t, index)
        }
    }

    /// Closes one torrent file. One written since its last sync is synced first: a resume record
    /// may name its pieces only once they are on disk (saveResume waits for these syncs). The core
    /// closes the descriptor when the sync is over.
    func closeFile(_ t: Torrent, _ index: Int) {
        guard let id = t.files[index].id else { return }
        if t.files[index].dirty {
            do {
                let r = try host.fileSync(id)
                pending[r] = .evictSync(t.infoHash, index)
                t.evictionSyncs += 1
            } catch {
                fail(t, "sync \(t.path(ofFile: index)): \(error)")
            }
        }
        try? host.fileClose(id)
        t.files[index].id = nil
        t.files[index].dirty = false
        poolFilesOpen -= 1
    }

    func evictionSynced(_ hash: InfoHash, _ index: Int, _ result: Result<Int64, PluginError>) {
        guard let t = torrents[hash] else { return }
        t.evictionSyncs -= 1
        switch result {
        case .success: filesSyncedBeforeClose += 1
        case .failure(let e): if index < t.files.count { fail(t, "sync \(t.path(ofFile: index)): \(e)") }
        }
    }

    /// A read or write on a torrent file was answered: an idle file makes room for a waiting one.
    func fileOperationAnswered(_ t: Torrent, _ index: Int) {
        guard index < t.files.count, t.files[index].inFlight > 0 else { return }
        t.files[index].inFlight -= 1
        if t.files[index].inFlight == 0, !fileOpensWaiting.isEmpty { openWaitingFiles() }
    }

    func fail(_ t: Torrent, _ why: String) {
        if case .failed = t.state { return }
        t.state = .failed(why)
        host.log(.error, "bittorrent: \(t.displayName): \(why)")
        for c in t.peers { if let p = peers[c] { dropPeer(p, reason: "torrent failed") } }
    }

    /// Writes a verified piece: one file_write per block, straight from its slot. The core keeps
    /// a written slot (the runner recycles it), so a block that crosses a file boundary has the
    /// part in the next file copied into a slot of its own first — a copy only at file edges.
    func write(_ t: Torrent, _ piece: Int, _ a: PieceAssembly) {
        let info = t.info!
        var jobs: [(WriteJob, Buffer)] = []
        for (i, b) in a.blocks.enumerated() {
            guard let b else { continue }
            let offset = Int64(piece) * Int64(info.pieceLength) + Int64(i * 16_384)
            var consumed = 0
            var ownUsed = false
            for span in info.spans(offset: offset, length: b.count) {
                defer { consumed += span.length }
                // BEP 47 padding files are zeros by definition: never written.
                if info.files[span.file].isPadding { continue }
                var slot = b
                if ownUsed {
                    guard var copy = try? host.allocBuffer() else {
                        fail(t, "out of buffer slots while writing piece \(piece)")
                        continue
                    }
                    try? copy.set(UnsafeRawBufferPointer(rebasing: b.bytes[consumed..<(consumed + span.length)]))
                    blockSlotsHeld += 1
                    slot = copy
                } else {
                    // The block's own slot, pointed at this span's bytes: no copy.
                    slot.raw.offset = UInt32(consumed)
                    slot.raw.length = UInt32(span.length)
                    ownUsed = true
                }
                jobs.append((WriteJob(torrent: t.infoHash, piece: piece, span: span), slot))
            }
            // A block that was all padding: its slot goes back now.
            if !ownUsed { host.free(b); blockSlotsHeld -= 1 }
        }
        t.writing[piece] = jobs.count
        for (job, slot) in jobs { writeSpan(job, slot) }
    }

    func writeSpan(_ job: WriteJob, _ buffer: Buffer) {
        guard let t = torrents[job.torrent] else { host.free(buffer); blockSlotsHeld -= 1; return }
        withFile(t, job.span.file) { [self] id in
            guard let id else { host.free(buffer); blockSlotsHeld -= 1; blockWritten(t, job.piece, ok: false); return }
            do {
                let r = try host.fileWrite(id, at: UInt64(job.span.offset), buffer)
                pending[r] = .write(job)
                t.files[job.span.file].inFlight += 1
                t.files[job.span.file].dirty = true
            } catch {
                host.free(buffer); blockSlotsHeld -= 1
                fail(t, "write to \(t.path(ofFile: job.span.file)): \(error)")
                blockWritten(t, job.piece, ok: false)
            }
        }
    }

    func writeDone(_ job: WriteJob, _ result: Result<Int64, PluginError>, _ buffer: Buffer?) {
        if let buffer { host.free(buffer) }   // a 1.x runner recycles written slots itself
        blockSlotsHeld -= 1
        guard let t = torrents[job.torrent] else { return }
        fileOperationAnswered(t, job.span.file)
        switch result {
        case .success(let n) where n == Int64(job.span.length):
            blockWritten(t, job.piece, ok: true)
        case .success(let n):
            fail(t, "short write to \(t.path(ofFile: job.span.file)): \(n) of \(job.span.length) bytes")
            blockWritten(t, job.piece, ok: false)
        case .failure(let e):
            fail(t, "write to \(t.path(ofFile: job.span.file)): \(e)")
            blockWritten(t, job.piece, ok: false)
        }
    }

    func blockWritten(_ t: Torrent, _ piece: Int, ok: Bool) {
        guard let left = t.writing[piece] else { return }
        if !ok {
            t.writing[piece] = nil
            t.picker?.pieceFailed(piece)
            return
        }
        if left > 1 { t.writing[piece] = left - 1; return }
        t.writing[piece] = nil
        pieceWritten(t, piece)
    }

    func pieceWritten(_ t: Torrent, _ piece: Int) {
        t.have[piece] = true
        t.resumeDirty = true
        let more = !t.have.isComplete
        for c in t.peers {
            guard let p = peers[c], p.remote != nil else { continue }
            send(p, .have(piece: piece))
            // The piece's slots are back: a peer whose requests were held back by the slot budget
            // gets them now (else only an arriving block would ask again, and none may be due).
            if more { requestBlocks(p) }
            flush(p)
        }
        if t.have.isComplete {
            t.state = .seeding
            t.completedAt = now
            host.log(.info, "bittorrent: \(t.displayName): complete (\(t.info!.pieceCount) pieces verified)")
            for c in t.peers { if let p = peers[c] { setInterested(p, false); flush(p) } }
            saveResume(t)
            announce(t, event: .completed)
        }
    }

    // MARK: uploading

    func uploadRequested(_ p: PeerConnection, _ t: Torrent, _ r: BlockRequest) {
        guard let info = t.info, r.piece >= 0, r.piece < info.pieceCount, r.begin >= 0, r.length > 0,
              r.begin + r.length <= info.pieceSize(r.piece) else {
            dropPeer(p, reason: "request outside the torrent: piece \(r.piece) begin \(r.begin) length \(r.length)")
            return
        }
        guard r.length <= 16_384, t.have[r.piece], !p.amChoking || p.allowedFastToThem(r.piece),
              p.uploadQueue.count < 500 else {
            if p.supportsFast { send(p, .reject(piece: r.piece, begin: r.begin, length: r.length)) }
            return
        }
        p.uploadQueue.append(r)
        serveUploads(p)
    }

    func serveUploads(_ p: PeerConnection) {
        guard let t = p.torrent, let info = t.info else { return }
        while !p.closed, !p.blocked, p.readsInFlight < 8, !p.uploadQueue.isEmpty, uploadSlotsHeld < settings.uploadSlotBudget {
            guard let b = try? host.allocBuffer() else { return }
            let r = p.uploadQueue.removeFirst()
            uploadSlotsHeld += 1
            p.readsInFlight += 1
            let offset = Int64(r.piece) * Int64(info.pieceLength) + Int64(r.begin)
            readNext(ReadJob(torrent: t.infoHash, purpose: .upload(p.conn), request: r, spans: info.spans(offset: offset, length: r.length)), b)
        }
    }

    func readNext(_ job: ReadJob, _ buffer: Buffer) {
        guard let t = torrents[job.torrent], job.next < job.spans.count else { readFinished(job, buffer, ok: true); return }
        let span = job.spans[job.next]
        if info(ofTorrent: job.torrent)?.files[span.file].isPadding == true {
            // Padding (BEP 47): zeros, nothing to read.
            var job = job
            if let base = buffer.raw.data { (base + job.filled).initialize(repeating: 0, count: span.length) }
            job.filled += span.length
            job.next += 1
            readNext(job, buffer)
            return
        }
        let read: (FileID?) -> Void = { [self] id in
            guard let id else { readFinished(job, buffer, ok: false); return }
            var b = buffer
            b.raw.offset = UInt32(job.filled)
            b.raw.length = 0
            do {
                let r = try host.fileRead(id, at: UInt64(span.offset), into: b)
                pending[r] = .read(job)
                if job.handles == nil { t.files[span.file].inFlight += 1 }   // a check's handles are its own
            } catch {
                readFinished(job, buffer, ok: false)
            }
        }
        if let handles = job.handles { read(handles[span.file]) } else { withFile(t, span.file, read) }
    }

    func info(ofTorrent hash: InfoHash) -> InfoDictionary? { torrents[hash]?.info }

    func readDone(_ job: ReadJob, _ result: Result<Int64, PluginError>, _ buffer: Buffer?) {
        if job.handles == nil, let t = torrents[job.torrent] { fileOperationAnswered(t, job.spans[job.next].file) }
        guard let b = buffer else {
            if case .upload(let peer) = job.purpose { uploadSlotsHeld -= 1; peers[peer]?.readsInFlight -= 1 }
            return
        }
        var job = job
        let want = job.spans[job.next].length
        guard case .success(let n) = result, n >= Int64(want) else { readFinished(job, b, ok: false); return }
        job.filled += want
        job.next += 1
        readNext(job, b)
    }

    func readFinished(_ job: ReadJob, _ buffer: Buffer, ok: Bool) {
        guard case .upload(let peer) = job.purpose else { checkBlockRead(job, buffer, ok: ok); return }
        let p = peers[peer]
        p?.readsInFlight -= 1
        guard ok, let p, !p.closed, !p.amChoking || p.allowedFastToThem(job.request.piece), let t = p.torrent else {
            host.free(buffer); uploadSlotsHeld -= 1
            if let p, !p.closed, p.supportsFast {
                send(p, .reject(piece: job.request.piece, begin: job.request.begin, length: job.request.length)); flush(p)
            }
            return
        }
        var b = buffer
        b.raw.offset = 0
        b.raw.length = UInt32(job.request.length)
        do {
            try p.enqueueBlock(job.request, b, host: host)
        } catch {
            host.free(b); uploadSlotsHeld -= 1
            return
        }
        let n = job.request.length
        p.uploaded += Int64(n); t.uploaded += Int64(n)
        p.upRate.add(n, now: now); t.upRate.add(n, now: now)
        t.resumeDirty = true
        flush(p)
        serveUploads(p)
    }

    // MARK: rate limits

    /// The core's per-connection buckets carry the limits: a torrent's limit is split evenly over
    /// its connections (recomputed as peers come and go), capped by the per-peer limit. The
    /// plugin's own grant (manifest/config bandwidth) caps everything above that in the core.
    func applyRates(_ t: Torrent) {
        let ps = t.peers.compactMap { peers[$0] }.filter { $0.remote != nil && !$0.closed }
        guard !ps.isEmpty else { return }
        func share(_ torrentLimit: UInt64, _ peerLimit: UInt64) -> UInt64 {
            let even = torrentLimit == 0 ? 0 : max(1, torrentLimit / UInt64(ps.count))
            if even == 0 { return peerLimit }
            return peerLimit == 0 ? even : min(even, peerLimit)
        }
        let up = share(t.rateUp, settings.peerRateUp), down = share(t.rateDown, settings.peerRateDown)
        for p in ps { try? host.setRate(p.conn, up: up, down: down) }
    }

    // MARK: choking

    func unchokedCount(_ t: Torrent) -> Int { t.peers.reduce(0) { $0 + ((peers[$1]?.amChoking == false) ? 1 : 0) } }

    func setChoked(_ p: PeerConnection, _ choked: Bool) {
        guard p.amChoking != choked else { return }
        p.amChoking = choked
        send(p, choked ? .choke : .unchoke)
        if choked {
            if p.supportsFast {
                for r in p.uploadQueue where !p.allowedFastToThem(r.piece) {
                    send(p, .reject(piece: r.piece, begin: r.begin, length: r.length))
                }
            }
            p.uploadQueue.removeAll { !p.allowedFastToThem($0.piece) }
        }
        flush(p)
    }

    /// Every 10 s: tit-for-tat per torrent (best rates to us while leeching, from us while seeding)
    /// plus a rotating optimistic unchoke; the shaper's weights follow each peer's contribution.
    func rechoke() {
        let t0 = now
        for t in torrents.values where t.active {
            let ps = t.peers.compactMap { peers[$0] }.filter { $0.remote != nil && !$0.closed }
            let stats = ps.map { p in
                Choker.PeerStats(id: p.conn, interested: p.peerInterested, downloadRate: p.downRate.rate(now: t0),
                                 uploadRate: p.upRate.rate(now: t0), connectedAt: p.connectedAt, isSnubbed: p.snubbed)
            }
            let unchoke = choker.rechoke(peers: stats, seeding: t.isComplete, now: t0)
            for (p, s) in zip(ps, stats) {
                setChoked(p, !unchoke.contains(p.conn))
                try? host.setWeight(p.conn, choker.weight(for: s, seeding: t.isComplete))
            }
            applyRates(t)
        }
    }

    // MARK: sending

    func send(_ p: PeerConnection, _ m: PeerMessage) {
        guard !p.closed else { return }
        do { try p.enqueue(m, host: host) } catch { dropPeer(p, reason: "out of buffers: \(error)") }
    }

    func enqueue(_ p: PeerConnection, bytes: [UInt8]) {
        guard !p.closed else { return }
        do { try p.enqueue(bytes: bytes, host: host) } catch { dropPeer(p, reason: "out of buffers: \(error)") }
    }

    func flush(_ p: PeerConnection) {
        guard !p.closed else { return }
        do {
            uploadSlotsHeld -= try p.flush(host: host, now: now)
        } catch {
            dropPeer(p, reason: "send: \(error)")
        }
    }

    func dropPeer(_ p: PeerConnection, reason: String, closeConnection: Bool = true) {
        guard !p.closed else { return }
        p.closed = true
        if let t = p.torrent {
            t.peers.remove(p.conn)
            defer { applyRates(t) }
            t.picker?.peerGone(p.conn)
            if let h = p.have { t.picker?.peerLost(bitfield: h) }
            requestsOutstanding -= p.outstanding.count
            p.outstanding.removeAll()
            if p.outgoing {
                t.addresses[p.address]?.connected = false
                t.addresses[p.address]?.seed = p.have?.isComplete ?? false
            }
        }
        if let r = p.receiving, r.buffer != nil { blockSlotsHeld -= 1 }
        uploadSlotsHeld -= p.releaseBuffers(host: host)
        peers[p.conn] = nil
        if closeConnection { try? host.close(p.conn) }
        host.log(.debug, "bittorrent: peer \(p.address) dropped: \(reason)")
    }
}

extension PeerConnection {
    /// BEP 6: pieces we told this peer it may request while choked (we send none yet).
    func allowedFastToThem(_ piece: Int) -> Bool { false }
}

/// Our BEP 10 extension message ids (the "m" dictionary we send).
enum ExtensionIDs {
    static let metadata: UInt8 = 1
    static let pex: UInt8 = 2
}
