import ArgumentParser
import PeerhostCore

struct CtlCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl",
        abstract: "Call a plugin's control method.",
        discussion: """
            Methods, their symbols and signatures are declared in the plugin's manifest ([[control]]); \
            arguments are converted by that signature: i64 "12", f64 "1.5", bool true|false, string as \
            given, bytes as the literal text or @FILE for a file's contents (read here, on the CLI's side). \
            Results print as numbers, or for bytes as text when UTF-8 (JSON) and hex otherwise. \
            A wrong method, count or type exits non-zero with the reason.

            The name `host` addresses the host itself: `peerhost ctl host set-rate PLUGIN|global UP DOWN` \
            changes a bandwidth limit at run time (bytes per second each way, e.g. 10MiB; 0 = unlimited; \
            never above the manifest's [limits] bandwidth). Each change \
            is an audit line (action set-rate); `peerhost status` shows the current rates.

            Examples:
              peerhost ctl echo-c stats
              peerhost ctl echo-c set_greeting "hello there"
              peerhost ctl echo-swift add -5 12
              peerhost ctl echo-c scale 1.5 2
              peerhost ctl echo-c toggle true
              peerhost ctl echo-c checksum @/etc/hostname
              peerhost ctl host set-rate echo-c 10MiB 0
              peerhost ctl host set-rate global 100MiB 100MiB

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
        let config = try options.load()
        let runFile: RunFile
        do {
            runFile = try RunFile.read(dataDirectory: config.host.dataDirectory)
        } catch {
            throw CommandFailure(error.description)
        }
        let words = arguments.first == "--" ? Array(arguments.dropFirst()) : arguments
        let value: ControlValue
        do {
            value = try ControlSocketClient(path: runFile.controlSocket)
                .call(plugin: plugin, method: method, args: words.map(ControlArgument.fromCommandLine))
        } catch {
            throw CommandFailure(error.description)
        }
        let text = value.description
        print(text, terminator: text.hasSuffix("\n") ? "" : "\n")
    }
}
