// `peerhost`: the operator's command line. Each subcommand finds the config the same way
// (--config, $PEERHOST_CONFIG, config/peerhost.toml above the executable, /etc/peerhost, embedded)
// and the running host through <data_dir>/run.json.

import ArgumentParser
import Foundation
import PeerhostCore

@main
struct Peerhost: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peerhost",
        abstract: "Host peer-to-peer protocol plugins in sandboxed processes.",
        discussion: """
            A small core owns every socket and file and hands plugins narrow capabilities declared in \
            their manifests. Start a host with `peerhost run`; inspect and drive it with `peerhost status` \
            and `peerhost ctl`. Review what plugins may do with `peerhost audit`; plugins must be \
            signed (`peerhost keygen`, `peerhost sign`) by a trusted key or the host refuses them. Draft a \
            plugin's syscall profile with `peerhost learn`. Write a new plugin with `peerhost new-plugin` \
            and check one against its manifest, in a sandbox, with `peerhost check` (docs/writing-a-plugin.md).

            Config: --config FILE, else $PEERHOST_CONFIG, else config/peerhost.toml found above the \
            executable (a development checkout), else /etc/peerhost/peerhost.toml, else the built-in default \
            (both echo plugins on loopback).
            """,
        version: PeerhostVersion.current,
        subcommands: [RunCommand.self, StatusCommand.self, CtlCommand.self, AuditCommand.self,
                      KeygenCommand.self, SignCommand.self, LearnCommand.self, CheckCommand.self,
                      NewPluginCommand.self]
    )

    /// As AsyncParsableCommand.main, except that usage errors exit 2 (not ArgumentParser's 64), so
    /// `peerhost audit` keeps 1 for "unsafe" and 2 for "you called it wrong" (docs/audit.md).
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            if exitCode(for: error) == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}

/// `--config FILE`, shared by every subcommand.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Config file (default: $PEERHOST_CONFIG, config/peerhost.toml above the executable, /etc/peerhost/peerhost.toml, built-in).",
                                            valueName: "FILE"))
    var config: String?

    func load() throws -> HostConfig {
        do {
            return try HostConfig.discoverAndLoad(commandLinePath: config)
        } catch {
            throw CommandFailure(error.description)
        }
    }
}

extension ConfigOptions {
    /// The running host's run file for this config, or an error that says how to find the host:
    /// a host started with `--config FILE` keeps its run file in that config's data dir, which a
    /// command that fell back to the built-in default does not look in.
    func runningHost() throws -> RunFile {
        let config = try load()
        do {
            return try RunFile.read(dataDirectory: config.host.dataDirectory)
        } catch {
            var text = error.description
            if case .embedded = config.origin {
                text += "\nThis command found no config file and used the built-in default (data dir \(config.host.dataDirectory)); "
                    + "a host started with --config FILE is found with the same --config FILE or $PEERHOST_CONFIG."
                if FileManager.default.fileExists(atPath: "peerhost.toml") { text += " There is a peerhost.toml here: try --config peerhost.toml." }
            }
            throw CommandFailure(text)
        }
    }
}

/// An error whose text is the whole message (ArgumentParser prints it and exits 1).
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
