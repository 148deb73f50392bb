import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A `peerhost run` with the bittorrent plugin, on loopback: its manifest is copied beside the
/// test's config with connect grants that name loopback (the shipped manifest never reaches
/// loopback, DESIGN.md) and signed with the dev key.
final class BitTorrentHost: @unchecked Sendable {
    let host: HostProcess
    let port: UInt16
    var downloads: String { host.dataDirectory + "/bittorrent/downloads" }

    /// `listenHost`: the address the plugin listens on (loopback; "0.0.0.0" in a namespace with a
    /// link). `netns`: run the host in that network namespace (NetworkNamespaces.swift).
    init(port: UInt16? = nil, settings: String = "", start: Bool = true, listenHost: String = "127.0.0.1",
         netns: String? = nil) throws {
        self.port = try port ?? BitTorrentPeers.freePort()
        // Local peer discovery multicasts on every interface that can: on a machine's real network
        // a test would announce its torrents to the LAN. Only tests on a namespace link turn it on.
        let settings = netns == nil && !settings.contains("lpd") ? (settings.isEmpty ? "lpd = false" : "lpd = false, " + settings) : settings
        let folder = try BitTorrentPeers.temporaryDirectory("bt-manifest")
        var manifest = try String(contentsOfFile: Products.repoRoot.appendingPathComponent("plugins/bittorrent/manifest.toml").path, encoding: .utf8)
        manifest = manifest.replacingOccurrences(of: #"connect = ["#, with: #"connect = ["tcp:127.0.0.1:1-65535", "udp:127.0.0.1:1-65535", "#)
            .replacingOccurrences(of: "0.0.0.0:6881", with: "\(listenHost):\(self.port)")
        try manifest.write(toFile: folder + "/manifest.toml", atomically: true, encoding: .utf8)
        try Products.signCopy(folder + "/manifest.toml")
        host = try HostProcess(config: """
            [host]
            data_dir = "@DATA@"
            http = "127.0.0.1:0"

            [[plugin]]
            name = "bittorrent"
            manifest = "\(folder)/manifest.toml"
            listen = ["tcp:\(listenHost):\(self.port)", "udp:\(listenHost):\(self.port)"]
            config = { \(settings) }
            """, netns: netns)
        if start { try host.start() }
    }

    /// `peerhost ctl bittorrent WORDS…`: (exit status, output).
    func ctl(_ words: [String]) throws -> (Int32, String) { try host.cli(["ctl", "bittorrent"] + words) }

    /// Adds a torrent (retrying while the plugin is still starting) and returns its infohash.
    @discardableResult
    func add(_ source: String, peers: [String] = [], dir: String? = nil) throws -> String {
        var words = [source]
        for p in peers { words += ["--peer", p] }
        if let dir { words += ["--dir", dir] }
        let deadline = ContinuousClock.now + .seconds(30)
        var last = ""
        while ContinuousClock.now < deadline {
            let (status, out) = try ctl(["add"] + words)
            last = out
            if status == 0, let line = out.split(separator: "\n").first(where: { $0.hasPrefix("added ") }) {
                return String(line.split(separator: " ")[1])
            }
            usleep(200_000)
        }
        throw TestFailure("ctl bittorrent add \(words): \(last)\n\(host.drainOutput())")
    }

    /// The plugin's `info` JSON for one torrent.
    func info(_ id: String) throws -> [String: Any] {
        let (status, out) = try ctl(["info", id])
        guard status == 0, let doc = try? JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any] else {
            throw TestFailure("ctl bittorrent info \(id): \(out)")
        }
        return doc
    }

    /// Polls until the torrent's tracker accepted our announce (clients that announce once, like
    /// aria2, learn of us only if we were first).
    func waitAnnounced(_ id: String, timeout: Duration = .seconds(60)) throws {
        let deadline = ContinuousClock.now + timeout
        var last: [String: Any] = [:]
        while ContinuousClock.now < deadline {
            if let i = try? info(id) { last = i; if i["announced"] as? Bool == true { return } }
            usleep(200_000)
        }
        throw TestFailure("no accepted announce for \(id): tracker_error \(last["tracker_error"] ?? "none"), info \(last)\n\(host.drainOutput())")
    }

    /// Polls until every piece is verified; fails with the plugin's view and log otherwise.
    func waitComplete(_ id: String, timeout: Duration = .seconds(90)) throws {
        let deadline = ContinuousClock.now + timeout
        var last: [String: Any] = [:]
        while ContinuousClock.now < deadline {
            if let i = try? info(id) {
                last = i
                if i["state"] as? String == "failed" { throw TestFailure("torrent failed: \(i["error"] ?? "?")") }
                if let have = i["pieces_have"] as? Int, let all = i["pieces"] as? Int, all > 0, have == all,
                   i["state"] as? String == "seeding" { return }
            }
            usleep(200_000)
        }
        throw TestFailure("torrent \(id) not complete after \(timeout): \(last)\n\(host.drainOutput())")
    }
}
