import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    /// The bittorrent plugin against real clients on loopback (installed by `make test`; a missing
    /// one fails the test): libtorrent 2.0 (python3-libtorrent), aria2 and Transmission, through
    /// opentracker where a client cannot be told a peer's address. TCP only (uTP off in the peers).
    /// Every download is compared file by file (sha256) with the source.
    @Suite(.serialized) struct BitTorrentInteropTests {
        /// Deterministic content and its v1 torrent.
        static func content(_ label: String, multiFile: Bool = true, size: Int = 3 << 20, pieceLength: Int = 64 << 10,
                            trackers: [String] = []) throws -> (source: String, torrent: TestTorrent) {
            let dir = try BitTorrentPeers.temporaryDirectory("bt-\(label)")
            let data = dir + "/" + label
            if multiFile { _ = try TestContent.tree(at: data, totalSize: size, seed: label) } else { try TestContent.file(at: data, size: size, seed: label) }
            let torrent = try TestContent.torrent(of: data, out: dir + "/\(label).torrent", pieceLength: pieceLength, trackers: trackers)
            return (dir, torrent)
        }

        @Test func downloadsAMultiFileTorrentFromALibtorrentSeeder() throws {
            let (source, torrent) = try Self.content("multi")
            let seeder = try LibtorrentPeer(torrent: torrent.path, save: source, seed: true)
            defer { _ = seeder.stop() }
            let bt = try BitTorrentHost()
            defer { _ = bt.host.stop() }
            let id = try bt.add(torrent.path, peers: [seeder.endpoint])
            #expect(id == torrent.infoHash)
            try bt.waitComplete(id)
            try TestContent.expectIdentical(source + "/multi", bt.downloads + "/multi")
            let info = try bt.info(id)
            #expect(info["hash_failures"] as? Int == 0)
            #expect((info["download_seconds"] as? Double).map { $0 > 0 && $0 < 90 } == true, "from add to the last piece: \(info)")
            #expect((info["files"] as? [Any])?.count == torrent.files.count)
        }

        @Test func downloadsALargeSingleFileFromLibtorrent() throws {
            let (source, torrent) = try Self.content("large.bin", multiFile: false, size: 96 << 20, pieceLength: 256 << 10)
            let seeder = try LibtorrentPeer(torrent: torrent.path, save: source, seed: true)
            defer { _ = seeder.stop() }
            let bt = try BitTorrentHost()
            defer { _ = bt.host.stop() }
            let id = try bt.add(torrent.path, peers: [seeder.endpoint])
            try bt.waitComplete(id, timeout: .seconds(120))
            try TestContent.expectIdentical(source + "/large.bin", bt.downloads + "/large.bin")
        }

        @Test func seedsToALibtorrentLeecher() throws {
            let (source, torrent) = try Self.content("seedme")
            let bt = try BitTorrentHost()
            defer { _ = bt.host.stop() }
            // The data is already in the download directory: adding checks it and seeds.
            try FileManager.default.createDirectory(atPath: bt.downloads, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: source + "/seedme", toPath: bt.downloads + "/seedme")
            let id = try bt.add(torrent.path)
            try bt.waitComplete(id)
            let leech = try BitTorrentPeers.temporaryDirectory("bt-leech")
            let leecher = try LibtorrentPeer(torrent: torrent.path, save: leech, peers: ["127.0.0.1:\(bt.port)"], exitWhenComplete: true)
            _ = try leecher.waitForCompletion(timeout: .seconds(90))
            try TestContent.expectIdentical(source + "/seedme", leech + "/seedme")
            #expect((try bt.info(id)["uploaded"] as? Int ?? 0) >= torrent.totalSize)
        }

        @Test func fetchesAMagnetLinksMetadataFromLibtorrent() throws {
            let (source, torrent) = try Self.content("magnetic")
            let seeder = try LibtorrentPeer(torrent: torrent.path, save: source, seed: true)
            defer { _ = seeder.stop() }
            let bt = try BitTorrentHost()
            defer { _ = bt.host.stop() }
            let id = try bt.add(torrent.magnet, peers: [seeder.endpoint])
            #expect(id == torrent.infoHash)
            try bt.waitComplete(id)
            try TestContent.expectIdentical(source + "/magnetic", bt.downloads + "/magnetic")
            #expect(try bt.info(id)["name"] as? String == "magnetic")
        }

        @Test func exchangesWithAria2ThroughOpentracker() throws {
            // Seed to aria2: it learns our address from the tracker only.
            let tracker = try OpenTracker(whitelist: [])
            defer { _ = tracker.stop() }
            let (source, torrent) = try Self.content("aria", trackers: [tracker.announceURL])
            try tracker.allow(torrent.infoHash)
            let bt = try BitTorrentHost()
            defer { _ = bt.host.stop() }
            try FileManager.default.createDirectory(atPath: bt.downloads, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: source + "/aria", toPath: bt.downloads + "/aria")
            let id = try bt.add(torrent.path)
            try bt.waitComplete(id)
            // aria2 announces once (the tracker's interval is long): our announce must be in first.
            try bt.waitAnnounced(id)
            let leech = try BitTorrentPeers.temporaryDirectory("bt-aria-leech")
            let leecher = try Aria2Peer(torrent: torrent.path, directory: leech, trackers: [tracker.announceURL])
            try leecher.waitForCompletion(timeout: .seconds(90))
            try TestContent.expectIdentical(source + "/aria", leech + "/aria")

            // Download from an aria2 seeder: our plugin finds it through the tracker too.
            let (source2, torrent2) = try Self.content("aria2seed", trackers: [tracker.announceURL])
            try tracker.allow(torrent2.infoHash)
            let seeder = try Aria2Peer(torrent: torrent2.path, directory: source2, seed: true, trackers: [tracker.announceURL])
            defer { _ = seeder.stop() }
            try seeder.waitUntilSeeding()
            let id2 = try bt.add(torrent2.path)
            try bt.waitComplete(id2, timeout: .seconds(120))
            try TestContent.expectIdentical(source2 + "/aria2seed", bt.downloads + "/aria2seed")
        }

        @Test func exchangesWithTransmissionThroughOpentracker() throws {
            let tracker = try OpenTracker(whitelist: [])
            defer { _ = tracker.stop() }
            let (source, torrent) = try Self.content("trans", trackers: [tracker.announceURL])
            try tracker.allow(torrent.infoHash)
            let bt = try BitTorrentHost()
            defer { _ = bt.host.stop() }
            try FileManager.default.createDirectory(atPath: bt.downloads, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: source + "/trans", toPath: bt.downloads + "/trans")
            let id = try bt.add(torrent.path)
            try bt.waitComplete(id)
            try bt.waitAnnounced(id)
            let leech = try BitTorrentPeers.temporaryDirectory("bt-trans-leech")
            let leecher = try TransmissionPeer(torrent: torrent.path, directory: leech)
            defer { _ = leecher.stop() }
            // Transmission 3.00 never connects out to 127.x addresses (it only accepts): we connect to it.
            try leecher.waitUntilStarted()
            _ = try bt.add(torrent.path, peers: [leecher.endpoint])
            try leecher.waitForCompletion(timeout: .seconds(120))
            try TestContent.expectIdentical(source + "/trans", leech + "/trans")

            let (source2, torrent2) = try Self.content("transseed", trackers: [tracker.announceURL])
            try tracker.allow(torrent2.infoHash)
            let seeder = try TransmissionPeer(torrent: torrent2.path, directory: source2)
            defer { _ = seeder.stop() }
            try seeder.waitUntilSeeding()
            let id2 = try bt.add(torrent2.path, peers: [seeder.endpoint])
            try bt.waitComplete(id2, timeout: .seconds(120))
            try TestContent.expectIdentical(source2 + "/transseed", bt.downloads + "/transseed")
        }

        @Test func resumesAfterThePluginIsKilledWithoutFetchingVerifiedPiecesAgain() throws {
            let (source, torrent) = try Self.content("resume.bin", multiFile: false, size: 32 << 20, pieceLength: 256 << 10)
            // A slow seeder (2 MiB/s), so the kill lands mid-download.
            let seeder = try LibtorrentPeer(torrent: torrent.path, save: source, seed: true, uploadLimit: 2 << 20)
            defer { _ = seeder.stop() }
            // Resume records every 2 s (30 by default: each waits for an fsync of the files).
            let bt = try BitTorrentHost(settings: "resume_interval_s = 2")
            defer { _ = bt.host.stop() }
            let id = try bt.add(torrent.path, peers: [seeder.endpoint])
            var before = 0
            try waitUntil("a quarter of the pieces recorded in the store", timeout: .seconds(60)) {
                before = (try? bt.info(id)["saved_pieces"] as? Int) ?? 0
                return before >= torrent.pieceCount / 4
            }
            #expect(before < torrent.pieceCount, "killed mid-download")
            let pid = try status(bt.host, "bittorrent")["pid"] as? Int ?? 0
            #expect(pid > 0)
            kill(pid_t(pid), SIGKILL)
            try waitUntil("the plugin restarted", timeout: .seconds(30)) {
                let s = try status(bt.host, "bittorrent")
                return s["state"] as? String == "running" && (s["pid"] as? Int ?? 0) != pid
            }
            // After the restart the resume data says what is verified; nothing of it is fetched again.
            var resumed = 0
            try waitUntil("the torrent back from its resume data", timeout: .seconds(20)) {
                resumed = (try? bt.info(id)["pieces_have"] as? Int) ?? 0
                return resumed > 0
            }
            #expect(resumed >= before, "recorded pieces survive the kill (\(before) recorded before, \(resumed) after)")
            try bt.waitComplete(id, timeout: .seconds(90))
            try TestContent.expectIdentical(source + "/resume.bin", bt.downloads + "/resume.bin")
            // What the seeder sent in all: the whole torrent once, plus what was verified but not yet
            // recorded (at most ~2 s of its 2 MiB/s) or in flight at the kill. Fetching the recorded
            // pieces again would add all of them (a quarter of the torrent or more).
            usleep(1_500_000)   // its next status line
            let sent = seeder.lastStatus?["total_upload"] as? Int ?? 0
            #expect(sent >= torrent.totalSize - before * torrent.pieceLength, "the seeder's counter works (\(sent))")
            #expect(sent < torrent.totalSize + before * torrent.pieceLength * 3 / 4,
                    "sent \(sent) bytes for a \(torrent.totalSize)-byte torrent with \(before) pieces recorded: recorded pieces were fetched again")
        }
    }
}
