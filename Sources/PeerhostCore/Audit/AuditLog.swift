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
    public let path: String
    /// Rotate when the file would grow past this many bytes: audit.log → audit.log.1 → … → .N.
    public let maxBytes: UInt64
    /// Rotated files kept besides the live one.
    public let keep: Int
    /// Lines per second one plugin may write (burst = 2×); the rest are counted and reported.
    public let linesPerSecond: Double

    private struct State {
        var fd: Int32 = -1
        var size: UInt64 = 0
        /// Per plugin: tokens, last refill (monotonic ns), lines suppressed since the last written one.
        var buckets: [String: (tokens: Double, last: UInt64, suppressed: Int)] = [:]
        var lastError: String?
    }
    private let state = Mutex(State())

    public init(path: String, maxBytes: UInt64 = Defaults.auditLogMaxBytes, keep: Int = Defaults.auditLogKeep,
                linesPerSecond: Double = Defaults.auditLinesPerSecond) {
        self.path = path
        self.maxBytes = maxBytes
        self.keep = keep
        self.linesPerSecond = linesPerSecond
    }

    deinit {
        state.withLock { if $0.fd >= 0 { close($0.fd) } }
    }

    /// Appends one line. Never throws: an audit log that cannot be written is reported once through
    /// `lastError` (the host logs it) and the host keeps running.
    public func record(_ event: AuditEvent) {
        state.withLock { s in
            var event = event
            if event.decision == .denied || event.action == "ring" {
                guard admit(&s, plugin: event.plugin, suppressedInto: &event) else { return }
            }
            guard var line = try? JSONEncoder.audit.encode(event) else { return }
            line.append(0x0A)
            if s.fd < 0 || s.size + UInt64(line.count) > maxBytes {
                reopen(&s, rotate: s.fd >= 0 || fileSize() + UInt64(line.count) > maxBytes)
            }
            guard s.fd >= 0 else { return }
            let written = line.withUnsafeBytes { write(s.fd, $0.baseAddress, $0.count) }
            if written == line.count { s.size += UInt64(written) } else { s.lastError = "write \(path): \(String(cString: strerror(errno)))" }
        }
    }

    public func record(plugin: String, pid: Int32, action: String, object: String,
                       decision: AuditEvent.Decision, reason: String) {
        record(AuditEvent(plugin: plugin, pid: pid, action: action, object: object, decision: decision, reason: reason))
    }

    /// The first write error since the last call, if any.
    public func takeError() -> String? {
        state.withLock { s in defer { s.lastError = nil }; return s.lastError }
    }

    /// Reads every event of the live file (tests, `peerhost audit --log`).
    public static func events(at path: String) throws -> [AuditEvent] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONDecoder().decode(AuditEvent.self, from: Data($0.utf8)) }
    }

    // MARK: private (called with the lock held)

    private func admit(_ s: inout State, plugin: String, suppressedInto event: inout AuditEvent) -> Bool {
        let now = monotonicNanoseconds()
        var b = s.buckets[plugin] ?? (tokens: 2 * linesPerSecond, last: now, suppressed: 0)
        b.tokens = min(2 * linesPerSecond, b.tokens + Double(now &- b.last) / 1e9 * linesPerSecond)
        b.last = now
        guard b.tokens >= 1 else {
            b.suppressed += 1
            s.buckets[plugin] = b
            return false
        }
        b.tokens -= 1
        if b.suppressed > 0 {
            event.reason += " (\(b.suppressed) similar lines suppressed before this one)"
            b.suppressed = 0
        }
        s.buckets[plugin] = b
        return true
    }

    private func fileSize() -> UInt64 {
        var st = stat()
        return stat(path, &st) == 0 ? UInt64(st.st_size) : 0
    }

    private func reopen(_ s: inout State, rotate: Bool) {
        if s.fd >= 0 { close(s.fd); s.fd = -1 }
        if rotate && keep > 0 {
            for i in stride(from: keep - 1, through: 1, by: -1) { rename("\(path).\(i)", "\(path).\(i + 1)") }
            rename(path, "\(path).1")
        } else if rotate {
            unlink(path)
        }
        s.fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        if s.fd < 0 {
            s.lastError = "open \(path): \(String(cString: strerror(errno)))"
            return
        }
        s.size = fileSize()
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
