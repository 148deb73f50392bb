// The runner's private file system (ph_spawn.c step 8, PrivateRoot.swift), seen from inside: a
// small C probe is spawned in the runner's place, in the same private root the core builds, and
// reports what it can see and do through a pipe on fd 3. Serialized: each test forks a sandbox.
import CPeerhostShim
import Foundation
import PeerhostSandbox
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized)
struct PrivateRootTests {
    /// Reports one "key=value" line per check to fd 3; values are errno names' numbers or text.
    static let probeSource = #"""
    #define _GNU_SOURCE
    #include <dirent.h>
    #include <errno.h>
    #include <fcntl.h>
    #include <stdio.h>
    #include <string.h>
    #include <sys/stat.h>
    #include <sys/vfs.h>
    #include <unistd.h>
    static FILE *out;
    static void check(const char *key, int rc) { fprintf(out, "%s=%d\n", key, rc < 0 ? errno : 0); }
    int main(int argc, char **argv) {
        out = fdopen(3, "w");
        check("etc_passwd", open("/etc/passwd", O_RDONLY));
        check("proc_self_status", open("/proc/self/status", O_RDONLY));
        check("proc_dir", open("/proc", O_RDONLY | O_DIRECTORY));
        check("dev_null", open("/dev/null", O_RDONLY));
        check("host_path", open(argv[1], O_RDONLY));
        check("dotdot_etc", open("/plugin/../../../etc/passwd", O_RDONLY));
        check("mkdir_root", mkdir("/new", 0755));
        check("create_in_plugin", open("/plugin/planted", O_WRONLY | O_CREAT, 0644));
        check("write_library", open(argv[2], O_WRONLY));
        check("write_bound_file", open(argv[3], O_WRONLY));
        struct stat st;
        fprintf(out, "library_size=%lld\n", stat(argv[2], &st) == 0 ? (long long)st.st_size : -1LL);
        unsigned char magic[4] = {0};
        int fd = open(argv[2], O_RDONLY);
        if (fd >= 0) { (void)!read(fd, magic, 4); close(fd); }
        fprintf(out, "library_magic=%02x%02x%02x%02x\n", magic[0], magic[1], magic[2], magic[3]);
        struct statfs sf;
        fprintf(out, "root_fs=%lx\n", statfs("/", &sf) == 0 ? (unsigned long)sf.f_type : 0UL);
        char cwd[256] = "";
        fprintf(out, "cwd=%s\n", getcwd(cwd, sizeof cwd) ? cwd : "?");
        fprintf(out, "root=");
        DIR *d = opendir("/");
        struct dirent *e;
        while (d && (e = readdir(d))) if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) fprintf(out, "%s,", e->d_name);
        fprintf(out, "\nend=1\n");
        fclose(out);
        return 0;
    }
    """#

    static func compileProbe() throws -> String {
        let dir = NSTemporaryDirectory() + "peerhost-probe-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod(dir, 0o755)   // the probe runs as an unprivileged host uid and must be reachable
        try probeSource.write(toFile: dir + "/probe.c", atomically: true, encoding: .utf8)
        let out = dir + "/probe"
        let cc = FileManager.default.isExecutableFile(atPath: "/opt/swift/usr/bin/clang") ? "/opt/swift/usr/bin/clang" : "/usr/bin/cc"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: cc)
        p.arguments = [dir + "/probe.c", "-o", out]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw HarnessError("compiling the probe failed") }
        chmod(out, 0o755)
        return out
    }

    /// Spawns the probe in a private root holding echo-c's verified bytes; returns its report.
    func probe() throws -> (report: [String: String], root: PrivateRoot, library: String) {
        let probe = try Self.compileProbe()
        let library = Products.library("echo-c")
        let (image, size) = try FakeCore.sealedImage(of: library)
        defer { close(image) }
        let target = PrivateRoot.pluginDirectory + "/libecho-c.so"
        // A world-writable host file, bound like the runner's files: only the read-only remount can
        // refuse the probe's write (libc, root's 0644, would already say EACCES).
        let writable = (probe as NSString).deletingLastPathComponent + "/writable"
        try "x".write(toFile: writable, atomically: false, encoding: .utf8)
        chmod(writable, 0o666)
        let binds = try PrivateRoot.runnerBinds(runnerPath: probe) + [try BindMount.readOnly(writable)]
        let root = PrivateRoot(mountPoint: try FakeCore.mountPoint(), binds: binds,
                               library: .init(fd: image, size: size, target: target))
        var pipeFDs: [Int32] = [-1, -1]
        #expect(pipe(&pipeFDs) == 0)
        defer { close(pipeFDs[0]) }
        // argv[1]: a host path that exists (the test's own products folder); argv[2]: the copy;
        // argv[3]: the world-writable bound file.
        let spec = SpawnSpec(runnerPath: probe, argv: [probe, Products.directory, target, writable], environment: [],
                             fds: [pipeFDs[1]], hostUID: 200_997, hostGID: 200_997, root: root)
        let proc = try SandboxSpawner.spawn(spec)
        close(pipeFDs[1])
        let exit = try proc.wait(timeoutMilliseconds: 10_000)
        close(proc.pidfd)
        #expect(exit == ProcessExit(exited: true, code: 0))
        var text = ""
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(pipeFDs[0], &buf, buf.count)
            if n <= 0 { break }
            text += String(decoding: buf[0..<n], as: UTF8.self)
        }
        var report: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let kv = line.split(separator: "=", maxSplits: 1)
            report[String(kv[0])] = kv.count > 1 ? String(kv[1]) : ""
        }
        return (report, root, library)
    }

    @Test func theRunnerSeesNoHostFilesNoProcAndNoDev() throws {
        let (r, _, _) = try probe()
        #expect(r["end"] == "1", "the probe ran to the end: \(r)")
        #expect(r["etc_passwd"] == "\(ENOENT)")
        #expect(r["proc_self_status"] == "\(ENOENT)")
        #expect(r["proc_dir"] == "\(ENOENT)")
        #expect(r["dev_null"] == "\(ENOENT)")
        #expect(r["host_path"] == "\(ENOENT)", "the host's build folder is not visible")
        #expect(r["dotdot_etc"] == "\(ENOENT)", ".. stops at the private root")
        #expect(r["cwd"] == "/")
        #expect(r["root_fs"] == "1021994", "/ is the tmpfs (TMPFS_MAGIC)")
    }

    @Test func theRootIsReadOnlyEverywhere() throws {
        let (r, _, _) = try probe()
        #expect(r["mkdir_root"] == "\(EROFS)")
        #expect(r["create_in_plugin"] == "\(EROFS)")
        #expect(r["write_library"] == "\(EROFS)", "the plugin cannot rewrite its own library")
        #expect(r["write_bound_file"] == "\(EROFS)", "a bound file is read-only even where its mode allows writing")
    }

    @Test func theRootListsOnlyTheBindsAndThePluginFolder() throws {
        let (r, root, _) = try probe()
        let listed = Set((r["root"] ?? "").split(separator: ",").map(String.init))
        let expected = Set((root.binds.map(\.target) + [PrivateRoot.pluginDirectory + "/x"]).map {
            String($0.split(separator: "/").first!)
        })
        #expect(listed == expected, "/ holds \(listed.sorted()), expected \(expected.sorted())")
        #expect(listed.contains("plugin") && !listed.contains("etc") && !listed.contains("proc") && !listed.contains("dev"))
    }

    @Test func theLibraryCopyHasTheImageBytes() throws {
        let (r, _, library) = try probe()
        let size = (try FileManager.default.attributesOfItem(atPath: library)[.size] as? NSNumber)?.intValue
        #expect(r["library_size"] == size.map { "\($0)" })
        #expect(r["library_magic"] == "7f454c46", "an ELF file")
    }

    @Test func aPrivateRootWithoutAMountNamespaceIsRefused() throws {
        let root = PrivateRoot(mountPoint: try FakeCore.mountPoint(), binds: [], library: nil)
        let spec = SpawnSpec(runnerPath: "/bin/true", argv: ["true"], fds: [], hostUID: 200_996, hostGID: 200_996,
                             namespaces: [.user, .pid], root: root)
        #expect(throws: SpawnError(step: .args, errno: EINVAL)) { try SandboxSpawner.spawn(spec) }
    }

    @Test func aMissingBindSourceNamesTheBindStep() throws {
        let root = PrivateRoot(mountPoint: try FakeCore.mountPoint(),
                               binds: [BindMount(source: "/nonexistent/file", target: "/x/file", mountFlags: 0)], library: nil)
        let spec = SpawnSpec(runnerPath: "/bin/true", argv: ["true"], fds: [], hostUID: 200_996, hostGID: 200_996, root: root)
        #expect(throws: SpawnError(step: .bind, errno: ENOENT)) { try SandboxSpawner.spawn(spec) }
    }

    @Test func loaderTraceListsTheRunnersLibrariesAndRefusesAMissingOne() throws {
        let files = try LoaderTrace.files(of: Products.runner)
        #expect(files.contains(LoaderTrace.loader))
        #expect(files.contains { $0.hasSuffix("/libc.so.6") })
        #expect(files.contains { $0.hasSuffix("/libswiftCore.so") })
        #expect(files.contains { $0.hasSuffix("/libseccomp.so.2") })
        #expect(throws: PrivateRootError.dependencyNotFound(file: "x", library: "libnope.so")) {
            try LoaderTrace.parse("\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x1)\n\tlibnope.so => not found\n", file: "x")
        }
    }
}
