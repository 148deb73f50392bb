import ArgumentParser
import Foundation
import PeerhostCore

struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check a plugin's manifest and library against each other before running it.",
        discussion: """
            Reads PLUGIN_DIR/manifest.toml (or the manifest file given), then loads the library the way \
            the host does — inside a sandboxed runner, never in this process, so the plugin's \
            constructors run confined — and compares what it finds with the manifest: the plugin's \
            name and ABI, every control method's symbol exported, the feature bits against the \
            callbacks set (a bit without its callback is an error; a callback without its bit is \
            never called), PH_FEAT_CONTROL when control methods are declared, the listen grants \
            against the streams/datagrams bits. start() is never called and nothing listens. The \
            signature is not needed (check before signing). Exit status 0 when nothing is an error, \
            1 otherwise.

            Examples:
              peerhost check plugins/echo-c
              peerhost check my-plugin/manifest.toml --json
            """
    )

    @Argument(help: ArgumentHelp("The plugin's folder (with manifest.toml) or its manifest file.", valueName: "PLUGIN_DIR"))
    var path: String
    @Flag(help: "Print the report as JSON.") var json = false

    func run() async throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw CommandFailure("\(path): no such file or folder")
        }
        let manifest = isDirectory.boolValue ? (path as NSString).appendingPathComponent("manifest.toml") : path
        guard FileManager.default.fileExists(atPath: manifest) else {
            throw CommandFailure("\(path) has no manifest.toml")
        }
        let report: PluginCheck.Report
        do {
            report = try await Host.check(manifestPath: manifest)
        } catch {
            throw CommandFailure("\(error)")
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print("check \(report.manifest)")
            print("  library    \(report.library)")
            if let loaded = report.loaded {
                print("  loaded     \(loaded.name) \(loaded.version), ABI \(loaded.abi), features \(PluginCheck.featureList(loaded.features))")
                print("  callbacks  \(loaded.callbacks.isEmpty ? "none" : loaded.callbacks.joined(separator: ", "))")
            }
            for finding in report.findings { print("  \(finding)") }
            print(report.passed ? "verdict: ok" : "verdict: \(report.findings.filter { $0.severity == .error }.count) error(s)")
        }
        if !report.passed { throw ExitCode(1) }
    }
}
