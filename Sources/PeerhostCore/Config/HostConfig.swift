// The operator's config (peerhost.toml): which plugins run, where the host keeps its state and
// serves its control plane, and the tunables of Defaults.swift. Schema: docs/config.md.

import Foundation

public struct HostConfig: Sendable {
    /// Where the config came from, for the start-up summary and for error messages.
    public var origin: ConfigOrigin
    public var host: HostSettings
    public var tuning: Tuning
    /// `[security]`: extra trusted signing keys and the unsigned-plugin escape hatch.
    public var security: SecuritySettings
    /// `[shaping]`: the global bandwidth limits, bytes/s each way (0 = unlimited).
    public var shaping = ShapingSettings()
    /// In file order; a plugin's index here gives its host uid (uid_base + index).
    public var plugins: [PluginConfig]

    public var enabledPlugins: [PluginConfig] { plugins.filter(\.enabled) }

    public struct HostSettings: Sendable, Equatable {
        /// Absolute; relative values resolve against the current directory at load time.
        public var dataDirectory: String
        /// Address of the read-only HTTP plane; port 0 means an ephemeral port (see run.json).
        public var httpHost: String
        public var httpPort: UInt16
        public var uidBase: UInt32
        public var logLevel: LogLevel

        public var controlSocketPath: String { (dataDirectory as NSString).appendingPathComponent("control.sock") }
        public var runFilePath: String { (dataDirectory as NSString).appendingPathComponent("run.json") }
    }

    public struct SecuritySettings: Sendable, Equatable {
        /// Folders of trusted `*.pub` keys (absolute; relative values resolve against the config's
        /// folder), read in addition to the built-in trust folder (TrustStore.builtInDirectories).
        public var trustDirectories: [String] = []
        /// Plugins started even without a valid signature (for plugin authors while iterating): the
        /// host logs a warning and an audit line, and `peerhost audit` calls them unsafe. A pinned
        /// manifest sha256 is still enforced.
        public var allowUnsigned: [String] = []
        public init() {}
    }

    public struct ShapingSettings: Sendable, Equatable {
        public var up: UInt64 = 0
        public var down: UInt64 = 0
        public init() {}
    }

    public enum LogLevel: String, Sendable, CaseIterable { case trace, debug, info, notice, warning, error, critical }

    /// Mirrors Defaults.swift; see the reasons there.
    public struct Tuning: Sendable, Equatable {
        public var ringEntries = Defaults.ringEntries
        public var slotSize = Defaults.slotSize
        public var slotCount = Defaults.slotCount
        public var receiveSlots = Defaults.receiveSlots
        public var spinMicroseconds = Defaults.spinMicroseconds
        public var heartbeatIntervalMilliseconds = Defaults.heartbeatIntervalMilliseconds
        public var heartbeatTimeoutMilliseconds = Defaults.heartbeatTimeoutMilliseconds
        public var backoffBaseMilliseconds = Defaults.backoffBaseMilliseconds
        public var backoffCapMilliseconds = Defaults.backoffCapMilliseconds
        /// 0 = no limit.
        public var crashLoopLimit = Defaults.crashLoopLimit
        /// Seconds between usage-log records (<data_dir>/usage.log); 0 = no usage log.
        public var usageLogIntervalSeconds = Defaults.usageLogIntervalSeconds
        public var statusIntervalSeconds = Defaults.statusIntervalSeconds
        /// Sockets and files the core may hold for one plugin (Defaults.pluginDescriptors says why).
        public var pluginDescriptors = Defaults.pluginDescriptors
        /// Bytes the core queues per connection before send answers PH_EAGAIN (Defaults says why).
        public var sendQueuePerConnection = Defaults.sendQueuePerConnection
        /// Seconds a closed stream may go without progress before it is reset.
        public var closeLingerSeconds = Defaults.closeLingerSeconds
        /// Timers one plugin may have pending (Defaults.pluginTimers says why).
        public var pluginTimers = Defaults.pluginTimers
        public init() {}
    }

    public struct PluginConfig: Sendable {
        public var name: String
        /// Index in the config's plugin list (stable for uid assignment).
        public var index: Int
        public var enabled: Bool
        public var manifest: PluginManifest
        /// The operator's `config` table, passed to the plugin's start as JSON (see `startConfigJSON`).
        public var settings: JSONValue
        /// The operator's narrowing of the manifest's listen grants; nil = the manifest's list.
        public var listenOverride: [NetGrant]?
        /// The host's data_dir (absolute): the plugin's storage root is `<dataDirectory>/<name>/`.
        public var dataDirectory: String = ""
        /// Fair-share weight against the other plugins on a saturated global limit (default 1).
        public var weight: UInt32 = 1
        /// The config's `bandwidth = { up, down }` (bytes/s, nil = not set): it may lower the
        /// manifest's `[limits] bandwidth`, never raise it.
        public var bandwidthUp: UInt64?
        public var bandwidthDown: UInt64?

        /// The plugin's limits in bytes/s (0 = unlimited): the lower of manifest and config.
        public var effectiveBandwidth: (up: UInt64, down: UInt64) {
            func lower(_ a: UInt64?, _ b: UInt64?) -> UInt64 {
                switch (a.flatMap { $0 == 0 ? nil : $0 }, b.flatMap { $0 == 0 ? nil : $0 }) {
                case let (x?, y?): return min(x, y)
                case let (x?, nil): return x
                case let (nil, y?): return y
                default: return 0
                }
            }
            return (lower(manifest.limits.bandwidthUp, bandwidthUp), lower(manifest.limits.bandwidthDown, bandwidthDown))
        }

        /// The effective grants, one line each, for the status document: the manifest's, with
        /// net.listen narrowed by the config.
        public var grantSummary: [String] {
            effectiveListen.map { "net.listen \($0)" } + manifest.grantSummary.filter { !$0.hasPrefix("net.listen ") }
        }

        /// What the plugin listens on: the override when given, else the manifest's grants.
        public var effectiveListen: [NetGrant] { listenOverride ?? manifest.net.listen }

        /// Narrowings that may not be meant: a config `listen` that leaves out every address of a
        /// transport the manifest grants drops that transport altogether (a BitTorrent plugin
        /// narrowed to its TCP port loses its DHT's UDP socket).
        public var warnings: [String] {
            guard let listenOverride else { return [] }
            var out: [String] = []
            for transport in [NetGrant.Transport.tcp, .udp] {
                let granted = manifest.net.listen.filter { $0.transport == transport }
                guard !granted.isEmpty, !listenOverride.contains(where: { $0.transport == transport }) else { continue }
                out.append("plugin \(name): the config's listen names no \(transport.rawValue) address, so the manifest's "
                    + "\(granted.map(\.description).joined(separator: ", ")) is not used; add one to listen to keep \(transport.rawValue)")
            }
            return out
        }

        /// The START payload: the operator's config table with `listen` set to the effective
        /// listen addresses, so a plugin learns where to listen without repeating the grant.
        public var startConfigJSON: [UInt8] {
            var object: [String: JSONValue] = [:]
            if case .object(let entries) = settings { object = entries }
            object["listen"] = .array(effectiveListen.map { .string($0.description) })
            return JSONValue.object(object).encodedBytes()
        }
    }
}

/// How the config was found (DESIGN.md, "Operator surface": --config, $PEERHOST_CONFIG,
/// config/peerhost.toml walking up from the executable, /etc/peerhost/peerhost.toml, embedded).
public enum ConfigOrigin: Sendable, Equatable, CustomStringConvertible {
    case commandLine(path: String)
    case environment(path: String)
    case development(path: String)
    case system(path: String)
    /// No file found: the copy compiled into the binary, read as if it sat in `<cwd>/config/`.
    case embedded

    public var path: String? {
        switch self {
        case .commandLine(let path), .environment(let path), .development(let path), .system(let path): return path
        case .embedded: return nil
        }
    }

    public var description: String {
        switch self {
        case .commandLine(let path): return "\(path) (--config)"
        case .environment(let path): return "\(path) ($PEERHOST_CONFIG)"
        case .development(let path): return "\(path) (found beside the executable's source tree)"
        case .system(let path): return "\(path)"
        case .embedded: return "embedded default config"
        }
    }
}

// MARK: - Loading

extension HostConfig {
    public static let embeddedDisplayName = "<embedded default config>"

    /// Every key the config accepts, by table ("" = top level); docs/config.md documents each
    /// (a test checks) and anything else is an "unknown key" error.
    public static let schemaKeys: [String: [String]] = [
        "": ["host", "tuning", "security", "shaping", "plugin"],
        "host": ["data_dir", "http", "uid_base", "log_level"],
        "tuning": ["ring_entries", "slot_size", "slot_count", "recv_slots", "spin_us", "heartbeat_interval_ms",
                   "heartbeat_timeout_ms", "backoff_base_ms", "backoff_cap_ms", "crash_loop_limit",
                   "usage_log_interval_s", "status_interval_s", "plugin_descriptors", "send_queue_per_connection",
                   "close_linger_s", "plugin_timers"],
        "plugin": ["name", "manifest", "enabled", "config", "listen", "weight", "bandwidth"],
        "plugin.bandwidth": ["up", "down"],
        "shaping": ["up", "down"],
        "security": ["trust", "allow_unsigned"],
    ]

    /// Finds and loads the config the way every command does.
    public static func discoverAndLoad(
        commandLinePath: String?,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        executableDirectory: String = ExecutableLocation.directory,
        currentDirectory: String = FileManager.default.currentDirectoryPath
    ) throws(TOMLFileError) -> HostConfig {
        let origin = ConfigDiscovery.locate(commandLinePath: commandLinePath, environment: environment,
                                            executableDirectory: executableDirectory)
        return try load(origin: origin, currentDirectory: currentDirectory)
    }

    public static func load(origin: ConfigOrigin,
                            currentDirectory: String = FileManager.default.currentDirectoryPath) throws(TOMLFileError) -> HostConfig {
        let source: TOMLSource
        let baseDirectory: String
        if let path = origin.path {
            source = try TOMLSource(contentsOf: path)
            let absolute = path.hasPrefix("/") ? path : (currentDirectory as NSString).appendingPathComponent(path)
            baseDirectory = ((absolute as NSString).standardizingPath as NSString).deletingLastPathComponent
        } else {
            source = try TOMLSource(text: EmbeddedDefaultConfig.text, displayName: embeddedDisplayName)
            baseDirectory = (currentDirectory as NSString).appendingPathComponent("config")
        }
        return try HostConfig(source: source, origin: origin, baseDirectory: baseDirectory, currentDirectory: currentDirectory)
    }

    /// Validates a parsed config. `baseDirectory` is the config file's folder (manifest paths are
    /// relative to it); `currentDirectory` anchors a relative data_dir.
    public init(source: TOMLSource, origin: ConfigOrigin, baseDirectory: String, currentDirectory: String) throws(TOMLFileError) {
        self.origin = origin
        let root = source.rootReader
        try root.allowOnly(Self.schemaKeys[""]!)

        // [host]
        let hostTable = try root.table("host") ?? TOMLTableReader(source: source, path: "host", entries: [:])
        try hostTable.allowOnly(Self.schemaKeys["host"]!)
        let dataDirectoryText = try hostTable.string("data_dir") ?? Defaults.dataDirectory
        if dataDirectoryText.isEmpty { throw hostTable.error("data_dir", .badValue("data_dir must not be empty")) }
        let dataDirectory = dataDirectoryText.hasPrefix("/") ? dataDirectoryText
            : (currentDirectory as NSString).appendingPathComponent(dataDirectoryText)
        let httpText = try hostTable.string("http") ?? Defaults.httpAddress
        let http: NetGrant
        do {
            http = try NetGrant(parsing: "tcp:" + httpText)
        } catch {
            throw hostTable.error("http", .badValue("'\(httpText)' is not HOST:PORT (e.g. \"127.0.0.1:9180\"; port 0 = ephemeral)"))
        }
        guard http.ports.lowerBound == http.ports.upperBound, http.host != "*" else {
            throw hostTable.error("http", .badValue("'\(httpText)' must be one HOST:PORT (e.g. \"127.0.0.1:9180\")"))
        }
        let uidBase = try hostTable.integer("uid_base", in: 1...Int64(UInt32.max - 65_536)) ?? Int64(Defaults.uidBase)
        let logLevelText = try hostTable.string("log_level") ?? Defaults.logLevel
        guard let logLevel = LogLevel(rawValue: logLevelText) else {
            throw hostTable.error("log_level", .badValue("'\(logLevelText)' is not a log level (expected one of: \(LogLevel.allCases.map(\.rawValue).joined(separator: ", ")))"))
        }
        host = HostSettings(dataDirectory: (dataDirectory as NSString).standardizingPath, httpHost: http.host,
                            httpPort: http.ports.lowerBound, uidBase: UInt32(uidBase), logLevel: logLevel)

        // [tuning]
        tuning = Tuning()
        if let table = try root.table("tuning") {
            try table.allowOnly(Self.schemaKeys["tuning"]!)
            func powerOfTwo(_ key: String, _ range: ClosedRange<Int64>) throws(TOMLFileError) -> Int? {
                guard let value = try table.integer(key, in: range) else { return nil }
                guard value & (value - 1) == 0 else { throw table.error(key, .badValue("\(value) is not a power of two")) }
                return Int(value)
            }
            if let value = try powerOfTwo("ring_entries", 2...1_048_576) { tuning.ringEntries = value }
            if let value = try powerOfTwo("slot_size", 512...1_048_576) { tuning.slotSize = value }
            if let value = try table.integer("slot_count", in: 2...1_048_576) { tuning.slotCount = Int(value) }
            if let value = try table.integer("recv_slots", in: 1...1_048_575) { tuning.receiveSlots = Int(value) }
            if tuning.receiveSlots >= tuning.slotCount {
                throw table.error(table.contains("recv_slots") ? "recv_slots" : "slot_count",
                                  .badValue("recv_slots (\(tuning.receiveSlots)) must be below slot_count (\(tuning.slotCount)) so the plugin keeps slots to send from"))
            }
            if let value = try table.integer("spin_us", in: 0...100_000) { tuning.spinMicroseconds = Int(value) }
            if let value = try table.integer("heartbeat_interval_ms", in: 10...600_000) { tuning.heartbeatIntervalMilliseconds = Int(value) }
            if let value = try table.integer("heartbeat_timeout_ms", in: 10...3_600_000) { tuning.heartbeatTimeoutMilliseconds = Int(value) }
            if tuning.heartbeatTimeoutMilliseconds <= tuning.heartbeatIntervalMilliseconds {
                throw table.error(table.contains("heartbeat_timeout_ms") ? "heartbeat_timeout_ms" : "heartbeat_interval_ms",
                                  .badValue("heartbeat_timeout_ms (\(tuning.heartbeatTimeoutMilliseconds)) must exceed heartbeat_interval_ms (\(tuning.heartbeatIntervalMilliseconds))"))
            }
            if let value = try table.integer("backoff_base_ms", in: 1...3_600_000) { tuning.backoffBaseMilliseconds = Int(value) }
            if let value = try table.integer("backoff_cap_ms", in: 1...86_400_000) { tuning.backoffCapMilliseconds = Int(value) }
            if tuning.backoffCapMilliseconds < tuning.backoffBaseMilliseconds {
                throw table.error(table.contains("backoff_cap_ms") ? "backoff_cap_ms" : "backoff_base_ms",
                                  .badValue("backoff_cap_ms (\(tuning.backoffCapMilliseconds)) is below backoff_base_ms (\(tuning.backoffBaseMilliseconds))"))
            }
            if let value = try table.integer("crash_loop_limit", in: 0...1_000_000) { tuning.crashLoopLimit = Int(value) }
            if let value = try table.integer("usage_log_interval_s", in: 0...86_400) { tuning.usageLogIntervalSeconds = Int(value) }
            if let value = try table.integer("status_interval_s", in: 0...3_600) { tuning.statusIntervalSeconds = Int(value) }
            if let value = try table.integer("plugin_descriptors", in: 16...1_048_576) { tuning.pluginDescriptors = Int(value) }
            if let value = try table.integer("send_queue_per_connection", in: 16_384...(64 << 20)) { tuning.sendQueuePerConnection = Int(value) }
            if let value = try table.integer("close_linger_s", in: 1...3_600) { tuning.closeLingerSeconds = Int(value) }
            if let value = try table.integer("plugin_timers", in: 16...1_048_576) { tuning.pluginTimers = Int(value) }
        }

        // [security]
        security = SecuritySettings()
        var allowUnsignedKeyPaths: [(value: String, keyPath: String)] = []
        if let table = try root.table("security") {
            try table.allowOnly(Self.schemaKeys["security"]!)
            for (text, keyPath) in try table.stringArray("trust") ?? [] {
                if text.isEmpty { throw source.error(at: keyPath, .badValue("a trust folder must not be empty")) }
                let folder = text.hasPrefix("/") ? text : (baseDirectory as NSString).appendingPathComponent(text)
                security.trustDirectories.append((folder as NSString).standardizingPath)
            }
            allowUnsignedKeyPaths = try table.stringArray("allow_unsigned") ?? []
        }

        // [shaping]
        if let table = try root.table("shaping") {
            try table.allowOnly(Self.schemaKeys["shaping"]!)
            shaping.up = try PluginManifest.size(table, "up", rate: true) ?? 0
            shaping.down = try PluginManifest.size(table, "down", rate: true) ?? 0
        }

        // [[plugin]]
        plugins = []
        for (index, entry) in (try root.tableArray("plugin") ?? []).enumerated() {
            try entry.allowOnly(Self.schemaKeys["plugin"]!)
            let name = try entry.requiredString("name")
            try PluginManifest.checkPluginName(name, reader: entry, key: "name")
            if plugins.contains(where: { $0.name == name }) {
                throw entry.error("name", .badValue("duplicate plugin name '\(name)'"))
            }
            let manifestText = try entry.requiredString("manifest")
            let manifestPath = ((manifestText.hasPrefix("/") ? manifestText
                : (baseDirectory as NSString).appendingPathComponent(manifestText)) as NSString).standardizingPath
            guard FileManager.default.fileExists(atPath: manifestPath) else {
                throw entry.error("manifest", .missingFile(path: manifestPath))
            }
            // Errors inside the manifest name the manifest's own file and line.
            let manifest = try PluginManifest(contentsOf: manifestPath)
            guard manifest.name == name else {
                throw entry.error("name", .badValue("'\(name)' differs from the manifest's plugin.name '\(manifest.name)' (\(manifestPath))"))
            }
            let enabled = try entry.boolean("enabled") ?? true
            var settings = JSONValue.object([:])
            if let table = try entry.table("config") {
                if table.contains("listen") {
                    throw table.error("listen", .badValue("'listen' is set by the host from the plugin's effective listen addresses; use plugin.listen instead"))
                }
                settings = TOMLNode.table(table.entries).jsonValue
            }
            var listenOverride: [NetGrant]?
            if entry.contains("listen") {
                var grants: [NetGrant] = []
                for (text, keyPath) in try entry.stringArray("listen") ?? [] {
                    let grant: NetGrant
                    do {
                        grant = try NetGrant(parsing: text)
                    } catch {
                        throw source.error(at: keyPath, .badValue(error.description))
                    }
                    guard manifest.net.listen.contains(where: { $0.covers(grant) }) else {
                        let granted = manifest.net.listen.map(\.description).joined(separator: ", ")
                        throw source.error(at: keyPath, .badValue("\(grant) is not granted by the manifest's net.listen (\(granted.isEmpty ? "nothing" : granted)); a config may narrow a manifest, never widen it"))
                    }
                    grants.append(grant)
                }
                listenOverride = grants
            }
            var plugin = PluginConfig(name: name, index: index, enabled: enabled, manifest: manifest,
                                      settings: settings, listenOverride: listenOverride,
                                      dataDirectory: (dataDirectory as NSString).standardizingPath)
            plugin.weight = UInt32(try entry.integer("weight", in: 1...1000) ?? 1)
            if let table = try entry.table("bandwidth") {
                try table.allowOnly(Self.schemaKeys["plugin.bandwidth"]!)
                // The config may lower the manifest's grant, never raise it.
                for (key, granted) in [("up", manifest.limits.bandwidthUp), ("down", manifest.limits.bandwidthDown)] {
                    guard let value = try PluginManifest.size(table, key, rate: true) else { continue }
                    if let granted, granted != 0, value == 0 || value > granted {
                        throw table.error(key, .badValue("\(value == 0 ? "unlimited" : ByteSize.format(value) + "/s") exceeds the manifest's [limits] bandwidth.\(key) (\(ByteSize.format(granted))/s); a config may lower a manifest's limit, never raise it"))
                    }
                    if key == "up" { plugin.bandwidthUp = value } else { plugin.bandwidthDown = value }
                }
            }
            plugins.append(plugin)
        }
        // After the plugins, so a name that matches none (a typo would silently leave the real
        // plugin refused) is an error.
        for (name, keyPath) in allowUnsignedKeyPaths {
            guard plugins.contains(where: { $0.name == name }) else {
                throw source.error(at: keyPath, .badValue("'\(name)' is not a configured plugin (plugins: \(plugins.map(\.name).joined(separator: ", ")))"))
            }
            security.allowUnsigned.append(name)
        }
    }

    /// A few lines for `peerhost run` to print at start-up.
    public var summary: String {
        var lines = ["config: \(origin)",
                     "data dir: \(host.dataDirectory)",
                     "http: \(host.httpHost):\(host.httpPort)\(host.httpPort == 0 ? " (ephemeral port)" : "")",
                     "plugins:"]
        if plugins.isEmpty { lines.append("  (none)") }
        for plugin in plugins {
            let listen = plugin.effectiveListen.map(\.description).joined(separator: ", ")
            lines.append("  \(plugin.name) \(plugin.manifest.version) [\(plugin.enabled ? "enabled" : "disabled")] listen: \(listen.isEmpty ? "-" : listen)")
            lines += plugin.warnings.map { "    warning: \($0)" }
        }
        return lines.joined(separator: "\n")
    }
}

/// Config discovery, in the order of DESIGN.md "Operator surface".
public enum ConfigDiscovery {
    public static let environmentVariable = "PEERHOST_CONFIG"
    public static let systemPath = "/etc/peerhost/peerhost.toml"
    public static let developmentRelativePath = "config/peerhost.toml"

    public static func locate(commandLinePath: String?, environment: [String: String],
                              executableDirectory: String,
                              fileExists: (String) -> Bool = { FileManager.default.fileExists(atPath: $0) }) -> ConfigOrigin {
        if let commandLinePath { return .commandLine(path: commandLinePath) }
        if let path = environment[environmentVariable], !path.isEmpty { return .environment(path: path) }
        // Development: .build/<triple>/debug/peerhost → walk up to the checkout that has config/.
        var directory = (executableDirectory as NSString).standardizingPath
        while true {
            let candidate = (directory as NSString).appendingPathComponent(developmentRelativePath)
            if fileExists(candidate) { return .development(path: candidate) }
            let parent = (directory as NSString).deletingLastPathComponent
            if parent == directory || parent.isEmpty { break }
            directory = parent
        }
        if fileExists(systemPath) { return .system(path: systemPath) }
        return .embedded
    }
}
