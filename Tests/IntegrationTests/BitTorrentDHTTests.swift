import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    /// The bittorrent plugin's Mainline DHT (BEP 5) and UDP trackers (BEP 15) against real peers:
    /// libtorrent 2.0 (Tests/peers/lt_peer.py, Debian's python3-libtorrent) and opentracker, all on
    /// loopback. A missing peer program fails the test. Ports: 6881 (our TCP and UDP), 7162 (opentracker), the rest
    /// ephemeral; run the suite in a network namespace of its own (helper-common: fixed ports).
    @Suite(.serialized) struct BitTorrentDHTTests {
        static let ourPort: UInt16 = 6881   // the only port the manifest grants

        /// A host with the bittorrent plugin on 127.0.0.1:6881 (BitTorrentHost: the bundled manifest
        /// with loopback grants, signed with the dev key).
        func dhtHost(_ settings: String, start: Bool = true) throws -> BitTorrentHost {
            try BitTorrentHost(port: Self.ourPort, settings: settings, start: start)
        }

        /// The plugin's status document (method "status"): {"details": {…}, "metrics": [{name, value, …}]}.
        func statusDocument(_ host: HostProcess) throws -> [String: Any] {
            let (code, out) = try host.cli(["ctl", "bittorrent", "status"])
            guard code == 0, let doc = try? JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any],
                  doc["details"] is [String: Any] else {
                throw TestFailure("ctl bittorrent status: exit \(code): \(out)")
            }
            return doc
        }

        func details(_ host: HostProcess) throws -> [String: Any] { try statusDocument(host)["details"] as! [String: Any] }

        /// Bytes the seeder reports having uploaded (its latest status line).
        fileprivate func uploaded(_ seeder: LTPeer) -> Int {
            seeder.events.last { $0["event"] as? String == "status" }?["total_upload"] as? Int ?? 0
        }

        /// Adds a torrent file or a magnet link: `peerhost ctl bittorrent add FILE|MAGNET` (the CLI
        /// front-end), else the generic control call add(bytes, dir, peers) of a CLI without it.
        func add(_ host: HostProcess, _ what: String) throws {
            let (code, out) = try host.cli(["ctl", "bittorrent", "add", what])
            if code == 0, !out.contains("\"error\"") { return }
            let arg = what.hasPrefix("magnet:") ? what : "@" + what
            let (code2, out2) = try host.cli(["ctl", "bittorrent", "add", arg, "", ""])
            guard code2 == 0, !out2.contains("\"error\"") else {
                throw TestFailure("ctl bittorrent add: exit \(code): \(out); generic form: exit \(code2): \(out2)")
            }
        }

        /// Polls until the torrent is seeding (every piece verified); fails with the last status.
        func waitSeeding(_ host: HostProcess, _ infoHash: String, within: Duration) throws {
            var last: [String: Any] = [:]
            let deadline = ContinuousClock.now + within
            while ContinuousClock.now < deadline {
                last = try details(host)
                let t = (last["torrents"] as? [[String: Any]])?.first { ($0["id"] as? String)?.lowercased() == infoHash }
                if t?["state"] as? String == "seeding" { return }
                if t?["state"] as? String == "failed" { break }
                usleep(250_000)
            }
            throw TestFailure("torrent \(infoHash) did not reach seeding within \(within); status: \(last)\n\(host.drainOutput().suffix(4000))")
        }

        /// @Test 1 (BEP 5): a libtorrent seeder with its DHT on loopback is our only bootstrap node;
        /// a magnet link with no peer and no tracker completes through the DHT alone.
        @Test(.timeLimit(.minutes(3))) func magnetDownloadsThroughTheDHT() throws {
            let work = try TestDir("dht")
            let content = try work.content(files: 3, totalSize: 1 << 20)
            let seeder = try LTPeer(["--torrent", content.torrent, "--save", work.path + "/seed", "--seed",
                                     "--dht", "--dht-announce-every", "2", "--timeout", "170"])
            defer { seeder.stop() }
            let dhtPort = try #require(seeder.ready["dht_port"] as? Int, "the seeder reports its DHT port")
            let host = try dhtHost("dht_bootstrap = [\"127.0.0.1:\(dhtPort)\"]").host
            defer { _ = host.stop() }
            try waitUntil("the plugin answers its status method", timeout: .seconds(30)) { (try? details(host)) != nil }
            let magnet = "magnet:?xt=urn:btih:\(content.infoHash)"
            try add(host, magnet)
            try waitSeeding(host, content.infoHash, within: .seconds(120))
            try TestContent.expectIdentical(work.path + "/seed/" + content.name, host.dataDirectory + "/bittorrent/downloads/" + content.name)
            let doc = try statusDocument(host)
            let dht = try #require((doc["details"] as? [String: Any])?["dht"] as? [String: Any])
            #expect((dht["nodes"] as? Int ?? 0) >= 1, "the seeder's node is in our routing table")
            // Either side may open the connection: we found the seeder (get_peers), or it found us
            // (our announce_peer reached its node); both went through the DHT alone.
            let metric = (doc["metrics"] as? [[String: Any]])?.first { $0["name"] as? String == "peerhost_bt_dht_nodes" }
            #expect((metric?["value"] as? Double ?? 0) >= 1, "peerhost_bt_dht_nodes: \(String(describing: metric))")
            try waitUntil("the seeder reports the upload", timeout: .seconds(10)) { uploaded(seeder) >= 1 << 20 }
        }

        /// The routing table is saved in the store ("dht/table") and restored at the next start:
        /// a second host on the same data dir, with no bootstrap node at all, starts with the
        /// libtorrent node the first one learned.
        @Test(.timeLimit(.minutes(2))) func routingTableSurvivesARestart() throws {
            let node = try LTPeer(["--dht", "--timeout", "110"])
            defer { node.stop() }
            let dhtPort = try #require(node.ready["dht_port"] as? Int)
            let shared = FileManager.default.temporaryDirectory.appendingPathComponent("peerhost-btdht-data-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: shared) }
            func startHost(_ settings: String) throws -> HostProcess {
                let host = try dhtHost(settings, start: false).host
                try FileManager.default.createSymbolicLink(atPath: host.dataDirectory, withDestinationPath: shared)
                try? FileManager.default.removeItem(atPath: shared + "/run.json")   // the previous host's
                try host.start()
                return host
            }
            func dhtNodes(_ host: HostProcess) -> Int {
                ((try? details(host))?["dht"] as? [String: Any])?["nodes"] as? Int ?? -1
            }
            let first = try startHost("dht_bootstrap = [\"127.0.0.1:\(dhtPort)\"]")
            try waitUntil("the first host's table holds the libtorrent node", timeout: .seconds(30)) { dhtNodes(first) >= 1 }
            // Saved once the bootstrap lookup ends; give the kv write a moment to be durable.
            usleep(1_000_000)
            #expect(first.stop() == 0)
            let second = try startHost("dht_bootstrap = []")
            defer { _ = second.stop() }
            try waitUntil("the second host answers its status method", timeout: .seconds(30)) { dhtNodes(second) >= 0 }
            try waitUntil("the restored table holds the node", timeout: .seconds(10)) { dhtNodes(second) >= 1 }
            // From the store, not from the libtorrent node querying us again meanwhile.
            let log = second.drainOutput()
            #expect(log.contains("DHT table restored: 1 nodes"), "\(log.suffix(3000))")
        }

        /// @Test 2 (BEP 15): the torrent's only tracker is opentracker's UDP port.
        @Test(.timeLimit(.minutes(3))) func downloadsThroughAUDPTracker() throws {
            let work = try TestDir("udptracker")
            let trackerPort = 7162
            let content = try work.content(files: 3, totalSize: 1 << 20, tracker: "udp://127.0.0.1:\(trackerPort)/announce")
            let tracker = try ChildProcess("/bin/sh", [Products.repoRoot.path + "/Tests/peers/opentracker.sh", "\(trackerPort)",
                                                        work.path + "/whitelist", content.infoHash])
            defer { tracker.stop() }
            try waitUntil("opentracker listens", timeout: .seconds(10)) { !portIsFree(UInt16(trackerPort)) }
            // Seeder first: opentracker's announce interval is long, a peer hears only of earlier ones.
            let seeder = try LTPeer(["--torrent", content.torrent, "--save", work.path + "/seed", "--seed",
                                     "--tracker", "udp://127.0.0.1:\(trackerPort)/announce", "--timeout", "170"])
            defer { seeder.stop() }
            try waitUntil("the seeder announced", timeout: .seconds(30)) {
                seeder.sawEvent { $0["event"] as? String == "tracker_reply" }
            }
            let host = try dhtHost("dht = false").host
            defer { _ = host.stop() }
            try waitUntil("the plugin answers its status method", timeout: .seconds(30)) { (try? details(host)) != nil }
            try add(host, content.torrent)
            try waitSeeding(host, content.infoHash, within: .seconds(120))
            try TestContent.expectIdentical(work.path + "/seed/" + content.name, host.dataDirectory + "/bittorrent/downloads/" + content.name)
            // No --peer, no magnet peers, DHT off: the UDP tracker was the only way to the seeder.
            let dht = try #require(try details(host)["dht"] as? [String: Any])
            #expect(dht["enabled"] as? Bool == false)
            try waitUntil("the seeder reports the upload", timeout: .seconds(10)) { uploaded(seeder) >= 1 << 20 }
        }
    }
}

// MARK: small drivers for the peer programs (Tests/peers)

/// A scratch folder with deterministic content (Tests/peers/make_content.py).
private final class TestDir {
    let path: String
    init(_ label: String) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("peerhost-bt-\(label)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path + "/seed", withIntermediateDirectories: true)
        chmod(path, 0o755)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }

    struct Content { let infoHash: String; let name: String; let torrent: String }

    func content(files: Int, totalSize: Int, tracker: String? = nil) throws -> Content {
        let script = Products.repoRoot.path + "/Tests/peers/make_content.py"
        let tree = path + "/seed/content"
        let (c1, o1) = try runProgram("/usr/bin/python3", [script, "tree", tree, "--files", "\(files)", "--total-size", "\(totalSize)"])
        guard c1 == 0 else { throw TestFailure("make_content tree: \(o1)") }
        var args = [script, "torrent", tree, "--out", path + "/content.torrent", "--piece-length", "65536"]
        if let tracker { args += ["--tracker", tracker] }
        let (c2, o2) = try runProgram("/usr/bin/python3", args)
        guard c2 == 0, let line = o2.split(separator: "\n").last,
              let doc = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let hash = doc["info_hash"] as? String, let name = doc["name"] as? String else {
            throw TestFailure("make_content torrent: \(o2)")
        }
        return Content(infoHash: hash.lowercased(), name: name, torrent: path + "/content.torrent")
    }
}

/// A child process whose output lines are collected on a thread of their own.
private final class ChildProcess: @unchecked Sendable {
    let process = Process()
    private let lock = NSLock()
    private var lines: [String] = []
    private var partial = Data()

    init(_ exe: String, _ args: [String]) throws {
        guard FileManager.default.isExecutableFile(atPath: exe) else { throw TestFailure("\(exe) is not installed") }
        process.executableURL = URL(fileURLWithPath: exe)
        process.arguments = args
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        pipe.fileHandleForReading.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self, !d.isEmpty else { return }
            self.lock.lock()
            self.partial.append(d)
            while let nl = self.partial.firstIndex(of: 0x0a) {
                self.lines.append(String(decoding: self.partial[self.partial.startIndex..<nl], as: UTF8.self))
                self.partial = Data(self.partial[(nl + 1)...])
            }
            self.lock.unlock()
        }
        try process.run()
    }

    var output: [String] { lock.lock(); defer { lock.unlock() }; return lines }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = ContinuousClock.now + .seconds(5)
        while process.isRunning && ContinuousClock.now < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}

/// One libtorrent peer (Tests/peers/lt_peer.py, JSON lines), started and waited for "ready".
private final class LTPeer {
    let child: ChildProcess
    private(set) var ready: [String: Any] = [:]

    init(_ args: [String], readyWithin: Duration = .seconds(30)) throws {
        child = try ChildProcess("/usr/bin/python3", [Products.repoRoot.path + "/Tests/peers/lt_peer.py"] + args)
        let deadline = ContinuousClock.now + readyWithin
        while ContinuousClock.now < deadline {
            if let r = events.first(where: { $0["event"] as? String == "ready" }) { ready = r; return }
            if let d = events.first(where: { $0["event"] as? String == "done" }) { throw TestFailure("lt_peer ended: \(d)") }
            if !child.process.isRunning { throw TestFailure("lt_peer exited: \(child.output.joined(separator: "\n"))") }
            usleep(50_000)
        }
        child.stop()
        throw TestFailure("lt_peer not ready within \(readyWithin): \(child.output.joined(separator: "\n"))")
    }

    var events: [[String: Any]] {
        child.output.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    func sawEvent(_ match: ([String: Any]) -> Bool) -> Bool { events.contains(where: match) }

    func stop() { child.stop() }
}
