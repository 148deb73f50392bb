import CPeerhostABI
import CPeerhostShim
import Foundation
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
/// Steps: args, region, dlopen, entry, abi, features, start (Contract 3 plus args/region).
struct StartupError: Error, CustomStringConvertible {
    let step: String
    let message: String
    var description: String { "\(step): \(message)" }
}

enum RunnerMain {
    static func run(_ argv: [String]) -> Never {
        // The core may have left SIGPIPE ignored or not; we never want it (writes use MSG_NOSIGNAL,
        // but a plugin's own write to a closed fd must not kill pid 1 of the namespace silently).
        signal(SIGPIPE, SIG_IGN)
        let control = ControlChannel(fd: RunnerFD.control)
        do {
            let opts = try Options.parse(argv)
            let region = try Region.map(fd: RunnerFD.region)
            let plugin = try LoadedPlugin.load(name: opts.plugin, library: opts.library)
            try control.writeFrame([
                "type": "hello", "name": plugin.name, "version": plugin.version,
                "abi": plugin.abiString, "features": NSNumber(value: plugin.descriptor.features),
            ])
            let runner = Runner(region: region, plugin: plugin, control: control)
            runner.loop()
        } catch let e as StartupError {
            fail(control, e)
        } catch {
            fail(control, StartupError(step: "args", message: "\(error)"))
        }
    }

    static func fail(_ control: ControlChannel, _ e: StartupError) -> Never {
        let line = "peerhost-runner: \(e.step): \(e.message)\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
        try? control.writeFrame(["type": "fail", "step": e.step, "message": e.message])
        exit(1)
    }
}

struct Options {
    var plugin = ""
    var library = ""

    static func parse(_ argv: [String]) throws(StartupError) -> Options {
        var o = Options()
        var i = 1
        while i < argv.count {
            let a = argv[i]
            guard i + 1 < argv.count else { throw StartupError(step: "args", message: "\(a) needs a value") }
            switch a {
            case "--plugin": o.plugin = argv[i + 1]
            case "--library": o.library = argv[i + 1]
            default: throw StartupError(step: "args", message: "unknown argument \(a)")
            }
            i += 2
        }
        if o.plugin.isEmpty || o.library.isEmpty {
            throw StartupError(step: "args", message: "usage: peerhost-runner --plugin NAME --library PATH")
        }
        return o
    }
}

/// Header macros built from expressions do not import into Swift; these mirror them.
enum ABI {
    static let version = UInt32(PH_ABI_MAJOR) << 16 | UInt32(PH_ABI_MINOR) << 8 | UInt32(PH_ABI_PATCH)
    static let allFeaturesV1: UInt64 = (1 << 8) - 1          // PH_FEAT_ALL_V1
    static let ringCtlSize: UInt64 = 4 * UInt64(PH_CACHELINE) // sizeof(ph_ring_ctl): 4 cache lines (_Atomic does not import)
}
