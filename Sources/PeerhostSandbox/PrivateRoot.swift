// PrivateRoot: the runner's own file system, planned by the parent and built by the clone child
// (ph_spawn.c, step 8). It holds only what the runner needs, read-only, at the same absolute paths
// as outside (so RUNPATHs and PT_INTERP resolve unchanged), plus the verified plugin bytes at
// /plugin/<file>. Everything here runs in the core, before the clone: the child only makes the
// system calls.
//
// What the runner looks for after pivot_root (strace -f of the sandbox tests): the loader's search
// of RUNPATH and the default directories (no /etc/ld.so.cache: it falls back to /lib/x86_64-linux-gnu
// and finds the bound files), /proc/self/maps and /proc/self/exe (Swift runtime, ENOENT is fine),
// /sys/devices/system/cpu/possible and /proc/stat (glibc's CPU count, falls back), ICU data under
// /usr/share/icu (Foundation uses the data built into lib_FoundationICU.so). libcap's cap_max_bits
// probes with prctl(PR_CAPBSET_READ), not /proc/sys/kernel/cap_last_cap. The one real need was
// /proc/self/cmdline, where Swift's CommandLine.arguments come from: the runner takes argv from
// the C shim instead (ph_saved_argv).
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One read-only bind: a host file made visible at `target` inside the private root.
public struct BindMount: Sendable, Hashable, CustomStringConvertible {
    /// Host path (symlinks are followed by the mount).
    public var source: String
    /// Absolute path inside the private root.
    public var target: String
    /// MS_NOSUID / MS_NODEV / MS_NOEXEC of the source's mount (statvfs, read here in the parent):
    /// inside the runner's user namespace those flags are locked and the read-only remount must
    /// keep them.
    public var mountFlags: UInt

    public init(source: String, target: String, mountFlags: UInt) {
        self.source = source
        self.target = target
        self.mountFlags = mountFlags
    }

    /// A bind of `source` at `target` (default: the same path), its mount flags read now.
    public static func readOnly(_ source: String, at target: String? = nil) throws(PrivateRootError) -> BindMount {
        var st = statvfs()
        guard statvfs(source, &st) == 0 else { throw .statvfs(path: source, errno: errno) }
        // ST_NOSUID 2, ST_NODEV 4, ST_NOEXEC 8: the same values as MS_NOSUID, MS_NODEV, MS_NOEXEC
        // (glibc's ST_* enum needs _GNU_SOURCE and does not import).
        let flags = UInt(st.f_flag) & (2 | 4 | 8)
        return BindMount(source: source, target: target ?? source, mountFlags: flags)
    }

    public var description: String { source == target ? source : "\(source) at \(target)" }
}

public enum PrivateRootError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `ld.so --list FILE` failed or printed something we cannot read.
    case loader(file: String, message: String)
    /// A library the file needs was not found by the loader.
    case dependencyNotFound(file: String, library: String)
    case statvfs(path: String, errno: Int32)
    case mountPoint(path: String, errno: Int32)

    public var description: String {
        switch self {
        case .loader(let file, let message): "resolving the libraries of \(file) with \(LoaderTrace.loader) --list: \(message)"
        case .dependencyNotFound(let file, let library): "\(file) needs \(library), which the loader does not find"
        case .statvfs(let path, let e): "statvfs \(path): \(errnoName(e))"
        case .mountPoint(let path, let e): "preparing the private root's mount point \(path): \(errnoName(e))"
        }
    }
}

/// The dynamic loader's own answer to "which files does this ELF object load": `ld.so --list`.
/// It maps the object and its dependencies and prints where each was found (RUNPATH, the cache,
/// the default directories, with glibc's own rules), without running any of their code (no
/// constructors: LD_TRACE_LOADED_OBJECTS stops before init). Reading DT_NEEDED ourselves would
/// mean re-implementing those search rules and the transitive closure.
public enum LoaderTrace {
    /// x86_64 only (the seccomp profile pins the architecture too).
    public static let loader = "/lib64/ld-linux-x86-64.so.2"

    /// Every file the loader maps for `file`, including the loader itself and excluding the vDSO,
    /// as the absolute paths it printed.
    public static func files(of file: String) throws(PrivateRootError) -> [String] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: loader)
        process.arguments = ["--list", file]
        process.environment = [:]   // no LD_LIBRARY_PATH or LD_PRELOAD from the core's environment
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        do {
            try process.run()
        } catch {
            throw .loader(file: file, message: "\(error)")
        }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            throw .loader(file: file, message: "exit \(process.terminationStatus): \(text.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return try parse(text, file: file)
    }

    /// Lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)", "/lib64/ld-linux-x86-64.so.2 (0x…)",
    /// "linux-vdso.so.1 (0x…)" (no file), "libfoo.so => not found".
    public static func parse(_ text: String, file: String) throws(PrivateRootError) -> [String] {
        var paths: [String] = []
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            var path: Substring
            if let arrow = line.range(of: " => ") {
                path = line[arrow.upperBound...]
                if path.hasPrefix("not found") { throw .dependencyNotFound(file: file, library: String(line[..<arrow.lowerBound])) }
            } else {
                path = line[...]
            }
            if let paren = path.range(of: " (0x") { path = path[..<paren.lowerBound] }
            guard path.hasPrefix("/") else { continue }   // the vDSO has no file
            if !paths.contains(String(path)) { paths.append(String(path)) }
        }
        guard !paths.isEmpty else { throw .loader(file: file, message: "no files in its output: \(text)") }
        return paths
    }
}

/// What the clone child builds: a tmpfs on `mountPoint`, `binds` on it, the plugin library copied
/// to `library.target`, then read-only, pivot_root, old root detached.
public struct PrivateRoot: Sendable {
    /// The sealed memfd with the verified plugin bytes and where its copy goes inside.
    public struct LibraryCopy: Sendable {
        public var fd: Int32
        public var size: Int
        /// Absolute path inside, e.g. "/plugin/libecho-c.so".
        public var target: String
        public init(fd: Int32, size: Int, target: String) {
            self.fd = fd
            self.size = size
            self.target = target
        }
    }

    /// An existing directory on the host, searchable by the plugin's uid. Never written: each child
    /// mounts its own tmpfs on it inside its own mount namespace, so all plugins share it.
    public var mountPoint: String
    public var binds: [BindMount]
    public var library: LibraryCopy?

    public init(mountPoint: String, binds: [BindMount], library: LibraryCopy?) {
        self.mountPoint = mountPoint
        self.binds = binds
        self.library = library
    }

    /// The directory under which plugin libraries are copied inside the root.
    public static let pluginDirectory = "/plugin"

    /// Every directory to create (inside paths), parents first: the binds' and the library's.
    public var directories: [String] {
        var set = Set<String>()
        for path in binds.map(\.target) + (library.map { [$0.target] } ?? []) {
            var dir = (path as NSString).deletingLastPathComponent
            while dir != "/" && !dir.isEmpty {
                set.insert(dir)
                dir = (dir as NSString).deletingLastPathComponent
            }
        }
        return set.sorted { a, b in
            let da = a.split(separator: "/").count, db = b.split(separator: "/").count
            return da != db ? da < db : a < b
        }
    }

    /// The tmpfs mount options: room for the library copy (rounded to pages) and 64 KiB of slack;
    /// inodes for the directories and mount-point files and a few more. Nothing else is ever
    /// written to it (it is read-only before the runner starts).
    public var tmpfsOptions: String {
        let page = 4096
        let bytes = ((library?.size ?? 0) + page - 1) / page * page + 64 * 1024
        let inodes = directories.count + binds.count + 16
        return "size=\(bytes),nr_inodes=\(inodes),mode=0755"
    }

    /// What the runner itself needs: its binary and every file the loader maps for it (the loader,
    /// libc, libseccomp, libcap, libffi, the Swift runtime at its RUNPATH). Resolved once per host.
    public static func runnerBinds(runnerPath: String) throws(PrivateRootError) -> [BindMount] {
        var binds = [try BindMount.readOnly(runnerPath)]
        for file in try LoaderTrace.files(of: runnerPath) where file != runnerPath {
            binds.append(try BindMount.readOnly(file))
        }
        return binds
    }

    /// What a plugin library needs beyond the runner's own files: its DT_NEEDED closure as the
    /// loader resolves it from the library's path on disk. Files found in the library's own
    /// folder (a RUNPATH of $ORIGIN) are bound next to its copy in /plugin, where $ORIGIN points
    /// inside; everything else at its own path. The resolved set only decides which read-only
    /// system files are visible: the plugin's code is always the verified memfd copy.
    public static func pluginBinds(libraryPath: String, excluding existing: [BindMount]) throws(PrivateRootError) -> [BindMount] {
        let folder = ((libraryPath as NSString).resolvingSymlinksInPath as NSString).deletingLastPathComponent
        let taken = Set(existing.map(\.target))
        var binds: [BindMount] = []
        for file in try LoaderTrace.files(of: libraryPath) where file != libraryPath {
            let inOwnFolder = (file as NSString).deletingLastPathComponent == folder
            let target = inOwnFolder ? pluginDirectory + "/" + (file as NSString).lastPathComponent : file
            if taken.contains(target) || binds.contains(where: { $0.target == target }) { continue }
            binds.append(try BindMount.readOnly(file, at: target))
        }
        return binds
    }

    /// The mount point the core uses: /run/peerhost/root when it runs as root (the plugins' own
    /// uids can search /run, whereas the data dir is 0700), else `<dataDirectory>/sandbox-root`
    /// (an unprivileged core maps every plugin to its own uid, which owns the data dir). Created if
    /// missing; it stays empty on the host.
    public static func defaultMountPoint(dataDirectory: String) throws(PrivateRootError) -> String {
        let path = geteuid() == 0 ? "/run/peerhost/root" : (dataDirectory as NSString).appendingPathComponent("sandbox-root")
        var prefix = ""
        for part in path.split(separator: "/") {
            prefix += "/" + part
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST { throw .mountPoint(path: prefix, errno: errno) }
        }
        if geteuid() == 0 {
            // Made earlier under another umask perhaps: the plugin uids must be able to search both.
            chmod("/run/peerhost", 0o755)
            chmod(path, 0o755)
        }
        return path
    }
}
