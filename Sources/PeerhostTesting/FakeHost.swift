// PeerhostTesting: run plugin logic without processes or rings. FakeHost implements the C ph_host
// table in memory and drives the plugin through its C ph_plugin callbacks — the same boundary the
// runner uses — so a test exercises exactly what ships (SDK trampolines included).
import CPeerhostABI
import PeerhostSDK
#if canImport(Glibc)
import Glibc
#endif

/// A monotonic clock the test moves by hand; FakeHost fires timers when it passes their deadline.
public final class ManualClock {
    public private(set) var now: UInt64
    public init(now: UInt64 = 0) { self.now = now }
    public func advance(by nanoseconds: UInt64) { now += nanoseconds }
}

public final class FakeHost {
    public enum SlotOwner: Equatable { case host, plugin, inFlight }

    public struct Sent: Equatable {
        public let conn: Connection
        public let slot: UInt32
        public let bytes: [UInt8]
        public init(conn: Connection, slot: UInt32, bytes: [UInt8]) {
            self.conn = conn; self.slot = slot; self.bytes = bytes
        }
    }
    /// One control_reply: the call, its bytes and PH_REPLY_* flags.
    public struct ControlReplyRecord: Equatable {
        public let call: ph_call
        public let bytes: [UInt8]
        public let flags: UInt32
        public init(call: ph_call, bytes: [UInt8], flags: UInt32) {
            self.call = call; self.bytes = bytes; self.flags = flags
        }
    }
    public struct RequestRecord: Equatable {
        public let id: Request
        public let kind: String       // "listen", "connect", "udp_bind", "resolve", "file_open", "kv_get"…
        public let text: String
        public init(id: Request, kind: String, text: String) {
            self.id = id; self.kind = kind; self.text = text
        }
    }

    public let slotSize: Int
    public let slotCount: Int
    public let clock: ManualClock
    let pool: UnsafeMutableRawPointer
    public private(set) var owner: [SlotOwner]
    let table: UnsafeMutablePointer<ph_host>
    public var host: UnsafePointer<ph_host> { UnsafePointer(table) }

    public private(set) var plugin = ph_plugin()
    public private(set) var user: UnsafeMutableRawPointer?
    public private(set) var started = false

    // What the plugin did.
    public private(set) var sends: [Sent] = []
    public private(set) var requests: [RequestRecord] = []
    public private(set) var logs: [(level: ph_log_level, text: String)] = []
    public private(set) var metrics: [String: Double] = [:]
    public private(set) var closedByPlugin: [Connection] = []
    /// Ownership rule broken by the plugin (a send of a slot it does not own, a double free…).
    /// The real core kills the plugin for these; tests assert the list stays empty.
    public private(set) var violations: [String] = []

    /// Statuses the next sends return, in order (inject PH_EAGAIN); empty → PH_OK.
    public var sendResults: [ph_status] = []
    /// Answers of async control methods (ABI 1.2), in order; a call answered without
    /// PH_REPLY_MORE is over, and a later reply to it gets PH_ENOTCONN, as from the runner.
    public private(set) var replies: [ControlReplyRecord] = []
    var finishedCalls: Set<ph_call> = []

    var nextRequest: UInt64 = 1
    var nextTimer: Int64 = 1
    var timers: [Int64: (due: UInt64, tag: UInt64)] = [:]

    public init(slotSize: Int = 4096, slotCount: Int = 64, clock: ManualClock = ManualClock()) {
        self.slotSize = slotSize
        self.slotCount = slotCount
        self.clock = clock
        pool = UnsafeMutableRawPointer.allocate(byteCount: slotSize * slotCount, alignment: 64)
        pool.initializeMemory(as: UInt8.self, repeating: 0, count: slotSize * slotCount)
        owner = Array(repeating: .host, count: slotCount)
        table = .allocate(capacity: 1)
        table.initialize(to: FakeHost.makeTable())
        table.pointee.ctx = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit {
        pool.deallocate()
        table.deallocate()
    }

    // MARK: - driving the plugin

    /// Calls the plugin's start with `config` (the JSON the operator's table would become).
    @discardableResult
    public func start(_ entry: UnsafeRawPointer, config: String = "") -> ph_status {
        let p = entry.assumingMemoryBound(to: ph_plugin.self)
        plugin = p.pointee
        var u: UnsafeMutableRawPointer?
        let bytes = Array(config.utf8) + [0]
        let s = bytes.withUnsafeBufferPointer { b in
            b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { plugin.start!(host, $0, bytes.count - 1, &u) }
        }
        user = u
        started = s == PH_OK
        return s
    }

    public func stop() {
        if started { plugin.stop?(user) }
        started = false
    }

    public func accept(listener: Connection, conn: Connection, peer: String = "tcp:127.0.0.1:40000") {
        var p = peer
        p.withUTF8 { u in
            u.withMemoryRebound(to: CChar.self) { plugin.on_accept?(user, listener, conn, $0.baseAddress, u.count) }
        }
    }

    /// Delivers `bytes` in a fresh slot (like DATA from a receive slot). Returns the slot used.
    @discardableResult
    public func deliver(conn: Connection, _ bytes: [UInt8], offset: Int = 0) -> UInt32? {
        guard let slot = takeSlot(), offset + bytes.count <= slotSize else { return nil }
        owner[Int(slot)] = .plugin
        (pool + Int(slot) * slotSize + offset).copyMemory(from: bytes, byteCount: bytes.count)
        var b = buffer(slot, offset: offset, length: bytes.count)
        if let cb = plugin.on_data { cb(user, conn, &b) } else { owner[Int(slot)] = .host }
        return slot
    }

    public func deliverDatagram(socket: Connection, from: String, _ bytes: [UInt8]) {
        guard let slot = takeSlot() else { return }
        owner[Int(slot)] = .plugin
        (pool + Int(slot) * slotSize).copyMemory(from: bytes, byteCount: bytes.count)
        var b = buffer(slot, offset: 0, length: bytes.count)
        var f = from
        f.withUTF8 { u in
            u.withMemoryRebound(to: CChar.self) { plugin.on_datagram?(user, socket, $0.baseAddress, u.count, &b) }
        }
    }

    public func writable(conn: Connection) { plugin.on_writable?(user, conn) }

    public func close(conn: Connection, reason: ph_status = PH_OK) { plugin.on_closed?(user, conn, reason) }

    /// Completes a request; `bytes` (if any) arrive in a buffer the plugin then owns.
    public func complete(_ request: Request, status: ph_status = PH_OK, value: Int64 = 0, bytes: [UInt8]? = nil) {
        guard let bytes, let slot = takeSlot() else {
            plugin.on_complete?(user, request, status, value, nil)
            return
        }
        owner[Int(slot)] = .plugin
        (pool + Int(slot) * slotSize).copyMemory(from: bytes, byteCount: bytes.count)
        var b = buffer(slot, offset: 0, length: bytes.count)
        plugin.on_complete?(user, request, status, value, &b)
    }

    /// Moves the clock and fires every timer now due, earliest first.
    public func advance(by nanoseconds: UInt64) {
        clock.advance(by: nanoseconds)
        while let (id, t) = timers.filter({ $0.value.due <= clock.now }).min(by: { $0.value.due < $1.value.due }) {
            timers.removeValue(forKey: id)
            plugin.on_timer?(user, id, t.tag)
        }
    }

    /// Like SEND_DONE for every send so far: in-flight slots return to the pool.
    public func completeSends() {
        for i in owner.indices where owner[i] == .inFlight { owner[i] = .host }
    }

    public func clearSends() { sends.removeAll() }

    public var pendingTimers: Int { timers.count }
    public var slotsOwnedByPlugin: Int { owner.filter { $0 == .plugin }.count }

    // MARK: - slots

    func takeSlot() -> UInt32? {
        guard let i = owner.firstIndex(of: .host) else { return nil }
        return UInt32(i)
    }

    func buffer(_ slot: UInt32, offset: Int, length: Int) -> ph_buffer {
        ph_buffer(data: (pool + Int(slot) * slotSize).assumingMemoryBound(to: UInt8.self), slot: slot,
                  offset: UInt32(offset), length: UInt32(length), capacity: UInt32(slotSize))
    }

    func checkOwned(_ b: ph_buffer, _ call: String) -> Bool {
        guard Int(b.slot) < slotCount else { violations.append("\(call): slot \(b.slot) out of range"); return false }
        guard owner[Int(b.slot)] == .plugin else {
            violations.append("\(call): slot \(b.slot) not owned by the plugin (\(owner[Int(b.slot)]))")
            return false
        }
        guard Int(b.offset) + Int(b.length) <= slotSize else {
            violations.append("\(call): offset+length past the slot"); return false
        }
        return true
    }

    func request(_ kind: String, _ text: UnsafeRawPointer?, _ len: Int) -> Int64 {
        let s = text.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: len), as: UTF8.self) } ?? ""
        let id = nextRequest
        nextRequest += 1
        requests.append(RequestRecord(id: id, kind: kind, text: s))
        return Int64(id)
    }

    static func me(_ ctx: UnsafeMutableRawPointer?) -> FakeHost { Unmanaged<FakeHost>.fromOpaque(ctx!).takeUnretainedValue() }

    static func makeTable() -> ph_host {
        var h = ph_host()
        h.size = UInt32(MemoryLayout<ph_host>.size)
        h.abi_version = ABIVersion.current
        h.features = Features.allV1_1.rawValue
        h.log = { ctx, level, msg, len in
            let s = msg.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: len), as: UTF8.self) } ?? ""
            FakeHost.me(ctx).logs.append((level, s))
        }
        h.metric_add = { ctx, name, len, value in
            guard let name else { return PH_EINVAL }
            let n = String(decoding: UnsafeRawBufferPointer(start: name, count: len), as: UTF8.self)
            FakeHost.me(ctx).metrics[n, default: 0] += value
            return PH_OK
        }
        h.buffer_alloc = { ctx, out in
            let f = FakeHost.me(ctx)
            guard let out, let slot = f.takeSlot() else { return PH_ENOMEM }
            f.owner[Int(slot)] = .plugin
            out.pointee = f.buffer(slot, offset: 0, length: 0)
            return PH_OK
        }
        h.buffer_free = { ctx, buf in
            let f = FakeHost.me(ctx)
            guard let b = buf?.pointee, f.checkOwned(b, "buffer_free") else { return }
            f.owner[Int(b.slot)] = .host
        }
        h.listen = { ctx, a, l in FakeHost.me(ctx).request("listen", a, l) }
        h.connect = { ctx, a, l in FakeHost.me(ctx).request("connect", a, l) }
        h.udp_bind = { ctx, a, l in FakeHost.me(ctx).request("udp_bind", a, l) }
        h.resolve = { ctx, a, l in FakeHost.me(ctx).request("resolve", a, l) }
        h.send = { ctx, conn, buf in
            let f = FakeHost.me(ctx)
            guard let b = buf?.pointee, f.checkOwned(b, "send") else { return PH_EINVAL }
            if !f.sendResults.isEmpty {
                let s = f.sendResults.removeFirst()
                if s != PH_OK { return s }   // the buffer stays the plugin's
            }
            f.owner[Int(b.slot)] = .inFlight
            let bytes = Array(UnsafeRawBufferPointer(start: f.pool + Int(b.slot) * f.slotSize + Int(b.offset), count: Int(b.length)))
            f.sends.append(Sent(conn: conn, slot: b.slot, bytes: bytes))
            return PH_OK
        }
        h.close = { ctx, conn in FakeHost.me(ctx).closedByPlugin.append(conn); return PH_OK }
        h.udp_send = { ctx, sock, to, toLen, buf in
            let f = FakeHost.me(ctx)
            guard let b = buf?.pointee, f.checkOwned(b, "udp_send") else { return PH_EINVAL }
            f.owner[Int(b.slot)] = .inFlight
            let bytes = Array(UnsafeRawBufferPointer(start: f.pool + Int(b.slot) * f.slotSize + Int(b.offset), count: Int(b.length)))
            f.sends.append(Sent(conn: sock, slot: b.slot, bytes: bytes))
            return PH_OK
        }
        h.timer = { ctx, delay, tag in
            let f = FakeHost.me(ctx)
            let id = f.nextTimer
            f.nextTimer += 1
            f.timers[id] = (f.clock.now + delay, tag)
            return id
        }
        h.timer_cancel = { ctx, id in FakeHost.me(ctx).timers.removeValue(forKey: id) == nil ? PH_EINVAL : PH_OK }
        h.file_open = { ctx, p, l, _ in FakeHost.me(ctx).request("file_open", p, l) }
        h.file_read = { ctx, _, _, buf in
            let f = FakeHost.me(ctx)
            guard let b = buf?.pointee, f.checkOwned(b, "file_read") else { return Int64(PH_EINVAL.rawValue) }
            f.owner[Int(b.slot)] = .inFlight
            return f.request("file_read", nil, 0)
        }
        h.file_write = { ctx, _, _, buf in
            let f = FakeHost.me(ctx)
            guard let b = buf?.pointee, f.checkOwned(b, "file_write") else { return Int64(PH_EINVAL.rawValue) }
            f.owner[Int(b.slot)] = .inFlight
            return f.request("file_write", nil, 0)
        }
        h.file_sync = { ctx, _ in FakeHost.me(ctx).request("file_sync", nil, 0) }
        h.file_close = { _, _ in PH_OK }
        h.kv_get = { ctx, k, l in FakeHost.me(ctx).request("kv_get", k, l) }
        h.kv_put = { ctx, k, l, _, _ in FakeHost.me(ctx).request("kv_put", k, l) }
        h.kv_delete = { ctx, k, l in FakeHost.me(ctx).request("kv_delete", k, l) }
        h.kv_scan = { ctx, k, l, _ in FakeHost.me(ctx).request("kv_scan", k, l) }
        h.kv_scan_from = { ctx, p, l, _, _, _ in FakeHost.me(ctx).request("kv_scan_from", p, l) }
        h.control_reply = { ctx, call, data, len, flags in
            let f = FakeHost.me(ctx)
            guard !f.finishedCalls.contains(call) else { return PH_ENOTCONN }
            let bytes = len == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: len))
            f.replies.append(ControlReplyRecord(call: call, bytes: bytes, flags: flags))
            if flags & PH_REPLY_MORE == 0 || flags & PH_REPLY_ERROR != 0 { f.finishedCalls.insert(call) }
            return PH_OK
        }
        h.conn_set_rate = { _, _, _, _ in PH_OK }
        h.conn_set_weight = { _, _, w in (1...1000).contains(w) ? PH_OK : PH_EINVAL }
        h.conn_set_peer = { _, _, id, len in id != nil && (1...Int(PH_PEER_ID_MAX)).contains(len) ? PH_OK : PH_EINVAL }
        return h
    }
}
