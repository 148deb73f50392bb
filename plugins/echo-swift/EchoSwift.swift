// echo-swift — the echo plugin written with PeerhostSDK: the same behaviour and control methods as
// plugins/echo-c (zero-copy echo, EAGAIN queue retried on onWritable, greeting, counters), to prove
// the SDK covers what a C plugin does. Exported with @_cdecl; nothing Swift crosses the boundary.
import PeerhostSDK
#if canImport(Glibc)
import Glibc
#endif

/// Counters and settings, global because control methods are plain C functions without a user
/// pointer. One thread (ABI contract), hence nonisolated(unsafe).
struct EchoStats {
    var connections: UInt64 = 0
    var open: UInt64 = 0
    var bytes: UInt64 = 0
    var greeting: String = ""
}
nonisolated(unsafe) var echoStats = EchoStats()

public final class EchoSwift: Plugin {
    public static let defaultListen = "tcp:127.0.0.1:7002"
    public let host: Host
    var listenRequest: Request = 0
    var listenAddress = ""
    /// Sends that met PH_EAGAIN, oldest first; per-connection order is kept.
    var queue: [(conn: Connection, buffer: Buffer)] = []

    public init(host: Host) { self.host = host }

    public func start(config: [UInt8]) throws(PluginError) {
        echoStats.connections = 0
        echoStats.open = 0
        echoStats.bytes = 0
        let address = EchoSwift.listenAddress(inConfig: config) ?? EchoSwift.defaultListen
        listenRequest = try host.listen(address)
        listenAddress = address   // logged once the core answers
    }

    public func stop() {
        for q in queue { host.free(q.buffer) }
        queue.removeAll()
    }

    public func onAccept(listener: Connection, conn: Connection, peer: String) {
        echoStats.connections += 1
        echoStats.open += 1
        guard !echoStats.greeting.isEmpty else { return }
        guard let b = try? host.allocBuffer(with: Array(echoStats.greeting.utf8).prefix(4096)) else { return }
        sendOrQueue(conn, b)
    }

    public func onData(conn: Connection, buffer: Buffer) {
        echoStats.bytes += UInt64(buffer.count)
        sendOrQueue(conn, buffer)   // zero-copy: the received slot goes straight back out
    }

    public func onWritable(conn: Connection) { retryQueue() }

    public func onClosed(conn: Connection, reason: PluginError?) {
        if echoStats.open > 0 { echoStats.open -= 1 }
        queue.removeAll { q in
            if q.conn == conn { host.free(q.buffer); return true }
            return false
        }
    }

    public func onComplete(request: Request, result: Result<Int64, PluginError>, buffer: Buffer?) {
        if request == listenRequest {
            switch result {
            case .success: host.log(.info, "echo-swift: listening on \(listenAddress)")
            case .failure(let e): host.log(.error, "echo-swift: listen on \(listenAddress) failed: \(e)")
            }
        }
        if let buffer { host.free(buffer) }
    }

    func sendOrQueue(_ conn: Connection, _ buffer: Buffer) {
        if !queue.contains(where: { $0.conn == conn }) {
            do {
                try host.send(conn, buffer)
                return
            } catch .again {
                // fall through: keep the buffer, retry on onWritable
            } catch {
                host.free(buffer)   // the connection is gone or the buffer was refused
                return
            }
        }
        queue.append((conn, buffer))
    }

    func retryQueue() {
        var keep: [(conn: Connection, buffer: Buffer)] = []
        for q in queue {
            if !keep.contains(where: { $0.conn == q.conn }) {
                do {
                    try host.send(q.conn, q.buffer)
                    continue
                } catch .again {
                } catch {
                    host.free(q.buffer)
                    continue
                }
            }
            keep.append(q)
        }
        queue = keep
    }

    /// The "listen" string of a flat JSON object, or the first string of a "listen" array (the host
    /// passes the effective listen grants as an array); a full JSON parser is not needed for one key.
    static func listenAddress(inConfig config: [UInt8]) -> String? {
        let key = Array("\"listen\"".utf8)
        func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x0a || c == 0x09 || c == 0x0d }
        guard config.count >= key.count else { return nil }
        for i in 0...(config.count - key.count) where config[i..<(i + key.count)].elementsEqual(key) {
            var j = i + key.count
            while j < config.count, isSpace(config[j]) { j += 1 }
            guard j < config.count, config[j] == UInt8(ascii: ":") else { continue }
            j += 1
            while j < config.count, isSpace(config[j]) { j += 1 }
            if j < config.count, config[j] == UInt8(ascii: "[") {
                j += 1
                while j < config.count, isSpace(config[j]) { j += 1 }
            }
            guard j < config.count, config[j] == UInt8(ascii: "\"") else { return nil }
            let start = j + 1
            guard let end = config[start...].firstIndex(of: UInt8(ascii: "\"")) else { return nil }
            return String(decoding: config[start..<end], as: UTF8.self)
        }
        return nil
    }
}

@_cdecl("peerhost_plugin_v1")
public func peerhostPluginV1() -> UnsafeRawPointer {
    PluginExport.entry(for: EchoSwift.self, name: "echo-swift", version: "1.0.0", features: [.streams, .control])
}

// ---- control methods (manifest.toml) ----------------------------------------------------------

@_cdecl("echo_swift_stats")
public func echoSwiftStats() -> ph_bytes {
    let s = echoStats
    return PluginExport.bytes(#"{"connections":\#(s.connections),"open":\#(s.open),"bytes":\#(s.bytes),"greeting":"\#(jsonEscape(s.greeting))"}"#)
}

@_cdecl("echo_swift_set_greeting")
public func echoSwiftSetGreeting(_ greeting: UnsafePointer<CChar>?) -> Int64 {
    echoStats.greeting = PluginExport.string(greeting)
    return Int64(echoStats.greeting.utf8.count)
}

@_cdecl("echo_swift_add")
public func echoSwiftAdd(_ a: Int64, _ b: Int64) -> Int64 { a &+ b }

@_cdecl("echo_swift_scale")
public func echoSwiftScale(_ x: Double, _ factor: Double) -> Double { x * factor }

@_cdecl("echo_swift_toggle")
public func echoSwiftToggle(_ on: Bool) -> Int64 { on ? 1 : 0 }

@_cdecl("echo_swift_checksum")
public func echoSwiftChecksum(_ data: UnsafePointer<UInt8>?, _ count: Int) -> Int64 {
    PluginExport.array(data, count).reduce(0) { $0 &+ Int64($1) }
}

@_cdecl("echo_swift_echo_bytes")
public func echoSwiftEchoBytes(_ data: UnsafePointer<UInt8>?, _ count: Int, _ suffix: UnsafePointer<CChar>?) -> ph_bytes {
    PluginExport.bytes(PluginExport.array(data, count) + Array(PluginExport.string(suffix).utf8))
}
