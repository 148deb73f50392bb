// `peerhost ctl bittorrent add|list|info|pause|resume|remove|create`: friendlier front-ends over
// the bittorrent plugin's control methods (plugins/bittorrent/manifest.toml). They read the
// operator's files here, on the client side, and show progress; the plugin never sees a path the
// operator did not grant (`--dir` is granted through the host first, and audited).
import ArgumentParser
import BitTorrentProtocol
import Foundation
import PeerhostCore

enum BitTorrentCLI {
    static let plugin = "bittorrent"
    static let commands = ["add", "list", "info", "pause", "resume", "remove", "create"]

    /// Runs `peerhost ctl bittorrent METHOD WORDS…`. Returns false when METHOD is not one of ours
    /// (the generic control-method path handles it).
    static func run(method: String, words: [String], config: ConfigOptions) throws -> Bool {
        guard commands.contains(method) else { return false }
        do {
            switch method {
            case "add": var c = try BitTorrentAddCommand.parse(words); c.config = config; try c.run()
            case "list": var c = try BitTorrentListCommand.parse(words); c.config = config; try c.run()
            case "create": let c = try BitTorrentCreateCommand.parse(words); try c.run()
            default:
                var c = try BitTorrentIDCommand.parse(words); c.method = method; c.config = config; try c.run()
            }
        } catch let e as CommandFailure {
            throw e
        } catch {
            let type: any ParsableCommand.Type = method == "add" ? BitTorrentAddCommand.self
                : method == "list" ? BitTorrentListCommand.self : method == "create" ? BitTorrentCreateCommand.self : BitTorrentIDCommand.self
            let code = type.exitCode(for: error)
            let message = type.fullMessage(for: error)
            if code == .success { print(message); return true }
            throw CommandFailure(message)
        }
        return true
    }

    static func client(_ config: ConfigOptions) throws -> ControlSocketClient {
        ControlSocketClient(path: try config.runningHost().controlSocket)
    }

    /// Calls a method and returns its JSON object; {"error": …} becomes a CommandFailure.
    static func call(_ client: ControlSocketClient, _ method: String, _ args: [ControlArgument]) throws -> [String: Any] {
        let value: ControlValue
        do {
            value = try client.call(plugin: plugin, method: method, args: args)
        } catch {
            throw CommandFailure(error.description)
        }
        guard case .bytes(let bytes) = value,
              let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            throw CommandFailure("bittorrent \(method): unexpected answer \(value)")
        }
        if let error = object["error"] as? String { throw CommandFailure("bittorrent \(method): \(error)") }
        return object
    }

    static func summary(_ t: [String: Any]) -> String {
        let id = t["id"] as? String ?? "?"
        let name = t["name"] as? String ?? "?"
        let state = t["state"] as? String ?? "?"
        let progress = (t["progress"] as? Double ?? 0) * 100
        let down = rate(t["down_rate"] as? Double ?? 0), up = rate(t["up_rate"] as? Double ?? 0)
        let peers = t["peers"] as? Int ?? 0
        let ratio = t["ratio"] as? Double ?? 0
        return "\(id.prefix(12))  \(pad(state, 11)) \(pad(String(format: "%5.1f%%", progress), 7)) ↓\(pad(down, 10)) ↑\(pad(up, 10)) peers \(pad(String(peers), 3)) ratio \(String(format: "%.2f", ratio))  \(name)"
    }

    static func rate(_ bytesPerSecond: Double) -> String { bytes(bytesPerSecond) + "/s" }

    static func bytes(_ n: Double) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = n, i = 0
        while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        return i == 0 ? "\(Int(v)) B" : String(format: "%.1f %@", v, units[i])
    }

    static func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
}

struct BitTorrentAddCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peerhost ctl bittorrent add",
        abstract: "Add a torrent (a .torrent file or a magnet link) to the bittorrent plugin.",
        discussion: """
            The .torrent is read here and its bytes passed to the plugin. --dir DIR (made absolute, \
            created if missing) is granted to the plugin first, read-write, through the host \
            (`peerhost ctl host grant`: audited and kept in the store); without it files land in \
            <data_dir>/bittorrent/downloads. A multi-file torrent lands in DIR/NAME/…. Existing \
            data there is checked and kept. --wait shows progress and exits 0 once every piece is \
            verified, non-zero with the reason if the torrent fails.

            Examples:
              peerhost ctl bittorrent add ubuntu.iso.torrent --wait
              peerhost ctl bittorrent add 'magnet:?xt=urn:btih:…' --dir /srv/torrents
              peerhost ctl bittorrent add file.torrent --peer 192.0.2.7:6881 --peer [2001:db8::1]:6881
            """)

    @Argument(help: "A .torrent file, or a magnet link (magnet:?xt=urn:btih:…).")
    var source: String

    @Option(help: ArgumentHelp("Save directory (granted to the plugin by this command).", valueName: "DIR"))
    var dir: String?

    @Option(name: .customLong("peer"), help: ArgumentHelp("Connect to this peer directly (repeatable).", valueName: "HOST:PORT"))
    var peers: [String] = []

    @Flag(help: "Show progress until every piece is verified (exit 0) or the torrent fails (exit 1).")
    var wait = false

    @Option(help: ArgumentHelp("With --wait: give up after this many seconds (exit 1).", valueName: "S"))
    var timeout: Double?

    var config = ConfigOptions()
    enum CodingKeys: String, CodingKey { case source, dir, peers, wait, timeout }

    mutating func run() throws {
        let input: [UInt8]
        if source.hasPrefix("magnet:") {
            input = Array(source.utf8)
        } else {
            guard let data = FileManager.default.contents(atPath: source) else {
                throw CommandFailure("\(source): \(FileManager.default.fileExists(atPath: source) ? "not readable" : "no such file")")
            }
            input = Array(data)
            do { _ = try Metainfo.parse(input) } catch { throw CommandFailure("\(source): \(error)") }
        }
        for p in peers where !p.contains(":") { throw CommandFailure("--peer \(p): expected HOST:PORT") }
        let client = try BitTorrentCLI.client(config)
        var saveDir = ""
        if let dir {
            let absolute = URL(fileURLWithPath: dir).standardizedFileURL.path
            do {
                try FileManager.default.createDirectory(atPath: absolute, withIntermediateDirectories: true)
            } catch {
                throw CommandFailure("--dir \(dir): cannot create it: \(error.localizedDescription)")
            }
            do {
                _ = try client.grant(plugin: BitTorrentCLI.plugin, directory: absolute, mode: "rw")
            } catch {
                throw CommandFailure("--dir \(absolute): the host refused the grant: \(error)")
            }
            saveDir = absolute
        }
        let added = try BitTorrentCLI.call(client, "add", [.file(literal: source, contents: input), .text(saveDir), .text(peers.joined(separator: " "))])
        let id = added["id"] as? String ?? ""
        print("added \(id) \(added["name"] as? String ?? "")")
        guard wait else { return }
        try BitTorrentWait(client: client, id: id, timeout: timeout).run()
    }
}

/// --wait: polls `info` and draws a progress bar on stderr (a plain line per 5 % when stderr is
/// not a terminal), until the torrent is complete or failed.
struct BitTorrentWait {
    let client: ControlSocketClient
    let id: String
    let timeout: Double?

    func run() throws {
        let started = Date()
        let tty = isatty(STDERR_FILENO) == 1
        var lastShown = -1
        var errors = 0
        while true {
            if let timeout, Date().timeIntervalSince(started) > timeout {
                if tty { FileHandle.standardError.write("\n".data(using: .utf8)!) }
                throw CommandFailure("timed out after \(Int(timeout)) s waiting for \(id)")
            }
            let info: [String: Any]
            do {
                info = try BitTorrentCLI.call(client, "info", [.text(id)])
                errors = 0
            } catch {
                // The plugin may be restarting (the supervisor brings it back with its resume data).
                errors += 1
                if errors > 60 { throw error }
                Thread.sleep(forTimeInterval: 0.5)
                continue
            }
            let state = info["state"] as? String ?? ""
            let progress = info["progress"] as? Double ?? 0
            let percent = Int(progress * 100)
            if tty {
                let width = 30, filled = Int(progress * Double(width))
                let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
                let line = "\r[\(bar)] \(String(format: "%5.1f%%", progress * 100)) \(BitTorrentCLI.rate(info["down_rate"] as? Double ?? 0)) peers \(info["peers"] as? Int ?? 0) \(state)   "
                FileHandle.standardError.write(line.data(using: .utf8)!)
            } else if percent / 5 != lastShown / 5 || lastShown < 0 {
                FileHandle.standardError.write("\(percent)% \(state)\n".data(using: .utf8)!)
                lastShown = percent
            }
            if state == "failed" {
                if tty { FileHandle.standardError.write("\n".data(using: .utf8)!) }
                throw CommandFailure("\(id): failed: \(info["error"] as? String ?? "unknown reason")")
            }
            if (state == "seeding" || state == "paused") && (info["pieces_have"] as? Int ?? -1) == (info["pieces"] as? Int ?? -2) {
                if tty { FileHandle.standardError.write("\n".data(using: .utf8)!) }
                print("complete \(id) \(info["name"] as? String ?? "")")
                return
            }
            Thread.sleep(forTimeInterval: 0.2)   // a control call each: cheap; completion shows within 0.2 s
        }
    }
}

struct BitTorrentListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peerhost ctl bittorrent list",
        abstract: "List torrents: id, state, progress, rates, peers, ratio, name.")

    @Flag(help: "Print the plugin's JSON.")
    var json = false

    var config = ConfigOptions()
    enum CodingKeys: String, CodingKey { case json }

    func run() throws {
        let client = try BitTorrentCLI.client(config)
        let list = try BitTorrentCLI.call(client, "list", [])
        let torrents = list["torrents"] as? [[String: Any]] ?? []
        if json {
            let data = try JSONSerialization.data(withJSONObject: list, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        if torrents.isEmpty { print("no torrents"); return }
        for t in torrents { print(BitTorrentCLI.summary(t)) }
    }
}

/// info, pause, resume, remove: one torrent by id (its infohash, or a unique prefix of 4+ hex digits).
struct BitTorrentIDCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peerhost ctl bittorrent info|pause|resume|remove",
        abstract: "Show, pause, resume or remove one torrent (remove keeps its files).")

    @Argument(help: "The torrent's infohash (or a unique prefix of at least 4 hex digits).")
    var id: String

    var method = "info"
    var config = ConfigOptions()
    enum CodingKeys: String, CodingKey { case id }

    func run() throws {
        let client = try BitTorrentCLI.client(config)
        let answer = try BitTorrentCLI.call(client, method, [.text(id)])
        if method == "info" {
            let data = try JSONSerialization.data(withJSONObject: answer, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("\(method == "remove" ? "removed" : method == "pause" ? "paused" : "resumed") \(BitTorrentCLI.summary(answer))")
        }
    }
}
