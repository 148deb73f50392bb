import Foundation
import PeerhostSandbox
import Testing
@testable import PeerhostCore
#if canImport(Glibc)
import Glibc
#endif

/// Manifest limits → cgroup files, runner rlimit flags and the EnforcedLimits record. The cgroup
/// trees here are plain directories standing in for /sys/fs/cgroup (control files pre-created, as
/// the kernel would), so the tests check exactly what the core writes where.
@Suite struct PluginLimitsTests {
    static let v1Mountinfo = """
    31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
    32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
    33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
    34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
    35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
    39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
    """

    @Test func discoveryFindsV1ControllersByTheirOptionNotTheirPrefix() {
        let c = Cgroups.discover(mountinfo: Self.v1Mountinfo)
        #expect(c == Cgroups(layout: .v1(memory: "/sys/fs/cgroup/memory", pids: "/sys/fs/cgroup/pids", cpu: "/sys/fs/cgroup/cpu")))
        #expect(Cgroups.discover(mountinfo: "22 1 0:5 / /proc rw - proc proc rw\n") == nil, "no cgroups: rlimits only")
    }

    func tree(_ files: [String]) throws -> String {
        let root = NSTemporaryDirectory() + "peerhost-cgroup-\(UUID().uuidString)"
        for file in files {
            let path = root + "/" + file
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            FileManager.default.createFile(atPath: path, contents: Data())
        }
        return root
    }

    func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "<missing>" }

    @Test func v1WritesMemoryMemswPidsAndCpuQuota() throws {
        let g = "peerhost/42/bt/"
        let root = try tree(["memory/\(g)memory.limit_in_bytes", "memory/\(g)memory.memsw.limit_in_bytes", "memory/\(g)cgroup.procs",
                             "pids/\(g)pids.max", "pids/\(g)cgroup.procs",
                             "cpu/\(g)cpu.cfs_period_us", "cpu/\(g)cpu.cfs_quota_us", "cpu/\(g)cgroup.procs"])
        defer { try? FileManager.default.removeItem(atPath: root) }
        let cgroups = Cgroups(layout: .v1(memory: root + "/memory", pids: root + "/pids", cpu: root + "/cpu"))
        var manifest = PluginManifest.ResourceLimits()
        manifest.memoryBytes = 64 << 20
        manifest.cpuPercent = 50
        manifest.openFiles = 100
        let plan = PluginLimits.make(manifest, plugin: "bt", cgroups: cgroups, instance: "42")
        #expect(read(root + "/memory/\(g)memory.limit_in_bytes") == "67108864")
        #expect(read(root + "/memory/\(g)memory.memsw.limit_in_bytes") == "67108864", "no swap beyond the limit")
        #expect(read(root + "/pids/\(g)pids.max") == "4")
        #expect(read(root + "/cpu/\(g)cpu.cfs_period_us") == "100000")
        #expect(read(root + "/cpu/\(g)cpu.cfs_quota_us") == "50000")
        #expect(plan.enforced.memory == .cgroupV1 && plan.enforced.cpu == .cgroupV1)
        #expect(plan.enforced.processesBy == [.cgroupV1, .rlimit])
        #expect(plan.enforced.openFiles == 108, "the runner's own 8 plus open_files")
        #expect(plan.runnerArguments == ["--rlimit-nofile", "108", "--rlimit-nproc", "4"], "no RLIMIT_AS with a memory cgroup")
        #expect(plan.fallbackReason == nil)
        let fds = try #require(plan.cgroup).openProcs()
        #expect(fds.count == 3, "one cgroup.procs per controller")
        fds.forEach { close($0) }
        #expect(plan.enforced.description == "memory 64 MiB by cgroup v1; cpu 50% by cgroup v1; processes 4 by cgroup v1 + rlimit; open files 108 by rlimit; core 0 by rlimit")
    }

    @Test func v2EnablesControllersOnEveryLevelAndWritesMaxFiles() throws {
        let g = "peerhost/42/bt/"
        let root = try tree(["cgroup.subtree_control", "peerhost/cgroup.subtree_control", "peerhost/42/cgroup.subtree_control",
                             "\(g)memory.max", "\(g)memory.swap.max", "\(g)pids.max", "\(g)cpu.max", "\(g)cgroup.procs"])
        defer { try? FileManager.default.removeItem(atPath: root) }
        let cgroups = Cgroups(layout: .v2(root: root, controllers: ["memory", "pids", "cpu", "io"]))
        var manifest = PluginManifest.ResourceLimits()
        manifest.memoryBytes = 256 << 20
        manifest.cpuPercent = 150
        let plan = PluginLimits.make(manifest, plugin: "bt", cgroups: cgroups, instance: "42")
        for level in ["", "peerhost/", "peerhost/42/"] {
            #expect(read(root + "/\(level)cgroup.subtree_control") == "+memory +pids +cpu", "level '\(level)'")
        }
        #expect(read(root + "/\(g)memory.max") == "268435456")
        #expect(read(root + "/\(g)memory.swap.max") == "0")
        #expect(read(root + "/\(g)pids.max") == "4")
        #expect(read(root + "/\(g)cpu.max") == "150000 100000")
        #expect(plan.enforced.memory == .cgroupV2 && plan.enforced.cpu == .cgroupV2)
        #expect(plan.cgroup?.directories == [root + "/peerhost/42/bt"])
    }

    @Test func withoutCgroupsMemoryIsRLIMIT_ASAndCpuIsNotEnforced() {
        var manifest = PluginManifest.ResourceLimits()
        manifest.memoryBytes = 256 << 20
        manifest.cpuPercent = 100
        let plan = PluginLimits.make(manifest, plugin: "bt", cgroups: nil, instance: "42")
        #expect(plan.enforced.memory == .rlimit)
        #expect(plan.enforced.cpu == .none)
        #expect(plan.enforced.processesBy == [.rlimit])
        #expect(plan.runnerArguments == ["--rlimit-nofile", "64", "--rlimit-nproc", "4", "--rlimit-as", "268435456"])
        #expect(plan.fallbackReason != nil, "the fallback is reported (the supervisor logs it once)")
    }

    @Test func anUnwritableHierarchyFallsBackAndLeavesNothingBehind() throws {
        // The memory root exists but holds no control files, as a hierarchy we may not write.
        let root = try tree(["memory/.keep"])
        defer { try? FileManager.default.removeItem(atPath: root) }
        let cgroups = Cgroups(layout: .v1(memory: root + "/memory", pids: nil, cpu: nil))
        var manifest = PluginManifest.ResourceLimits()
        manifest.memoryBytes = 64 << 20
        let plan = PluginLimits.make(manifest, plugin: "bt", cgroups: cgroups, instance: "42")
        #expect(plan.cgroup == nil)
        #expect(plan.enforced.memory == .rlimit)
        #expect(plan.fallbackReason?.contains("memory.limit_in_bytes: ENOENT") == true, "\(plan.fallbackReason ?? "nil")")
        #expect(!FileManager.default.fileExists(atPath: root + "/memory/peerhost"), "the half-made group is removed")
    }

    @Test func previewTellsTheMechanismWithoutCreatingAGroup() throws {
        let root = try tree(["memory/.keep", "pids/.keep"])
        defer { try? FileManager.default.removeItem(atPath: root) }
        let cgroups = Cgroups(layout: .v1(memory: root + "/memory", pids: root + "/pids", cpu: nil))
        var manifest = PluginManifest.ResourceLimits()
        manifest.memoryBytes = 64 << 20
        manifest.cpuPercent = 20
        let writable = PluginLimits.preview(manifest, cgroups: cgroups)
        #expect(writable.memory == .cgroupV1 && writable.cpu == .none && writable.processesBy == [.cgroupV1, .rlimit])
        #expect(!FileManager.default.fileExists(atPath: root + "/memory/peerhost"), "a preview creates nothing")
        chmod(root + "/memory", 0o555)
        defer { chmod(root + "/memory", 0o755) }
        if geteuid() != 0 {   // root writes anyway (CAP_DAC_OVERRIDE)
            #expect(PluginLimits.preview(manifest, cgroups: cgroups).memory == .rlimit)
        }
        #expect(PluginLimits.preview(manifest, cgroups: nil).memory == .rlimit)
    }

    @Test func staleInstancesOfADeadCoreAreRemovedAndLiveOnesKept() throws {
        let dead = "2147483600"   // above any pid_max: no such process
        let live = "\(getpid())"
        let root = try tree(["memory/peerhost/\(dead)/bt/.", "memory/peerhost/\(live)/bt/."].map { $0 + "keep" })
        defer { try? FileManager.default.removeItem(atPath: root) }
        // Real cgroup directories hold only control files, which rmdir ignores; plain directories here
        // must be empty for rmdir, so drop the placeholder files first.
        for id in [dead, live] { unlink(root + "/memory/peerhost/\(id)/bt/.keep") }
        Cgroups(layout: .v1(memory: root + "/memory", pids: nil, cpu: nil)).removeStaleInstances()
        #expect(!FileManager.default.fileExists(atPath: root + "/memory/peerhost/\(dead)"))
        #expect(FileManager.default.fileExists(atPath: root + "/memory/peerhost/\(live)/bt"))
    }
}
