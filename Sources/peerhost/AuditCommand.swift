import ArgumentParser
import Foundation
import PeerhostCore

struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Show what plugins may do and whether their code is what was signed.",
        discussion: """
            For every plugin of the config (or one PLUGIN: a configured name, or a path to a manifest): \
            effective grants (manifest narrowed by the config, plus directories the operator granted at \
            run time with `peerhost ctl host grant`, read from the data dir's store), limits, namespaces, the syscall profile \
            and its sha256, control methods, the library's sha256 and signature status, and findings. \
            The library and signature are checked exactly as `peerhost run` checks them before starting \
            a plugin. What each finding means: docs/audit.md.

            --diff OLD NEW compares two manifests: each grant, limit, namespace, control method or \
            identity field added (+), removed (-) or changed (~), marked "(widens)" when NEW may do more.

            Exit status: 0 everything verified (warnings allowed); 1 something unsafe or unverifiable \
            (unsigned, untrusted or mismatched library, world-writable storage folder, a config grant \
            wider than the manifest, an unreadable or dangerous syscall profile, a config or manifest \
            that does not parse), or any warning with --strict (connect to any host or a port range, rw \
            storage, multicast, listening on every interface, no memory limit, a namespace left out); \
            2 usage error. With --diff: 0 when NEW widens nothing, 1 when it does.

            Examples:
              peerhost audit
              peerhost audit echo-c --json | jq '.plugins[0].signature'
              peerhost audit plugins/echo-c/manifest.toml
              peerhost audit --strict --config /etc/peerhost/peerhost.toml
              peerhost audit --diff old/manifest.toml plugins/echo-c/manifest.toml
            """
    )

    @OptionGroup var options: ConfigOptions

    @Argument(help: ArgumentHelp("A configured plugin name or a manifest path; with --diff: OLD NEW.", valueName: "PLUGIN"))
    var targets: [String] = []

    @Flag(name: .long, help: "Compare two manifests (OLD NEW) instead of auditing.")
    var diff = false

    @Flag(name: .long, help: "Print JSON for tools instead of text.")
    var json = false

    @Flag(name: .long, help: "Count warnings as failures (exit 1).")
    var strict = false

    func validate() throws {
        if diff {
            guard targets.count == 2 else { throw ValidationError("--diff takes two manifests: OLD NEW") }
        } else if targets.count > 1 {
            throw ValidationError("audit takes at most one PLUGIN (a name or a manifest path); got \(targets.count)")
        }
    }

    func run() throws {
        if diff { return try runDiff() }
        let config = try options.load()
        let trust = TrustStore(config: config)
        // Directories the operator granted at run time live in the host's store (docs/grants.md).
        var operatorGrants: [OperatorGrant] = []
        switch OperatorGrants.readOffline(dataDirectory: config.host.dataDirectory) {
        case .success(let grants): operatorGrants = grants
        case .failure(let error): FileHandle.standardError.write(Data("warning: \(error)\n".utf8))
        }
        let inputs = AuditInputs(trust: trust, allowUnsigned: Set(config.security.allowUnsigned), operatorGrants: operatorGrants)
        var reports: [PluginAuditReport] = []
        if let target = targets.first {
            if let plugin = config.plugins.first(where: { $0.name == target }) {
                reports = [PluginAuditor.audit(plugin: plugin, inputs: inputs)]
            } else if target.contains("/") || target.hasSuffix(".toml") {
                let manifest: PluginManifest
                do {
                    manifest = try PluginManifest(contentsOf: target)
                } catch {
                    throw CommandFailure(error.description)
                }
                reports = [PluginAuditor.audit(manifest: manifest, inputs: AuditInputs(trust: trust))]
            } else {
                throw CommandFailure("no plugin '\(target)' in \(config.origin) (plugins: \(config.plugins.map(\.name).joined(separator: ", "))); give a manifest path to audit a plugin that is not configured")
            }
        } else {
            reports = config.plugins.map { PluginAuditor.audit(plugin: $0, inputs: inputs) }
        }
        let document = AuditDocument(config: config.origin.description, trust: trust, plugins: reports)
        print(json ? document.json() : document.text)
        let code = document.exitCode(strict: strict)
        if code != 0 { throw ExitCode(code) }
    }

    private func runDiff() throws {
        let old: PluginManifest, new: PluginManifest
        do {
            old = try PluginManifest(contentsOf: targets[0])
            new = try PluginManifest(contentsOf: targets[1])
        } catch {
            throw CommandFailure(error.description)
        }
        let result = ManifestDiff(old: old, new: new)
        print(json ? result.json() : result.text)
        if result.widens { throw ExitCode(1) }
    }
}
