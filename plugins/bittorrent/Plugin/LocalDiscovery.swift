// Local peer discovery (BEP 14) on the plugin's multicast grant. The plugin binds the group
// address ("udp:239.192.152.143:6771"); the core joins the group on the host's interfaces and lets
// this socket send to the group only, a few datagrams a minute (MulticastSendBudget in the core).
// Announces name every active public torrent (as many datagrams as the 1400-byte limit takes,
// round-robin, at most one a minute: LocalPeerDiscovery.Scheduler); an announce we receive for one
// of our public torrents adds the sender's IP with the announced port as a peer (source "lsd").
// Private torrents (BEP 27) are never announced nor taken from LSD.
import PeerhostSDK
import BitTorrentProtocol

/// The LPD side of the plugin (one per plugin).
struct LocalDiscoveryState {
    var socket: Connection?
    /// Why LPD is off: not granted, no multicast interface, …; nil while it works or is disabled.
    var error: String?
    var scheduler = LocalPeerDiscovery.Scheduler()
    /// Tells our own announces (looped back by multicast) from others'.
    var cookie = ""
    var announcesSent = 0
    var announcesReceived = 0
    var peersFound = 0
    var malformed = 0
}

extension BitTorrentPlugin {
    /// Binds the LPD group when `lpd` is on (default). A refusal (no `net.multicast` grant, no
    /// multicast-capable interface) only turns LPD off: trackers, DHT and direct peers still work.
    func lpdStart() {
        guard settings.lpd else { return }
        var rng = SystemRandomNumberGenerator()
        lpd.cookie = InetText.hex((0..<4).map { _ in UInt8.random(in: 0...255, using: &rng) })
        let group = LocalPeerDiscovery.groupAddress()
        do {
            let r = try host.udpBind(group)
            pending[r] = .udp(.lpdBind)
        } catch {
            lpdFailed("bind \(group): \(error)")
        }
    }

    func lpdBound(_ result: Result<Int64, PluginError>) {
        switch result {
        case .success(let s):
            lpd.socket = Connection(s)
            host.log(.info, "bittorrent: local peer discovery on \(LocalPeerDiscovery.groupAddress())")
        case .failure(let e):
            lpdFailed("bind \(LocalPeerDiscovery.groupAddress()): \(e)")
        }
    }

    private func lpdFailed(_ why: String) {
        lpd.error = why
        host.log(.info, "bittorrent: local peer discovery off: \(why)")
    }

    /// Once a second: the next announce, when the scheduler says one is due.
    func lpdTick() {
        guard let socket = lpd.socket else { return }
        let hashes = order.compactMap { h -> [UInt8]? in
            guard let t = torrents[h], t.active, !t.isPrivate else { return nil }
            return h.bytes
        }
        guard let datagram = lpd.scheduler.due(infoHashes: hashes, port: settings.listenPort, cookie: lpd.cookie, now: now) else {
            return
        }
        if sendDatagram(datagram, on: socket, to: LocalPeerDiscovery.groupAddress()) { lpd.announcesSent += 1 }
    }

    /// True when the datagram arrived on the LPD socket (and was handled here).
    func lpdDatagram(_ socket: Connection, _ from: String, _ bytes: [UInt8]) -> Bool {
        guard socket == lpd.socket else { return false }
        guard let source = UDPEndpoint(address: from) else { return true }
        let announce: LocalPeerDiscovery.Announce?
        do {
            announce = try LocalPeerDiscovery.decode(bytes, ownCookie: lpd.cookie)
        } catch {
            lpd.malformed += 1
            host.log(.debug, "bittorrent: from \(from): \(error)")
            return true
        }
        guard let announce else { return true }   // our own, looped back
        lpd.announcesReceived += 1
        for hash in announce.infoHashes {
            guard let h = InfoHash(bytes: hash), let t = torrents[h], t.active, !t.isPrivate else { continue }
            for peer in announce.peers(sourceHost: source.host) {
                if addAddress(t, peer.address, source: "lsd") { lpd.peersFound += 1 }
            }
        }
        return true
    }
}
