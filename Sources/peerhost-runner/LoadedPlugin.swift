import CPeerhostABI
#if canImport(Glibc)
import Glibc
#endif

/// The dlopened plugin and a private copy of its descriptor. The copy is zero-filled beyond the
/// plugin's own `size`, so an older plugin's missing callbacks read as NULL (ABI struct-size rule).
struct LoadedPlugin {
    let handle: UnsafeMutableRawPointer
    let descriptor: ph_plugin
    let name: String
    let version: String
    let libraryPath: String

    var abiString: String {
        let v = descriptor.abi_version
        return "\(v >> 16).\((v >> 8) & 0xff).\(v & 0xff)"
    }

    static func load(name expected: String, library: String) throws(StartupError) -> LoadedPlugin {
        // RTLD_LOCAL: the plugin's symbols never satisfy another library's lookups; RTLD_NOW: an
        // unresolved symbol is a start-up error, not a crash in the middle of a callback.
        guard let handle = dlopen(library, RTLD_NOW | RTLD_LOCAL) else {
            throw StartupError(step: "dlopen", message: String(cString: dlerror()))
        }
        guard let sym = dlsym(handle, PH_PLUGIN_ENTRY) else {
            throw StartupError(step: "entry", message: "\(library) does not export \(PH_PLUGIN_ENTRY)")
        }
        let entry = unsafeBitCast(sym, to: ph_plugin_entry_fn.self)
        guard let p = entry() else {
            throw StartupError(step: "entry", message: "\(PH_PLUGIN_ENTRY) in \(library) returned NULL")
        }
        // size must cover at least the fixed head (through `stop`) and be plausible.
        let declared = Int(UnsafeRawPointer(p).load(as: UInt32.self))
        let minimum = MemoryLayout<ph_plugin>.offset(of: \ph_plugin.on_accept)!
        guard declared >= minimum, declared <= 4096 else {
            throw StartupError(step: "entry", message: "plugin \(expected) declares ph_plugin.size \(declared); expected \(minimum)...\(MemoryLayout<ph_plugin>.size) or a newer minor")
        }
        var d = ph_plugin()
        withUnsafeMutableBytes(of: &d) { dst in
            dst.copyMemory(from: UnsafeRawBufferPointer(start: UnsafeRawPointer(p), count: min(declared, dst.count)))
        }
        d.size = UInt32(min(declared, MemoryLayout<ph_plugin>.size))
        let major = d.abi_version >> 16, minor = (d.abi_version >> 8) & 0xff
        guard major == UInt32(PH_ABI_MAJOR) else {
            throw StartupError(step: "abi", message: "plugin \(expected) was built against ABI \(major).\(minor); this host serves ABI \(PH_ABI_MAJOR).x")
        }
        let name = d.name.map { String(cString: $0) } ?? ""
        guard name == expected else {
            throw StartupError(step: "entry", message: "\(library) declares plugin name \"\(name)\", expected \"\(expected)\"")
        }
        let all = ABI.allFeatures
        guard d.features & ~all == 0 else {
            throw StartupError(step: "features", message: "plugin \(expected) declares unknown feature bits 0x\(String(d.features & ~all, radix: 16)) (ABI 1.x knows 0x\(String(all, radix: 16)))")
        }
        guard d.start != nil else {
            throw StartupError(step: "entry", message: "plugin \(expected) has no start callback")
        }
        return LoadedPlugin(handle: handle, descriptor: d, name: name,
                            version: d.version.map { String(cString: $0) } ?? "", libraryPath: library)
    }
}
