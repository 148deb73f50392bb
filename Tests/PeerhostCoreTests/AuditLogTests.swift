import Foundation
import Testing
@testable import PeerhostCore
#if canImport(Glibc)
import Glibc
#endif

@Suite struct AuditLogTests {
    @Test func everyLineIsOneJSONObjectWithTheFixedFields() throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(dir) }
        let log = AuditLog(path: dir + "/audit.log")
        log.record(plugin: "echo-c", pid: 42, action: "net.listen", object: "tcp:127.0.0.1:9", decision: .denied,
                   reason: "not covered by the plugin's grants")
        log.record(plugin: "echo-c", pid: 42, action: "restart", object: "echo-c", decision: .restarted, reason: "cause crash")
        let text = try String(contentsOfFile: dir + "/audit.log", encoding: .utf8)
        let lines = text.split(separator: "\n")
        #expect(lines.count == 2)
        let first = try #require(try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        #expect(Set(first.keys) == ["time", "plugin", "pid", "action", "object", "decision", "reason"])
        #expect(first["decision"] as? String == "denied")
        #expect(first["pid"] as? Int == 42)
        let time = try #require(first["time"] as? String)
        #expect(time.count == 24 && time.hasSuffix("Z"), "RFC 3339 UTC with milliseconds: \(time)")
        #expect(try AuditLog.events(at: dir + "/audit.log").map(\.action) == ["net.listen", "restart"])
        var st = stat()
        #expect(stat(dir + "/audit.log", &st) == 0 && st.st_mode & 0o777 == 0o600, "only the host's user reads the audit log")
    }

    @Test func rotatesBySizeKeepingTheNewestFiles() throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(dir) }
        let path = dir + "/audit.log"
        let log = AuditLog(path: path, maxBytes: 1000, keep: 2)
        for i in 0..<40 {
            log.record(plugin: "p", pid: 1, action: "restart", object: "line-\(i)", decision: .restarted, reason: String(repeating: "x", count: 60))
        }
        let live = try AuditLog.events(at: path)
        let older = try AuditLog.events(at: path + ".1")
        #expect(FileManager.default.fileExists(atPath: path + ".2"))
        #expect(!FileManager.default.fileExists(atPath: path + ".3"), "keep = 2 rotated files")
        for file in [path, path + ".1", path + ".2"] {
            let size = try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int ?? .max
            #expect(size <= 1000, "\(file) is \(size) bytes")
        }
        #expect(live.last?.object == "line-39", "the newest line is in the live file")
        let olderLast = try #require(older.last?.object.split(separator: "-").last.flatMap { Int($0) })
        let liveFirst = try #require(live.first?.object.split(separator: "-").last.flatMap { Int($0) })
        #expect(olderLast + 1 == liveFirst, "no line lost at the rotation")
    }

    @Test func aDenialFloodIsRateLimitedAndTheSuppressedCountIsReported() throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(dir) }
        let log = AuditLog(path: dir + "/audit.log", linesPerSecond: 10)
        for _ in 0..<500 {
            log.record(plugin: "noisy", pid: 7, action: "net.connect", object: "tcp:10.0.0.1:80", decision: .denied, reason: "no grant")
        }
        // Restarts are never rate-limited: they are what an operator must see.
        log.record(plugin: "noisy", pid: 7, action: "restart", object: "noisy", decision: .restarted, reason: "cause crash")
        var events = try AuditLog.events(at: dir + "/audit.log")
        #expect(events.count <= 22, "burst of 2 × 10 lines (+1 restart), got \(events.count)")
        #expect(events.last?.action == "restart")
        usleep(250_000)   // ≥ 2 tokens refill
        log.record(plugin: "noisy", pid: 7, action: "net.connect", object: "tcp:10.0.0.1:80", decision: .denied, reason: "no grant")
        events = try AuditLog.events(at: dir + "/audit.log")
        let reason = try #require(events.last?.reason)
        #expect(reason.contains("similar lines suppressed"), "\(reason)")
        // Another plugin has its own budget.
        log.record(plugin: "quiet", pid: 8, action: "net.connect", object: "x", decision: .denied, reason: "no grant")
        #expect(try AuditLog.events(at: dir + "/audit.log").last?.plugin == "quiet")
    }

    @Test func anUnwritableLogIsReportedAndNeverThrows() throws {
        let log = AuditLog(path: "/nonexistent-dir/audit.log")
        log.record(plugin: "p", pid: 1, action: "spawn", object: "p", decision: .allowed, reason: "")
        let error = try #require(log.takeError())
        #expect(error.contains("/nonexistent-dir/audit.log"))
        #expect(log.takeError() == nil, "reported once")
    }
}
