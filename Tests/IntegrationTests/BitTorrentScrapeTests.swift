import Foundation
import Testing

extension Integration {
    /// Scrapes (BEP 48 over HTTP, BEP 15 over UDP) against Debian's opentracker: once the tracker
    /// accepted a started announce, the plugin asks it for the swarm's counts and shows them in
    /// `ctl bittorrent info` (`swarm`) and in /metrics; a tracker URL with no scrape form is named in
    /// `scrape_error` and does not stop the announces.
    @Suite(.serialized) struct BitTorrentScrapeTests {
        /// Seeds `label` from a copy of its content: the plugin checks it and announces as a seeder.
        func seed(_ bt: BitTorrentHost, _ label: String, tracker: String, _ opentracker: OpenTracker) throws -> String {
            let (source, torrent) = try BitTorrentInteropTests.content(label, size: 1 << 20, trackers: [tracker])
            try opentracker.allow(torrent.infoHash)
            try FileManager.default.createDirectory(atPath: bt.downloads, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: source + "/" + label, toPath: bt.downloads + "/" + label)
            let id = try bt.add(torrent.path)
            try bt.waitComplete(id)
            return id
        }

        @Test(.timeLimit(.minutes(2))) func aSeedersSwarmIsScrapedOverHTTPAndUDP() throws {
            let tracker = try OpenTracker(whitelist: [])
            defer { _ = tracker.stop() }
            let bt = try BitTorrentHost()
            defer { _ = bt.host.stop() }
            // opentracker answers announces at "/ann" too; it has no BEP 48 scrape form
            // ("/announce" → "/scrape"), so that torrent announces but cannot be scraped.
            let noScrapeURL = "http://127.0.0.1:\(tracker.port)/ann"
            let viaHTTP = try seed(bt, "scrape-http", tracker: tracker.announceURL, tracker)
            let viaUDP = try seed(bt, "scrape-udp", tracker: tracker.udpAnnounceURL, tracker)
            let unscrapable = try seed(bt, "scrape-none", tracker: noScrapeURL, tracker)

            for (id, url) in [(viaHTTP, tracker.announceURL), (viaUDP, tracker.udpAnnounceURL)] {
                var swarm: [String: Any] = [:]
                try waitUntil("a scrape of \(url)", timeout: .seconds(30)) {
                    swarm = try bt.info(id)["swarm"] as? [String: Any] ?? [:]
                    return !swarm.isEmpty
                }
                // We are the only peer the tracker has heard of for this torrent, and a seeder.
                #expect(swarm["seeders"] as? Int == 1, "\(url): \(swarm)")
                #expect(swarm["leechers"] as? Int == 0, "\(url): \(swarm)")
                #expect(swarm["downloaded"] is Int, "\(url): \(swarm)")
                #expect(swarm["tracker"] as? String == url)
                #expect((swarm["age_seconds"] as? Int ?? -1) >= 0)
                #expect(try bt.info(id)["scrape_error"] == nil)
                // /metrics has what the host's last status poll (every 2 s) got.
                let labels = "{plugin=\"bittorrent\",infohash=\"\(id)\"}"
                try waitUntil("the counts in /metrics", timeout: .seconds(10)) {
                    let metrics = try bt.host.metrics()
                    return metrics["peerhost_bt_swarm_seeders" + labels] == 1 && metrics["peerhost_bt_swarm_leechers" + labels] == 0
                }
            }

            try bt.waitAnnounced(unscrapable)
            var info: [String: Any] = [:]
            try waitUntil("the scrape refused for want of a scrape URL", timeout: .seconds(30)) {
                info = try bt.info(unscrapable)
                return info["scrape_error"] != nil
            }
            let error = info["scrape_error"] as? String ?? ""
            #expect(error.hasPrefix(noScrapeURL + ": ") && error.contains("no scrape URL"), "\(error)")
            #expect(info["swarm"] == nil)
            #expect(info["announced"] as? Bool == true, "a scrape that cannot be made leaves the announces alone")
            #expect(info["tracker_error"] == nil)
        }
    }
}
