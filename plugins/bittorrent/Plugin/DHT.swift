// The Mainline DHT (BEP 5) and the plugin's one UDP socket, on top of the DHTNode state machine
// (Protocol/DHTNode.swift). The plugin owns the socket, the clock and the store: datagrams go to
// the node (or to a UDP tracker, UDPTrackers.swift, when they come from one), its answers go out
// through the core, and its lookup results become peer addresses of our torrents.
//
// Start-up: bind the UDP socket and read the saved routing table ("dht/table") at the same time;
// once both are done the bootstrap names are resolved (UDP_SEND needs numeric addresses) and the
// node joins through them (and through the saved nodes). Every active, public torrent gets a
// get_peers lookup that announces our TCP port once the table has nodes, then every 5 minutes.
// Private torrents (BEP 27) never touch the DHT.
import PeerhostSDK
import BitTorrentProtocol

/// DHT and UDP settings from the plugin's config JSON.
struct UDPSettings {
    /// BEP 5 on or off (`dht`, default on).
    var dht = true
    /// "host:port" bootstrap nodes (`dht_bootstrap`); names are resolved through the core.
    var bootstrap = ["router.bittorrent.com:6881", "dht.transmissionbt.com:6881"]
    /// Where the UDP socket binds (`udp_listen`, "udp:IP:PORT"); default: the udp listen grant, else
    /// the TCP listen address (same port).
    var listen: String?

    init(json: JSON) {
        if let b = json["dht"]?.bool { dht = b }
        if let a = json["dht_bootstrap"]?.array { bootstrap = a.compactMap(\.string) }
        // The host passes the effective listen grants; a udp one is where the DHT listens.
        if let a = json["listen"]?.array, let u = a.compactMap(\.string).first(where: { $0.hasPrefix("udp:") }) { listen = u }
        if let s = json["udp_listen"]?.string { listen = s.hasPrefix("udp:") ? s : "udp:" + s }
    }

    /// The bind address: `udp_listen`, else the effective udp listen grant, else the TCP listen
    /// address with "udp:".
    func bindAddress(tcpListen: String) -> String {
        if let listen { return listen }
        return "udp:" + (tcpListen.hasPrefix("tcp:") ? String(tcpListen.dropFirst(4)) : tcpListen)
    }
}

/// What an outstanding host call of the UDP side was for.
enum UDPPending {
    case bind
    case tableLoad
    case tableSave
    /// A DHT bootstrap name being resolved, with its port.
    case bootstrapResolve(UInt16)
    /// A UDP tracker's host name being resolved ("host:port" key of the tracker).
    case trackerResolve(String)
    /// The local peer discovery group (LocalDiscovery.swift).
    case lpdBind
}

/// The DHT's state in the plugin (one per plugin).
final class DHTState {
    var node: DHTNode?
    var socket: Connection?
    var bindError: String?
    var tableLoaded = false
    var started = false
    /// Bootstrap endpoints resolved so far, and resolves still outstanding.
    var resolved: [UDPEndpoint] = []
    var resolvesLeft = 0
    var bootstrapped = false
    /// When each torrent's next get_peers lookup is due (absent: now).
    var nextLookup: [InfoHash: Double] = [:]
    /// Lookups in flight → their torrent.
    var lookups: [DHTNode.LookupID: InfoHash] = [:]
    var lastSave = 0.0
    var saving = false
    var peersFound = 0
    /// Peers already told our DHT port (PORT message), so it is sent once per connection.
    var portSent: Set<Connection> = []
    var datagramsIn = 0
    var datagramsOut = 0

    /// The routing table's size.
    var nodeCount: Int { node?.table.count ?? 0 }
}

extension BitTorrentPlugin {
    static let dhtTableKey = Array("dht/table".utf8)
    /// A kv call carries key and value in one 16 KiB slot: stay well inside it.
    static let dhtTableMaxBytes = 15_000
    static let dhtLookupInterval = 300.0
    static let dhtSaveInterval = 180.0

    var dhtEnabled: Bool { settings.udp.dht }

    // MARK: start-up

    /// Binds the UDP socket (DHT and UDP trackers share it) and loads the saved routing table.
    func udpStart() {
        let address = settings.udp.bindAddress(tcpListen: settings.listen)
        do {
            let r = try host.udpBind(address)
            pending[r] = .udp(.bind)
        } catch {
            dht.bindError = "udp bind \(address): \(error)"
            host.log(.warn, "bittorrent: \(dht.bindError!) (no DHT, no UDP trackers)")
        }
        guard dhtEnabled else { return }
        do {
            let r = try host.kvGet(Self.dhtTableKey)
            pending[r] = .udp(.tableLoad)
        } catch {
            dhtTableLoaded(nil)
        }
    }

    func udpComplete(_ what: UDPPending, _ result: Result<Int64, PluginError>, _ buffer: Buffer?) {
        defer { if let buffer { host.free(buffer) } }
        switch what {
        case .bind:
            switch result {
            case .success(let s):
                dht.socket = Connection(s)
                host.log(.info, "bittorrent: UDP socket bound on \(settings.udp.bindAddress(tcpListen: settings.listen)) (DHT \(dhtEnabled ? "on" : "off"))")
                dhtMaybeStart()
                udpTrackersFlush()
            case .failure(let e):
                dht.bindError = "udp bind \(settings.udp.bindAddress(tcpListen: settings.listen)): \(e)"
                host.log(.warn, "bittorrent: \(dht.bindError!) (no DHT, no UDP trackers)")
            }
        case .tableLoad:
            if case .success = result, let buffer { dhtTableLoaded(buffer.array) } else { dhtTableLoaded(nil) }
        case .tableSave:
            dht.saving = false
            if case .failure(let e) = result { host.log(.warn, "bittorrent: saving the DHT table: \(e)") }
        case .bootstrapResolve(let port):
            if case .success = result, let buffer {
                for line in String(decoding: buffer.bytes, as: UTF8.self).split(separator: "\n") {
                    if let ep = UDPEndpoint(host: String(line), port: port), ep.isIPv4 { dht.resolved.append(ep) }
                }
            }
            dht.resolvesLeft -= 1
            if dht.resolvesLeft == 0 { dhtBootstrap() }
        case .trackerResolve(let key):
            udpTrackerResolved(key, result, buffer)
        case .lpdBind:
            lpdBound(result)
        }
    }

    func dhtTableLoaded(_ data: [UInt8]?) {
        let t0 = now
        if let data {
            do {
                dht.node = try DHTNode(restoring: data, now: t0)
                host.log(.info, "bittorrent: DHT table restored: \(dht.nodeCount) nodes")
            } catch {
                host.log(.warn, "bittorrent: saved DHT table: \(error); starting with an empty one")
            }
        }
        if dht.node == nil { dht.node = DHTNode(now: t0) }
        dht.tableLoaded = true
        dhtMaybeStart()
    }

    /// Once the socket and the table are there: resolve the bootstrap names, then join.
    func dhtMaybeStart() {
        guard dhtEnabled, !dht.started, dht.tableLoaded, dht.socket != nil else { return }
        dht.started = true
        var names: [(String, UInt16)] = []
        for entry in settings.udp.bootstrap {
            var s = Substring(entry)
            if s.hasPrefix("udp:") { s = s.dropFirst(4) }
            guard let colon = s.lastIndex(of: ":"), let port = UInt16(s[s.index(after: colon)...]), port > 0 else {
                host.log(.warn, "bittorrent: dht_bootstrap entry \"\(entry)\" is not HOST:PORT; skipped")
                continue
            }
            var h = s[..<colon]
            if h.hasPrefix("[") && h.hasSuffix("]") { h = h.dropFirst().dropLast() }
            if let ep = UDPEndpoint(host: String(h), port: port) { dht.resolved.append(ep) } else { names.append((String(h), port)) }
        }
        for (name, port) in names {
            do {
                let r = try host.resolve(name)
                pending[r] = .udp(.bootstrapResolve(port))
                dht.resolvesLeft += 1
            } catch {
                host.log(.warn, "bittorrent: resolving DHT bootstrap node \(name): \(error)")
            }
        }
        if dht.resolvesLeft == 0 { dhtBootstrap() }
    }

    func dhtBootstrap() {
        guard var node = dht.node else { return }
        if dht.resolved.isEmpty && node.table.count == 0 {
            host.log(.warn, "bittorrent: DHT has no bootstrap node and an empty table; it waits for peers' PORT messages")
        }
        let out = node.bootstrap(nodes: dht.resolved, now: now)
        dht.node = node
        dhtSend(out)
    }

    // MARK: datagrams

    /// Every datagram on the socket: a UDP tracker's reply, else the DHT's.
    func datagram(_ socket: Connection, _ from: String, _ buffer: Buffer) {
        defer { host.free(buffer) }
        if lpdDatagram(socket, from, buffer.array) { return }
        if udpTrackerDatagram(from, buffer.array) { return }
        guard dhtEnabled, var node = dht.node, let source = UDPEndpoint(address: from) else { return }
        dht.datagramsIn += 1
        let out = node.receive(buffer.array, from: source, now: now)
        dht.node = node
        dhtSend(out)
        dhtEvents()
    }

    func udpSend(_ bytes: [UInt8], to address: String) {
        guard let s = dht.socket else { return }
        _ = sendDatagram(bytes, on: s, to: address)
    }

    /// One datagram through the core (a slot of its own); false, logged, when it could not go.
    func sendDatagram(_ bytes: [UInt8], on socket: Connection, to address: String) -> Bool {
        do {
            let b = try host.allocBuffer(with: bytes)
            do { try host.udpSend(socket, to: address, b) } catch { host.free(b); throw error }
            return true
        } catch {
            host.log(.debug, "bittorrent: udp send to \(address): \(error)")
            return false
        }
    }

    func dhtSend(_ out: [DHTNode.Outgoing]) {
        for o in out {
            dht.datagramsOut += 1
            udpSend(o.datagram, to: o.to)
        }
    }

    func dhtEvents() {
        guard var node = dht.node else { return }
        let events = node.takeEvents()
        dht.node = node
        for e in events {
            switch e {
            case .peersFound(_, let hash, let found):
                guard let h = InfoHash(bytes: hash), let t = torrents[h], t.active, !t.isPrivate else { continue }
                dht.peersFound += found.count
                for peer in found { addAddress(t, peer.address, source: "dht") }
                connectMore(t)
            case .lookupDone(let lid, let hash, let responded, let announcedTo):
                dht.lookups[lid] = nil
                if let h = InfoHash(bytes: hash) {
                    host.log(.debug, "bittorrent: DHT lookup for \(h.hex): \(responded) nodes answered, announced to \(announcedTo)")
                }
            case .bootstrapped(let size):
                dht.bootstrapped = true
                host.log(.info, "bittorrent: DHT bootstrapped: \(size) nodes")
                // Lookups wait for a table; now every torrent's is due.
                dht.nextLookup.removeAll()
                dhtSaveTable()
            }
        }
    }

    // MARK: the tick (every second)

    func udpTick() {
        udpTrackersTick()
        lpdTick()
        guard dhtEnabled, dht.started, var node = dht.node else { return }
        let t0 = now
        var out = node.tick(now: t0)
        if node.table.count > 0 {
            for hash in order {
                guard let t = torrents[hash], t.active, !t.isPrivate, t0 >= dht.nextLookup[hash] ?? 0 else { continue }
                dht.nextLookup[hash] = t0 + Self.dhtLookupInterval
                let (lid, send) = node.getPeers(infoHash: hash.bytes, announcePort: settings.listenPort, now: t0)
                dht.lookups[lid] = hash
                out += send
            }
        }
        dht.node = node
        dhtSend(out)
        dhtEvents()
        // Peers that announced the torrent to us are its peers too (a lookup never asks ourselves).
        if tickCount % 5 == 0 { dhtStoredPeers(node) }
        for h in dht.nextLookup.keys where torrents[h] == nil { dht.nextLookup[h] = nil }
        dht.portSent = dht.portSent.filter { peers[$0] != nil }
        if t0 - dht.lastSave >= Self.dhtSaveInterval { dhtSaveTable() }
    }

    func dhtStoredPeers(_ node: DHTNode) {
        var rng = SystemRandomNumberGenerator()
        let t0 = now
        for hash in order {
            guard let t = torrents[hash], t.active, !t.isPrivate, t.state != .seeding else { continue }
            let values = node.store.values(infoHash: hash.bytes, now: t0, max: 50, using: &rng)
            guard !values.isEmpty else { continue }
            let before = t.addresses.count
            for v in values {
                guard v.count == 6 || v.count == 18,
                      let pa = PeerAddress(ip: Array(v.prefix(v.count - 2)), port: UInt16(v[v.count - 2]) << 8 | UInt16(v[v.count - 1])),
                      pa.port != 0 else { continue }
                addAddress(t, pa.address, source: "dht")
            }
            if t.addresses.count > before {
                dht.peersFound += t.addresses.count - before
                connectMore(t)
            }
        }
    }

    // MARK: the routing table in the store

    func dhtSaveTable() {
        guard let node = dht.node, !dht.saving, node.table.count > 0 else { return }
        dht.lastSave = now
        let value = Self.cappedTable(node.serializedTable(), maxBytes: Self.dhtTableMaxBytes)
        do {
            let r = try host.kvPut(Self.dhtTableKey, value)
            pending[r] = .udp(.tableSave)
            dht.saving = true
        } catch {
            host.log(.warn, "bittorrent: saving the DHT table: \(error)")
        }
    }

    /// RoutingTable.serialize() cut to whole node records within `maxBytes` (the count at bytes
    /// 25-26 rewritten): a "PHRT" v1 header of 27 bytes, then per node id(20) family(1) ip(4|16) port(2).
    static func cappedTable(_ b: [UInt8], maxBytes: Int) -> [UInt8] {
        guard b.count > maxBytes, b.count >= 27 else { return b }
        var i = 27
        var kept = 0
        let count = Int(b[25]) << 8 | Int(b[26])
        while kept < count, i + 21 <= b.count {
            let len = 20 + 1 + (b[i + 20] == 4 ? 4 : 16) + 2
            guard i + len <= maxBytes else { break }
            i += len
            kept += 1
        }
        var out = Array(b[0..<i])
        out[25] = UInt8(kept >> 8)
        out[26] = UInt8(kept & 0xff)
        return out
    }

    // MARK: peers' PORT messages (BEP 5)

    /// Our handshake's reserved bytes: the DHT bit (BEP 5) only when the DHT is on and the torrent
    /// is public.
    func handshakeReserved(_ t: Torrent) -> [UInt8] {
        var r = Handshake.ourReserved
        if !dhtEnabled || t.isPrivate { r[7] &= ~0x01 }
        return r
    }

    /// After the handshakes: our DHT port to a peer that set the DHT bit.
    func dhtSendPort(_ p: PeerConnection, _ t: Torrent) {
        guard dhtEnabled, dht.socket != nil, !t.isPrivate, p.remote?.supportsDHT == true,
              !dht.portSent.contains(p.conn), let port = dhtPort else { return }
        dht.portSent.insert(p.conn)
        send(p, .port(port))
    }

    /// The port our DHT listens on, from the bind address (nil for an ephemeral port).
    var dhtPort: UInt16? {
        let a = settings.udp.bindAddress(tcpListen: settings.listen)
        guard let colon = a.lastIndex(of: ":"), let p = UInt16(a[a.index(after: colon)...]), p != 0 else { return nil }
        return p
    }

    /// A peer's PORT message names its DHT node: ping it; it joins the table if it answers.
    func dhtPeerPort(_ p: PeerConnection, _ port: UInt16) {
        guard dhtEnabled, dht.started, port != 0, p.torrent?.isPrivate != true, var node = dht.node,
              let ep = UDPEndpoint(host: p.ip, port: port) else { return }
        let out = node.ping(ep, now: now)
        dht.node = node
        dhtSend(out)
    }
}
