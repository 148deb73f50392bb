import ArgumentParser
import Foundation
import PeerhostCore

struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Make an ed25519 key pair for signing plugin manifests.",
        discussion: """
            Writes PATH.key (the private key, mode 0600; keep it out of version control) and PATH.pub \
            (the public key: put it in a trust folder, sandbox/trust/ or one named in the config's \
            [security] trust) and prints the key id. Never overwrites an existing key. \
            Formats and the signing scheme: docs/signing.md.

            Examples:
              peerhost keygen --out keys/release
              peerhost keygen --out .peerhost-dev/dev      # what `make build` does once per checkout
            """
    )

    @Option(name: .long, help: ArgumentHelp("Where to write the pair, without extension.", valueName: "PATH"))
    var out = "peerhost-signing"

    func run() throws {
        let key = PrivateSigningKey.generate()
        let paths: (privatePath: String, publicPath: String)
        do {
            paths = try key.write(to: out)
        } catch {
            throw CommandFailure(error.description)
        }
        print("key \(key.publicKey.keyID)")
        print("private: \(paths.privatePath) (mode 0600)")
        print("public:  \(paths.publicPath)")
    }
}
