import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

// Proves the real-peer harness (BitTorrentPeers.swift, Tests/peers/) without the Peerhost plugin:
// real clients exchange real torrents with each other over 127.0.0.1, and every file arrives
// byte-identical. If these fail, a BitTorrent plugin test that uses the same helpers would fail
// for the harness's reasons, not the plugin's. Each test is bounded (a few MiB, ≤ 60 s waits) and
// its processes are stopped in defer (and killed by deinit, tether.py or lt_peer.py otherwise).
extension Integration {
    @Suite(.serialized) struct BitTorrentPeerHarness {
        /// A seeding folder with a multi-file tree and its torrent.
        struct Swarm {
            let root: String
            let seedDir: String      // holds <name>/…
            let content: String      // seedDir/<name>
            let torrent: TestTorrent

            init(label: String, files: Int = 7, totalSize: Int = 3 << 20, pieceLength: Int = 64 << 10, trackers: [String] = []) throws {
                root = try BitTorrentPeers.temporaryDirectory(label)
                seedDir = root + "/seed"
                content = seedDir + "/content"
                try TestContent.tree(at: content, files: files, totalSize: totalSize)
                torrent = try TestContent.torrent(of: content, out: root + "/content.torrent", pieceLength: pieceLength, trackers: trackers)
            }

            func leechDir(_ name: String) throws -> String {
                let dir = root + "/" + name
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                return dir
            }

            func remove() { try? FileManager.default.removeItem(atPath: root) }
        }

        @Test func missingPeerProgramFailsNamingThePackage() throws {
            #expect(throws: TestFailure.self) { try BitTorrentPeers.require("no-such-bt-client", package: "no-such-package") }
            do {
                _ = try BitTorrentPeers.require("no-such-bt-client", package: "no-such-package")
            } catch let failure as TestFailure {
                #expect(failure.description.contains("install the Debian package no-such-package"))
            }
            // The real ones are installed by `make test`: their absence fails here, naming the package.
            _ = try BitTorrentPeers.require("aria2c", package: "aria2")
            _ = try BitTorrentPeers.require("transmission-cli", package: "transmission-cli")
            _ = try BitTorrentPeers.require("opentracker", package: "opentracker")
            _ = try BitTorrentPeers.require("mktorrent", package: "mktorrent")
            try BitTorrentPeers.requireLibtorrent()
        }

        /// Content is deterministic, and mktorrent and libtorrent agree on the infohash (files in
        /// sorted order, v1 only): a ready test vector for the plugin's own torrent creation.
        @Test func contentIsDeterministicAndBothToolsAgree() throws {
            let a = try Swarm(label: "content-a")
            defer { a.remove() }
            let b = try BitTorrentPeers.temporaryDirectory("content-b")
            defer { try? FileManager.default.removeItem(atPath: b) }
            let layout = try TestContent.tree(at: b + "/content")
            #expect(layout.count == 7)
            #expect(layout.values.reduce(0, +) == 3 << 20)
            #expect(layout.values.contains(1000))
            try TestContent.expectIdentical(a.content, b + "/content")
            let viaMktorrent = try TestContent.torrent(of: b + "/content", out: b + "/m.torrent", pieceLength: 64 << 10, tool: "mktorrent")
            #expect(viaMktorrent.infoHash == a.torrent.infoHash)
            #expect(a.torrent.infoHash.count == 40)
            #expect(a.torrent.pieceCount == (3 << 20) / (64 << 10))
            #expect(a.torrent.files.count == 7)
            // A changed byte is found and located.
            let victim = b + "/content/file-0.dat"
            let handle = try #require(FileHandle(forUpdatingAtPath: victim))
            try handle.seek(toOffset: 12345)
            let old = handle.readData(ofLength: 1)
            try handle.seek(toOffset: 12345)
            handle.write(Data([old[0] ^ 0xFF]))
            try handle.close()
            #expect(throws: TestFailure.self) { try TestContent.expectIdentical(a.content, b + "/content") }
            #expect(TestContent.firstDifference(a.content + "/file-0.dat", victim).contains("offset 12345"))
        }

        @Test(.timeLimit(.minutes(2))) func libtorrentSeederToLibtorrentLeecherByPeerAddress() throws {
            let swarm = try Swarm(label: "lt-lt")
            defer { swarm.remove() }
            let seeder = try LibtorrentPeer(torrent: swarm.torrent.path, save: swarm.seedDir, seed: true, timeout: 90)
            defer { seeder.stop() }
            #expect(seeder.infoHash == swarm.torrent.infoHash)
            let leechDir = try swarm.leechDir("leech")
            let leecher = try LibtorrentPeer(torrent: swarm.torrent.path, save: leechDir, peers: [seeder.endpoint],
                                             exitWhenComplete: true, timeout: 60)
            defer { leecher.stop() }
            let done = try leecher.waitForCompletion(timeout: .seconds(60))
            #expect(done["total_download"] as? Int ?? 0 >= swarm.torrent.totalSize)
            try TestContent.expectIdentical(swarm.content, leechDir + "/content")
            try seeder.waitForUpload(atLeast: swarm.torrent.totalSize, timeout: .seconds(10))
            #expect(seeder.stop() == 0)
            #expect(seeder.events("done").last?["outcome"] as? String == "stopped")
        }

        /// A single-file torrent made by mktorrent (what a user would make), served by libtorrent.
        @Test(.timeLimit(.minutes(2))) func singleFileTorrentFromMktorrent() throws {
            let root = try BitTorrentPeers.temporaryDirectory("single")
            defer { try? FileManager.default.removeItem(atPath: root) }
            try FileManager.default.createDirectory(atPath: root + "/seed", withIntermediateDirectories: true)
            let size = 16 << 20 | 12345   // not a piece multiple: a short last piece
            try TestContent.file(at: root + "/seed/big.bin", size: size)
            let torrent = try TestContent.torrent(of: root + "/seed/big.bin", out: root + "/big.torrent", pieceLength: 256 << 10, tool: "mktorrent")
            #expect(torrent.totalSize == size)
            #expect(torrent.pieceCount == size / (256 << 10) + 1)
            let seeder = try LibtorrentPeer(torrent: torrent.path, save: root + "/seed", seed: true, timeout: 90)
            defer { seeder.stop() }
            try FileManager.default.createDirectory(atPath: root + "/leech", withIntermediateDirectories: true)
            let leecher = try LibtorrentPeer(torrent: torrent.path, save: root + "/leech", peers: [seeder.endpoint],
                                             exitWhenComplete: true, timeout: 60)
            defer { leecher.stop() }
            try leecher.waitForCompletion(timeout: .seconds(60))
            try TestContent.expectIdentical(root + "/seed/big.bin", root + "/leech/big.bin")
        }

        @Test(.timeLimit(.minutes(2))) func magnetLinkFetchesMetadataFromALibtorrentSeeder() throws {
            let swarm = try Swarm(label: "magnet", files: 3, totalSize: 1 << 20)
            defer { swarm.remove() }
            let seeder = try LibtorrentPeer(torrent: swarm.torrent.path, save: swarm.seedDir, seed: true, timeout: 90)
            defer { seeder.stop() }
            let leechDir = try swarm.leechDir("leech")
            // Reconnect: one connect_peer that the seeder happens to drop (seen once in CI, 0 peers
            // for 60 s) must not sink a test of the harness.
            let leecher = try LibtorrentPeer(magnet: swarm.torrent.magnet, save: leechDir, peers: [seeder.endpoint],
                                             reconnectEvery: 5, exitWhenComplete: true, timeout: 60)
            defer { leecher.stop() }
            try leecher.waitForCompletion(timeout: .seconds(60))
            #expect(!leecher.events("metadata").isEmpty)
            try TestContent.expectIdentical(swarm.content, leechDir + "/content")
        }

        /// DHT on loopback: a bootstrap node, a seeder that announces to it, a magnet leecher that
        /// knows only the bootstrap node.
        @Test(.timeLimit(.minutes(2))) func magnetThroughLibtorrentDHTOnLoopback() throws {
            let swarm = try Swarm(label: "dht", files: 3, totalSize: 1 << 20)
            defer { swarm.remove() }
            let node = try LibtorrentPeer(dht: true, timeout: 90)
            defer { node.stop() }
            let bootstrap = "127.0.0.1:\(try #require(node.dhtPort))"
            let seeder = try LibtorrentPeer(torrent: swarm.torrent.path, save: swarm.seedDir, seed: true,
                                            dht: true, dhtBootstrap: [bootstrap], timeout: 90)
            defer { seeder.stop() }
            // Its announce reached the node (lt_peer announces every 5 s until then).
            try node.waitForEvent("dht_announce", timeout: .seconds(30)) { $0["info_hash"] as? String == swarm.torrent.infoHash }
            let leechDir = try swarm.leechDir("leech")
            let leecher = try LibtorrentPeer(magnet: swarm.torrent.magnet, save: leechDir, dht: true,
                                             dhtBootstrap: [bootstrap], exitWhenComplete: true, timeout: 60)
            defer { leecher.stop() }
            try leecher.waitForCompletion(timeout: .seconds(60))
            try TestContent.expectIdentical(swarm.content, leechDir + "/content")
        }

        @Test(.timeLimit(.minutes(2))) func openTrackerRefusesUnlistedInfohashes() throws {
            let listed = String(repeating: "ab", count: 20)
            let tracker = try OpenTracker(whitelist: [listed])
            defer { tracker.stop() }
            #expect(try tracker.announce(infoHash: listed).contains("5:peers"))
            let unlisted = String(repeating: "cd", count: 20)
            #expect(try tracker.announce(infoHash: unlisted).contains("not authorized"))
            try tracker.allow(unlisted)  // SIGHUP: opentracker re-reads its whitelist
            try waitUntil("opentracker to accept the newly listed infohash", timeout: .seconds(10)) {
                try tracker.announce(infoHash: unlisted).contains("5:peers")
            }
            tracker.stop()  // SIGINT (it blocks SIGTERM), through the tether, within its grace
            #expect(!tracker.process.isRunning)
        }

        @Test(.timeLimit(.minutes(2))) func libtorrentSeederThroughOpenTrackerToAria2Leecher() throws {
            let swarm = try Swarm(label: "aria2")
            defer { swarm.remove() }
            let tracker = try OpenTracker(whitelist: [swarm.torrent.infoHash])
            defer { tracker.stop() }
            let seeder = try LibtorrentPeer(torrent: swarm.torrent.path, save: swarm.seedDir, seed: true,
                                            trackers: [tracker.announceURL], timeout: 90)
            defer { seeder.stop() }
            try seeder.waitForAnnounce()
            let leechDir = try swarm.leechDir("leech")
            let aria2 = try Aria2Peer(torrent: swarm.torrent.path, directory: leechDir, trackers: [tracker.announceURL])
            defer { aria2.stop() }
            try aria2.waitForCompletion(timeout: .seconds(60))
            try TestContent.expectIdentical(swarm.content, leechDir + "/content")
            try seeder.waitForUpload(atLeast: swarm.torrent.totalSize, timeout: .seconds(10))
        }

        /// Transmission does not connect out to 127.x: the seeder re-announces every second and
        /// connects to Transmission once the tracker lists it.
        @Test(.timeLimit(.minutes(2))) func libtorrentSeederThroughOpenTrackerToTransmissionLeecher() throws {
            let swarm = try Swarm(label: "transmission")
            defer { swarm.remove() }
            let tracker = try OpenTracker(whitelist: [swarm.torrent.infoHash])
            defer { tracker.stop() }
            // transmission-cli reads trackers only from the file.
            let tracked = try TestContent.retrack(swarm.torrent.path, out: swarm.root + "/tracked.torrent", trackers: [tracker.announceURL])
            #expect(tracked.infoHash == swarm.torrent.infoHash)
            let seeder = try LibtorrentPeer(torrent: swarm.torrent.path, save: swarm.seedDir, seed: true,
                                            trackers: [tracker.announceURL], reannounceEvery: 1, timeout: 90)
            defer { seeder.stop() }
            try seeder.waitForAnnounce()
            let leechDir = try swarm.leechDir("leech")
            let transmission = try TransmissionPeer(torrent: tracked.path, directory: leechDir)
            defer { transmission.stop() }
            try transmission.waitForCompletion(timeout: .seconds(60))
            try TestContent.expectIdentical(swarm.content, leechDir + "/content")
        }

        /// The other direction for both: aria2 seeds through the tracker (UDP announce for the
        /// libtorrent leecher), Transmission seeds to a libtorrent leecher that connects to it.
        @Test(.timeLimit(.minutes(2))) func aria2AndTransmissionSeedToLibtorrent() throws {
            let swarm = try Swarm(label: "seeders", files: 4, totalSize: 2 << 20)
            defer { swarm.remove() }
            let tracker = try OpenTracker(whitelist: [swarm.torrent.infoHash])
            defer { tracker.stop() }

            let aria2 = try Aria2Peer(torrent: swarm.torrent.path, directory: swarm.seedDir, seed: true, trackers: [tracker.announceURL])
            defer { aria2.stop() }
            try aria2.waitUntilSeeding(timeout: .seconds(60))
            let fromAria2 = try swarm.leechDir("from-aria2")
            try waitUntil("aria2 announced to the tracker", timeout: .seconds(20)) {
                try tracker.announce(infoHash: swarm.torrent.infoHash, port: 1, left: 1).contains("8:completei1e")
            }
            let leecher1 = try LibtorrentPeer(torrent: swarm.torrent.path, save: fromAria2, trackers: [tracker.udpAnnounceURL],
                                              exitWhenComplete: true, timeout: 60)
            defer { leecher1.stop() }
            try leecher1.waitForCompletion(timeout: .seconds(60))
            try TestContent.expectIdentical(swarm.content, fromAria2 + "/content")
            aria2.stop()

            let transmission = try TransmissionPeer(torrent: swarm.torrent.path, directory: swarm.seedDir)
            defer { transmission.stop() }
            try transmission.waitUntilSeeding(timeout: .seconds(60))
            let fromTransmission = try swarm.leechDir("from-transmission")
            let leecher2 = try LibtorrentPeer(torrent: swarm.torrent.path, save: fromTransmission, peers: [transmission.endpoint],
                                              exitWhenComplete: true, timeout: 60)
            defer { leecher2.stop() }
            try leecher2.waitForCompletion(timeout: .seconds(60))
            try TestContent.expectIdentical(swarm.content, fromTransmission + "/content")
        }

        /// A tethered program (aria2c, transmission-cli, opentracker) dies with its tether, even
        /// when the tether is SIGKILLed (PR_SET_PDEATHSIG), so a crashed test leaves no peer behind.
        @Test(.timeLimit(.minutes(1))) func peersDoNotOutliveTheirParent() throws {
            let tethered = try PeerProcess(name: "tethered sleep", executable: "/bin/sleep", arguments: ["300"], tethered: true)
            var child: Int32 = 0
            try waitUntil("the tether to start sleep") {
                let text = (try? String(contentsOfFile: "/proc/\(tethered.pid)/task/\(tethered.pid)/children", encoding: .utf8)) ?? ""
                child = Int32(text.split(separator: " ").first ?? "") ?? 0
                return child > 0
            }
            kill(tethered.pid, SIGKILL)  // the tether dies without cleaning up: PDEATHSIG must
            try waitUntil("sleep to die with its tether", timeout: .seconds(5)) { kill(child, 0) != 0 || isZombie(child) }
            _ = tethered.stop()
        }

        private func isZombie(_ pid: Int32) -> Bool {
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
            guard let close = stat.lastIndex(of: ")") else { return true }
            return stat[stat.index(close, offsetBy: 2)] == "Z"
        }
    }
}
