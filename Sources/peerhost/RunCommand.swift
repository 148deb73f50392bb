import ArgumentParser
import PeerhostCore

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Start the host and its plugins; run until SIGTERM or SIGINT.",
        discussion: """
            Loads the config, starts one sandboxed runner per enabled plugin, serves read-only HTTP \
            (/metrics, /status) and the control socket <data_dir>/control.sock, and writes \
            <data_dir>/run.json once ready. SIGTERM or SIGINT stops the plugins and removes run.json.

            Examples:
              peerhost run                              # development: config/peerhost.toml of the checkout
              peerhost run --config /etc/peerhost/peerhost.toml
              PEERHOST_CONFIG=./my.toml peerhost run
            """
    )

    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let config = try options.load()
        // One host per data dir: a second one would take over the control socket and run.json.
        if let running = try? RunFile.read(dataDirectory: config.host.dataDirectory) {
            throw CommandFailure("a host is already running with data dir \(config.host.dataDirectory) (pid \(running.pid), http \(running.http)); stop it first or use another data_dir")
        }
        print(config.summary)
        try await Host.run(config: config)
    }
}
