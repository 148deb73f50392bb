#if canImport(Glibc)
import Glibc
#endif

/// What a Swift plugin implements. Callbacks run on one thread, never concurrently, and must not
/// block. Every callback has a default: buffers a plugin does not handle are freed (so an unhandled
/// event never leaks a pool slot), everything else is ignored.
public protocol Plugin: AnyObject {
    /// Called once by `start`; keep `host` for later calls (the default callbacks use it too).
    init(host: Host)
    var host: Host { get }
    /// config: the plugin's table from the operator's config as JSON bytes (may be empty).
    /// Throwing stops the plugin with that status.
    func start(config: [UInt8]) throws(PluginError)
    func stop()
    func onAccept(listener: Connection, conn: Connection, peer: String)
    /// The buffer is the plugin's now: send it, keep it, or free it.
    func onData(conn: Connection, buffer: Buffer)
    func onWritable(conn: Connection)
    func onClosed(conn: Connection, reason: PluginError?)
    func onDatagram(socket: Connection, from: String, buffer: Buffer)
    func onTimer(id: TimerID, tag: UInt64)
    /// result: the value (connection, listener, socket or file id; bytes) or the error.
    func onComplete(request: Request, result: Result<Int64, PluginError>, buffer: Buffer?)
}

public extension Plugin {
    func start(config: [UInt8]) throws(PluginError) {}
    func stop() {}
    func onAccept(listener: Connection, conn: Connection, peer: String) {}
    func onData(conn: Connection, buffer: Buffer) { host.free(buffer) }
    func onWritable(conn: Connection) {}
    func onClosed(conn: Connection, reason: PluginError?) {}
    func onDatagram(socket: Connection, from: String, buffer: Buffer) { host.free(buffer) }
    func onTimer(id: TimerID, tag: UInt64) {}
    func onComplete(request: Request, result: Result<Int64, PluginError>, buffer: Buffer?) {
        if let buffer { host.free(buffer) }
    }
}

/// Builds the C ph_plugin for a Swift Plugin type and trampolines its callbacks into the instance.
///
///     @_cdecl("peerhost_plugin_v1")
///     public func peerhostPluginV1() -> UnsafeRawPointer {
///         PluginExport.entry(for: EchoSwift.self, name: "echo-swift", version: "1.0.0",
///                            features: [.streams, .control])
///     }
///
/// C function pointers cannot capture a generic type, so each exported type gets one of a fixed
/// set of `start` trampolines bound to a table index (the runner loads one plugin per process; tests
/// may export a few types side by side).
public enum PluginExport {
    final class Instance {
        let plugin: any Plugin
        let host: Host
        init(plugin: any Plugin, host: Host) { self.plugin = plugin; self.host = host }
    }
    struct Registration {
        let make: (Host) -> any Plugin
        let descriptor: UnsafeMutablePointer<ph_plugin>
    }

    // One thread by ABI contract (callbacks never run concurrently), hence nonisolated(unsafe).
    nonisolated(unsafe) static var registrations: [ObjectIdentifier: Int] = [:]
    nonisolated(unsafe) static var table: [Registration] = []
    /// The host of the most recently started instance: lets control methods (plain C functions
    /// without a user pointer) reach it.
    nonisolated(unsafe) public private(set) static var currentHost: Host?
    /// The most recently started instance (control methods use it to find their state).
    nonisolated(unsafe) public private(set) static var current: (any Plugin)?

    /// Registration may happen from several threads at once in tests (the runner calls the entry
    /// once, on one thread); the table only grows, under this lock.
    nonisolated(unsafe) static let registrationLock: UnsafeMutablePointer<pthread_mutex_t> = {
        let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(m, nil)
        return m
    }()

    public static func entry<P: Plugin>(for type: P.Type, name: String, version: String,
                                        features: Features) -> UnsafeRawPointer {
        pthread_mutex_lock(registrationLock)
        defer { pthread_mutex_unlock(registrationLock) }
        if let i = registrations[ObjectIdentifier(type)] { return UnsafeRawPointer(table[i].descriptor) }
        let index = table.count
        precondition(index < starts.count, "PeerhostSDK: at most \(starts.count) plugin types per process")
        let p = makeDescriptor(index: index, name: name, version: version, features: features)
        table.append(Registration(make: { P(host: $0) }, descriptor: p))
        registrations[ObjectIdentifier(type)] = index
        return UnsafeRawPointer(p)
    }

    /// Not generic on purpose: closures in a generic function may not become C function pointers.
    static func makeDescriptor(index: Int, name: String, version: String, features: Features) -> UnsafeMutablePointer<ph_plugin> {
        var d = ph_plugin()
        d.size = UInt32(MemoryLayout<ph_plugin>.size)
        d.abi_version = ABIVersion.current
        d.name = UnsafePointer(strdup(name))      // kept for the life of the process
        d.version = UnsafePointer(strdup(version))
        d.features = features.rawValue
        d.start = starts[index]
        d.stop = { user in
            guard let user else { return }
            let inst = Unmanaged<Instance>.fromOpaque(user)
            inst.takeUnretainedValue().plugin.stop()
            inst.release()
        }
        d.on_accept = { user, listener, conn, peer, len in
            let peerText = peer.map { p in
                String(decoding: UnsafeRawBufferPointer(start: p, count: len), as: UTF8.self)
            } ?? ""
            PluginExport.instance(user)?.plugin.onAccept(listener: listener, conn: conn, peer: peerText)
        }
        d.on_data = { user, conn, buf in
            guard let buf else { return }
            PluginExport.instance(user)?.plugin.onData(conn: conn, buffer: Buffer(raw: buf.pointee))
        }
        d.on_writable = { user, conn in PluginExport.instance(user)?.plugin.onWritable(conn: conn) }
        d.on_closed = { user, conn, reason in
            PluginExport.instance(user)?.plugin.onClosed(conn: conn, reason: PluginError(checking: reason))
        }
        d.on_datagram = { user, sock, from, len, buf in
            guard let buf else { return }
            let fromText = from.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: len), as: UTF8.self) } ?? ""
            PluginExport.instance(user)?.plugin.onDatagram(socket: sock, from: fromText, buffer: Buffer(raw: buf.pointee))
        }
        d.on_timer = { user, id, tag in PluginExport.instance(user)?.plugin.onTimer(id: id, tag: tag) }
        d.on_complete = { user, req, status, value, buf in
            let result: Result<Int64, PluginError> = PluginError(checking: status).map { .failure($0) } ?? .success(value)
            PluginExport.instance(user)?.plugin.onComplete(request: req, result: result, buffer: buf.map { Buffer(raw: $0.pointee) })
        }
        d.free_result = { p in free(p) }
        let p = UnsafeMutablePointer<ph_plugin>.allocate(capacity: 1)
        p.initialize(to: d)
        return p
    }

    /// ABI 1.2: the plugin instance behind the `user` pointer an async control method received,
    /// so the method reaches its plugin's state without globals (nil for another type).
    public static func plugin<P: Plugin>(_ type: P.Type, from user: UnsafeMutableRawPointer?) -> P? {
        instance(user)?.plugin as? P
    }

    static func instance(_ user: UnsafeMutableRawPointer?) -> Instance? {
        user.map { Unmanaged<Instance>.fromOpaque($0).takeUnretainedValue() }
    }

    static func start(_ index: Int, _ host: UnsafePointer<ph_host>?, _ config: UnsafePointer<CChar>?, _ len: Int,
                      _ user: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> ph_status {
        guard let host, let user, index < table.count else { return PH_EINVAL }
        let h = Host(host)
        let plugin = table[index].make(h)
        let cfg = config.map { Array(UnsafeRawBufferPointer(start: $0, count: len)) } ?? []
        currentHost = h
        current = plugin
        do {
            try plugin.start(config: cfg)
        } catch {
            current = nil
            return error.status
        }
        user.pointee = Unmanaged.passRetained(Instance(plugin: plugin, host: h)).toOpaque()
        return PH_OK
    }

    typealias StartFn = @convention(c) (UnsafePointer<ph_host>?, UnsafePointer<CChar>?, Int,
                                        UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> ph_status
    static let starts: [StartFn] = [
        { PluginExport.start(0, $0, $1, $2, $3) }, { PluginExport.start(1, $0, $1, $2, $3) }, { PluginExport.start(2, $0, $1, $2, $3) },
        { PluginExport.start(3, $0, $1, $2, $3) }, { PluginExport.start(4, $0, $1, $2, $3) }, { PluginExport.start(5, $0, $1, $2, $3) },
        { PluginExport.start(6, $0, $1, $2, $3) }, { PluginExport.start(7, $0, $1, $2, $3) },
    ]

    // MARK: control method helpers

    /// A `bytes` control result: the bytes copied into malloc'd memory (freed by the runner through
    /// ph_plugin.free_result = free).
    public static func bytes<C: Collection>(_ value: C) -> ph_bytes where C.Element == UInt8 {
        let n = value.count
        guard let p = malloc(max(n, 1))?.assumingMemoryBound(to: UInt8.self) else { return ph_bytes(data: nil, len: 0) }
        _ = UnsafeMutableBufferPointer(start: p, count: n).initialize(from: value)
        return ph_bytes(data: p, len: n)
    }

    public static func bytes(_ text: String) -> ph_bytes { bytes(Array(text.utf8)) }

    /// A `bytes` argument (pointer + length) as an array.
    public static func array(_ data: UnsafePointer<UInt8>?, _ count: Int) -> [UInt8] {
        guard let data, count > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: count))
    }

    /// A `string` argument.
    public static func string(_ cString: UnsafePointer<CChar>?) -> String {
        cString.map { String(cString: $0) } ?? ""
    }
}

/// Minimal JSON string escaping for the JSON that control methods return by convention.
public func jsonEscape(_ s: String) -> String {
    var out = ""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 { out += String(format: u.value) } else { out.unicodeScalars.append(u) }
        }
    }
    return out
}

private extension String {
    init(format v: UInt32) {
        let hex = String(v, radix: 16)
        self = "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
    }
}
