// ProcessStatus: what the host (and the tests) can see of a runner from outside, read from
// /proc/PID/status and /proc/PID/ns/*. Used to prove the sandbox is in place: a non-zero host uid,
// NoNewPrivs 1, and namespaces that differ from the reader's own.
#if canImport(Glibc)
import Glibc
#endif

public struct ProcessStatus: Sendable, Equatable {
    /// Real, effective, saved and filesystem uid/gid as the reader's namespace sees them.
    public var uids: [UInt32] = []
    public var gids: [UInt32] = []
    public var groups: [UInt32] = []
    public var noNewPrivs: Int = -1
    /// Threads: the runner must stay at 1 (no Dispatch, no Swift concurrency under seccomp).
    public var threads: Int = -1
    /// CapEff as a bit mask (capabilities in the process's own user namespace).
    public var effectiveCapabilities: UInt64 = 0
    /// CapPrm, CapInh, CapBnd, CapAmb as bit masks (the runner drops all of them).
    public var permittedCapabilities: UInt64 = 0
    public var inheritableCapabilities: UInt64 = 0
    public var boundingCapabilities: UInt64 = 0
    public var ambientCapabilities: UInt64 = 0
    /// Seccomp: 0 none, 1 strict, 2 filter (the runner's allowlist).
    public var seccompMode: Int = -1
    /// NSpid: the pid in each nested pid namespace, outermost first ([hostPid, 1] for a runner).
    public var nsPids: [Int32] = []
    /// ns name ("user", "pid", "net", "mnt", "ipc", "uts") → link target ("net:[4026531840]").
    public var namespaces: [String: String] = [:]

    public init() {}

    public struct ReadError: Error, CustomStringConvertible, Sendable {
        public let path: String
        public let errno: Int32
        public var description: String { "read \(path): \(errnoName(errno))" }
    }

    public static let namespaceNames = ["user", "pid", "net", "mnt", "ipc", "uts"]

    /// Reads /proc/<pid>/status and /proc/<pid>/ns/*; pid "self" style callers pass getpid().
    public static func read(_ pid: pid_t) throws(ReadError) -> ProcessStatus {
        let path = "/proc/\(pid)/status"
        let text = try readFile(path)
        var s = ProcessStatus()
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon]
            let fields = line[line.index(after: colon)...].split(whereSeparator: { $0 == " " || $0 == "\t" })
            switch key {
            case "Uid": s.uids = fields.compactMap { UInt32($0) }
            case "Gid": s.gids = fields.compactMap { UInt32($0) }
            case "Groups": s.groups = fields.compactMap { UInt32($0) }
            case "NoNewPrivs": s.noNewPrivs = fields.first.flatMap { Int($0) } ?? -1
            case "NSpid": s.nsPids = fields.compactMap { Int32($0) }
            case "Threads": s.threads = fields.first.flatMap { Int($0) } ?? -1
            case "CapEff": s.effectiveCapabilities = fields.first.flatMap { UInt64($0, radix: 16) } ?? 0
            case "CapPrm": s.permittedCapabilities = fields.first.flatMap { UInt64($0, radix: 16) } ?? 0
            case "CapInh": s.inheritableCapabilities = fields.first.flatMap { UInt64($0, radix: 16) } ?? 0
            case "CapBnd": s.boundingCapabilities = fields.first.flatMap { UInt64($0, radix: 16) } ?? 0
            case "CapAmb": s.ambientCapabilities = fields.first.flatMap { UInt64($0, radix: 16) } ?? 0
            case "Seccomp": s.seccompMode = fields.first.flatMap { Int($0) } ?? -1
            default: break
            }
        }
        for ns in namespaceNames {
            let link = "/proc/\(pid)/ns/\(ns)"
            var buf = [CChar](repeating: 0, count: 256)
            let n = readlink(link, &buf, buf.count - 1)
            if n < 0 { throw ReadError(path: link, errno: errno) }
            s.namespaces[ns] = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        return s
    }

    private static func readFile(_ path: String) throws(ReadError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw ReadError(path: path, errno: errno) }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = Glibc.read(fd, &chunk, chunk.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw ReadError(path: path, errno: errno)
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
