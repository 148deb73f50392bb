// Cgroups: per-plugin memory, pids and cpu limits where the kernel and our privileges allow, and
// the record of which mechanism actually enforces each limit (EnforcedLimits).
//
// The core only ever writes inside a subtree it creates itself: <controller>/peerhost/<instance>/<plugin>
// (instance = the core's pid, so several hosts on one machine never share a group). The runner's pid
// goes into the group's cgroup.procs from the parent, before the clone child is released
// (ph_spawn_args.cgroup_procs): the plugin never runs a single instruction outside it.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Which mechanism enforces one limit.
public enum LimitMechanism: String, Sendable, Codable {
    case cgroupV1 = "cgroup v1"
    case cgroupV2 = "cgroup v2"
    case rlimit
    /// Not enforced (e.g. cpu_percent without a cpu cgroup).
    case none
}

/// The limits in force for one runner, and how (shown by `peerhost status` details and the audit
/// log's spawn line).
public struct EnforcedLimits: Sendable, Equatable, Codable, CustomStringConvertible {
    /// Manifest `[limits] memory`; nil = no limit asked.
    public var memoryBytes: UInt64?
    /// cgroup memory.limit_in_bytes / memory.max, else RLIMIT_AS (coarse: address space, not memory).
    public var memory: LimitMechanism
    public var cpuPercent: Int?
    public var cpu: LimitMechanism
    /// Processes (threads count too): pids.max where there is a pids cgroup, and RLIMIT_NPROC always.
    public var processes: UInt64
    public var processesBy: [LimitMechanism]
    /// RLIMIT_NOFILE of the runner: its own 8 descriptors plus the manifest's `open_files`.
    public var openFiles: UInt64
    /// RLIMIT_CORE: always 0 (no core dumps of plugin memory).
    public var coreBytes: UInt64 = 0
    /// The plugin's cgroup directories, if any.
    public var cgroups: [String] = []

    public init(memoryBytes: UInt64?, memory: LimitMechanism, cpuPercent: Int?, cpu: LimitMechanism,
                processes: UInt64, processesBy: [LimitMechanism], openFiles: UInt64, cgroups: [String] = []) {
        self.memoryBytes = memoryBytes
        self.memory = memory
        self.cpuPercent = cpuPercent
        self.cpu = cpu
        self.processes = processes
        self.processesBy = processesBy
        self.openFiles = openFiles
        self.cgroups = cgroups
    }

    public var description: String {
        var parts: [String] = []
        if let m = memoryBytes { parts.append("memory \(m >> 20) MiB by \(memory.rawValue)") } else { parts.append("memory unlimited") }
        if let c = cpuPercent { parts.append("cpu \(c)% by \(cpu.rawValue)") }
        parts.append("processes \(processes) by \(processesBy.map(\.rawValue).joined(separator: " + "))")
        parts.append("open files \(openFiles) by rlimit")
        parts.append("core 0 by rlimit")
        return parts.joined(separator: "; ")
    }
}

public struct CgroupError: Error, Sendable, Equatable, CustomStringConvertible {
    public let path: String
    public let errno: Int32
    public var description: String { "cgroup \(path): \(errnoName(errno))" }
}

/// The cgroup hierarchies this machine has, found in /proc/self/mountinfo.
public struct Cgroups: Sendable, Equatable {
    public enum Layout: Sendable, Equatable {
        /// One mount per controller (e.g. /sys/fs/cgroup/memory); nil = that controller is absent.
        case v1(memory: String?, pids: String?, cpu: String?)
        /// The unified hierarchy's mount point and the controllers its root offers.
        case v2(root: String, controllers: Set<String>)
    }
    public let layout: Layout

    public init(layout: Layout) { self.layout = layout }

    public var version: LimitMechanism {
        if case .v1 = layout { return .cgroupV1 }
        return .cgroupV2
    }

    /// v1 if it has a memory controller (hybrid machines mount an empty v2 beside it), else v2 if
    /// its root offers controllers, else nil (no cgroups: the core falls back to rlimits).
    public static func discover(mountinfo: String? = nil) -> Cgroups? {
        guard let text = mountinfo ?? (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) else { return nil }
        var memory: String?, pids: String?, cpu: String?
        var unified: String?
        for line in text.split(separator: "\n") {
            // "36 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory"
            let halves = line.components(separatedBy: " - ")
            guard halves.count == 2 else { continue }
            let left = halves[0].split(separator: " "), right = halves[1].split(separator: " ")
            guard left.count >= 5, right.count >= 3 else { continue }
            let mountPoint = String(left[4])
            switch right[0] {
            case "cgroup":
                let options = Set(right[2].split(separator: ",").map(String.init))
                if options.contains("memory") && memory == nil { memory = mountPoint }
                if options.contains("pids") && pids == nil { pids = mountPoint }
                if options.contains("cpu") && cpu == nil { cpu = mountPoint }
            case "cgroup2":
                if unified == nil { unified = mountPoint }
            default:
                continue
            }
        }
        if memory != nil { return Cgroups(layout: .v1(memory: memory, pids: pids, cpu: cpu)) }
        if let root = unified,
           let list = try? String(contentsOfFile: root + "/cgroup.controllers", encoding: .utf8) {
            let controllers = Set(list.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
            if controllers.contains("memory") { return Cgroups(layout: .v2(root: root, controllers: controllers)) }
        }
        return nil
    }

    /// The core's own subtree in one hierarchy: <root>/peerhost/<instance>.
    func instanceDirectory(_ root: String, instance: String) -> String { root + "/peerhost/" + instance }

    /// Creates the plugin's group(s) and writes its limits. Throws on the first refusal (EACCES,
    /// EROFS for an unprivileged core): the caller then falls back to rlimits, and nothing of the
    /// half-made group is left behind.
    public func create(instance: String, plugin: String, memoryBytes: UInt64?, cpuPercent: Int?,
                       processes: UInt64) throws(CgroupError) -> PluginCgroup {
        var made: [String] = []
        do {
            switch layout {
            case .v1(let memory, let pids, let cpu):
                var dirs: [String] = []
                if let memory, memoryBytes != nil {
                    let dir = try Self.makeDirectories(instanceDirectory(memory, instance: instance) + "/" + plugin, made: &made)
                    // limit first, then memsw (which may never be below it); no swap beyond the limit.
                    try Self.write(dir + "/memory.limit_in_bytes", "\(memoryBytes!)")
                    if FileManager.default.fileExists(atPath: dir + "/memory.memsw.limit_in_bytes") {
                        try Self.write(dir + "/memory.memsw.limit_in_bytes", "\(memoryBytes!)")
                    }
                    dirs.append(dir)
                }
                if let pids {
                    let dir = try Self.makeDirectories(instanceDirectory(pids, instance: instance) + "/" + plugin, made: &made)
                    try Self.write(dir + "/pids.max", "\(processes)")
                    dirs.append(dir)
                }
                if let cpu, let cpuPercent {
                    let dir = try Self.makeDirectories(instanceDirectory(cpu, instance: instance) + "/" + plugin, made: &made)
                    try Self.write(dir + "/cpu.cfs_period_us", "100000")
                    try Self.write(dir + "/cpu.cfs_quota_us", "\(cpuPercent * 1000)")
                    dirs.append(dir)
                }
                return PluginCgroup(directories: dirs, version: .cgroupV1,
                                    memory: memoryBytes != nil && memory != nil, pids: pids != nil,
                                    cpu: cpuPercent != nil && cpu != nil)
            case .v2(let root, let controllers):
                let wanted = ["memory", "pids", "cpu"].filter { controllers.contains($0) }
                let enable = wanted.map { "+" + $0 }.joined(separator: " ")
                // Controllers must be enabled on every level above the plugin's group; none of these
                // levels holds a process, so the "no internal processes" rule is kept.
                try Self.write(root + "/cgroup.subtree_control", enable)
                let top = try Self.makeDirectories(root + "/peerhost", made: &made)
                try Self.write(top + "/cgroup.subtree_control", enable)
                let mine = try Self.makeDirectories(instanceDirectory(root, instance: instance), made: &made)
                try Self.write(mine + "/cgroup.subtree_control", enable)
                let dir = try Self.makeDirectories(mine + "/" + plugin, made: &made)
                if let memoryBytes, controllers.contains("memory") {
                    try Self.write(dir + "/memory.max", "\(memoryBytes)")
                    if FileManager.default.fileExists(atPath: dir + "/memory.swap.max") { try Self.write(dir + "/memory.swap.max", "0") }
                }
                if controllers.contains("pids") { try Self.write(dir + "/pids.max", "\(processes)") }
                if let cpuPercent, controllers.contains("cpu") { try Self.write(dir + "/cpu.max", "\(cpuPercent * 1000) 100000") }
                return PluginCgroup(directories: [dir], version: .cgroupV2,
                                    memory: memoryBytes != nil && controllers.contains("memory"),
                                    pids: controllers.contains("pids"),
                                    cpu: cpuPercent != nil && controllers.contains("cpu"))
            }
        } catch {
            for dir in made.reversed() { rmdir(dir) }   // empty: only what this call made
            throw error
        }
    }

    /// Whether the core could make a group for `controller` ("memory", "pids", "cpu") now: the
    /// controller exists and its hierarchy's root (or our existing peerhost/ level) is writable.
    /// Touches nothing; for `peerhost audit`, which must not create groups.
    public func canCreate(_ controller: String) -> Bool {
        let root: String?
        switch layout {
        case .v1(let memory, let pids, let cpu):
            root = ["memory": memory, "pids": pids, "cpu": cpu][controller] ?? nil
        case .v2(let r, let controllers):
            root = controllers.contains(controller) ? r : nil
        }
        guard let root else { return false }
        let top = root + "/peerhost"
        return access(top, F_OK) == 0 ? access(top, W_OK) == 0 : access(root, W_OK) == 0
    }

    /// Removes what a core that died without stopping left behind: instance directories named
    /// after a pid that no longer runs, with their (task-less, so removable) plugin groups.
    public func removeStaleInstances() {
        let roots: [String]
        switch layout {
        case .v1(let memory, let pids, let cpu): roots = [memory, pids, cpu].compactMap { $0 }
        case .v2(let root, _): roots = [root]
        }
        for root in roots {
            let top = root + "/peerhost"
            guard let instances = try? FileManager.default.contentsOfDirectory(atPath: top) else { continue }
            for instance in instances {
                guard let pid = Int32(instance), kill(pid, 0) != 0, errno == ESRCH else { continue }
                let dir = top + "/" + instance
                let plugins = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
                // Only subdirectories are groups; the rest are the kernel's control files.
                for plugin in plugins where (try? FileManager.default.attributesOfItem(atPath: dir + "/" + plugin)[.type] as? FileAttributeType) == .typeDirectory {
                    rmdir(dir + "/" + plugin)
                }
                rmdir(dir)
            }
        }
    }

    /// Removes the core's (empty) instance directories: at host stop.
    public func removeInstance(_ instance: String) {
        switch layout {
        case .v1(let memory, let pids, let cpu):
            for root in [memory, pids, cpu].compactMap({ $0 }) { rmdir(instanceDirectory(root, instance: instance)) }
        case .v2(let root, _):
            rmdir(instanceDirectory(root, instance: instance))
        }
    }

    /// mkdir -p for the levels below an existing hierarchy root; returns `path`. Records the
    /// directories it made itself.
    static func makeDirectories(_ path: String, made: inout [String]) throws(CgroupError) -> String {
        let parts = path.split(separator: "/")
        var prefix = ""
        for part in parts {
            prefix += "/" + part
            if access(prefix, F_OK) == 0 { continue }
            if mkdir(prefix, 0o755) == 0 { made.append(prefix); continue }
            if errno != EEXIST { throw CgroupError(path: prefix, errno: errno) }
        }
        return path
    }

    static func write(_ path: String, _ text: String) throws(CgroupError) {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw CgroupError(path: path, errno: errno) }
        defer { close(fd) }
        let n = text.withCString { Glibc.write(fd, $0, strlen($0)) }
        guard n == text.utf8.count else { throw CgroupError(path: path, errno: n < 0 ? errno : EIO) }
    }
}

/// One plugin's group(s): opened for the spawn, removed when its runner is gone.
public struct PluginCgroup: Sendable, Equatable {
    /// One per v1 controller used, or the single v2 group.
    public let directories: [String]
    public let version: LimitMechanism
    public let memory: Bool
    public let pids: Bool
    public let cpu: Bool

    /// Opens every cgroup.procs for ph_spawn; the caller closes them after the spawn.
    public func openProcs() throws(CgroupError) -> [Int32] {
        var fds: [Int32] = []
        for dir in directories {
            let fd = open(dir + "/cgroup.procs", O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else {
                let e = errno
                fds.forEach { close($0) }
                throw CgroupError(path: dir + "/cgroup.procs", errno: e)
            }
            fds.append(fd)
        }
        return fds
    }

    /// How many times the kernel's OOM killer killed in this group ("oom_kill N" in v1's
    /// memory.oom_control, v2's memory.events); nil if unknown.
    public func oomKills() -> Int? {
        for dir in directories {
            for file in ["/memory.oom_control", "/memory.events"] {
                guard let text = try? String(contentsOfFile: dir + file, encoding: .utf8) else { continue }
                for line in text.split(separator: "\n") where line.hasPrefix("oom_kill ") {
                    return Int(line.dropFirst("oom_kill ".count))
                }
            }
        }
        return nil
    }

    /// The group's own counters, each nil where this group has no such file: CPU from cpuacct.usage
    /// (v1, ns; present when cpuacct is co-mounted with cpu) or cpu.stat's usage_usec (v2); memory
    /// from memory.usage_in_bytes (v1) or memory.current (v2) — what the memory limit is enforced
    /// on (resident pages plus the page cache charged to the group, e.g. its tmpfs root).
    /// Reads only inside the group's own directories (the host's subtree).
    public func usage() -> (cpuSeconds: Double?, memoryBytes: UInt64?) {
        func read(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }
        var cpu: Double?, memory: UInt64?
        for dir in directories {
            if cpu == nil, let text = read(dir + "/cpuacct.usage"),
               let ns = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                cpu = Double(ns) / 1e9
            }
            if cpu == nil, let text = read(dir + "/cpu.stat") {
                for line in text.split(separator: "\n") where line.hasPrefix("usage_usec ") {
                    if let us = UInt64(line.dropFirst("usage_usec ".count)) { cpu = Double(us) / 1e6 }
                }
            }
            if memory == nil, self.memory {
                for file in ["/memory.usage_in_bytes", "/memory.current"] {
                    if let text = read(dir + file), let bytes = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                        memory = bytes
                        break
                    }
                }
            }
        }
        return (cpu, memory)
    }

    /// rmdir of every directory; a group whose last task was just reaped can be busy for a moment.
    public func remove() {
        for dir in directories {
            for _ in 0..<50 {
                if rmdir(dir) == 0 || errno == ENOENT { break }
                usleep(2000)
            }
        }
    }
}
