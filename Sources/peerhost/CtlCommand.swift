import ArgumentParser
import PeerhostCore
#if canImport(Glibc)
@preconcurrency import Glibc   // stdout is a C global
#endif

struct CtlCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl",
        abstract: "Call a plugin's control method.",
        discussion: """
            Methods, their symbols and signatures are declared in the plugin's manifest ([[control]]); \
            arguments are converted by that signature: i64 "12", f64 "1.5", bool true|false, string as \
            given, bytes as the literal text or @FILE for a file's contents (read here, on the CLI's side). \
            Results print as numbers, or for bytes as text when UTF-8 (JSON) and hex otherwise. \
            A method declared async may stream: each answer prints as it comes, until the plugin ends \
            the stream (Ctrl-C leaves it; the plugin learns it at its next answer). \
            A wrong method, count or type exits non-zero with the reason.

            The name `host` addresses the host itself: `peerhost ctl host set-rate PLUGIN|global UP DOWN` \
            changes a bandwidth limit at run time (bytes per second each way, e.g. 10MiB; 0 = unlimited; \
            never above the manifest's [limits] bandwidth). Each change \
            is an audit line (action set-rate); `peerhost status` shows the current rates. \
            `peerhost ctl host grant PLUGIN DIR [--mode rw|ro]` lets a plugin open files under DIR \
            (made absolute here; it must exist, be a directory, not be world-writable and not overlap \
            the data dir) by their absolute path, at once and across restarts; `peerhost ctl host \
            revoke PLUGIN DIR` takes it back. Both are audit lines (action grant/revoke) and show in \
            `peerhost status --json` (grants) and `peerhost audit PLUGIN`. docs/grants.md. \
            `peerhost ctl host reload PLUGIN` re-reads the plugin's manifest from the config file, \
            verifies its library's bytes and signature as at start, and only then restarts that one \
            plugin on them (the others keep running; an audit line with action reload); bytes that do \
            not verify are refused and the running plugin keeps running.

            Examples:
              peerhost ctl echo-c stats
              peerhost ctl echo-c set_greeting "hello there"
              peerhost ctl echo-swift add -5 12
              peerhost ctl echo-c scale 1.5 2
              peerhost ctl echo-c toggle true
              peerhost ctl echo-c checksum @/etc/hostname
              peerhost ctl host set-rate echo-c 10MiB 0
              peerhost ctl host set-rate global 100MiB 100MiB
              peerhost ctl host grant bittorrent /srv/torrents
              peerhost ctl host grant bittorrent ./seeds --mode ro
              peerhost ctl host reload echo-c
              peerhost ctl host revoke bittorrent /srv/torrents

            The bittorrent plugin has friendlier commands (each has --help):
              peerhost ctl bittorrent add FILE.torrent|MAGNET [--dir D] [--peer HOST:PORT]… [--wait]
              peerhost ctl bittorrent list | info ID | pause ID | resume ID | remove ID
              peerhost ctl bittorrent create FILE|DIR [--out F] [--tracker URL]…
            """
    )

    @OptionGroup var options: ConfigOptions

    @Argument(help: "Plugin name, as in the config's [[plugin]] name.")
    var plugin: String

    @Argument(help: "Control method, as in the manifest's [[control]] name.")
    var method: String

    @Argument(parsing: .allUnrecognized, help: "Arguments for the method; negative numbers work as they are (`--` also ends options).")
    var arguments: [String] = []

    func run() throws {
        let words0 = arguments.first == "--" ? Array(arguments.dropFirst()) : arguments
        if plugin == BitTorrentCLI.plugin, try BitTorrentCLI.run(method: method, words: words0, config: options) { return }
        let runFile = try options.runningHost()
        let words = arguments.first == "--" ? Array(arguments.dropFirst()) : arguments
        let client = ControlSocketClient(path: runFile.controlSocket)
        let text: String
        do {
            if plugin == "host", method == "grant" || method == "revoke" {
                text = try Self.grantCall(client, method: method, words: words)
            } else {
                // A streaming method's answers are printed as they come, the last one too.
                text = try client.call(plugin: plugin, method: method, args: words.map(ControlArgument.fromCommandLine)) { value in
                    let line = value.description
                    print(line, terminator: line.hasSuffix("\n") ? "" : "\n")
                    fflush(stdout)
                }.description
            }
        } catch let error as ControlClientError {
            throw CommandFailure(error.description)
        }
        print(text, terminator: text.hasSuffix("\n") ? "" : "\n")
    }

    /// `grant PLUGIN DIR [--mode rw|ro]`, `revoke PLUGIN DIR`: DIR is made absolute here, on the
    /// operator's side, so a relative path means what it means in the operator's shell.
    static func grantCall(_ client: ControlSocketClient, method: String, words: [String]) throws -> String {
        var rest = words
        var mode = "rw"
        if let i = rest.firstIndex(where: { $0 == "--mode" || $0.hasPrefix("--mode=") }) {
            if rest[i] == "--mode" {
                guard i + 1 < rest.count else { throw CommandFailure("--mode needs a value: rw or ro") }
                mode = rest[i + 1]
                rest.removeSubrange(i...(i + 1))
            } else {
                mode = String(rest[i].dropFirst("--mode=".count))
                rest.remove(at: i)
            }
            guard method == "grant" else { throw CommandFailure("revoke takes no --mode") }
        }
        guard rest.count == 2 else {
            throw CommandFailure(method == "grant" ? "usage: peerhost ctl host grant PLUGIN DIR [--mode rw|ro]"
                                                   : "usage: peerhost ctl host revoke PLUGIN DIR")
        }
        return method == "grant" ? try client.grant(plugin: rest[0], directory: rest[1], mode: mode)
                                 : try client.revoke(plugin: rest[0], directory: rest[1])
    }
}
