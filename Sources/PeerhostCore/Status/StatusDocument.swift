// The status document: GET /status, `peerhost status --json` and the control socket's "status"
// reply all carry this exact shape (DESIGN.md "Operator surface"; schema: docs/status.schema.json).
// Keys are snake_case and always present (null where unknown) so tools need no optional handling.

import Foundation

public struct StatusDocument: Sendable, Equatable, Codable {
    public var host: HostStatus
    public var plugins: [PluginStatus]

    public init(host: HostStatus, plugins: [PluginStatus]) {
        self.host = host
        self.plugins = plugins
    }

    public struct HostStatus: Sendable, Equatable, Codable {
        public var version: String
        public var pid: Int32
        public var uptimeSeconds: Double
        /// "io_uring" today; an epoll back end may come later (never silently, see DESIGN.md).
        public var ioBackend: String

        public init(version: String, pid: Int32, uptimeSeconds: Double, ioBackend: String) {
            self.version = version
            self.pid = pid
            self.uptimeSeconds = uptimeSeconds
            self.ioBackend = ioBackend
        }

        enum CodingKeys: String, CodingKey {
            case version, pid
            case uptimeSeconds = "uptime_s"
            case ioBackend = "io_backend"
        }
    }

    public enum PluginState: String, Sendable, Codable, CaseIterable {
        case running, starting, backoff, stopped, failed
    }

    public struct PluginStatus: Sendable, Equatable, Codable {
        public var name: String
        public var state: PluginState
        /// Why the plugin is not running (last exit, violation, disabled); nil when running.
        public var reason: String?
        /// Host pid of the runner; nil when there is no process.
        public var pid: Int32?
        public var restarts: Int
        public var connections: Int
        public var bytesIn: UInt64
        public var bytesOut: UInt64
        /// Bytes per second each way, over the host's last one-second sample.
        public var bytesInPerSecond: Double = 0
        public var bytesOutPerSecond: Double = 0
        /// Cause of the last runner death or start failure (the restarts metric's `cause`); nil if none.
        public var lastCause: String?
        /// CPU seconds of every runner of this plugin since the host started.
        public var cpuSeconds: Double
        public var memoryBytes: UInt64
        public var storageBytes: UInt64
        /// One line per effective grant (`PluginManifest.grantSummary`).
        public var grants: [String]
        /// The plugin's own section (shape chosen by the plugin); omitted when absent.
        public var details: JSONValue?
        /// Bandwidth shaping: current limits and shares (bytes/s, 0 = unlimited) and time spent
        /// waiting on tokens; omitted when the host has no shaper node for it.
        public var rate: RateStatus?

        public struct RateStatus: Sendable, Equatable, Codable {
            public var upLimit: UInt64
            public var downLimit: UInt64
            public var upShare: UInt64
            public var downShare: UInt64
            public var weight: Int
            public var waitSecondsUp: Double
            public var waitSecondsDown: Double
            enum CodingKeys: String, CodingKey {
                case upLimit = "up_limit", downLimit = "down_limit", upShare = "up_share", downShare = "down_share"
                case weight, waitSecondsUp = "wait_seconds_up", waitSecondsDown = "wait_seconds_down"
            }
            public init(upLimit: UInt64, downLimit: UInt64, upShare: UInt64, downShare: UInt64, weight: Int,
                        waitSecondsUp: Double, waitSecondsDown: Double) {
                self.upLimit = upLimit; self.downLimit = downLimit; self.upShare = upShare; self.downShare = downShare
                self.weight = weight; self.waitSecondsUp = waitSecondsUp; self.waitSecondsDown = waitSecondsDown
            }
        }

        public init(name: String, state: PluginState, reason: String? = nil, pid: Int32? = nil, restarts: Int = 0,
                    connections: Int = 0, bytesIn: UInt64 = 0, bytesOut: UInt64 = 0, cpuSeconds: Double = 0,
                    memoryBytes: UInt64 = 0, storageBytes: UInt64 = 0, grants: [String] = [], details: JSONValue? = nil) {
            self.name = name
            self.state = state
            self.reason = reason
            self.pid = pid
            self.restarts = restarts
            self.connections = connections
            self.bytesIn = bytesIn
            self.bytesOut = bytesOut
            self.cpuSeconds = cpuSeconds
            self.memoryBytes = memoryBytes
            self.storageBytes = storageBytes
            self.grants = grants
            self.details = details
        }

        enum CodingKeys: String, CodingKey {
            case name, state, reason, pid, restarts, connections
            case bytesIn = "bytes_in"
            case bytesOut = "bytes_out"
            case bytesInPerSecond = "bytes_in_per_s"
            case bytesOutPerSecond = "bytes_out_per_s"
            case lastCause = "last_cause"
            case cpuSeconds = "cpu_seconds"
            case memoryBytes = "memory_bytes"
            case storageBytes = "storage_bytes"
            case grants, details, rate
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(name, forKey: .name)
            try container.encode(state, forKey: .state)
            try container.encode(reason, forKey: .reason)   // explicit null: the key is always there
            try container.encode(pid, forKey: .pid)
            try container.encode(restarts, forKey: .restarts)
            try container.encode(connections, forKey: .connections)
            try container.encode(bytesIn, forKey: .bytesIn)
            try container.encode(bytesOut, forKey: .bytesOut)
            try container.encode(bytesInPerSecond, forKey: .bytesInPerSecond)
            try container.encode(bytesOutPerSecond, forKey: .bytesOutPerSecond)
            try container.encode(lastCause, forKey: .lastCause)
            try container.encode(cpuSeconds, forKey: .cpuSeconds)
            try container.encode(memoryBytes, forKey: .memoryBytes)
            try container.encode(storageBytes, forKey: .storageBytes)
            try container.encode(grants, forKey: .grants)
            try container.encodeIfPresent(details, forKey: .details)
            try container.encodeIfPresent(rate, forKey: .rate)
        }
    }

    /// The bytes served on /status and printed by `status --json`: pretty, keys sorted, one form.
    public func encodedJSON() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(self))
    }

    public static func decode(_ bytes: [UInt8]) throws -> StatusDocument {
        try JSONDecoder().decode(StatusDocument.self, from: Data(bytes))
    }

    /// The readable table `peerhost status` prints.
    public var table: String {
        var lines = ["peerhost \(host.version)  pid \(host.pid)  up \(Self.duration(host.uptimeSeconds))  io: \(host.ioBackend)", ""]
        let header = ["PLUGIN", "STATE", "PID", "RESTARTS", "CONNS", "IN", "IN/S", "OUT", "OUT/S", "CPU", "MEM", "STORAGE", "REASON"]
        var rows = [header]
        for plugin in plugins {
            rows.append([plugin.name, plugin.state.rawValue, plugin.pid.map(String.init) ?? "-", String(plugin.restarts),
                         String(plugin.connections), Self.bytes(plugin.bytesIn), Self.bytes(UInt64(max(0, plugin.bytesInPerSecond))),
                         Self.bytes(plugin.bytesOut), Self.bytes(UInt64(max(0, plugin.bytesOutPerSecond))),
                         String(format: "%.2fs", plugin.cpuSeconds), Self.bytes(plugin.memoryBytes),
                         Self.bytes(plugin.storageBytes), plugin.reason ?? ""])
        }
        let widths = header.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            let cells = row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }
            lines.append(cells.joined(separator: "  ").trimmingSpaces)
        }
        if plugins.isEmpty { lines.append("(no plugins configured)") }
        var rated: [(String, PluginStatus.RateStatus)] = []
        for p in plugins {
            guard let r = p.rate else { continue }
            let limited: Bool = r.upLimit != 0 || r.downLimit != 0 || r.upShare != 0 || r.downShare != 0
            if limited { rated.append((p.name, r)) }
        }
        // A plugin's own lines for people (details.summary: an array of strings, e.g. one per
        // torrent), under its name; the rest of details is for tools (--json).
        for p in plugins {
            guard case .object(let d)? = p.details, case .array(let summary)? = d["summary"], !summary.isEmpty else { continue }
            lines.append("")
            lines.append("\(p.name):")
            for case .string(let line) in summary.prefix(50) { lines.append("  " + line) }
            if summary.count > 50 { lines.append("  … \(summary.count - 50) more (peerhost status --json)") }
        }
        if !rated.isEmpty {
            lines.append("")
            for (name, r) in rated {
                func rate(_ v: UInt64) -> String { v == 0 ? "unlimited" : Self.bytes(v) + "/s" }
                let waited = "waited up " + String(format: "%.1f", r.waitSecondsUp) + "s down " + String(format: "%.1f", r.waitSecondsDown) + "s"
                lines.append("rate \(name): up \(rate(r.upLimit)) (share \(rate(r.upShare))), down \(rate(r.downLimit)) (share \(rate(r.downShare))), weight \(r.weight), \(waited)")
            }
        }
        return lines.joined(separator: "\n")
    }

    static func bytes(_ count: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(count)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
        return unit == 0 ? "\(count)B" : String(format: "%.1f", value) + units[unit]
    }

    static func duration(_ seconds: Double) -> String {
        let total = Int(seconds)
        if total < 60 { return "\(total)s" }
        if total < 3600 { return "\(total / 60)m\(total % 60)s" }
        return "\(total / 3600)h\((total % 3600) / 60)m"
    }
}

extension StatusDocument.PluginStatus {
    /// The entry for a configured plugin before its runner reports anything: `starting` when
    /// enabled, `stopped` ("disabled in config") otherwise, with its effective grants.
    public init(configured plugin: HostConfig.PluginConfig) {
        self.init(name: plugin.name, state: plugin.enabled ? .starting : .stopped,
                  reason: plugin.enabled ? nil : "disabled in config", grants: plugin.grantSummary)
    }
}
