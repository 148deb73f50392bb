// The usage log (DESIGN.md "Bandwidth, accounting, persistence, self-healing"): an append-only
// record of what each plugin used, for audits and billing, in `<data_dir>/usage.log`. One JSON
// object per plugin every `usage_log_interval_s`, rotated by size like the audit log (the same
// RotatingFile). Figures are totals since the host started (across the plugin's restarts), so a
// lost or rotated-away line loses no usage: a reader takes differences. Format: docs/usage-log.md.

import Foundation

public struct UsageRecord: Sendable, Equatable, Codable {
    /// RFC 3339 UTC with milliseconds (the audit log's clock and format).
    public var time: String
    public var plugin: String
    /// running | starting | backoff | stopped | failed
    public var state: String
    /// The runner's host pid; nil when none runs.
    public var pid: Int32?
    public var restarts: Int
    /// Cause of the last runner death or start failure (the metric's `cause` label); nil if none.
    public var lastCause: String?
    public var connections: Int
    public var bytesIn: UInt64
    public var bytesOut: UInt64
    public var messagesIn: UInt64
    public var messagesOut: UInt64
    /// CPU seconds (user + system) of every runner of this plugin since the host started.
    public var cpuSeconds: Double
    /// Memory of the live runner (cgroup charge where the host made one, else RSS); 0 when down.
    public var memoryBytes: UInt64
    /// "cgroup_v1", "cgroup_v2" or "proc": where cpu_seconds and memory_bytes were read.
    public var cpuSource: String
    public var memorySource: String
    /// Seconds the plugin was down after having run, since the host started.
    public var downtimeSeconds: Double

    enum CodingKeys: String, CodingKey {
        case time, plugin, state, pid, restarts, connections
        case lastCause = "last_cause"
        case bytesIn = "bytes_in"
        case bytesOut = "bytes_out"
        case messagesIn = "messages_in"
        case messagesOut = "messages_out"
        case cpuSeconds = "cpu_seconds"
        case memoryBytes = "memory_bytes"
        case cpuSource = "cpu_source"
        case memorySource = "memory_source"
        case downtimeSeconds = "downtime_s"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(time, forKey: .time)
        try c.encode(plugin, forKey: .plugin)
        try c.encode(state, forKey: .state)
        try c.encode(pid, forKey: .pid)                 // explicit null: every key is always there
        try c.encode(restarts, forKey: .restarts)
        try c.encode(lastCause, forKey: .lastCause)
        try c.encode(connections, forKey: .connections)
        try c.encode(bytesIn, forKey: .bytesIn)
        try c.encode(bytesOut, forKey: .bytesOut)
        try c.encode(messagesIn, forKey: .messagesIn)
        try c.encode(messagesOut, forKey: .messagesOut)
        try c.encode(cpuSeconds, forKey: .cpuSeconds)
        try c.encode(memoryBytes, forKey: .memoryBytes)
        try c.encode(cpuSource, forKey: .cpuSource)
        try c.encode(memorySource, forKey: .memorySource)
        try c.encode(downtimeSeconds, forKey: .downtimeSeconds)
    }
}

public final class UsageLog: Sendable {
    public let file: RotatingFile

    public init(path: String, maxBytes: UInt64 = Defaults.usageLogMaxBytes, keep: Int = Defaults.usageLogKeep) {
        file = RotatingFile(path: path, maxBytes: maxBytes, keep: keep)
    }

    public var path: String { file.path }

    /// Appends one line per record. Does disk I/O: never call it on the event loop's thread.
    public func append(_ records: [UsageRecord]) {
        for record in records {
            guard var line = try? JSONEncoder.audit.encode(record) else { continue }
            line.append(0x0A)
            file.append(Array(line))
        }
    }

    /// Every record of the live file (tests, tools).
    public static func records(at path: String) throws -> [UsageRecord] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONDecoder().decode(UsageRecord.self, from: Data($0.utf8)) }
    }
}
