import ArgumentParser
import PeerhostCore

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the running host and its plugins.",
        discussion: """
            Finds the host through <data_dir>/run.json of the config's data dir and asks it over the \
            control socket. --json prints the same document as GET /status (schema: \
            docs/status.schema.json).

            The table has one row per plugin: state, runner pid, restarts, open connections, bytes \
            in and out with the last second's rates, CPU seconds since the host started (cgroup or \
            /proc), memory, storage, and why it is not running, led by the cause (crash, hang, \
            limit, violation, exit, start_failure; a crash loop says "last cause ...").

            Examples:
              peerhost status
              peerhost status --json | jq '.plugins[] | {name, state, restarts}'
              peerhost status --config /etc/peerhost/peerhost.toml
            """
    )

    @OptionGroup var options: ConfigOptions

    @Flag(name: .long, help: "Print the status document as JSON.")
    var json = false

    func run() throws {
        let runFile = try options.runningHost()
        let document: StatusDocument
        do {
            document = try ControlSocketClient(path: runFile.controlSocket).status()
        } catch {
            throw CommandFailure(error.description)
        }
        if json {
            print(String(decoding: try document.encodedJSON(), as: UTF8.self))
        } else {
            print(document.table)
            print("\nhttp://\(runFile.http)/status  http://\(runFile.http)/metrics")
        }
    }
}
