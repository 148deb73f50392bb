// `peerhost check PLUGIN_DIR`: a plugin's manifest and library checked against each other before
// anything runs. The library is loaded only inside a sandboxed runner (the CLI never dlopens a
// plugin: its constructors would run unconfined), which reports what it found and exits; start()
// never runs.

import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public enum PluginCheck {
    /// What the runner found in the loaded library.
    public struct Loaded: Sendable, Equatable, Codable {
        public var name: String
        public var version: String
        public var abi: String
        public var features: UInt64
        /// The non-NULL callbacks of ph_plugin ("on_data", "on_timer", …).
        public var callbacks: [String]
        /// Control symbols of the manifest the library does not export.
        public var missingSymbols: [String]
    }

    /// The runner refused the library at a start-up step (its name, ABI, entry point…).
    public struct Refusal: Error, Sendable, Equatable, CustomStringConvertible {
        public var step: String
        public var message: String
        public var description: String { "\(step): \(message)" }
    }

    public struct Finding: Sendable, Equatable, Codable, CustomStringConvertible {
        public enum Severity: String, Sendable, Codable { case error, warning }
        public var severity: Severity
        public var message: String
        public var description: String { "\(severity.rawValue): \(message)" }
    }

    public struct Report: Sendable, Codable {
        public var manifest: String
        public var library: String
        public var loaded: Loaded?
        public var findings: [Finding]
        public var passed: Bool { !findings.contains { $0.severity == .error } }
    }

    static let featureNames: [(bit: UInt64, name: String)] = [
        (1 << 0, "streams"), (1 << 1, "datagrams"), (1 << 2, "timers"), (1 << 3, "files"), (1 << 4, "kv"),
        (1 << 5, "resolve"), (1 << 6, "control"), (1 << 7, "shaping"), (1 << 8, "peer_tags"),
    ]

    public static func featureList(_ bits: UInt64) -> String {
        let names = featureNames.filter { bits & $0.bit != 0 }.map(\.name)
        return names.isEmpty ? "none" : names.joined(separator: ", ")
    }

    /// The manifest against what was loaded: what the host would refuse or what would never work.
    public static func findings(manifest: PluginManifest, loaded: Loaded) -> [Finding] {
        var out: [Finding] = []
        func error(_ m: String) { out.append(Finding(severity: .error, message: m)) }
        func warning(_ m: String) { out.append(Finding(severity: .warning, message: m)) }
        let has = { (bit: UInt64) in loaded.features & bit != 0 }
        let callbacks = Set(loaded.callbacks)
        for symbol in loaded.missingSymbols {
            let method = manifest.controls.first { $0.symbol == symbol }?.name ?? symbol
            error("control method \(method): the library does not export \(symbol) (declare it with __attribute__((visibility(\"default\"))) or @_cdecl)")
        }
        let parts = loaded.abi.split(separator: ".").compactMap { Int($0) }
        let gates = parts.count == 3 && (parts[0], parts[1]) >= (1, 2)
        if !manifest.controls.isEmpty, !has(1 << 6) {
            let consequence = gates ? "a plugin built against ABI \(loaded.abi) answers none of them" : "declare it for ABI 1.2"
            error("the manifest declares \(manifest.controls.count) control method(s) but the plugin does not declare PH_FEAT_CONTROL: \(consequence)")
        }
        // A feature bit whose callback is missing: its events have nowhere to go.
        let needs: [(bit: UInt64, feature: String, callback: String)] = [
            (1 << 0, "PH_FEAT_STREAMS", "on_data"), (1 << 1, "PH_FEAT_DATAGRAMS", "on_datagram"),
            (1 << 2, "PH_FEAT_TIMERS", "on_timer"), (1 << 3, "PH_FEAT_FILES", "on_complete"),
            (1 << 4, "PH_FEAT_KV", "on_complete"), (1 << 5, "PH_FEAT_RESOLVE", "on_complete"),
        ]
        for n in needs where has(n.bit) && !callbacks.contains(n.callback) {
            error("\(n.feature) is declared but \(n.callback) is NULL: its results would have nowhere to go")
        }
        // A callback without its bit is never called.
        let calledOnlyWith: [(callback: String, bit: UInt64, feature: String)] = [
            ("on_accept", 1 << 0, "PH_FEAT_STREAMS"), ("on_data", 1 << 0, "PH_FEAT_STREAMS"),
            ("on_writable", 1 << 0, "PH_FEAT_STREAMS"), ("on_datagram", 1 << 1, "PH_FEAT_DATAGRAMS"),
            ("on_timer", 1 << 2, "PH_FEAT_TIMERS"),
        ]
        for c in calledOnlyWith where callbacks.contains(c.callback) && !has(c.bit) {
            warning("\(c.callback) is set but \(c.feature) is not declared: the host never calls it")
        }
        if manifest.net.listen.contains(where: { $0.transport == .tcp }), !has(1 << 0) {
            warning("the manifest grants a TCP listen address but the plugin does not declare PH_FEAT_STREAMS")
        }
        if manifest.net.listen.contains(where: { $0.transport == .udp }) || manifest.net.multicast.isEmpty == false, !has(1 << 1) {
            warning("the manifest grants UDP addresses but the plugin does not declare PH_FEAT_DATAGRAMS")
        }
        if parts.count == 3, parts[0] == 1, parts[1] > 2 {
            warning("built against ABI \(loaded.abi); this host serves 1.2: calls added after 1.2 are absent (check host->size before using them)")
        }
        return out
    }
}

extension Host {
    private static let keptAlive = Mutex<[Host]>([])

    /// Loads the plugin of `manifestPath` in a sandboxed runner on a throwaway host (its own data
    /// dir, no control plane), takes the runner's report and compares it with the manifest. The
    /// signature is not required (an author checks before signing); the sandbox is the same.
    public static func check(manifestPath: String, timeout: Duration = .seconds(20)) async throws -> PluginCheck.Report {
        let manifest = try PluginManifest(contentsOf: manifestPath)
        let library = (try? manifest.resolveLibrary()) ?? manifest.library
        var report = PluginCheck.Report(manifest: manifest.path, library: library, loaded: nil, findings: [])
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("peerhost-check-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let configPath = scratch + "/peerhost.toml"
        try """
            [host]
            data_dir = "\(scratch)/data"
            http = "127.0.0.1:0"
            log_level = "error"

            [security]
            allow_unsigned = ["\(manifest.name)"]

            [[plugin]]
            name = "\(manifest.name)"
            manifest = "\(manifest.path)"
            """.write(toFile: configPath, atomically: true, encoding: .utf8)
        let config = try HostConfig.load(origin: .commandLine(path: configPath))
        try? FileManager.default.createDirectory(atPath: config.host.dataDirectory, withIntermediateDirectories: true,
                                                 attributes: [.posixPermissions: 0o700])
        var logger = Logger(label: "peerhost-check")
        logger.logLevel = .critical
        let host = Host(config: config, loop: try IOUringLoop(), metrics: HostMetrics(), logger: logger)
        host.startLoopThread()
        let outcome: Result<PluginCheck.Loaded, PluginCheck.Refusal> = await withCheckedContinuation { continuation in
            let answered = Mutex(false)
            let answer: @Sendable (Result<PluginCheck.Loaded, PluginCheck.Refusal>) -> Void = { result in
                if answered.withLock({ done in defer { done = true }; return !done }) { continuation.resume(returning: result) }
            }
            host.loop.execute {
                host.findRunnerFiles()
                let plugin = config.plugins[0]
                let prepared = host.prepare(plugin)
                guard case .success = prepared else {
                    if case .failure(let why) = prepared { answer(.failure(PluginCheck.Refusal(step: "prepare", message: why.description))) }
                    return
                }
                let supervisor = host.makeSupervisor(plugin, prepared, shaping: host.shaper.addPlugin(plugin.name, weight: 1, up: 0, down: 0,
                                                                                                        now: monotonicNanoseconds()),
                                                     grants: [])
                supervisor.onCheck = { answer($0) }
                host.replaceSupervisor(named: plugin.name, with: supervisor)
                supervisor.start()
                if supervisor.state == .failed {
                    answer(.failure(PluginCheck.Refusal(step: "start", message: supervisor.reason)))
                }
            }
            Task {
                try? await Task.sleep(for: timeout)
                answer(.failure(PluginCheck.Refusal(step: "report", message: "the runner did not report within \(timeout)")))
            }
        }
        // The loop thread and the runner's reaper still hold this host after the report; `check`
        // is a one-shot CLI command, so the host lives until the process exits.
        keptAlive.withLock { $0.append(host) }
        switch outcome {
        case .success(let loaded):
            report.loaded = loaded
            report.findings = PluginCheck.findings(manifest: manifest, loaded: loaded)
        case .failure(let refusal):
            report.findings = [PluginCheck.Finding(severity: .error, message: "the runner refused the library at \(refusal)")]
        }
        return report
    }
}
