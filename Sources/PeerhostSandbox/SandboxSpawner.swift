// SandboxSpawner: the Swift face of ph_spawn.c (Contract 1 in team/PLAN.md).
// The clone itself lives in C because the core is multithreaded (NOTES-swift-linux.md): only raw
// system calls are allowed between clone and execve, so every string and array is built here first.
import CPeerhostShim
#if canImport(Glibc)
import Glibc
#endif

/// The namespaces a runner gets. All six by default; tests may ask for fewer.
public struct Namespaces: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let user = Namespaces(rawValue: UInt32(PH_NS_USER))
    public static let pid = Namespaces(rawValue: UInt32(PH_NS_PID))
    public static let net = Namespaces(rawValue: UInt32(PH_NS_NET))
    public static let mount = Namespaces(rawValue: UInt32(PH_NS_MNT))
    public static let ipc = Namespaces(rawValue: UInt32(PH_NS_IPC))
    public static let uts = Namespaces(rawValue: UInt32(PH_NS_UTS))
    public static let all: Namespaces = [.user, .pid, .net, .mount, .ipc, .uts]
}

public struct SpawnSpec: Sendable {
    /// Absolute path of the executable (peerhost-runner).
    public var runnerPath: String
    /// Full argv including argv[0], e.g. ["peerhost-runner", "--plugin", "echo-c", "--library", path].
    public var argv: [String]
    /// The complete environment; nothing of the core's environment is inherited.
    public var environment: [String]
    /// fds[i] becomes fd 3+i in the child (3 region, 4 control socket, 5 RX eventfd, 6 TX eventfd).
    /// The caller keeps its own copies; close them after spawn if the child should own them alone.
    public var fds: [Int32]
    /// uid/gid 0 inside the user namespace map to these host ids (200000 + plugin index by default).
    public var hostUID: UInt32
    public var hostGID: UInt32
    public var namespaces: Namespaces
    /// The runner's private file system (needs `.mount`); nil keeps the host's (tests only).
    public var root: PrivateRoot?
    /// Open `cgroup.procs` files: the parent writes the child's pid into each before releasing it.
    /// The caller keeps and closes them.
    public var cgroupProcs: [Int32]
    /// Becomes fds 0, 1 and 2 of the child: the write end of a pipe the caller reads (nil: the
    /// child keeps the caller's own 0–2, for tests).
    public var stdio: Int32?

    public init(runnerPath: String, argv: [String], environment: [String] = ["SWIFT_BACKTRACE=enable=no"],
                fds: [Int32], hostUID: UInt32, hostGID: UInt32, namespaces: Namespaces = .all,
                root: PrivateRoot? = nil, cgroupProcs: [Int32] = [], stdio: Int32? = nil) {
        self.stdio = stdio
        self.runnerPath = runnerPath
        self.argv = argv
        self.environment = environment
        self.fds = fds
        self.hostUID = hostUID
        self.hostGID = hostGID
        self.namespaces = namespaces
        self.root = root
        self.cgroupProcs = cgroupProcs
    }
}

/// The step of ph_spawn that failed; raw values are the names ph_spawn_step_name() returns.
public enum SpawnStep: String, Sendable {
    case args, pipe, clone
    case setgroupsFile = "setgroups_file"
    case uidMap = "uid_map"
    case gidMap = "gid_map"
    case signalChild = "signal_child"
    case cgroup
    case dupFds = "dup_fds"
    case closeRange = "close_range"
    case sync, setgroups, setresgid, setresuid, setsid
    case noNewPrivs = "no_new_privs"
    case mountPrivate = "mount_private"
    case rootTmpfs = "root_tmpfs"
    case mkdir, bind
    case copyLibrary = "copy_library"
    case remountRootReadOnly = "remount_root_ro"
    case pivotRoot = "pivot_root"
    case detachOldRoot = "detach_old_root"
    case sigmask, execve
    case unknown

    init(cStep: Int32) {
        self = SpawnStep(rawValue: String(cString: ph_spawn_step_name(cStep))) ?? .unknown
    }
}

public struct SpawnError: Error, CustomStringConvertible, Sendable, Equatable {
    public let step: SpawnStep
    public let errno: Int32
    public init(step: SpawnStep, errno: Int32) {
        self.step = step
        self.errno = errno
    }
    public var description: String {
        "spawn step \(step.rawValue): \(errnoName(errno)) (\(String(cString: strerror(errno))))"
    }
}

public struct ProcessExit: Sendable, Equatable, CustomStringConvertible {
    /// true: `code` is the exit status; false: `code` is the signal that killed it.
    public let exited: Bool
    public let code: Int32
    public init(exited: Bool, code: Int32) {
        self.exited = exited
        self.code = code
    }
    public var description: String { exited ? "exit \(code)" : "signal \(code)" }
}

public struct WaitError: Error, CustomStringConvertible, Sendable {
    public let errno: Int32
    public var description: String {
        errno == ETIMEDOUT ? "wait for runner: timed out" : "wait for runner: \(errnoName(errno))"
    }
}

public struct SpawnedProcess: Sendable {
    public let pid: pid_t
    /// O_CLOEXEC pidfd; readable (POLLIN) when the process exits. Owned by the caller.
    public let pidfd: Int32

    public init(pid: pid_t, pidfd: Int32) {
        self.pid = pid
        self.pidfd = pidfd
    }

    /// Sends a signal through the pidfd (no pid-reuse race).
    public func signal(_ sig: Int32) -> Bool { ph_pidfd_send_signal(pidfd, sig) == 0 }

    /// Blocks until the process exits (or the timeout passes) and reaps it. Call it from a thread
    /// that may block; the core would rather watch `pidfd` in its event loop and call this after.
    public func wait(timeoutMilliseconds: Int32 = -1) throws(WaitError) -> ProcessExit {
        var exited: Int32 = 0
        var code: Int32 = 0
        if ph_pidfd_wait(pidfd, timeoutMilliseconds, &exited, &code) != 0 { throw WaitError(errno: errno) }
        return ProcessExit(exited: exited != 0, code: code)
    }
}

public enum SandboxSpawner {
    /// Clones a child into new namespaces, maps its uid/gid, and execs the runner.
    /// Returns once execve succeeded; a failure in any step throws SpawnError naming it.
    public static func spawn(_ spec: SpawnSpec) throws(SpawnError) -> SpawnedProcess {
        guard spec.fds.count <= Int(PH_SPAWN_MAX_FDS), spec.cgroupProcs.count <= Int(PH_SPAWN_MAX_FDS),
              !spec.argv.isEmpty, spec.root == nil || spec.namespaces.contains(.mount) else {
            throw SpawnError(step: .args, errno: EINVAL)
        }
        // strdup'd C strings, freed after the call: the child has its own copy of memory by then.
        var owned: [UnsafeMutablePointer<CChar>?] = []
        func c(_ s: String) -> UnsafeMutablePointer<CChar>? {
            let p = strdup(s)
            owned.append(p)
            return p
        }
        defer { for p in owned { free(p) } }
        let argv = spec.argv.map { c($0) } + [nil]
        let envp = spec.environment.map { c($0) } + [nil]

        // The private root with every path complete (mount point prefix included): the child does
        // no string work at all. Manually allocated so every pointer stays valid for the call.
        var rootPointer: UnsafeMutablePointer<ph_spawn_root>? = nil
        var dirsPointer: UnsafeMutablePointer<UnsafePointer<CChar>?>? = nil
        var bindsPointer: UnsafeMutablePointer<ph_spawn_bind>? = nil
        defer {
            rootPointer?.deallocate()
            dirsPointer?.deallocate()
            bindsPointer?.deallocate()
        }
        if let r = spec.root {
            let prefix = r.mountPoint.hasSuffix("/") ? String(r.mountPoint.dropLast()) : r.mountPoint
            let dirs = r.directories.map { UnsafePointer(c(prefix + $0)) }
            dirsPointer = .allocate(capacity: max(dirs.count, 1))
            dirsPointer!.initialize(from: dirs, count: dirs.count)
            let binds = r.binds.map { ph_spawn_bind(source: c($0.source), target: c(prefix + $0.target), flags: $0.mountFlags) }
            bindsPointer = .allocate(capacity: max(binds.count, 1))
            bindsPointer!.initialize(from: binds, count: binds.count)
            rootPointer = .allocate(capacity: 1)
            rootPointer!.initialize(to: ph_spawn_root(
                dir: UnsafePointer(c(prefix)), tmpfs_options: UnsafePointer(c(r.tmpfsOptions)),
                dirs: UnsafePointer(dirsPointer), ndirs: Int32(dirs.count),
                binds: UnsafePointer(bindsPointer), nbinds: Int32(binds.count),
                library_fd: r.library?.fd ?? -1, library_size: UInt64(r.library?.size ?? 0),
                library_target: r.library.map { UnsafePointer(c(prefix + $0.target)) } ?? nil))
        }
        var result = ph_spawn_result()
        let rc: Int32 = spec.runnerPath.withCString { path in
            argv.withUnsafeBufferPointer { av in
                envp.withUnsafeBufferPointer { ev in
                    spec.cgroupProcs.withUnsafeBufferPointer { cgroups in
                        spec.fds.withUnsafeBufferPointer { fds in
                            var args = ph_spawn_args(
                                path: path, argv: av.baseAddress, envp: ev.baseAddress,
                                fds: fds.baseAddress, nfds: Int32(fds.count),
                                host_uid: spec.hostUID, host_gid: spec.hostGID,
                                namespaces: spec.namespaces.rawValue,
                                root: UnsafePointer(rootPointer),
                                cgroup_procs: cgroups.baseAddress, ncgroup_procs: Int32(cgroups.count),
                                stdio_fd: spec.stdio ?? -1)
                            return ph_spawn(&args, &result)
                        }
                    }
                }
            }
        }
        if rc != 0 { throw SpawnError(step: SpawnStep(cStep: result.failed_step), errno: result.error) }
        return SpawnedProcess(pid: result.pid, pidfd: result.pidfd)
    }
}

/// "EPERM" for 1, etc.: the few errnos a spawn can produce by name, the rest as a number.
public func errnoName(_ e: Int32) -> String {
    switch e {
    case EPERM: return "EPERM"
    case ENOENT: return "ENOENT"
    case EACCES: return "EACCES"
    case EINVAL: return "EINVAL"
    case ENOMEM: return "ENOMEM"
    case EAGAIN: return "EAGAIN"
    case EBADF: return "EBADF"
    case EMFILE: return "EMFILE"
    case ENOSPC: return "ENOSPC"
    case EUSERS: return "EUSERS"
    case ENOSYS: return "ENOSYS"
    case EPIPE: return "EPIPE"
    case ENOEXEC: return "ENOEXEC"
    case ETIMEDOUT: return "ETIMEDOUT"
    case ECHILD: return "ECHILD"
    case EIO: return "EIO"
    default: return "errno \(e)"
    }
}
