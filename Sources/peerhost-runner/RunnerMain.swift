import CPeerhostABI
import CPeerhostShim
import Foundation
import PeerhostSandbox
#if canImport(Glibc)
import Glibc
#endif

/// Fixed fds (Contract 1).
enum RunnerFD {
    static let region: Int32 = 3
    static let control: Int32 = 4
    static let rxEvent: Int32 = 5   // core → runner wake-ups
    static let txEvent: Int32 = 6   // runner → core wake-ups
}

/// A start-up failure: becomes {"type":"fail","step":…,"message":…} on fd 4 and exit status 1.
/// Steps: args, region, rlimits, capabilities, no_new_privs, seccomp, dlopen, entry, abi, features,
/// seccomp_after_load, hello, start (Contract 3 plus the start-up sequence of RunnerMain.startUp).
struct StartupError: Error, CustomStringConvertible {
    let step: String
    let message: String
    var description: String { "\(step): \(message)" }
}

enum RunnerMain {
    static func run(_ argv: [String]) -> Never {
        let control = ControlChannel(fd: RunnerFD.control)
        do {
            let (region, plugin) = try startUp(argv, control: control)
            let runner = Runner(region: region, plugin: plugin, control: control)
            runner.loop()
        } catch {
            fail(control, error)
        }
    }

    /// The runner's half of DESIGN.md "The runner's start-up sequence", in order. The clone helper
    /// (ph_spawn.c) already did: namespaces, uid/gid maps, setgroups/setresgid/setresuid, setsid,
    /// fds 3–6, close_range, no_new_privs, and the private read-only root (tmpfs, read-only binds
    /// of the runner's files, pivot_root, old root detached; no /proc, /dev, /etc), where
    /// `--library` names the copy of the verified bytes, /plugin/lib<name>.so. Each step below that fails throws a
    /// StartupError naming it: a `fail` frame on fd 4 with that step, exit status 1.
    /// No plugin code runs before step 8 (dlopen), and from step 7 on every system call is filtered.
    static func startUp(_ argv: [String], control: ControlChannel) throws(StartupError) -> (Region, LoadedPlugin) {
        // 1. args: --plugin NAME --library PATH --syscalls POLICY [--rlimit-nofile N] [--rlimit-nproc N]
        //    [--rlimit-as BYTES] [--seccomp on|off|learn] ("off" is for debugging only; the core never
        //    passes it; "learn" is `peerhost learn`). POLICY is the plugin's profile as the core parsed
        //    and linted it (PeerhostSandbox SyscallPolicy); a malformed one fails step "seccomp".
        let opts = try Options.parse(argv)

        // 2. signals: SIGPIPE ignored (writes use MSG_NOSIGNAL, but a plugin's own write to a closed
        //    fd must not kill pid 1 of the namespace silently). rt_sigaction is not on the allowlist,
        //    so every disposition is set here, before the filter.
        signal(SIGPIPE, SIG_IGN)

        // 3. region: map fd 3 and check its header (mmap stays allowed; failing early is clearer).
        let region = try Region.map(fd: RunnerFD.region)

        // 4. rlimits: core size 0, open files, processes, address space if the core gives one.
        try Confinement.setResourceLimits(opts.limits)

        // 5. capabilities: bounding set, ambient set, then effective/permitted/inheritable → empty.
        try Confinement.dropCapabilities()

        // 6. no_new_privs: set by the clone helper already; set again so this function alone holds
        //    the whole guarantee (seccomp without CAP_SYS_ADMIN requires it anyway).
        try Confinement.setNoNewPrivs()

        // 7. seccomp allowlist (the plugin's profile), default kill-process, x86_64 only. Before
        //    dlopen: dlopen runs the library's constructors, and plugin code never runs unfiltered.
        if opts.seccomp != .off {
            let rules = try opts.syscallRules()
            try Confinement.installAllowlist(rules, learn: opts.seccomp == .learn)
        }

        // 8. dlopen: the plugin library and its entry point, ABI and features checked.
        let plugin = try LoadedPlugin.load(name: opts.plugin, library: opts.library)

        // 9. seccomp after load: a stacked filter takes the profile's phase-"load" syscalls away
        //    (EACCES; openat, seccomp) — only the loader and step 9 itself needed them. In learn mode
        //    it takes nothing away (what the plugin calls after loading is what it is learning) but is
        //    still stacked, so the draft contains the seccomp call this step makes.
        switch opts.seccomp {
        case .on: try Confinement.installAfterLoadFilter(try opts.syscallRules())
        case .learn: try Confinement.installAfterLoadFilter([], always: true)
        case .off: break
        }

        // `peerhost check`: report what was loaded, resolve the manifest's control symbols (dlsym
        // only, nothing is called) and exit; start() never runs.
        if let symbols = opts.checkSymbols {
            do {
                try control.writeFrame(CheckReport.frame(plugin, symbols: symbols))
            } catch {
                throw StartupError(step: "check", message: "\(error)")
            }
            exit(0)
        }

        // 10. hello: the core may now send START (the plugin's start runs in the ring loop).
        do {
            try control.writeFrame([
                "type": "hello", "name": plugin.name, "version": plugin.version,
                "abi": plugin.abiString, "features": NSNumber(value: plugin.descriptor.features),
            ])
        } catch {
            throw StartupError(step: "hello", message: "\(error)")
        }
        return (region, plugin)
    }

    static func fail(_ control: ControlChannel, _ error: Error) -> Never {
        let e = error as? StartupError ?? StartupError(step: "args", message: "\(error)")
        let line = "peerhost-runner: \(e.step): \(e.message)\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
        try? control.writeFrame(["type": "fail", "step": e.step, "message": e.message])
        exit(1)
    }
}

struct Options {
    var plugin = ""
    var library = ""
    var limits = ResourceLimits()
    enum SeccompMode { case on, off, learn }
    /// off only with `--seccomp off`: for debugging a plugin under strace; never used by the core.
    var seccomp = SeccompMode.on
    /// `--syscalls`: the compact policy text; nil when not given (then seccomp on refuses to start).
    var syscalls: String?
    /// `--check SYMBOLS` (comma-separated, "-" for none): `peerhost check`, load and report only.
    var checkSymbols: [String]?

    func syscallRules() throws(StartupError) -> [SyscallRule] {
        guard let syscalls else {
            throw StartupError(step: "seccomp", message: "no --syscalls policy given (the core passes the plugin's profile)")
        }
        do {
            return try SyscallPolicy.decode(syscalls)
        } catch {
            throw StartupError(step: "seccomp", message: "--syscalls: \(error)")
        }
    }

    static func parse(_ argv: [String]) throws(StartupError) -> Options {
        var o = Options()
        var i = 1
        while i < argv.count {
            let a = argv[i]
            guard i + 1 < argv.count else { throw StartupError(step: "args", message: "\(a) needs a value") }
            switch a {
            case "--plugin": o.plugin = argv[i + 1]
            case "--library": o.library = argv[i + 1]
            case "--rlimit-nofile": o.limits.nofile = try number(a, argv[i + 1])
            case "--rlimit-nproc": o.limits.nproc = try number(a, argv[i + 1])
            case "--rlimit-as": o.limits.addressSpace = try number(a, argv[i + 1])
            case "--seccomp":
                switch argv[i + 1] {
                case "on": o.seccomp = .on
                case "off": o.seccomp = .off
                case "learn": o.seccomp = .learn
                default: throw StartupError(step: "args", message: "--seccomp takes on, off or learn, not \(argv[i + 1])")
                }
            case "--syscalls": o.syscalls = argv[i + 1]
            case "--check": o.checkSymbols = argv[i + 1] == "-" ? [] : argv[i + 1].split(separator: ",").map(String.init)
            default: throw StartupError(step: "args", message: "unknown argument \(a)")
            }
            i += 2
        }
        if o.plugin.isEmpty || o.library.isEmpty {
            throw StartupError(step: "args", message: "usage: peerhost-runner --plugin NAME --library PATH")
        }
        return o
    }

    private static func number(_ flag: String, _ text: String) throws(StartupError) -> UInt64 {
        guard let v = UInt64(text), v > 0 else { throw StartupError(step: "args", message: "\(flag) needs a positive number, not \(text)") }
        return v
    }
}

/// Header macros built from expressions do not import into Swift; these mirror them.
enum ABI {
    static let version = UInt32(PH_ABI_MAJOR) << 16 | UInt32(PH_ABI_MINOR) << 8 | UInt32(PH_ABI_PATCH)
    /// PH_FEAT_ALL_V1_1: what this runner serves and accepts from a plugin (1.1 adds PEER_TAGS).
    static let allFeatures: UInt64 = (1 << 9) - 1
    static let ringCtlSize: UInt64 = 4 * UInt64(PH_CACHELINE) // sizeof(ph_ring_ctl): 4 cache lines (_Atomic does not import)
    /// Plugins built against this version or later get PH_ENOTSUP for calls of undeclared features.
    static let callGatesFrom: UInt32 = 1 << 16 | 2 << 8

    static func featureName(_ bit: UInt64) -> String {
        switch bit {
        case PH_FEAT_STREAMS: return "PH_FEAT_STREAMS"
        case PH_FEAT_DATAGRAMS: return "PH_FEAT_DATAGRAMS"
        case PH_FEAT_TIMERS: return "PH_FEAT_TIMERS"
        case PH_FEAT_FILES: return "PH_FEAT_FILES"
        case PH_FEAT_KV: return "PH_FEAT_KV"
        case PH_FEAT_RESOLVE: return "PH_FEAT_RESOLVE"
        case PH_FEAT_CONTROL: return "PH_FEAT_CONTROL"
        case PH_FEAT_SHAPING: return "PH_FEAT_SHAPING"
        case PH_FEAT_PEER_TAGS: return "PH_FEAT_PEER_TAGS"
        default: return "feature 0x\(String(bit, radix: 16))"
        }
    }
}
