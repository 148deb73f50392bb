import ArgumentParser
import Foundation
import PeerhostCore

struct SignCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sign",
        abstract: "Sign plugin manifests together with their library's bytes.",
        discussion: """
            For each MANIFEST: finds the library (--library, else beside the manifest, else in this \
            executable's folder: the build products), hashes it, and writes a signature sidecar over the \
            manifest's canonical form (name, version, ABI, library sha256, every grant, limits, namespaces, \
            the syscall profile and its sha256, control methods). The sidecar goes to --out, else \
            <plugin>.manifest.sig beside a library found in the build products folder, else manifest.sig \
            beside the manifest; the host looks in the same places. Changing any grant or rebuilding the \
            library breaks the signature. Scheme: docs/signing.md.

            Examples:
              peerhost sign plugins/echo-c/manifest.toml --key .peerhost-dev/dev.key
              peerhost sign my-plugin/manifest.toml --key release.key --library build/libmy.so --out my-plugin/manifest.sig
              peerhost sign plugins/*/manifest.toml --key .peerhost-dev/dev.key
            """
    )

    @Argument(help: ArgumentHelp("Manifest file(s) to sign.", valueName: "MANIFEST"))
    var manifests: [String]

    @Option(name: .long, help: ArgumentHelp("Private key written by `peerhost keygen`.", valueName: "KEY"))
    var key: String

    @Option(name: .long, help: ArgumentHelp("The library to sign (one manifest only); default: found as the host finds it.", valueName: "PATH"))
    var library: String?

    @Option(name: .long, help: ArgumentHelp("Where to write the signature (one manifest only).", valueName: "SIG"))
    var out: String?

    func validate() throws {
        if manifests.count > 1 && (library != nil || out != nil) {
            throw ValidationError("--library and --out apply to one manifest; got \(manifests.count)")
        }
    }

    func run() throws {
        let signingKey: PrivateSigningKey
        do {
            signingKey = try PrivateSigningKey(contentsOf: key)
        } catch {
            throw CommandFailure(error.description)
        }
        for manifestPath in manifests {
            let manifest: PluginManifest
            do {
                manifest = try PluginManifest(contentsOf: manifestPath)
            } catch {
                throw CommandFailure(error.description)
            }
            let libraryPath: String
            if let library {
                libraryPath = library
            } else {
                do {
                    libraryPath = try manifest.resolveLibrary()
                } catch {
                    throw CommandFailure("\(error.description); build it first, or pass --library")
                }
            }
            guard let hash = PluginVerifier.librarySHA256(path: libraryPath) else {
                throw CommandFailure("\(libraryPath): cannot read the library")
            }
            if let pinned = manifest.sha256, pinned != hash {
                throw CommandFailure("\(manifestPath): the manifest pins sha256 \(pinned) but \(libraryPath) has \(hash); refusing to sign")
            }
            let destination = out ?? SignatureFile.defaultLocation(manifest: manifest, libraryPath: libraryPath)
            do {
                let signature = try SignatureFile.sign(manifest: manifest, librarySHA256: hash, key: signingKey)
                try signature.fileText.write(toFile: destination, atomically: true, encoding: .utf8)
            } catch {
                throw CommandFailure("\(manifestPath): \(error)")
            }
            print("signed \(manifest.name) \(manifest.version) (library \(libraryPath) sha256 \(hash)) with \(signingKey.publicKey.keyID) → \(destination)")
        }
    }
}
