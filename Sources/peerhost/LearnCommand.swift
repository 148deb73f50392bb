import ArgumentParser
import Foundation
import PeerhostCore

struct LearnCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "learn",
        abstract: "Run one plugin in learn mode and write a draft syscall profile from what it called.",
        discussion: """
            Starts the host with only PLUGIN (from the config, enabled there or not), its runner's seccomp filter in learn mode: \
            every syscall is recorded and allowed to run (seccomp user notification, answered "continue" \
            by the core), except the dangerous ones of the profile lint, which still kill the runner. \
            Drive the plugin's workload meanwhile (clients, `peerhost ctl` calls: the host serves its \
            control socket as usual). After --seconds (or at SIGTERM/SIGINT, whichever comes first) the \
            plugin is stopped and the draft is written: \
            one [[syscall]] entry per syscall seen, phase "load" for those seen only while the plugin \
            loaded. Review it and replace each reason (docs/syscall-profiles.md).

            Examples:
              peerhost learn echo-c --seconds 20 --out echo-c.toml
              peerhost learn threaded --config my.toml        # draft on stdout
            """
    )

    @OptionGroup var options: ConfigOptions
    @Argument(help: "The plugin to learn (its name in the config).") var plugin: String
    @Option(help: "How long the plugin runs before the draft is written.") var seconds: Int = 30
    @Option(help: ArgumentHelp("Write the draft profile here (default: stdout).", valueName: "FILE")) var out: String?

    func run() async throws {
        let config = try options.load()
        guard let entry = config.plugins.first(where: { $0.name == plugin }) else {
            throw CommandFailure("no plugin \(plugin) in \(config.origin) (have: \(config.plugins.map(\.name).joined(separator: ", ")))")
        }
        guard seconds > 0 else { throw CommandFailure("--seconds must be positive") }
        if let running = try? RunFile.read(dataDirectory: config.host.dataDirectory) {
            throw CommandFailure("a host is already running with data dir \(config.host.dataDirectory) (pid \(running.pid)); stop it first or use another data_dir")
        }
        FileHandle.standardError.write(Data("learning \(entry.name) for \(seconds) s; drive its workload now\n".utf8))
        let observed = try await Host.run(config: config, learn: LearnRequest(plugin: plugin, seconds: seconds))
        let draft = SyscallProfile.draft(plugin: plugin, observed: observed, seconds: seconds)
        if let out {
            do {
                try draft.write(toFile: out, atomically: true, encoding: .utf8)
            } catch {
                throw CommandFailure("cannot write \(out): \(error.localizedDescription)")
            }
            FileHandle.standardError.write(Data("wrote \(out): \(observed.count) syscalls\n".utf8))
        } else {
            print(draft, terminator: "")
        }
    }
}
