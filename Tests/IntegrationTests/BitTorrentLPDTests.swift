import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    /// Local peer discovery (BEP 14) against libtorrent: two hosts on a veth link, each in a network
    /// namespace of its own (multicast needs a real interface), no tracker, no DHT, no peer given.
    /// The plugin must find the libtorrent seeder through the group 239.192.152.143:6771 alone.
    @Suite(.serialized) struct BitTorrentLPDTests {
        /// Our announce: the seeder runs first, so the plugin's first announce (sent once the torrent
        /// is added) is what tells libtorrent about us; libtorrent connects and serves.
        @Test func aLibtorrentSeederFindsUsByOurAnnounce() throws {
            let (link, dir, torrent) = try Self.setUp(tag: "lsda", subnet: 72)
            defer { link.remove() }
            let seeder = try Self.seeder(link, dir, torrent)
            defer { _ = seeder.stop() }
            let bt = try BitTorrentHost(port: 7291, settings: "dht = false", listenHost: "0.0.0.0", netns: link.a)
            defer { _ = bt.host.stop() }
            let id = try bt.add(torrent.path)   // no --peer, no tracker, no DHT
            try seeder.process.waitForLine("libtorrent's lsd_peer for the plugin", timeout: .seconds(30)) {
                $0.contains("\"event\":\"lsd_peer\"") && $0.contains(link.addressA)
            }
            try bt.waitComplete(id, timeout: .seconds(90))
            try TestContent.expectIdentical(dir + "/lan.bin", bt.downloads + "/lan.bin")
            try waitUntil("the announce in the plugin's status (refreshed every 2 s)") {
                let lpd = try? Self.lpdStatus(bt)
                return lpd?["joined"] as? Bool == true && (lpd?["announces_sent"] as? Int ?? 0) >= 1
            }
        }

        /// Their announce: the plugin announces first (nobody hears it), then the seeder starts and
        /// announces; the plugin adds it as a peer (source "lsd") and downloads from it.
        @Test func weFindALibtorrentSeederByItsAnnounce() throws {
            let (link, dir, torrent) = try Self.setUp(tag: "lsdb", subnet: 73)
            defer { link.remove() }
            let bt = try BitTorrentHost(port: 7292, settings: "dht = false", listenHost: "0.0.0.0", netns: link.a)
            defer { _ = bt.host.stop() }
            let id = try bt.add(torrent.path)
            try waitUntil("the plugin's first announce") { ((try? Self.lpdStatus(bt))?["announces_sent"] as? Int ?? 0) >= 1 }
            let seeder = try Self.seeder(link, dir, torrent)
            defer { _ = seeder.stop() }
            try bt.waitComplete(id, timeout: .seconds(90))
            try TestContent.expectIdentical(dir + "/lan.bin", bt.downloads + "/lan.bin")
            // The status document is refreshed every 2 s: wait for the counters to catch up.
            var lpd: [String: Any] = [:]
            try waitUntil("the seeder's announce in the plugin's status") {
                lpd = (try? Self.lpdStatus(bt)) ?? [:]
                return (lpd["peers_found"] as? Int ?? 0) >= 1
            }
            #expect((lpd["announces_received"] as? Int ?? 0) >= 1, "\(lpd)")
            #expect(lpd["announces_sent"] as? Int == 1, "one announce per 5 minutes for one torrent: \(lpd)")
        }

        static func setUp(tag: String, subnet: Int) throws -> (NamespaceLink, String, TestTorrent) {
            let link = try NamespaceLink.make(tag: tag, subnet: subnet)
            let dir = try BitTorrentPeers.temporaryDirectory("bt-\(tag)")
            try TestContent.file(at: dir + "/lan.bin", size: 2 << 20, seed: tag)
            let torrent = try TestContent.torrent(of: dir + "/lan.bin", out: dir + "/lan.torrent", pieceLength: 64 << 10)
            return (link, dir, torrent)
        }

        /// A libtorrent seeder on the far side of the link with LSD on (and no other way to meet).
        static func seeder(_ link: NamespaceLink, _ dir: String, _ torrent: TestTorrent) throws -> LibtorrentPeer {
            try LibtorrentPeer(torrent: torrent.path, save: dir, seed: true, listenPort: 7290,
                               extraArguments: ["--bind", link.addressB, "--lsd"], netns: link.b)
        }

        /// details.lpd of the bittorrent plugin in `peerhost status --json`.
        static func lpdStatus(_ bt: BitTorrentHost) throws -> [String: Any] {
            let (_, text) = try bt.host.cli(["status", "--json"])
            guard let doc = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
                  let plugin = (doc["plugins"] as? [[String: Any]])?.first(where: { $0["name"] as? String == "bittorrent" }),
                  let lpd = (plugin["details"] as? [String: Any])?["lpd"] as? [String: Any] else {
                throw TestFailure("no details.lpd for bittorrent in status --json: \(text.prefix(2000))")
            }
            return lpd
        }
    }
}
