import ArgumentParser
import Foundation
import PeerhostCore

struct NewPluginCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "new-plugin",
        abstract: "Write a plugin skeleton that builds, tests, signs and runs as written.",
        discussion: """
            Writes NAME/ (or --dir): NAME.c (answers each chunk it receives on its listen address, \
            an async control method `stats`), include/peerhost.h (this host's ABI), manifest.toml, \
            dev.toml (a host config that trusts only keys/), a Makefile (`make`, `make check`, \
            `make sign`, `make test`, `make run`) and test.sh (starts a host, talks to the plugin, \
            checks its stats). Refuses a folder that exists and is not empty. The walk-through of each \
            step is docs/writing-a-plugin.md.

            Examples:
              peerhost new-plugin tally
              peerhost new-plugin tally --dir ~/src/tally --port 7420
            """
    )

    @Argument(help: "The plugin's name: lowercase letters, digits, - and _, starting with a letter.") var name: String
    @Option(help: "The plugin's language (c).") var lang: String = "c"
    @Option(help: ArgumentHelp("Where to write it (default: ./NAME).", valueName: "DIR")) var dir: String?
    @Option(help: "The loopback TCP port it listens on.") var port: UInt16 = 7400

    func run() throws {
        guard let language = PluginSkeleton.Language(rawValue: lang) else {
            let known = PluginSkeleton.Language.allCases.map(\.rawValue).joined(separator: ", ")
            throw CommandFailure("--lang \(lang): this version writes skeletons in \(known); for Swift start from plugins/echo-swift (PeerhostSDK)")
        }
        guard port > 0 else { throw CommandFailure("--port must be 1…65535") }
        let files: [PluginSkeleton.File]
        do { files = try PluginSkeleton.files(name: name, language: language, port: port) } catch {
            throw CommandFailure(error.description)
        }
        let folder = dir ?? name
        let manager = FileManager.default
        if let existing = try? manager.contentsOfDirectory(atPath: folder), !existing.isEmpty {
            throw CommandFailure("\(folder) exists and is not empty; choose another --dir")
        }
        for file in files {
            let path = (folder as NSString).appendingPathComponent(file.path)
            do {
                try manager.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try file.contents.write(toFile: path, atomically: true, encoding: .utf8)
                if file.executable { try manager.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path) }
            } catch {
                throw CommandFailure("cannot write \(path): \(error.localizedDescription)")
            }
        }
        print("""
            wrote \(folder)/: \(files.map(\.path).joined(separator: ", "))
            next:
              cd \(folder)
              make            # builds lib\(name).so
              make check      # checks the manifest against the library, in a sandbox
              make test       # signs with a new key in keys/, starts a host on dev.toml, talks to it
              make run        # the host in the foreground; peerhost ctl \(name) stats --config dev.toml
            """)
    }
}
