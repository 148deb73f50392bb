// PluginLimits: a manifest's [limits] turned into what one spawn applies — a cgroup where the
// machine has one we may write (memory, pids, cpu), the runner's rlimits always (open files,
// processes, core 0), and RLIMIT_AS for memory when there is no memory cgroup. The result says
// which mechanism enforces what (EnforcedLimits, in PeerhostSandbox).
import PeerhostSandbox

struct PluginLimits {
    /// The runner is single-threaded (clone is not on its allowlist): one process, with room for
    /// the kernel's accounting of the exec'ing child.
    static let processes: UInt64 = 4
    /// fds 0–6 of the runner plus one the loader holds for a moment.
    static let runnerOwnFiles: UInt64 = 8
    /// RLIMIT_NOFILE when the manifest names no `open_files` (the runner's own default).
    static let defaultOpenFiles: UInt64 = 64

    var enforced: EnforcedLimits
    var cgroup: PluginCgroup?
    /// --rlimit-* flags for peerhost-runner.
    var runnerArguments: [String]
    /// Why no cgroup was used although the manifest asks for memory or cpu limits; nil otherwise.
    var fallbackReason: String?

    /// What `make` would enforce on this machine for this user, without creating anything (for
    /// `peerhost audit`): a controller counts when the core could make its group now.
    static func preview(_ limits: PluginManifest.ResourceLimits, cgroups: Cgroups?) -> EnforcedLimits {
        let version = cgroups?.version ?? .none
        let memoryGroup = cgroups?.canCreate("memory") == true
        let memory: LimitMechanism = limits.memoryBytes == nil ? .none : memoryGroup ? version : .rlimit
        let cpu: LimitMechanism = limits.cpuPercent != nil && cgroups?.canCreate("cpu") == true ? version : .none
        let pids = cgroups?.canCreate("pids") == true
        return EnforcedLimits(memoryBytes: limits.memoryBytes, memory: memory, cpuPercent: limits.cpuPercent, cpu: cpu,
                              processes: processes, processesBy: (pids ? [version] : []) + [.rlimit],
                              openFiles: limits.openFiles.map { runnerOwnFiles + UInt64($0) } ?? defaultOpenFiles)
    }

    /// `instance` names the core's own cgroup subtree (its pid): see Cgroups.swift.
    static func make(_ limits: PluginManifest.ResourceLimits, plugin: String, cgroups: Cgroups?, instance: String) -> PluginLimits {
        var group: PluginCgroup?
        var fallback: String?
        if let cgroups {
            do {
                group = try cgroups.create(instance: instance, plugin: plugin, memoryBytes: limits.memoryBytes,
                                           cpuPercent: limits.cpuPercent, processes: processes)
            } catch {
                fallback = "\(error)"
            }
        } else {
            fallback = "no cgroup hierarchy with a memory controller is mounted"
        }
        let version = group?.version ?? .none
        let memory: LimitMechanism = limits.memoryBytes == nil ? .none : group?.memory == true ? version : .rlimit
        let cpu: LimitMechanism = limits.cpuPercent != nil && group?.cpu == true ? version : .none
        let openFiles = limits.openFiles.map { runnerOwnFiles + UInt64($0) } ?? defaultOpenFiles
        var arguments = ["--rlimit-nofile", "\(openFiles)", "--rlimit-nproc", "\(processes)"]
        // Coarse: RLIMIT_AS bounds address space, not memory; the Swift runtime reserves some.
        if memory == .rlimit, let bytes = limits.memoryBytes { arguments += ["--rlimit-as", "\(bytes)"] }
        let enforced = EnforcedLimits(
            memoryBytes: limits.memoryBytes, memory: memory, cpuPercent: limits.cpuPercent, cpu: cpu,
            processes: processes, processesBy: (group?.pids == true ? [version] : []) + [.rlimit],
            openFiles: openFiles, cgroups: group?.directories ?? [])
        let asked = limits.memoryBytes != nil || limits.cpuPercent != nil
        return PluginLimits(enforced: enforced, cgroup: group, runnerArguments: arguments,
                            fallbackReason: asked && group == nil ? fallback : nil)
    }
}
