// The audit log (DESIGN.md "Capabilities and manifests"): one JSON object per line for every grant,
// denial, violation, kill and restart, in `<data_dir>/audit.log`, rotated by size. Security
// reviewers grep it and tools parse it, so the field set is fixed: time, plugin, pid, action, object,
// decision, reason (docs/audit-log.md).
//
// Written synchronously with O_APPEND: audit events are rare next to the data path, and a line that
// was only queued when the host crashed is a line a reviewer never sees. A plugin that floods denials
// is rate-limited per plugin; the counters still count every one, and the next line that gets
// through says how many were suppressed.

import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public struct AuditEvent: Sendable, Equatable, Codable {
    public enum Decision: String, Sendable, Codable {
        case allowed, denied, killed, restarted, failed, info
    }
    /// RFC 3339 UTC with milliseconds.
    public var time: String
    /// Plugin name, or "host" for the host's own events (start, stop, operator grants).
    public var plugin: String
    /// The runner's pid as the host sees it; 0 when no runner is involved.
    public var pid: Int32
    /// What was attempted: "net.listen", "net.connect", "file.open", "kv.put", "syscall", "ring",
    /// "verify", "spawn", "restart", "kill", "grant".
    public var action: String
    /// What it was attempted on: an address, a path, a syscall name, a violation kind.
    public var object: String
    public var decision: Decision
    public var reason: String

    public init(time: String = AuditEvent.now(), plugin: String, pid: Int32, action: String, object: String,
                decision: Decision, reason: String) {
        self.time = time
        self.plugin = plugin
        self.pid = pid
        self.action = action
        self.object = object
        self.decision = decision
        self.reason = reason
    }

    public static func now() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = time_t(ts.tv_sec)
        var parts = tm()
        gmtime_r(&t, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                      Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec),
                      Int(ts.tv_nsec / 1_000_000))
    }
}

public final class AuditLog: Sendable {
    public var path: String { file.path }
    /// Rotate when the file would grow past this many bytes: audit.log → audit.log.1 → … → .N.
    public var maxBytes: UInt64 { file.maxBytes }
    /// Rotated files kept besides the live one.
    public var keep: Int { file.keep }
    /// Lines per second one plugin may write (burst = 2×); the rest are counted and reported.
    public let linesPerSecond: Double

    private let file: RotatingFile
    /// Per plugin: tokens, last refill (monotonic ns), lines suppressed since the last written one.
    private let buckets = Mutex<[String: (tokens: Double, last: UInt64, suppressed: Int)]>([:])

    public init(path: String, maxBytes: UInt64 = Defaults.auditLogMaxBytes, keep: Int = Defaults.auditLogKeep,
                linesPerSecond: Double = Defaults.auditLinesPerSecond) {
        self.file = RotatingFile(path: path, maxBytes: maxBytes, keep: keep)
        self.linesPerSecond = linesPerSecond
    }

    /// Appends one line. Never throws: an audit log that cannot be written is reported once through
    /// `takeError` (the host logs it) and the host keeps running.
    public func record(_ event: AuditEvent) {
        var event = event
        if event.decision == .denied || event.action == "ring" {
            guard admit(plugin: event.plugin, suppressedInto: &event) else { return }
        }
        guard var line = try? JSONEncoder.audit.encode(event) else { return }
        line.append(0x0A)
        file.append(Array(line))
    }

    public func record(plugin: String, pid: Int32, action: String, object: String,
                       decision: AuditEvent.Decision, reason: String) {
        record(AuditEvent(plugin: plugin, pid: pid, action: action, object: object, decision: decision, reason: reason))
    }

    /// The first write error since the last call, if any.
    public func takeError() -> String? { file.takeError() }

    /// Reads every event of the live file (tests, `peerhost audit --log`).
    public static func events(at path: String) throws -> [AuditEvent] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONDecoder().decode(AuditEvent.self, from: Data($0.utf8)) }
    }

    private func admit(plugin: String, suppressedInto event: inout AuditEvent) -> Bool {
        buckets.withLock { buckets in
            let now = monotonicNanoseconds()
            var b = buckets[plugin] ?? (tokens: 2 * linesPerSecond, last: now, suppressed: 0)
            b.tokens = min(2 * linesPerSecond, b.tokens + Double(now &- b.last) / 1e9 * linesPerSecond)
            b.last = now
            guard b.tokens >= 1 else {
                b.suppressed += 1
                buckets[plugin] = b
                return false
            }
            b.tokens -= 1
            if b.suppressed > 0 {
                event.reason += " (\(b.suppressed) similar lines suppressed before this one)"
                b.suppressed = 0
            }
            buckets[plugin] = b
            return true
        }
    }
}

extension JSONEncoder {
    /// Fixed key order so lines diff and grep predictably.
    static let audit: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }()
}
