/// The host table as Swift methods. Every call is non-blocking; results of operations arrive in
/// Plugin.onComplete with the Request the call returned. Errors are typed (PluginError).
public struct Host {
    public let raw: UnsafePointer<ph_host>

    public init(_ raw: UnsafePointer<ph_host>) { self.raw = raw }

    var ctx: UnsafeMutableRawPointer? { raw.pointee.ctx }
    /// What the host serves.
    public var features: Features { Features(rawValue: raw.pointee.features) }
    public var abiVersion: UInt32 { raw.pointee.abi_version }

    @inline(__always) static func check(_ s: ph_status) throws(PluginError) {
        if let e = PluginError(checking: s) { throw e }
    }
    @inline(__always) static func id(_ v: Int64) throws(PluginError) -> UInt64 {
        if v < 0 { throw PluginError(code: Int32(truncatingIfNeeded: v)) }
        return UInt64(v)
    }
    static func withText<R>(_ s: String, _ body: (UnsafePointer<CChar>, Int) -> R) -> R {
        var s = s
        return s.withUTF8 { u in
            guard let base = u.baseAddress else { return "".withCString { body($0, 0) } }
            return base.withMemoryRebound(to: CChar.self, capacity: u.count) { body($0, u.count) }
        }
    }
    static func withBytes<R>(_ b: [UInt8], _ body: (UnsafePointer<UInt8>?, Int) -> R) -> R {
        b.withUnsafeBufferPointer { body($0.baseAddress, $0.count) }
    }

    // MARK: diagnostics

    public func log(_ level: LogLevel, _ message: String) {
        guard let f = raw.pointee.log else { return }
        Host.withText(message) { f(ctx, ph_log_level(rawValue: UInt32(level.rawValue)), $0, $1) }
    }

    public func metricAdd(_ name: String, _ value: Double) throws(PluginError) {
        guard let f = raw.pointee.metric_add else { throw .notSupported }
        try Host.check(Host.withText(name) { f(ctx, $0, $1, value) })
    }

    // MARK: buffers

    public func allocBuffer() throws(PluginError) -> Buffer {
        guard let f = raw.pointee.buffer_alloc else { throw .notSupported }
        var b = ph_buffer()
        try Host.check(f(ctx, &b))
        return Buffer(raw: b)
    }

    /// An allocated buffer holding `bytes` (at most one slot).
    public func allocBuffer<C: Collection>(with bytes: C) throws(PluginError) -> Buffer where C.Element == UInt8 {
        var b = try allocBuffer()
        do { try b.set(bytes) } catch { free(b); throw error }
        return b
    }

    public func free(_ buffer: Buffer) {
        var b = buffer.raw
        raw.pointee.buffer_free?(ctx, &b)
    }

    // MARK: streams

    public func listen(_ address: String) throws(PluginError) -> Request {
        guard let f = raw.pointee.listen else { throw .notSupported }
        return try Host.id(Host.withText(address) { f(ctx, $0, $1) })
    }

    public func connect(_ address: String) throws(PluginError) -> Request {
        guard let f = raw.pointee.connect else { throw .notSupported }
        return try Host.id(Host.withText(address) { f(ctx, $0, $1) })
    }

    /// Hands `buffer` to the host. On .again the buffer is still the plugin's: keep it and retry
    /// from onWritable.
    public func send(_ conn: Connection, _ buffer: Buffer) throws(PluginError) {
        guard let f = raw.pointee.send else { throw .notSupported }
        var b = buffer.raw
        try Host.check(f(ctx, conn, &b))
    }

    /// Graceful: what was sent before still goes out, then FIN.
    public func close(_ conn: Connection) throws(PluginError) {
        guard let f = raw.pointee.close else { throw .notSupported }
        try Host.check(f(ctx, conn))
    }

    /// ABI 1.2: abortive close (RST); what is still queued for the connection is dropped. Throws
    /// `.notSupported` on an older host (its table ends before this field).
    public func reset(_ conn: Connection) throws(PluginError) {
        let base = UnsafeRawPointer(raw)
        let offset = MemoryLayout<ph_host>.offset(of: \ph_host.conn_reset)!
        typealias Reset = @convention(c) (UnsafeMutableRawPointer?, ph_conn) -> ph_status
        guard Int(base.load(as: UInt32.self)) >= offset + MemoryLayout<Reset?>.size,
              let f = base.load(fromByteOffset: offset, as: Reset?.self) else { throw .notSupported }
        try Host.check(f(ctx, conn))
    }

    // MARK: datagrams

    public func udpBind(_ address: String) throws(PluginError) -> Request {
        guard let f = raw.pointee.udp_bind else { throw .notSupported }
        return try Host.id(Host.withText(address) { f(ctx, $0, $1) })
    }

    public func udpSend(_ socket: Connection, to address: String, _ buffer: Buffer) throws(PluginError) {
        guard let f = raw.pointee.udp_send else { throw .notSupported }
        var b = buffer.raw
        try Host.check(Host.withText(address) { f(ctx, socket, $0, $1, &b) })
    }

    public func resolve(_ name: String) throws(PluginError) -> Request {
        guard let f = raw.pointee.resolve else { throw .notSupported }
        return try Host.id(Host.withText(name) { f(ctx, $0, $1) })
    }

    // MARK: timers

    /// onTimer(id, tag) fires once after `nanoseconds` on the host's monotonic clock.
    public func timer(after nanoseconds: UInt64, tag: UInt64 = 0) throws(PluginError) -> TimerID {
        guard let f = raw.pointee.timer else { throw .notSupported }
        return TimerID(try Host.id(f(ctx, nanoseconds, tag)))
    }

    public func cancelTimer(_ id: TimerID) throws(PluginError) {
        guard let f = raw.pointee.timer_cancel else { throw .notSupported }
        try Host.check(f(ctx, id))
    }

    // MARK: files

    public func fileOpen(_ path: String, flags: UInt32) throws(PluginError) -> Request {
        guard let f = raw.pointee.file_open else { throw .notSupported }
        return try Host.id(Host.withText(path) { f(ctx, $0, $1, flags) })
    }
    public func fileRead(_ file: FileID, at offset: UInt64, into buffer: Buffer) throws(PluginError) -> Request {
        guard let f = raw.pointee.file_read else { throw .notSupported }
        var b = buffer.raw
        return try Host.id(f(ctx, file, offset, &b))
    }
    public func fileWrite(_ file: FileID, at offset: UInt64, _ buffer: Buffer) throws(PluginError) -> Request {
        guard let f = raw.pointee.file_write else { throw .notSupported }
        var b = buffer.raw
        return try Host.id(f(ctx, file, offset, &b))
    }
    public func fileSync(_ file: FileID) throws(PluginError) -> Request {
        guard let f = raw.pointee.file_sync else { throw .notSupported }
        return try Host.id(f(ctx, file))
    }
    public func fileClose(_ file: FileID) throws(PluginError) {
        guard let f = raw.pointee.file_close else { throw .notSupported }
        try Host.check(f(ctx, file))
    }

    // MARK: key-value

    public func kvGet(_ key: [UInt8]) throws(PluginError) -> Request {
        guard let f = raw.pointee.kv_get else { throw .notSupported }
        return try Host.id(Host.withBytes(key) { f(ctx, $0, $1) })
    }
    public func kvPut(_ key: [UInt8], _ value: [UInt8]) throws(PluginError) -> Request {
        guard let f = raw.pointee.kv_put else { throw .notSupported }
        return try Host.id(Host.withBytes(key) { k, kl in Host.withBytes(value) { v, vl in f(ctx, k, kl, v, vl) } })
    }
    public func kvDelete(_ key: [UInt8]) throws(PluginError) -> Request {
        guard let f = raw.pointee.kv_delete else { throw .notSupported }
        return try Host.id(Host.withBytes(key) { f(ctx, $0, $1) })
    }
    public func kvScan(prefix: [UInt8], limit: UInt32) throws(PluginError) -> Request {
        guard let f = raw.pointee.kv_scan else { throw .notSupported }
        return try Host.id(Host.withBytes(prefix) { f(ctx, $0, $1, limit) })
    }

    /// ABI 1.2: the keys starting with `prefix` and not below `start`, at most `limit` (0: what
    /// fits one buffer). The completion's value decodes with `KVScanPage(value:)`: the record count
    /// and whether keys remain (the next page starts at `KVScanPage.start(after:)` of the last key).
    public func kvScan(prefix: [UInt8], from start: [UInt8], limit: UInt32) throws(PluginError) -> Request {
        guard let f = tail(\ph_host.kv_scan_from, as: KVScanFrom.self) else { throw .notSupported }
        return try Host.id(Host.withBytes(prefix) { p, pl in Host.withBytes(start) { s, sl in f(ctx, p, pl, s, sl, limit) } })
    }
    typealias KVScanFrom = @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<UInt8>?, Int, UnsafePointer<UInt8>?, Int, UInt32) -> Int64

    // MARK: control

    /// ABI 1.2: answers a call of an `async = true` control method: the last answer, or one of a
    /// stream with `more`. Throws `.notConnected` once the call is over (answered, timed out, or
    /// its caller left: stop streaming).
    public func reply(_ call: ControlCall, _ bytes: [UInt8], more: Bool = false) throws(PluginError) {
        guard let f = tail(\ph_host.control_reply, as: ControlReply.self) else { throw .notSupported }
        try Host.check(Host.withBytes(bytes) { f(ctx, call.raw, $0, $1, more ? PH_REPLY_MORE : 0) })
    }

    /// ABI 1.2: fails a call of an async control method with `message` (the caller reads it).
    public func fail(_ call: ControlCall, _ message: String) throws(PluginError) {
        guard let f = tail(\ph_host.control_reply, as: ControlReply.self) else { throw .notSupported }
        try Host.check(Host.withBytes(Array(message.utf8)) { f(ctx, call.raw, $0, $1, PH_REPLY_ERROR) })
    }
    typealias ControlReply = @convention(c) (UnsafeMutableRawPointer?, ph_call, UnsafePointer<UInt8>?, Int, UInt32) -> ph_status

    /// A host call added in a later minor: nil when this host's table ends before it (its `size`).
    func tail<F>(_ field: KeyPath<ph_host, F?>, as: F.Type) -> F? {
        let base = UnsafeRawPointer(raw)
        guard let offset = MemoryLayout<ph_host>.offset(of: field),
              Int(base.load(as: UInt32.self)) >= offset + MemoryLayout<F?>.size else { return nil }
        return base.load(fromByteOffset: offset, as: F?.self)
    }

    // MARK: shaping

    public func setRate(_ conn: Connection, up: UInt64, down: UInt64) throws(PluginError) {
        guard let f = raw.pointee.conn_set_rate else { throw .notSupported }
        try Host.check(f(ctx, conn, up, down))
    }
    public func setWeight(_ conn: Connection, _ weight: UInt32) throws(PluginError) {
        guard let f = raw.pointee.conn_set_weight else { throw .notSupported }
        try Host.check(f(ctx, conn, weight))
    }

    /// ABI 1.1: tags a connection with the remote peer's id (1...40 bytes) for per-peer accounting.
    /// Throws `.notSupported` on a 1.0 host (its table is too short or lacks PH_FEAT_PEER_TAGS).
    public func setPeer(_ conn: Connection, id: [UInt8]) throws(PluginError) {
        // Raw loads: on a 1.0 host the table ends before this field, so nothing past `size` is read.
        let base = UnsafeRawPointer(raw)
        let offset = MemoryLayout<ph_host>.offset(of: \ph_host.conn_set_peer)!
        typealias SetPeer = @convention(c) (UnsafeMutableRawPointer?, ph_conn, UnsafePointer<UInt8>?, Int) -> ph_status
        guard Int(base.load(as: UInt32.self)) >= offset + MemoryLayout<SetPeer?>.size,
              base.load(fromByteOffset: MemoryLayout<ph_host>.offset(of: \ph_host.features)!, as: UInt64.self) & UInt64(PH_FEAT_PEER_TAGS) != 0,
              let f = base.load(fromByteOffset: offset, as: SetPeer?.self) else { throw .notSupported }
        let ctx = base.load(fromByteOffset: MemoryLayout<ph_host>.offset(of: \ph_host.ctx)!, as: UnsafeMutableRawPointer?.self)
        try Host.check(id.withUnsafeBufferPointer { f(ctx, conn, $0.baseAddress, $0.count) })
    }
}
