import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The soak switches, read from the environment (`make soak` sets them): how many leechers in a
/// row, and whether the long aria2/Transmission runs happen at all.
enum SeedingSoak {
    /// PEERHOST_SOAK=1 turns on the runs against aria2 and Transmission.
    static var enabled: Bool { ProcessInfo.processInfo.environment["PEERHOST_SOAK"] == "1" }

    /// The integer in `variable` (> 0), or `fallback` when it is unset or empty; anything else
    /// fails the test rather than quietly soaking less.
    static func count(_ variable: String, default fallback: Int) throws -> Int {
        guard let text = ProcessInfo.processInfo.environment[variable]?.trimmingCharacters(in: .whitespaces), !text.isEmpty else {
            return fallback
        }
        guard let n = Int(text), n > 0 else { throw TestFailure("\(variable)=\(text): expected an integer > 0") }
        return n
    }
}

extension Integration {
    /// Seeding must give every leecher the exact bytes, every time: one host seeds a 64 MiB
    /// single-file torrent (256 KiB pieces, so every piece message is 16 blocks the core sends under
    /// backpressure) to fresh leechers one after the other, and each download is compared with the
    /// source (sha256). A run that stalls fails at its timeout with its number in the message; the
    /// other runs still go. Loopback only, TCP only (uTP off in the peers).
    ///
    /// PEERHOST_SOAK_RUNS (default 5) sets the libtorrent runs; PEERHOST_SOAK=1 adds the aria2 and
    /// Transmission runs (PEERHOST_SOAK_PEER_RUNS each, default 5). `make soak` runs this suite
    /// with 20 libtorrent runs.
    @Suite(.serialized) struct BitTorrentSeedingIntegrityTests {
        static let size = 64 << 20
        static let pieceLength = 256 << 10
        /// Seconds one leecher may take for the whole 64 MiB (the 96 MiB libtorrent download test
        /// allows 120 s on the debug build too).
        static let runSeconds = 120

        /// Deterministic content and its v1 torrent (a single 64 MiB file by default).
        static func content(_ label: String, multiFile: Bool = false, size: Int = size, pieceLength: Int = pieceLength,
                            trackers: [String] = []) throws -> (source: String, torrent: TestTorrent) {
            try BitTorrentInteropTests.content(label, multiFile: multiFile, size: size, pieceLength: pieceLength, trackers: trackers)
        }

        /// A host seeding `torrent`: the data copied into its download directory, added, checked.
        static func seedingHost(_ source: String, _ label: String, _ torrent: TestTorrent) throws -> (BitTorrentHost, String) {
            let bt = try BitTorrentHost()
            do {
                try FileManager.default.createDirectory(atPath: bt.downloads, withIntermediateDirectories: true)
                try FileManager.default.copyItem(atPath: source + "/" + label, toPath: bt.downloads + "/" + label)
                let id = try bt.add(torrent.path)
                try bt.waitComplete(id, timeout: .seconds(120))
                return (bt, id)
            } catch {
                _ = bt.host.stop()
                throw error
            }
        }

        /// The plugin's `uploaded` counter for the torrent (bytes queued to peers, every incarnation).
        static func uploaded(_ bt: BitTorrentHost, _ id: String) throws -> Int {
            guard let n = try bt.info(id)["uploaded"] as? Int else { throw TestFailure("no \"uploaded\" in info \(id)") }
            return n
        }

        /// What the plugin says about the torrent, for a failure message (never throws).
        static func pluginView(_ bt: BitTorrentHost, _ id: String) -> String {
            guard let i = try? bt.info(id) else { return "plugin info unavailable (host running: \(bt.host.process.isRunning))" }
            return "plugin: state \(i["state"] ?? "?"), peers \(i["peers"] ?? "?"), uploaded \(i["uploaded"] ?? "?"), up_rate \(i["up_rate"] ?? "?")"
        }

        /// `runs` leechers in a row, each into a fresh directory through `leech(run, directory)`
        /// (start the peer, wait within `runSeconds`): then its copy must be byte-identical and the
        /// plugin's `uploaded` must have grown by the torrent's size at least. A failed run is
        /// recorded with its number and the next one starts (unless the host is gone). A finished
        /// run's directory is removed; the first failed one is kept (its path is in the message).
        /// Returns the number of failed runs.
        @discardableResult
        static func repeatRuns(_ what: String, runs: Int, bt: BitTorrentHost, id: String, label: String, source: String,
                               torrent: TestTorrent, _ leech: (_ run: Int, _ directory: String) throws -> Void) -> Int {
            var failed = 0
            var kept: String?
            for run in 1...runs {
                guard bt.host.process.isRunning else {
                    Issue.record("\(what) run \(run) of \(runs): the host exited (status \(bt.host.process.terminationStatus)); runs \(run)-\(runs) not attempted")
                    failed += runs - run + 1
                    break
                }
                let started = ContinuousClock.now
                var directory: String?
                do {
                    let before = try uploaded(bt, id)
                    let dir = try BitTorrentPeers.temporaryDirectory("bt-\(what)-run\(run)")
                    directory = dir
                    try leech(run, dir)
                    try TestContent.expectIdentical(source + "/" + label, dir + "/" + label)
                    let after = try uploaded(bt, id)
                    guard after - before >= torrent.totalSize else {
                        throw TestFailure("uploaded grew by \(after - before) bytes (\(before) → \(after)) for a \(torrent.totalSize)-byte torrent")
                    }
                    try? FileManager.default.removeItem(atPath: dir)
                } catch {
                    failed += 1
                    var keptNote = ""
                    if let dir = directory {
                        if kept == nil { kept = dir; keptNote = "; its download is kept in \(dir)" } else { try? FileManager.default.removeItem(atPath: dir) }
                    }
                    Issue.record("\(what) run \(run) of \(runs) failed after \(ContinuousClock.now - started): \(error)\n\(pluginView(bt, id))\(keptNote)")
                }
            }
            if failed > 0 { print("\(what): \(failed) of \(runs) runs failed") }
            return failed
        }

        /// The plugin never restarted while it seeded (a crash would hide behind its resume data).
        static func expectNoRestart(_ bt: BitTorrentHost, sourceLocation: SourceLocation = #_sourceLocation) {
            let plugin = (try? status(bt.host, "bittorrent")) ?? [:]
            #expect(plugin["restarts"] as? Int == 0, "the bittorrent plugin restarted while seeding: \(plugin)", sourceLocation: sourceLocation)
        }

        @Test func seedsA64MiBTorrentToLibtorrentFiveTimesInARow() throws {
            let runs = try SeedingSoak.count("PEERHOST_SOAK_RUNS", default: 5)
            let label = "integrity.bin"
            let (source, torrent) = try Self.content(label)
            defer { try? FileManager.default.removeItem(atPath: source) }
            #expect(torrent.totalSize == Self.size && torrent.pieceLength == Self.pieceLength && torrent.pieceCount == 256, "\(torrent)")
            let (bt, id) = try Self.seedingHost(source, label, torrent)
            defer { _ = bt.host.stop() }

            Self.repeatRuns("libtorrent", runs: runs, bt: bt, id: id, label: label, source: source, torrent: torrent) { _, dir in
                let leecher = try LibtorrentPeer(torrent: torrent.path, save: dir, peers: ["127.0.0.1:\(bt.port)"],
                                                 exitWhenComplete: true, timeout: Double(Self.runSeconds + 30))
                defer { _ = leecher.stop() }
                do {
                    _ = try leecher.waitForCompletion(timeout: .seconds(Self.runSeconds))
                } catch {
                    throw TestFailure("\(error)\nlibtorrent progress \(leecher.progress), last status \(leecher.lastStatus ?? [:])")
                }
            }
            Self.expectNoRestart(bt)
        }

        @Test(.enabled(if: SeedingSoak.enabled, "long runs against aria2 and Transmission: set PEERHOST_SOAK=1 (make soak)"))
        func seedsToAria2AndTransmissionRepeatedly() throws {
            let runs = try SeedingSoak.count("PEERHOST_SOAK_PEER_RUNS", default: 5)
            // aria2 learns our address from the tracker only; Transmission is dialled by us (it never
            // connects out to 127.x). One torrent, one seeding host, for both.
            let tracker = try OpenTracker(whitelist: [])
            defer { _ = tracker.stop() }
            let label = "integrity-peers.bin"
            let (source, torrent) = try Self.content(label, trackers: [tracker.announceURL])
            defer { try? FileManager.default.removeItem(atPath: source) }
            try tracker.allow(torrent.infoHash)
            let (bt, id) = try Self.seedingHost(source, label, torrent)
            defer { _ = bt.host.stop() }
            // aria2 announces once (the tracker's interval is long): our announce must be in first.
            try bt.waitAnnounced(id)

            Self.repeatRuns("aria2", runs: runs, bt: bt, id: id, label: label, source: source, torrent: torrent) { _, dir in
                let leecher = try Aria2Peer(torrent: torrent.path, directory: dir, trackers: [tracker.announceURL])
                defer { _ = leecher.stop() }
                do {
                    try leecher.waitForCompletion(timeout: .seconds(Self.runSeconds))
                } catch {
                    throw TestFailure("\(error)\naria2 progress \(leecher.percent.map { "\($0)%" } ?? "?")")
                }
            }

            Self.repeatRuns("transmission", runs: runs, bt: bt, id: id, label: label, source: source, torrent: torrent) { _, dir in
                let leecher = try TransmissionPeer(torrent: torrent.path, directory: dir)
                defer { _ = leecher.stop() }
                // It refuses peers while it verifies its (empty) data: dial once it has started.
                try leecher.waitUntilStarted()
                let again = try bt.add(torrent.path, peers: [leecher.endpoint])
                guard again == id else { throw TestFailure("adding the seeding torrent again gave \(again), not \(id)") }
                try leecher.waitForCompletion(timeout: .seconds(Self.runSeconds))
            }
            Self.expectNoRestart(bt)
        }

        /// An operator-granted download directory that the user deletes and creates again at the
        /// same path (`rm -rf D; mkdir D`) must be usable again: a later `add --dir D` opens files in
        /// the new directory, not under the host's handle on the deleted one (which made every open
        /// there fail with "cannot open …: PH_ENOENT"). docs/grants.md.
        @Test func aRecreatedGrantedDirectoryIsOpenedAgain() throws {
            let labelA = "before-recreate.bin", labelB = "after-recreate"
            let (sourceA, torrentA) = try Self.content(labelA, size: 4 << 20, pieceLength: 64 << 10)
            // B has folders: the new directory is also where the plugin makes subdirectories (PH_FILE_MKDIRS).
            let (sourceB, torrentB) = try Self.content(labelB, multiFile: true, size: 3 << 20, pieceLength: 64 << 10)
            defer { for dir in [sourceA, sourceB] { try? FileManager.default.removeItem(atPath: dir) } }
            let seederA = try LibtorrentPeer(torrent: torrentA.path, save: sourceA, seed: true, timeout: 300)
            defer { _ = seederA.stop() }
            let seederB = try LibtorrentPeer(torrent: torrentB.path, save: sourceB, seed: true, timeout: 300)
            defer { _ = seederB.stop() }
            // Absolute, mode 0755 (a world-writable one is refused), outside the host's data dir.
            let granted = try BitTorrentPeers.temporaryDirectory("bt-granted")
            defer { try? FileManager.default.removeItem(atPath: granted) }
            let bt = try BitTorrentHost()
            defer { _ = bt.host.stop() }

            // The user grants the directory, then downloads A into it (`add --dir` grants it again).
            let (grantCode, grantOut) = try bt.host.cli(["ctl", "host", "grant", "bittorrent", granted])
            #expect(grantCode == 0 && grantOut.contains("granted bittorrent: \(granted) rw"), "\(grantOut)")
            let idA = try bt.add(torrentA.path, peers: [seederA.endpoint], dir: granted)
            #expect(idA == torrentA.infoHash)
            try bt.waitComplete(idA)
            try TestContent.expectIdentical(sourceA + "/" + labelA, granted + "/" + labelA)

            // Done with A: remove it (its files stay), then the user empties the folder the blunt way.
            let (removeCode, removeOut) = try bt.ctl(["remove", idA])
            #expect(removeCode == 0, "\(removeOut)")
            try waitUntil("torrent A gone from the plugin", timeout: .seconds(10)) { (try? bt.info(idA)) == nil }
            let (rmCode, rmOut) = try runProgram("/bin/rm", ["-rf", granted])
            #expect(rmCode == 0 && !FileManager.default.fileExists(atPath: granted), "rm -rf \(granted): \(rmOut)")
            let (mkdirCode, mkdirOut) = try runProgram("/bin/mkdir", ["-m", "755", granted])
            #expect(mkdirCode == 0, "mkdir \(granted): \(mkdirOut)")

            // B into the same path: the new directory must be the one opened.
            let idB = try bt.add(torrentB.path, peers: [seederB.endpoint], dir: granted)
            #expect(idB == torrentB.infoHash)
            do {
                try bt.waitComplete(idB)
            } catch {
                throw TestFailure("torrent B into the recreated \(granted): \(error)")
            }
            try TestContent.expectIdentical(sourceB + "/" + labelB, granted + "/" + labelB)
            #expect(!FileManager.default.fileExists(atPath: granted + "/" + labelA), "A's file was deleted with the old directory")

            // Still one grant for the path, the same as before.
            let grants = try status(bt.host, "bittorrent")["grants"] as? [String] ?? []
            #expect(grants.filter { $0 == "storage \(granted) rw (operator)" }.count == 1, "\(grants)")
        }
    }
}
