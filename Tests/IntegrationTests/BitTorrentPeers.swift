import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

// Real BitTorrent peers for the integration tests: libtorrent (through Tests/peers/lt_peer.py),
// aria2c, transmission-cli and opentracker, plus deterministic content and torrents
// (Tests/peers/make_content.py) and a byte-for-byte comparison of two trees.
//
// Every peer is a child process that the helper kills when it is stopped or deinitialised; aria2c,
// transmission-cli and opentracker run under Tests/peers/tether.py and lt_peer.py watches its
// parent, so none outlives a crashed test process. A missing program FAILS the test with the
// Debian package to install (`make test` installs them all); nothing here skips.
//
// Everything binds 127.0.0.1 and works in an empty network namespace with only `lo` up.
// Facts that shaped these helpers (found on Debian 12):
//  * Transmission 3.00 never connects OUT to 127.0.0.0/8 (libtransmission's isMartianAddr), even
//    when a tracker hands it such a peer; it does accept connections. So a Transmission peer is
//    reached by the other side connecting to it: `--peer 127.0.0.1:<transmission.port>`, or a
//    seeder that re-announces (lt_peer --reannounce-every) and so learns of it from the tracker.
//  * transmission-cli blocks its event thread in UPnP discovery unless given -M, takes trackers
//    only from the .torrent (TestContent.retrack), and refuses incoming peers while verifying.
//  * aria2 cannot be given a peer's address: it needs a tracker (--bt-tracker).
//  * opentracker refuses every infohash not in its -w whitelist, which must be an absolute path
//    readable by user nobody (see Tests/peers/opentracker.sh).
//  * libtorrent prefers uTP and uTP on loopback ran at ~5 MB/s: lt_peer.py turns uTP off.

/// Paths, interpreter checks and ports shared by the peer helpers.
enum BitTorrentPeers {
    /// Debian's python3-libtorrent is built for the system interpreter, not a pyenv python3 on PATH.
    static let python = "/usr/bin/python3"
    static var scripts: String { Products.repoRoot.appendingPathComponent("Tests/peers").path }
    static var ltPeer: String { scripts + "/lt_peer.py" }
    static var makeContent: String { scripts + "/make_content.py" }
    static var tether: String { scripts + "/tether.py" }

    /// The absolute path of `program` (searched in the usual system folders), or a failure that
    /// names the Debian package providing it.
    static func require(_ program: String, package: String) throws -> String {
        for dir in ["/usr/bin", "/usr/local/bin", "/bin", "/usr/sbin"] where FileManager.default.isExecutableFile(atPath: "\(dir)/\(program)") {
            return "\(dir)/\(program)"
        }
        throw TestFailure("\(program) not found: install the Debian package \(package) (`make test` installs the test peers)")
    }

    private static let libtorrentCheck: String? = {
        guard FileManager.default.isExecutableFile(atPath: python) else {
            return "\(python) not found: install the Debian package python3 (and python3-libtorrent)"
        }
        guard let (status, out) = try? runProgram(python, ["-c", "import libtorrent; print(libtorrent.__version__)"]) else {
            return "\(python) did not run"
        }
        return status == 0 ? nil : "\(python) cannot import libtorrent: install the Debian package python3-libtorrent (`make test` installs it): \(out)"
    }()

    /// Fails unless /usr/bin/python3 can import libtorrent.
    static func requireLibtorrent() throws {
        if let failure = libtorrentCheck { throw TestFailure(failure) }
    }

    /// Ports for test peers and trackers: 7200–7299 (other tests use 7001–7111 and 9180), handed
    /// out round-robin, each checked free for TCP and UDP on 127.0.0.1 at the time.
    static func freePort() throws -> UInt16 {
        for _ in 0..<100 {
            let port = portCursor.next()
            if portIsFree(port) && udpPortIsFree(port) { return port }
        }
        throw TestFailure("no free port in 7200-7299 on 127.0.0.1 (TCP and UDP)")
    }

    private final class Cursor: @unchecked Sendable {
        private let lock = NSLock()
        private var value = UInt16(7200 + getpid() % 100)
        func next() -> UInt16 {
            lock.lock(); defer { lock.unlock() }
            value = value >= 7299 ? 7200 : value + 1
            return value
        }
    }
    private static let portCursor = Cursor()

    static func udpPortIsFree(_ port: UInt16) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { Glibc.close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    /// A fresh folder under /tmp, mode 0755 (opentracker, running as nobody, reads files in it).
    static func temporaryDirectory(_ label: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("peerhost-bt-\(label)-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod(dir, 0o755)
        return dir
    }
}

/// A child process whose stdout and stderr are read line by line (on "\n" or "\r") by a thread of
/// its own, so the peer never blocks on a full pipe and a test can wait for a line.
final class PeerProcess: @unchecked Sendable {
    let name: String
    let process = Process()
    private let pipe = Pipe()
    private let lock = NSLock()
    private var collected: [String] = []
    private var partial: [UInt8] = []
    private var reader: Thread?

    /// Starts `executable arguments`; `tethered` runs it under Tests/peers/tether.py (it dies with
    /// us, and `stop()`'s SIGTERM reaches it as `stopSignal`, e.g. "INT" for opentracker).
    init(name: String, executable: String, arguments: [String], tethered: Bool = false, stopSignal: String = "TERM",
         environment: [String: String]? = nil, directory: String? = nil) throws {
        self.name = name
        if tethered {
            process.executableURL = URL(fileURLWithPath: BitTorrentPeers.python)
            process.arguments = [BitTorrentPeers.tether, "--stop-signal", stopSignal, "--", executable] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        }
        if let environment { process.environment = environment }
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let handle = pipe.fileHandleForReading
        let thread = Thread { [weak self] in
            let fd = handle.fileDescriptor
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0, let self else { return }
                self.append(buffer[0..<n])
            }
        }
        thread.name = "peer-\(name)"
        thread.start()
        reader = thread
    }

    private func append(_ bytes: ArraySlice<UInt8>) {
        lock.lock(); defer { lock.unlock() }
        for byte in bytes {
            if byte == 0x0A || byte == 0x0D {
                if !partial.isEmpty { collected.append(String(decoding: partial, as: UTF8.self)) }
                partial.removeAll(keepingCapacity: true)
            } else {
                partial.append(byte)
            }
        }
        // Transmission redraws one progress line forever: keep the memory bounded.
        if collected.count > 20_000 { collected.removeFirst(10_000) }
    }

    /// Every complete line so far (a "\r"-redrawn line counts once per redraw).
    var lines: [String] {
        lock.lock(); defer { lock.unlock() }
        return collected
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    /// The last lines, for failure messages.
    func tail(_ count: Int = 15) -> String {
        let all = lines
        return "\(name) (pid \(pid)\(isRunning ? ", running" : ", exited \(process.terminationStatus)")), last lines:\n  "
            + all.suffix(count).joined(separator: "\n  ")
    }

    /// Waits for the first line (from the start) that `match` accepts; fails when the process
    /// exits first (after a last look) or the time is up, with the last lines in the message.
    @discardableResult
    func waitForLine(_ what: String, timeout: Duration, _ match: (String) -> Bool) throws -> String {
        let deadline = ContinuousClock.now + timeout
        var seen = 0
        while true {
            let all = lines
            if let hit = all[min(seen, all.count)...].first(where: match) { return hit }
            seen = all.count
            if !isRunning {
                usleep(50_000)  // the reader may still hold the last bytes
                if let hit = lines[min(seen, lines.count)...].first(where: match) { return hit }
                throw TestFailure("\(name) exited before \(what): \(tail())")
            }
            if ContinuousClock.now >= deadline { throw TestFailure("\(name): no \(what) within \(timeout): \(tail())") }
            usleep(50_000)
        }
    }

    /// Waits for the process to exit; returns its status (128+N for a signal on a tethered peer).
    func waitForExit(timeout: Duration) throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while isRunning {
            if ContinuousClock.now >= deadline { throw TestFailure("\(name) still running after \(timeout): \(tail())") }
            usleep(50_000)
        }
        usleep(20_000)
        return process.terminationStatus
    }

    /// SIGTERM, then SIGKILL after `grace`; returns the exit status (-1 if Foundation never saw
    /// the exit). Safe to call twice. Never blocks without bound: Process.waitUntilExit() can hang
    /// forever (Foundation waits for EOF on a socket every descendant of the child inherits).
    @discardableResult
    func stop(grace: Duration = .seconds(5)) -> Int32 {
        guard process.isRunning else { return process.terminationStatus }
        kill(pid, SIGTERM)
        if waitGone(grace) { return process.terminationStatus }
        kill(pid, SIGKILL)
        return waitGone(.seconds(5)) ? process.terminationStatus : -1
    }

    private func waitGone(_ timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            if ContinuousClock.now >= deadline { return false }
            usleep(20_000)
        }
        return true
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            _ = waitGone(.seconds(5))
        }
    }
}

// MARK: - libtorrent

/// One libtorrent 2.0 session in a child process (Tests/peers/lt_peer.py, TCP only, 127.0.0.1).
/// `init` returns once the peer said "ready" (a seeder: after checking its data, every piece
/// present); `port` is where it listens for peers (and DHT on UDP, with `dht`).
final class LibtorrentPeer: @unchecked Sendable {
    let process: PeerProcess
    /// TCP listen port (the DHT's UDP port is `dhtPort`).
    private(set) var port: UInt16 = 0
    private(set) var dhtPort: UInt16?
    /// The v1 infohash, 40 lowercase hex digits (nil for a DHT node without a torrent).
    private(set) var infoHash: String?
    let exitsWhenComplete: Bool
    var pid: Int32 { process.pid }
    var endpoint: String { "127.0.0.1:\(port)" }

    /// - torrent/magnet: what to share (neither, with `dht`: a DHT node only, e.g. a bootstrap node).
    /// - save: the save path; a multi-file torrent lives in `save/<name>/`, a single file at `save/<name>`.
    /// - seed: `save` holds the data: check it, fail unless complete, then serve.
    /// - peers: "HOST:PORT" to connect to once ready (libtorrent's connect_peer); reconnectEvery:
    ///   connect again every N s (for a peer that restarts, e.g. a killed plugin).
    /// - trackers: announce URLs added to the torrent; reannounceEvery: force an announce every N s.
    /// - dht/dhtBootstrap: enable the DHT with these bootstrap nodes ("127.0.0.1:P").
    /// - uploadLimit/downloadLimit: bytes/s, applied on loopback too (0: none).
    /// - exitWhenComplete: exit 0 once complete (`waitForCompletion` then reads the last line).
    /// - timeout: seconds the peer lives at most (exit 3 if incomplete then).
    /// - listenPort: nil picks a free port in 7200–7299.
    /// - encryption: outgoing handshakes "plaintext" (default), "enabled" (libtorrent's own default:
    ///   MSE first, plaintext retry after it fails) or "forced" (MSE only, incoming too).
    /// - netns: run in that network namespace (`ip netns exec`; pass `--bind ADDR` in extraArguments).
    init(torrent: String? = nil, magnet: String? = nil, save: String? = nil, seed: Bool = false,
         peers: [String] = [], reconnectEvery: Double = 0, trackers: [String] = [], reannounceEvery: Double = 0,
         dht: Bool = false, dhtBootstrap: [String] = [], uploadLimit: Int = 0, downloadLimit: Int = 0,
         exitWhenComplete: Bool = false, timeout: Double = 120, listenPort: UInt16? = nil,
         encryption: String = "plaintext", extraArguments: [String] = [], readyTimeout: Duration = .seconds(60),
         name: String? = nil, netns: String? = nil) throws {
        try BitTorrentPeers.requireLibtorrent()
        exitsWhenComplete = exitWhenComplete
        var args = [BitTorrentPeers.ltPeer, "--listen", String(try listenPort ?? BitTorrentPeers.freePort())]
        if let torrent { args += ["--torrent", torrent] }
        if let magnet { args += ["--magnet", magnet] }
        if let save { args += ["--save", save] }
        if seed { args.append("--seed") }
        for p in peers { args += ["--peer", p] }
        if reconnectEvery > 0 { args += ["--reconnect-every", String(reconnectEvery)] }
        for t in trackers { args += ["--tracker", t] }
        if reannounceEvery > 0 { args += ["--reannounce-every", String(reannounceEvery)] }
        if dht { args.append("--dht") }
        for n in dhtBootstrap { args += ["--dht-bootstrap", n] }
        if uploadLimit > 0 { args += ["--upload-limit", String(uploadLimit)] }
        if downloadLimit > 0 { args += ["--download-limit", String(downloadLimit)] }
        if exitWhenComplete { args.append("--exit-when-complete") }
        args += ["--timeout", String(timeout), "--encryption", encryption] + extraArguments
        let label = name ?? (seed ? "libtorrent seeder" : torrent == nil && magnet == nil ? "libtorrent DHT node" : "libtorrent leecher")
        if let netns {   // `ip netns exec` execs python: the pid is still the peer's
            process = try PeerProcess(name: label, executable: "/usr/bin/ip",
                                      arguments: ["netns", "exec", netns, BitTorrentPeers.python] + args)
        } else {
            process = try PeerProcess(name: label, executable: BitTorrentPeers.python, arguments: args)
        }
        let ready = try waitForEvent("ready", timeout: readyTimeout)
        port = UInt16(ready["port"] as? Int ?? 0)
        dhtPort = (ready["dht_port"] as? Int).map { UInt16($0) }
        infoHash = ready["info_hash"] as? String
    }

    /// Every JSON line so far.
    var events: [[String: Any]] {
        process.lines.compactMap { line in
            guard line.hasPrefix("{") else { return nil }
            return (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
        }
    }

    func events(_ name: String) -> [[String: Any]] { events.filter { $0["event"] as? String == name } }

    /// The newest status line: state, progress (0…1), download_rate, upload_rate (B/s), num_peers,
    /// total_done, total_wanted, total_download, total_upload, pieces, num_pieces, dht_nodes.
    var lastStatus: [String: Any]? { events("status").last }
    var progress: Double { lastStatus?["progress"] as? Double ?? 0 }

    /// Waits for the first event named `name` that `match` accepts (lt_peer.py's docstring lists them).
    @discardableResult
    func waitForEvent(_ name: String, timeout: Duration, where match: @escaping ([String: Any]) -> Bool = { _ in true }) throws -> [String: Any] {
        let line = try process.waitForLine("\"\(name)\" event", timeout: timeout) { line in
            guard line.hasPrefix("{"), let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else { return false }
            if object["event"] as? String == "done" && name != "done" && object["outcome"] as? String != "complete" { return true }
            return object["event"] as? String == name && match(object)
        }
        let object = (try JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:]
        if object["event"] as? String == "done" && name != "done" {
            throw TestFailure("\(process.name) ended (\(object["outcome"] ?? "?"): \(object["message"] ?? "")) before \"\(name)\": \(process.tail())")
        }
        return object
    }

    /// Waits until every wanted piece is verified. With `exitWhenComplete`, waits for the exit and
    /// returns the "done" line (outcome "complete", exit 0); otherwise the "complete" event.
    @discardableResult
    func waitForCompletion(timeout: Duration) throws -> [String: Any] {
        let event = try waitForEvent("complete", timeout: timeout)
        guard exitsWhenComplete else { return event }
        let status = try process.waitForExit(timeout: .seconds(15))
        guard let done = events("done").last, done["outcome"] as? String == "complete", status == 0 else {
            throw TestFailure("\(process.name) completed but did not end cleanly (exit \(status)): \(process.tail())")
        }
        return done
    }

    /// Waits until `total_upload` in a status line reaches `bytes` (a seeder served a leecher).
    func waitForUpload(atLeast bytes: Int, timeout: Duration) throws {
        try waitForEvent("status", timeout: timeout) { ($0["total_upload"] as? Int ?? 0) >= bytes }
    }

    /// Waits for the first successful tracker announce (a leecher started after it will hear of us).
    func waitForAnnounce(timeout: Duration = .seconds(20)) throws {
        try waitForEvent("tracker_reply", timeout: timeout)
    }

    /// SIGTERM (the peer prints its "done" line and exits 0), SIGKILL after `grace`.
    @discardableResult
    func stop(grace: Duration = .seconds(5)) -> Int32 { process.stop(grace: grace) }
}

// MARK: - opentracker

/// Debian's opentracker on 127.0.0.1:`port`, TCP (HTTP announce) and UDP (BEP 15), allowing only
/// the whitelisted infohashes. Peers on loopback are recorded as 127.0.0.1:<their port>.
final class OpenTracker: @unchecked Sendable {
    let process: PeerProcess
    let port: UInt16
    let directory: String
    let whitelistPath: String
    private(set) var whitelist: [String]

    var announceURL: String { "http://127.0.0.1:\(port)/announce" }
    var udpAnnounceURL: String { "udp://127.0.0.1:\(port)/announce" }

    /// `whitelist`: v1 infohashes as hex (any case). Returns once the tracker answers on TCP.
    init(whitelist: [String], port: UInt16? = nil) throws {
        let executable = try BitTorrentPeers.require("opentracker", package: "opentracker")
        self.port = try port ?? BitTorrentPeers.freePort()
        directory = try BitTorrentPeers.temporaryDirectory("tracker")
        whitelistPath = directory + "/whitelist"
        self.whitelist = []
        try Self.write(whitelist, to: whitelistPath)
        self.whitelist = whitelist.map { $0.lowercased() }
        // cwd "/": opentracker chroots to "." before it drops to nobody.
        process = try PeerProcess(name: "opentracker", executable: executable,
                                  arguments: ["-i", "127.0.0.1", "-p", String(self.port), "-P", String(self.port), "-w", whitelistPath],
                                  tethered: true, stopSignal: "INT", directory: "/")  // it blocks SIGTERM
        let p = self.port
        do {
            try waitUntil("opentracker on 127.0.0.1:\(p)", timeout: .seconds(10)) {
                guard process.isRunning else { throw TestFailure("exited") }
                return (try? TCPClient(port: p, timeoutSeconds: 1)).map { $0.close(); return true } ?? false
            }
        } catch { throw TestFailure("opentracker did not start: \(process.tail())") }
    }

    private static func write(_ hashes: [String], to path: String) throws {
        for h in hashes where h.count != 40 || !h.allSatisfy(\.isHexDigit) {
            throw TestFailure("opentracker whitelist: '\(h)' is not a 40-hex-digit infohash")
        }
        try (hashes.map { $0.lowercased() + "\n" }.joined()).write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o644)  // read by user nobody
    }

    /// Adds an infohash and makes the tracker re-read its whitelist (SIGHUP).
    func allow(_ infoHash: String) throws {
        whitelist.append(infoHash.lowercased())
        try Self.write(whitelist, to: whitelistPath)
        kill(process.pid, SIGHUP)  // the tether forwards it
        usleep(200_000)
    }

    /// The raw bencoded answer of an HTTP announce for `infoHash` (hex), e.g. to check the whitelist.
    func announce(infoHash: String, port peerPort: UInt16 = 6881, left: Int = 0) throws -> String {
        var escaped = ""
        var chars = Array(infoHash)
        while chars.count >= 2 { escaped += "%" + String(chars[0...1]); chars.removeFirst(2) }
        let (_, body) = try httpGet("127.0.0.1:\(port)", "/announce?info_hash=\(escaped)&peer_id=-PH0000-harnesscheck&port=\(peerPort)&uploaded=0&downloaded=0&left=\(left)&compact=1")
        return body
    }

    @discardableResult
    func stop() -> Int32 { process.stop() }

    deinit {
        process.stop(grace: .seconds(2))
        try? FileManager.default.removeItem(atPath: directory)
    }
}

// MARK: - aria2

/// aria2c on one torrent. It cannot be given a peer's address: it finds peers through the
/// trackers (`--bt-tracker`) and accepts connections on `port`. DHT, LPD off; no encryption
/// required; a leecher exits 0 once complete (--seed-time=0), a seeder (`seed: true`) checks the
/// data (--check-integrity) and seeds until stopped (--seed-ratio=0).
final class Aria2Peer: @unchecked Sendable {
    let process: PeerProcess
    let port: UInt16
    let directory: String
    var endpoint: String { "127.0.0.1:\(port)" }

    /// - directory: a multi-file torrent lives in `directory/<name>/`.
    /// - uploadLimit/downloadLimit: bytes/s (0: none).
    init(torrent: String, directory: String, seed: Bool = false, trackers: [String] = [],
         uploadLimit: Int = 0, downloadLimit: Int = 0, listenPort: UInt16? = nil, extraArguments: [String] = []) throws {
        let executable = try BitTorrentPeers.require("aria2c", package: "aria2")
        port = try listenPort ?? BitTorrentPeers.freePort()
        self.directory = directory
        var args = [
            "--dir=\(directory)", "--listen-port=\(port)",
            "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false", "--enable-peer-exchange=true",
            "--bt-require-crypto=false", "--bt-tracker-connect-timeout=5", "--bt-tracker-timeout=10",
            "--bt-tracker-interval=0", "--summary-interval=1", "--console-log-level=notice",
            "--file-allocation=none", "--auto-file-renaming=false", "--allow-overwrite=true",
            "--check-certificate=false", "--no-conf=true", "--disable-ipv6=true",
            "--max-overall-upload-limit=\(uploadLimit)", "--max-overall-download-limit=\(downloadLimit)",
        ]
        if !trackers.isEmpty { args.append("--bt-tracker=" + trackers.joined(separator: ",")) }
        if seed {
            args += ["--check-integrity=true", "--seed-ratio=0.0", "--bt-seed-unverified=false"]
        } else {
            args += ["--seed-time=0"]
        }
        process = try PeerProcess(name: seed ? "aria2 seeder" : "aria2 leecher", executable: executable,
                                  arguments: args + extraArguments + [torrent], tethered: true)
    }

    /// Waits until aria2 reports it is seeding (after checking the data).
    func waitUntilSeeding(timeout: Duration = .seconds(60)) throws {
        try process.waitForLine("seeding (SEED in the summary)", timeout: timeout) { $0.contains("SEED(") }
    }

    /// A leecher: waits for aria2 to exit and fails unless it exited 0 ("download completed").
    func waitForCompletion(timeout: Duration) throws {
        let status = try process.waitForExit(timeout: timeout)
        guard status == 0 else { throw TestFailure("aria2c exited \(status): \(process.tail())") }
    }

    /// The last percentage aria2's summary showed ("[#gid 1.0MiB/4.0MiB(25%) CN:1 …]"), 0…100.
    var percent: Int? {
        for line in process.lines.reversed() {
            if line.contains("SEED(") { return 100 }
            if let open = line.range(of: "("), let close = line.range(of: "%)", range: open.upperBound..<line.endIndex),
               let value = Int(line[open.upperBound..<close.lowerBound]) { return value }
        }
        return nil
    }

    @discardableResult
    func stop() -> Int32 { process.stop() }
}

// MARK: - Transmission

/// transmission-cli 3.00 on one torrent, with its own config folder (settings.json: no DHT, LPD,
/// uTP, port mapping or blocklist; encryption tolerated, not required; bound to 127.0.0.1).
/// Transmission does not connect OUT to 127.x peers: the other side must connect to `port`.
/// It finds a tracker only in the .torrent file (use TestContent.retrack to add one).
final class TransmissionPeer: @unchecked Sendable {
    let process: PeerProcess
    let port: UInt16
    let directory: String
    let configDirectory: String
    var endpoint: String { "127.0.0.1:\(port)" }
    private var doneMarker: String { configDirectory + "/torrent-done" }

    /// - directory: download folder (`-w`); a multi-file torrent lives in `directory/<name>/`.
    ///   To seed, put the data there: Transmission verifies it on start (`waitUntilSeeding`).
    /// - uploadLimitKiB/downloadLimitKiB: transmission-cli's units, kB/s (0: none).
    init(torrent: String, directory: String, uploadLimitKiB: Int = 0, downloadLimitKiB: Int = 0,
         listenPort: UInt16? = nil) throws {
        let executable = try BitTorrentPeers.require("transmission-cli", package: "transmission-cli")
        port = try listenPort ?? BitTorrentPeers.freePort()
        self.directory = directory
        configDirectory = try BitTorrentPeers.temporaryDirectory("transmission")
        let settings: [String: Any] = [
            "dht-enabled": false, "lpd-enabled": false, "utp-enabled": false, "pex-enabled": true,
            "port-forwarding-enabled": false, "blocklist-enabled": false, "rpc-enabled": false,
            "bind-address-ipv4": "127.0.0.1", "peer-port": Int(port), "peer-port-random-on-start": false,
            "encryption": 0, "message-level": 2, "start-added-torrents": true,
            "rename-partial-files": false, "incomplete-dir-enabled": false,
            "script-torrent-done-enabled": true, "script-torrent-done-filename": configDirectory + "/done.sh",
        ]
        try JSONSerialization.data(withJSONObject: settings, options: [.prettyPrinted, .sortedKeys])
            .write(to: URL(fileURLWithPath: configDirectory + "/settings.json"))
        // Transmission runs this once every piece is verified.
        try "#!/bin/sh\ntouch '\(configDirectory)/torrent-done'\n".write(toFile: configDirectory + "/done.sh", atomically: true, encoding: .utf8)
        chmod(configDirectory + "/done.sh", 0o755)
        var args = ["-g", configDirectory, "-w", directory, "-p", String(port), "-et", "-M"]
        args += uploadLimitKiB > 0 ? ["-u", String(uploadLimitKiB)] : ["-U"]
        args += downloadLimitKiB > 0 ? ["-d", String(downloadLimitKiB)] : ["-D"]
        args += ["-f", configDirectory + "/done.sh", torrent]
        var env = ProcessInfo.processInfo.environment
        env["HOME"] = configDirectory  // nothing lands in the real ~/.config
        process = try PeerProcess(name: "transmission-cli", executable: executable, arguments: args,
                                  tethered: true, environment: env)
    }

    /// Waits until Transmission verified the data and seeds (it refuses peers while verifying).
    func waitUntilSeeding(timeout: Duration = .seconds(60)) throws {
        try process.waitForLine("\"Seeding\" status", timeout: timeout) { $0.hasPrefix("Seeding") }
    }

    /// Waits until Transmission has every piece (its torrent-done script ran).
    func waitForCompletion(timeout: Duration) throws {
        let marker = doneMarker
        do {
            try waitUntil("transmission-cli to complete", timeout: timeout) {
                guard process.isRunning || FileManager.default.fileExists(atPath: marker) else { throw TestFailure("exited") }
                return FileManager.default.fileExists(atPath: marker)
            }
        } catch {
            throw TestFailure("transmission-cli did not complete within \(timeout) (progress \(percent.map { "\($0)%" } ?? "?")): \(process.tail())")
        }
    }

    /// Waits until Transmission verified its data and started downloading (it announces then).
    func waitUntilStarted(timeout: Duration = .seconds(30)) throws {
        try process.waitForLine("a progress line", timeout: timeout) { $0.hasPrefix("Progress:") || $0.hasPrefix("Seeding") }
    }

    /// The last "Progress: 45.3%" transmission-cli drew (100 once seeding).
    var percent: Double? {
        for line in process.lines.reversed() {
            if line.hasPrefix("Seeding") { return 100 }
            if line.hasPrefix("Progress: "), let end = line.firstIndex(of: "%"),
               let value = Double(line[line.index(line.startIndex, offsetBy: 10)..<end]) { return value }
        }
        return nil
    }

    @discardableResult
    func stop() -> Int32 { process.stop() }

    deinit {
        process.stop(grace: .seconds(3))
        try? FileManager.default.removeItem(atPath: configDirectory)
    }
}

// MARK: - Content

/// A torrent made by TestContent (make_content.py's JSON line).
struct TestTorrent: Sendable {
    let path: String
    let infoHash: String
    let name: String
    let pieceLength: Int
    let pieceCount: Int
    let totalSize: Int
    let magnet: String
    let files: [(path: String, size: Int)]
}

/// Deterministic content, torrents, and "every file byte-identical" checks.
enum TestContent {
    /// A multi-file folder at `directory`: `files` files (uneven sizes adding up to `totalSize`, one
    /// of 1000 bytes, some in nested folders with a space in the name). Same arguments, same bytes.
    /// Returns relative path → size.
    @discardableResult
    static func tree(at directory: String, files: Int = 7, totalSize: Int = 3 << 20, seed: String = "0") throws -> [String: Int] {
        let json = try makeContent(["tree", directory, "--files", String(files), "--total-size", String(totalSize), "--seed", seed])
        var layout: [String: Int] = [:]
        for f in json["files"] as? [[String: Any]] ?? [] { layout[f["path"] as? String ?? ""] = f["size"] as? Int ?? 0 }
        return layout
    }

    /// One file of `size` bytes at `path`.
    static func file(at path: String, size: Int, seed: String = "0") throws {
        try makeContent(["file", path, "--size", String(size), "--seed", seed])
    }

    /// A v1 torrent of `path` (file or folder) written to `out`. `tool` "libtorrent" or "mktorrent":
    /// both give the same infohash for the same content and piece length (files in sorted order).
    static func torrent(of path: String, out: String, pieceLength: Int = 64 << 10, trackers: [String] = [],
                        tool: String = "libtorrent") throws -> TestTorrent {
        var args = ["torrent", path, "--out", out, "--piece-length", String(pieceLength), "--tool", tool]
        for t in trackers { args += ["--tracker", t] }
        return try parse(makeContent(args))
    }

    /// A copy of `torrent` announcing to `trackers` (same info dictionary, same infohash).
    static func retrack(_ torrent: String, out: String, trackers: [String]) throws -> TestTorrent {
        var args = ["retrack", torrent, "--out", out]
        for t in trackers { args += ["--tracker", t] }
        return try parse(makeContent(args))
    }

    static func info(_ torrent: String) throws -> TestTorrent { try parse(makeContent(["info", torrent])) }

    private static func parse(_ json: [String: Any]) throws -> TestTorrent {
        guard let hash = json["info_hash"] as? String else { throw TestFailure("make_content.py gave no info_hash: \(json)") }
        return TestTorrent(path: json["torrent"] as? String ?? "", infoHash: hash, name: json["name"] as? String ?? "",
                           pieceLength: json["piece_length"] as? Int ?? 0, pieceCount: json["num_pieces"] as? Int ?? 0,
                           totalSize: json["total_size"] as? Int ?? 0, magnet: json["magnet"] as? String ?? "",
                           files: (json["files"] as? [[String: Any]] ?? []).map { ($0["path"] as? String ?? "", $0["size"] as? Int ?? 0) })
    }

    @discardableResult
    private static func makeContent(_ args: [String]) throws -> [String: Any] {
        try BitTorrentPeers.requireLibtorrent()
        let (status, out) = try runProgram(BitTorrentPeers.python, [BitTorrentPeers.makeContent] + args)
        guard status == 0, let line = out.split(separator: "\n").last(where: { $0.hasPrefix("{") }),
              let json = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
            throw TestFailure("make_content.py \(args.joined(separator: " ")) failed (exit \(status)): \(out)")
        }
        return json
    }

    /// Relative path → SHA-256 (hex) of every regular file under `directory` (or of the one file).
    static func digests(of path: String) throws -> [String: String] {
        let files = try regularFiles(under: path)
        guard !files.isEmpty else { return [:] }
        var result: [String: String] = [:]
        var isDir: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
        for chunk in stride(from: 0, to: files.count, by: 500) {
            let batch = Array(files[chunk..<min(chunk + 500, files.count)])
            let full = batch.map { isDir.boolValue ? path + "/" + $0 : path }
            let (status, out) = try runProgram("/usr/bin/sha256sum", ["--"] + full)
            guard status == 0 else { throw TestFailure("sha256sum failed: \(out)") }
            for (rel, line) in zip(batch, out.split(separator: "\n")) { result[rel] = String(line.prefix(64)) }
        }
        return result
    }

    /// Relative paths of the regular files under `path` (sorted); [basename] for a file.
    static func regularFiles(under path: String) throws -> [String] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw TestFailure("\(path) does not exist") }
        if !isDir.boolValue { return [(path as NSString).lastPathComponent] }
        var files: [String] = []
        guard let e = FileManager.default.enumerator(atPath: path) else { return [] }
        while let rel = e.nextObject() as? String {
            var sub: ObjCBool = false
            if FileManager.default.fileExists(atPath: path + "/" + rel, isDirectory: &sub), !sub.boolValue { files.append(rel) }
        }
        return files.sorted()
    }

    /// Fails unless `actual` holds exactly the files of `expected` (same relative paths, no extra
    /// ones) with the same SHA-256 each; the message names the first differing file and byte.
    static func expectIdentical(_ expected: String, _ actual: String) throws {
        let want = try digests(of: expected)
        let have = try digests(of: actual)
        let missing = Set(want.keys).subtracting(have.keys).sorted()
        let extra = Set(have.keys).subtracting(want.keys).sorted()
        guard missing.isEmpty && extra.isEmpty else {
            throw TestFailure("\(actual) vs \(expected): missing \(missing), unexpected \(extra)")
        }
        var isDir: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: expected, isDirectory: &isDir)
        for rel in want.keys.sorted() where want[rel] != have[rel] {
            let a = isDir.boolValue ? expected + "/" + rel : expected
            let b = isDir.boolValue ? actual + "/" + rel : actual
            throw TestFailure("\(rel) differs: \(firstDifference(a, b))")
        }
    }

    /// Where two files first differ (offset), or their sizes.
    static func firstDifference(_ a: String, _ b: String) -> String {
        guard let fa = FileHandle(forReadingAtPath: a), let fb = FileHandle(forReadingAtPath: b) else { return "unreadable" }
        defer { try? fa.close(); try? fb.close() }
        var offset = 0
        while true {
            let da = fa.readData(ofLength: 1 << 20), db = fb.readData(ofLength: 1 << 20)
            if da != db {
                let common = zip(da, db).prefix { $0 == $1 }.count
                return da.count != db.count && common == min(da.count, db.count)
                    ? "sizes differ (one ends at byte \(offset + common))" : "first different byte at offset \(offset + common)"
            }
            if da.isEmpty { return "identical bytes" }
            offset += da.count
        }
    }
}
