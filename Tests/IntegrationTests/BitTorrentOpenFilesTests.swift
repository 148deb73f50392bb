import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    /// The plugin's open torrent files stay within `max_open_files` (every one is a descriptor the
    /// core holds for the plugin, under the host's `[tuning] plugin_descriptors`): a download closes
    /// the least recently used idle file (synced first when written), a check opens a file when it
    /// reaches it and closes it once past, and uploads reuse the same pool. Against libtorrent, on
    /// a torrent of 40 files with room for 4.
    @Suite(.serialized) struct BitTorrentOpenFilesTests {
        static let room = 4

        /// 40 files of 20,000 bytes (unequal to the 16 KiB pieces, so pieces straddle files) and
        /// their torrent.
        static func manyFiles(_ label: String) throws -> (source: String, torrent: TestTorrent) {
            let dir = try BitTorrentPeers.temporaryDirectory("bt-\(label)")
            for i in 0..<40 {
                try TestContent.file(at: "\(dir)/\(label)/part-\(String(format: "%02d", i)).bin", size: 20_000, seed: "\(label)-\(i)")
            }
            let torrent = try TestContent.torrent(of: dir + "/" + label, out: dir + "/\(label).torrent", pieceLength: 16 << 10)
            return (dir, torrent)
        }

        /// The plugin's `details.files` from its status method: open now, most at once, the limit.
        func files(_ bt: BitTorrentHost) throws -> [String: Int] {
            let (code, out) = try bt.ctl(["status"])
            guard code == 0, let doc = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any],
                  let files = (doc["details"] as? [String: Any])?["files"] as? [String: Int] else {
                throw TestFailure("ctl bittorrent status: \(out)")
            }
            return files
        }

        @Test(.timeLimit(.minutes(3))) func fortyFilesThroughRoomForFour() throws {
            let (source, torrent) = try Self.manyFiles("fortyfiles")
            let seeder = try LibtorrentPeer(torrent: torrent.path, save: source, seed: true)
            defer { _ = seeder.stop() }

            // Download: every piece's blocks are written through at most 4 open files.
            let leech = try BitTorrentHost(settings: "max_open_files = \(Self.room)")
            defer { _ = leech.host.stop() }
            let id = try leech.add(torrent.path, peers: [seeder.endpoint])
            try leech.waitComplete(id)
            try TestContent.expectIdentical(source + "/fortyfiles", leech.downloads + "/fortyfiles")
            let downloaded = try files(leech)
            #expect(downloaded["max"] == Self.room)
            #expect((1...Self.room).contains(downloaded["peak"] ?? 0), "\(downloaded)")
            #expect((downloaded["open"] ?? 99) <= Self.room, "\(downloaded)")
            // 40 files through room for 4: at least 36 were closed to make room, and the written
            // ones were synced before their close.
            #expect((downloaded["closed_for_room"] ?? 0) >= 40 - Self.room, "\(downloaded)")
            #expect((downloaded["synced_before_close"] ?? 0) >= 1, "\(downloaded)")
            #expect((downloaded["synced_before_close"] ?? 0) <= (downloaded["closed_for_room"] ?? 0), "\(downloaded)")

            // Its resume record (written only once those syncs were answered) names every piece:
            // the plugin killed and restarted comes back seeding without fetching anything.
            let sentBefore = try leech.info(id)["downloaded"] as? Int ?? -1
            let pid = try status(leech.host, "bittorrent")["pid"] as? Int ?? 0
            try #require(pid > 0)
            try waitUntil("the resume record saved", timeout: .seconds(20)) { try leech.info(id)["saved_pieces"] as? Int == torrent.pieceCount }
            kill(pid_t(pid), SIGKILL)
            try waitUntil("the plugin restarted", timeout: .seconds(30)) {
                let s = try status(leech.host, "bittorrent")
                return s["state"] as? String == "running" && (s["pid"] as? Int ?? 0) != pid
            }
            try leech.waitComplete(id, timeout: .seconds(30))
            #expect(try leech.info(id)["downloaded"] as? Int == sentBefore, "nothing fetched again after the restart")
            try TestContent.expectIdentical(source + "/fortyfiles", leech.downloads + "/fortyfiles")

            // Check and seed: a second host finds the data in place, checks it file by file and
            // serves a libtorrent leecher through the same 4.
            let seed = try BitTorrentHost(settings: "max_open_files = \(Self.room)")
            defer { _ = seed.host.stop() }
            try FileManager.default.createDirectory(atPath: seed.downloads, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: source + "/fortyfiles", toPath: seed.downloads + "/fortyfiles")
            let seeded = try seed.add(torrent.path)
            try seed.waitComplete(seeded)
            #expect(try seed.info(seeded)["pieces_have"] as? Int == torrent.pieceCount, "the check found every piece")
            let afterCheck = try files(seed)
            #expect((1...Self.room).contains(afterCheck["peak"] ?? 0), "the check held one piece's files: \(afterCheck)")
            #expect(afterCheck["open"] == 0, "the check closed what it opened: \(afterCheck)")
            let out = try BitTorrentPeers.temporaryDirectory("bt-fortyfiles-out")
            let leecher = try LibtorrentPeer(torrent: torrent.path, save: out, peers: ["127.0.0.1:\(seed.port)"], exitWhenComplete: true)
            _ = try leecher.waitForCompletion(timeout: .seconds(90))
            try TestContent.expectIdentical(source + "/fortyfiles", out + "/fortyfiles")
            let seeding = try files(seed)
            #expect((1...Self.room).contains(seeding["peak"] ?? 0), "\(seeding)")
            #expect(seeding["synced_before_close"] == 0, "reading leaves nothing to sync: \(seeding)")
        }
    }
}
