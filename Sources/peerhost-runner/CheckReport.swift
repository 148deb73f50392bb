import CPeerhostABI
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `peerhost check`: what the runner found in a loaded plugin, as one `check` frame on fd 4. The
/// runner only reads the descriptor and looks symbols up; the core compares them with the manifest.
enum CheckReport {
    static func frame(_ plugin: LoadedPlugin, symbols: [String]) -> [String: Any] {
        let d = plugin.descriptor
        var callbacks: [String] = []
        if d.stop != nil { callbacks.append("stop") }
        if d.on_accept != nil { callbacks.append("on_accept") }
        if d.on_data != nil { callbacks.append("on_data") }
        if d.on_writable != nil { callbacks.append("on_writable") }
        if d.on_closed != nil { callbacks.append("on_closed") }
        if d.on_datagram != nil { callbacks.append("on_datagram") }
        if d.on_timer != nil { callbacks.append("on_timer") }
        if d.on_complete != nil { callbacks.append("on_complete") }
        if d.free_result != nil { callbacks.append("free_result") }
        let missing = symbols.filter { dlsym(plugin.handle, $0) == nil }
        return ["type": "check", "name": plugin.name, "version": plugin.version, "abi": plugin.abiString,
                "features": NSNumber(value: d.features), "callbacks": callbacks, "missing": missing]
    }
}
