// <data_dir>/run.json: how every other command finds a running host (DESIGN.md "Operator surface").
// Written once the host is ready to serve, removed when it stops.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

public struct RunFile: Sendable, Equatable, Codable {
    public var pid: Int32
    public var controlSocket: String
    /// "HOST:PORT" of the HTTP plane, with the real port when the config asked for port 0.
    public var http: String
    public var version: String

    public init(pid: Int32, controlSocket: String, http: String, version: String = PeerhostVersion.current) {
        self.pid = pid
        self.controlSocket = controlSocket
        self.http = http
        self.version = version
    }

    enum CodingKeys: String, CodingKey {
        case pid
        case controlSocket = "control_socket"
        case http, version
    }

    public static func path(dataDirectory: String) -> String {
        (dataDirectory as NSString).appendingPathComponent("run.json")
    }

    /// Writes atomically (temp file + rename) so a reader never sees half a file.
    public func write(dataDirectory: String) throws(RunFileError) {
        let path = Self.path(dataDirectory: dataDirectory)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do {
            var data = try encoder.encode(self)
            data.append(0x0a)
            try data.write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw .unwritable(path: path, reason: "\(error.localizedDescription)")
        }
    }

    public static func remove(dataDirectory: String) {
        try? FileManager.default.removeItem(atPath: path(dataDirectory: dataDirectory))
    }

    /// Reads run.json and checks that its host process is alive.
    public static func read(dataDirectory: String) throws(RunFileError) -> RunFile {
        let path = path(dataDirectory: dataDirectory)
        guard let data = FileManager.default.contents(atPath: path) else {
            if FileManager.default.fileExists(atPath: path) { throw .unreadable(path: path) }
            throw .missing(path: path)
        }
        let runFile: RunFile
        do {
            runFile = try JSONDecoder().decode(RunFile.self, from: data)
        } catch {
            throw .malformed(path: path, reason: "\(error)")
        }
        guard Self.processIsAlive(runFile.pid) else { throw .stale(path: path, pid: runFile.pid) }
        return runFile
    }

    static func processIsAlive(_ pid: Int32) -> Bool {
        guard pid > 0 else { return false }
        // EPERM means the process exists but belongs to someone else: still alive.
        return kill(pid, 0) == 0 || errno == EPERM
    }
}

public enum RunFileError: Error, Sendable, Equatable, CustomStringConvertible {
    case missing(path: String)
    case unreadable(path: String)
    case malformed(path: String, reason: String)
    case stale(path: String, pid: Int32)
    case unwritable(path: String, reason: String)

    public var description: String {
        switch self {
        case .missing(let path):
            return "no running host found: \(path) does not exist (start one with `peerhost run`)"
        case .unreadable(let path):
            return "no running host found: \(path) is not readable by this user"
        case .malformed(let path, let reason):
            return "no running host found: \(path) is not a valid run file (\(reason))"
        case .stale(let path, let pid):
            return "no running host found: \(path) names pid \(pid), which is not running (stale file; start a host with `peerhost run`)"
        case .unwritable(let path, let reason):
            return "cannot write \(path): \(reason)"
        }
    }
}
