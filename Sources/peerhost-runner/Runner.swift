import CPeerhostABI
import CPeerhostShim
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Drives one plugin from the rings on one thread: RX events become callbacks, host calls become TX
/// requests. Reentrancy: callbacks call back into the host table (send, buffer_alloc…) while we are
/// dispatching, so no Swift inout access to runner state may be open across a plugin call.
///
/// Slot conventions the core relies on (beyond ph_ring.h's per-type comments):
/// - START/ACCEPT carry their text in a receive slot (< recv_slots): the runner gives it back with
///   FREE once the callback returned. (A plugin-home slot there is ignored: it is already ours.)
/// - LOG and METRIC carry text in a plugin-home slot and get no COMPLETE: the core returns that slot
///   with SEND_DONE(id 0, slot), like a finished send. Any SEND_DONE of a plugin-home slot is taken back.
/// - Requests with text (LISTEN, CONNECT, UDP_BIND, FILE_OPEN, KV_PUT, KV_DELETE) get their slot back
///   in COMPLETE and the runner recycles it; RESOLVE/KV_GET/KV_SCAN with status OK and FILE_READ
///   (any status) hand COMPLETE's slot/offset/length to the plugin as the result buffer.
/// - FILE_WRITE gets its slot back in COMPLETE (recycled here like a text request's); UDP_SEND gets
///   no COMPLETE, its plugin-home slot comes back with SEND_DONE(id = socket). DATAGRAM's sender
///   text sits in the last `arg` bytes of its slot (protocols/abi/v1/README.md has the full table).
/// - TIMER_SET: id = timer id, arg = delay ns, arg2 = tag (kept by the runner too; TIMER needs only id).
/// - on_writable(conn 0) means "the TX ring has room again" for calls that are not per-connection,
///   or "a buffer slot is free again" after PH_ENOMEM. Nothing polls: a runner that waits for TX room
///   sets the ring's need_space flag and the core writes fd 5 once it consumed (ph_ring.h, Space);
///   returned slots arrive as RX descriptors, which wake us anyway.
/// - Control calls: the core writes the frame to fd 4, then sends CONTROL on RX; fd 4 is also in the
///   ppoll set (for EOF and for frames that arrive while we sleep).
/// - Per connection the core holds at most `sendQueueLimit` bytes (START's arg2): `queuedBytes`
///   counts what send handed over minus what SEND_DONE (which carries each send's length, ABI 1.2)
///   gave back; past the limit send answers PH_EAGAIN and on_writable(conn) follows at half of it.
/// - After on_closed returns, the runner sends CLOSE for that connection: every send the plugin made
///   before is on TX ahead of it, so the core flushes them and then closes its side.
/// - Exit status: 0 after STOP, 1 after a start-up failure (fail frame sent) or EOF on fd 4, 2 when
///   the RX indices are corrupt.
final class Runner {
    let region: Region
    let plugin: LoadedPlugin
    let control: ControlChannel
    let caller: ControlCaller
    let rx: UnsafeMutablePointer<ph_ring_view>
    let tx: UnsafeMutablePointer<ph_ring_view>
    let host: UnsafeMutablePointer<ph_host>
    var user: UnsafeMutableRawPointer? = nil
    var started = false

    // Plugin-home slots [recv_slots, slot_count) not currently lent out (buffer_alloc's pool).
    var freeSlots: [UInt32] = []
    var isFree: [Bool]
    var nextRequest: UInt64 = 1
    var nextTimer: Int64 = 1
    var timerTags: [Int64: UInt64] = [:]
    var pending: [UInt64: RequestKind] = [:]
    /// Runner-originated descriptors (READY, ACKs, FREE, LOG) waiting for TX space; never dropped
    /// except LOG beyond `backlogLogCap`.
    var backlog: [ph_desc] = []
    var backlogHead = 0
    var unpublished = 0
    /// Connections whose send got PH_EAGAIN (0 = a non-connection call): on_writable follows.
    var blocked: [ph_conn] = []
    var blockedSet: Set<ph_conn> = []
    /// Bytes each connection has queued in the core (sent, no SEND_DONE yet); absent = 0.
    var queuedBytes: [ph_conn: Int] = [:]
    /// Connections whose send met the per-connection limit: on_writable when half of it drained.
    var overLimit: Set<ph_conn> = []
    /// START's arg2 (0: the core sets no bound, as before ABI 1.2).
    var sendQueueLimit = 0
    /// START's arg: pending timers the plugin may hold (0: no bound); timer() answers PH_EQUOTA past it.
    var timerBudget = 0
    /// A call met PH_ENOMEM: on_writable(0) once a plugin-home slot is free again.
    var waitingForSlot = false
    /// Streams, listeners and UDP sockets the plugin holds (from ACCEPT and from the COMPLETE of
    /// listen, connect and udp_bind), and its open files: a call naming any other id answers
    /// PH_ENOTCONN (PH_EINVAL for a file) here, before the core, which treats a foreign id as a
    /// violation, ever sees it.
    var liveConns: Set<ph_conn> = []
    var openFiles: Set<ph_file> = []
    /// Requests whose COMPLETE(OK) carries a new connection/socket id or file id in its value.
    var opening: [UInt64: Opening] = [:]
    enum Opening { case conn, file }
    /// The plugin's udp connect grants from START (ABI 1.2): udp_send answers PH_EDENIED for a
    /// destination none covers. nil: the core sent none (every send goes to the core to decide).
    var udpRules: UDPSendRules?
    /// Calls of async control methods (ABI 1.2) not yet answered for the last time: the call ids
    /// control_reply may still answer.
    var openCalls: Set<UInt64> = []
    /// ABI 1.2: the plugin was built against 1.2 or later, so its feature bits gate host calls too
    /// (PH_ENOTSUP, logged once per feature). Older plugins keep 1.1's behaviour.
    let gatesCalls: Bool
    var refusedFeatures: UInt64 = 0
    var droppedLogs = 0
    let spinNanos: Int64

    enum RequestKind { case slotOnly, resultInSlot, pluginBuffer }

    init(region: Region, plugin: LoadedPlugin, control: ControlChannel) {
        self.region = region
        self.plugin = plugin
        self.control = control
        self.caller = ControlCaller(plugin: plugin)
        let h = region.header
        rx = .allocate(capacity: 1)
        tx = .allocate(capacity: 1)
        ph_ring_view_init(rx, region.base + Int(h.rx_ctl_offset), region.base + Int(h.rx_desc_offset), h.ring_entries, 0)
        ph_ring_view_init(tx, region.base + Int(h.tx_ctl_offset), region.base + Int(h.tx_desc_offset), h.ring_entries, 1)
        isFree = [Bool](repeating: false, count: Int(h.slot_count))
        // Pop order = ascending slot numbers (stack, so push in reverse).
        for s in stride(from: h.slot_count, to: h.recv_slots, by: -1) { freeSlots.append(s - 1); isFree[Int(s - 1)] = true }
        let spinEnv = getenv("PEERHOST_SPIN_US").flatMap { Int64(String(cString: $0)) }
        spinNanos = max(0, spinEnv ?? 50) * 1000
        gatesCalls = plugin.descriptor.abi_version >= ABI.callGatesFrom
        host = .allocate(capacity: 1)
        host.initialize(to: HostTable.make(ctx: Unmanaged.passUnretained(self).toOpaque()))
    }

    static func from(_ ctx: UnsafeMutableRawPointer?) -> Runner {
        Unmanaged<Runner>.fromOpaque(ctx!).takeUnretainedValue()
    }

    // MARK: - TX

    /// Queues a runner-originated descriptor: onto the ring if there is room and nothing is queued
    /// before it, else onto the backlog (order kept).
    func pushInternal(_ d: ph_desc) {
        if backlogHead == backlog.count, putTX(d) { return }
        backlog.append(d)
    }

    /// For plugin calls: PH_EAGAIN when the ring is full or runner messages are still queued.
    func putTX(_ d: ph_desc) -> Bool {
        var d = d
        guard ph_ring_put(tx, &d) != 0 else { return false }
        unpublished += 1
        // Let the core start on a long burst before the callback ends.
        if unpublished >= Int(tx.pointee.entries / 4) { publishTX() }
        return true
    }

    func canSubmit() -> Bool { backlogHead == backlog.count && ph_ring_space(tx) > 0 }

    func flushBacklog() {
        while backlogHead < backlog.count {
            var d = backlog[backlogHead]
            if ph_ring_put(tx, &d) == 0 { break }
            unpublished += 1
            backlogHead += 1
        }
        if backlogHead == backlog.count, backlogHead > 0 { backlog.removeAll(keepingCapacity: true); backlogHead = 0 }
    }

    func publishTX() {
        guard unpublished > 0 else { return }
        ph_ring_publish(tx)
        unpublished = 0
        if ph_ring_consumer_wants_wakeup(tx) != 0 { _ = ph_eventfd_signal(RunnerFD.txEvent) }
    }

    func markBlocked(_ conn: ph_conn) {
        if blockedSet.insert(conn).inserted { blocked.append(conn) }
    }

    /// After the core made room: tell every blocked sender it may retry (feature-gated).
    func notifyWritable() {
        guard canSubmit() else { return }
        if waitingForSlot, !freeSlots.isEmpty { waitingForSlot = false; markBlocked(0) }
        guard !blocked.isEmpty else { return }
        let conns = blocked
        blocked.removeAll()
        blockedSet.removeAll()
        guard let cb = plugin.descriptor.on_writable, started else { return }
        for c in conns { cb(user, c) }
    }

    // MARK: - gates

    /// Whether the plugin declared `feature` (always true for a plugin older than ABI 1.2). A call
    /// refused here is logged once per feature, with the call's name and the bit to declare.
    func declared(_ feature: UInt64, for call: StaticString) -> Bool {
        guard gatesCalls, plugin.descriptor.features & feature == 0 else { return true }
        if refusedFeatures & feature == 0 {
            refusedFeatures |= feature
            log(level: PH_LOG_WARN, "runner: \(call) refused with PH_ENOTSUP: the plugin does not declare \(ABI.featureName(feature)) in ph_plugin.features (ABI 1.2 gates calls by feature bit)")
        }
        return false
    }

    // MARK: - slots

    func allocSlot() -> UInt32? {
        guard let s = freeSlots.popLast() else { waitingForSlot = true; return nil }
        isFree[Int(s)] = false
        return s
    }

    /// A slot the plugin no longer needs: plugin-home slots go back on our free list (local, no
    /// message), receive slots back to the core with FREE.
    func releaseSlot(_ slot: UInt32) {
        guard slot < region.slotCount else { return }
        if slot >= region.recvSlots {
            if !isFree[Int(slot)] { isFree[Int(slot)] = true; freeSlots.append(slot) }
        } else {
            var d = ph_desc()
            d.type = UInt16(PH_MSG_FREE.rawValue)
            d.slot = slot
            pushInternal(d)
        }
    }

    func buffer(slot: UInt32, offset: UInt32, length: UInt32) -> ph_buffer {
        ph_buffer(data: region.slotPointer(slot), slot: slot, offset: offset, length: length, capacity: region.slotSize)
    }

    /// Checks an RX descriptor's slot range; the core is trusted, but a wrong slot must not crash us.
    func validSlot(_ d: ph_desc) -> Bool {
        d.slot < region.slotCount && UInt64(d.offset) + UInt64(d.length) <= UInt64(region.slotSize)
    }

    /// Copies text into a fresh plugin slot and sends a request descriptor; returns the request id.
    func textRequest(_ type: ph_msg_type, _ text: UnsafeRawPointer?, _ len: Int, kind: RequestKind,
                     id: UInt64 = 0, arg: Int64 = 0, arg2: UInt64 = 0, extra: UnsafeRawPointer? = nil, extraLen: Int = 0,
                     opens: Opening? = nil) -> Int64 {
        guard len >= 0, extraLen >= 0, len + extraLen <= Int(region.slotSize), len == 0 || text != nil else { return Int64(PH_EINVAL.rawValue) }
        guard canSubmit() else { markBlocked(0); return Int64(PH_EAGAIN.rawValue) }
        guard let slot = allocSlot() else { return Int64(PH_ENOMEM.rawValue) }
        let p = region.slotPointer(slot)
        if len > 0 { UnsafeMutableRawPointer(p).copyMemory(from: text!, byteCount: len) }
        if extraLen > 0, let extra { UnsafeMutableRawPointer(p + len).copyMemory(from: extra, byteCount: extraLen) }
        let req = nextRequest
        nextRequest += 1
        var d = ph_desc()
        d.type = UInt16(type.rawValue)
        d.slot = slot
        d.length = UInt32(len + extraLen)
        d.request = req
        d.id = id
        d.arg = arg
        d.arg2 = arg2
        guard putTX(d) else { releaseSlot(slot); markBlocked(0); return Int64(PH_EAGAIN.rawValue) }
        pending[req] = kind
        if let opens { opening[req] = opens }
        return Int64(req)
    }

    /// A request without a slot (file_sync…) or with the plugin's own buffer (file_read/write).
    func plainRequest(_ type: ph_msg_type, id: UInt64, arg: Int64, buf: UnsafePointer<ph_buffer>?, kind: RequestKind) -> Int64 {
        var d = ph_desc()
        d.type = UInt16(type.rawValue)
        d.slot = PH_NO_SLOT
        if let b = buf?.pointee {
            guard b.slot < region.slotCount, UInt64(b.offset) + UInt64(b.length) <= UInt64(region.slotSize) else { return Int64(PH_EINVAL.rawValue) }
            d.slot = b.slot; d.offset = b.offset; d.length = b.length
        }
        guard canSubmit() else { markBlocked(0); return Int64(PH_EAGAIN.rawValue) }
        let req = nextRequest
        nextRequest += 1
        d.request = req
        d.id = id
        d.arg = arg
        guard putTX(d) else { markBlocked(0); return Int64(PH_EAGAIN.rawValue) }
        pending[req] = kind
        return Int64(req)
    }

    /// A fire-and-forget descriptor from the plugin (send, close, timer…): PH_EAGAIN when full.
    func simple(_ d: ph_desc, blockOn conn: ph_conn = 0) -> ph_status {
        guard canSubmit(), putTX(d) else { markBlocked(conn); return PH_EAGAIN }
        return PH_OK
    }

    /// send: within the connection's limit (a send always goes when nothing of it is queued, so a
    /// full slot is never refused for good), else PH_EAGAIN and on_writable(conn) later.
    func send(_ d: ph_desc) -> ph_status {
        let queued = queuedBytes[d.id] ?? 0
        if sendQueueLimit > 0, queued > 0, queued + Int(d.length) > sendQueueLimit {
            overLimit.insert(d.id)
            return PH_EAGAIN
        }
        let status = simple(d, blockOn: d.id)
        if status == PH_OK, d.length > 0 { queuedBytes[d.id] = queued + Int(d.length) }
        return status
    }

    /// SEND_DONE: `length` bytes of `conn` left the core's queue.
    func sendDone(conn: ph_conn, length: UInt32) {
        guard let queued = queuedBytes[conn] else { return }
        let left = max(0, queued - Int(length))
        queuedBytes[conn] = left > 0 ? left : nil
        if left <= sendQueueLimit / 2, overLimit.remove(conn) != nil {
            // Through the same path as a ring-full wait: on_writable once TX has room too.
            markBlocked(conn)
        }
    }

    /// close or conn_reset: CLOSE / RESET for `conn`; once it is on TX the connection's counts go.
    func end(_ conn: ph_conn, with type: ph_msg_type) -> ph_status {
        guard liveConns.contains(conn) else { return PH_ENOTCONN }
        var d = ph_desc()
        d.type = UInt16(type.rawValue)
        d.id = conn
        d.slot = PH_NO_SLOT
        let status = simple(d, blockOn: conn)
        if status == PH_OK { forget(conn) }
        return status
    }

    /// A udp_send answered PH_EDENIED here: the core audits it (no slot, the destination in the
    /// descriptor as ph_peer_encode writes it). Queued like the runner's own messages: never lost.
    func reportUDPRefusal(socket: ph_conn, _ dest: UDPSendRules.Destination) {
        var d = ph_desc()
        d.type = UInt16(PH_MSG_UDP_REFUSED.rawValue)
        d.id = socket
        d.slot = PH_NO_SLOT
        withUnsafeMutableBytes(of: &d.reserved) { $0.copyBytes(from: dest.address) }
        d.arg2 = dest.encodedArg2
        pushInternal(d)
    }

    /// The connection is gone (closed by the plugin or the peer): forget it and its counts.
    func forget(_ conn: ph_conn) {
        liveConns.remove(conn)
        queuedBytes[conn] = nil
        overLimit.remove(conn)
    }

    // MARK: - RX dispatch

    func dispatch(_ d: ph_desc) {
        let p = plugin.descriptor
        let feats = p.features
        func has(_ f: UInt64) -> Bool { feats & f != 0 }
        switch ph_msg_type(rawValue: UInt32(d.type)) {
        case PH_MSG_START:
            handleStart(d)
        case PH_MSG_STOP:
            if started, let stop = p.stop { stop(user) }
            flushBacklog()
            publishTX()
            exit(0)
        case PH_MSG_HEARTBEAT:
            var a = ph_desc()
            a.type = UInt16(PH_MSG_HEARTBEAT_ACK.rawValue)
            a.request = d.request
            a.slot = PH_NO_SLOT
            pushInternal(a)
        case PH_MSG_ACCEPT:
            liveConns.insert(d.id)
            guard started, has(PH_FEAT_STREAMS), let cb = p.on_accept else { if validSlot(d) { releaseSlot(d.slot) }; return }
            if d.slot != PH_NO_SLOT, validSlot(d) { releaseSlot(d.slot) }   // no core sends one
            withPeerText(d, transport: "tcp") { text, len in cb(user, ph_conn(bitPattern: d.arg), d.id, text, len) }
        case PH_MSG_DATA:
            guard validSlot(d) else { return }
            guard started, has(PH_FEAT_STREAMS), let cb = p.on_data else { releaseSlot(d.slot); return }
            var b = buffer(slot: d.slot, offset: d.offset, length: d.length)
            cb(user, d.id, &b)
        case PH_MSG_WRITABLE:
            if blockedSet.remove(d.id) != nil { blocked.removeAll { $0 == d.id } }
            guard started, has(PH_FEAT_STREAMS), let cb = p.on_writable else { return }
            cb(user, d.id)
        case PH_MSG_CLOSED:
            forget(d.id)
            if started, has(PH_FEAT_STREAMS) || has(PH_FEAT_DATAGRAMS), let cb = p.on_closed {
                cb(user, d.id, ph_status(rawValue: Int32(d.status)))
            }
            // The plugin has seen it: the core may close its side once what was sent went out.
            var c = ph_desc()
            c.type = UInt16(PH_MSG_CLOSE.rawValue)
            c.id = d.id
            c.slot = PH_NO_SLOT
            pushInternal(c)
        case PH_MSG_DATAGRAM:
            guard validSlot(d) else { return }
            guard started, has(PH_FEAT_DATAGRAMS), let cb = p.on_datagram else { releaseSlot(d.slot); return }
            var b = buffer(slot: d.slot, offset: d.offset, length: d.length)
            withPeerText(d, transport: "udp") { text, len in cb(user, d.id, text, len, &b) }
        case PH_MSG_TIMER:
            let id = Int64(bitPattern: d.id)
            guard let tag = timerTags.removeValue(forKey: id) else { return }  // cancelled meanwhile
            guard started, has(PH_FEAT_TIMERS), let cb = p.on_timer else { return }
            cb(user, id, tag)
        case PH_MSG_COMPLETE:
            handleComplete(d)
        case PH_MSG_SEND_DONE:
            if d.slot != PH_NO_SLOT, d.slot >= region.recvSlots { releaseSlot(d.slot) }
            if d.length > 0 { sendDone(conn: d.id, length: d.length) }
        case PH_MSG_CONTROL:
            serviceControl()
            var a = ph_desc()
            a.type = UInt16(PH_MSG_CONTROL_DONE.rawValue)
            a.request = d.request
            a.slot = PH_NO_SLOT
            pushInternal(a)
        default:
            log(level: PH_LOG_WARN, "runner: ignoring RX descriptor type \(d.type)")
        }
    }

    func handleStart(_ d: ph_desc) {
        guard !started else { log(level: PH_LOG_WARN, "runner: second START ignored"); return }
        var user: UnsafeMutableRawPointer? = nil
        var status: ph_status
        // The udp grants (ABI 1.2) follow the config in the slot: read them before start() may send.
        if d.request > 0, d.slot < region.slotCount, UInt64(d.offset) + UInt64(d.length) + (d.request - 1) <= UInt64(region.slotSize) {
            let text = UnsafeRawBufferPointer(start: region.slotPointer(d.slot) + Int(d.offset) + Int(d.length), count: Int(d.request - 1))
            udpRules = UDPSendRules(grants: String(decoding: text, as: UTF8.self))
        }
        if d.slot != PH_NO_SLOT, d.length > 0, validSlot(d) {
            // The config is not NUL-terminated in the slot; copy it with a terminator so a careless
            // plugin's strlen stays inside our memory.
            var cfg = [CChar](repeating: 0, count: Int(d.length) + 1)
            cfg.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(start: region.slotPointer(d.slot) + Int(d.offset), count: Int(d.length))) }
            status = cfg.withUnsafeBufferPointer { plugin.descriptor.start!(host, $0.baseAddress, Int(d.length), &user) }
        } else {
            status = plugin.descriptor.start!(host, "", 0, &user)
        }
        if d.slot != PH_NO_SLOT, d.slot < region.recvSlots { releaseSlot(d.slot) }
        self.user = user
        sendQueueLimit = Int(clamping: d.arg2)
        timerBudget = Int(clamping: max(0, d.arg))
        var r = ph_desc()
        r.type = UInt16(PH_MSG_READY.rawValue)
        r.status = Int16(truncatingIfNeeded: status.rawValue)
        r.arg = Int64(bitPattern: plugin.descriptor.features)
        r.slot = PH_NO_SLOT
        pushInternal(r)
        if status != PH_OK {
            flushBacklog()
            publishTX()
            try? control.writeFrame(["type": "fail", "step": "start",
                                     "message": "plugin \(plugin.name) start returned \(statusName(status))"])
            exit(1)
        }
        started = true
    }

    /// The plugin's text of an ACCEPT's or DATAGRAM's peer ("tcp:1.2.3.4:5555", "udp:[::1]:80"; ""
    /// when the core sent none), on the stack: the one place the address becomes text.
    func withPeerText(_ d: ph_desc, transport: String, _ body: (UnsafePointer<CChar>, Int) -> Void) {
        var d = d
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: Int(PH_PEER_TEXT_MAX)) { out in
            let n = withUnsafeBytes(of: &d.reserved) { addr in
                transport.withCString {
                    ph_peer_format(addr.baseAddress!.assumingMemoryBound(to: UInt8.self), d.arg2, $0, out.baseAddress!, out.count)
                }
            }
            if n == 0 { out[0] = 0 }
            body(UnsafePointer(out.baseAddress!), n)
        }
    }

    func handleComplete(_ d: ph_desc) {
        let kind = pending.removeValue(forKey: d.request)
        if let opened = opening.removeValue(forKey: d.request), d.status == 0, d.arg > 0 {
            switch opened {
            case .conn: liveConns.insert(ph_conn(d.arg))
            case .file: openFiles.insert(ph_file(d.arg))
            }
        }
        var passBuffer = false
        if d.slot != PH_NO_SLOT, validSlot(d) {
            switch kind {
            case .pluginBuffer?, .resultInSlot?: passBuffer = d.status == 0 || kind == .pluginBuffer
            case .slotOnly?, nil: passBuffer = false
            }
            if !passBuffer { releaseSlot(d.slot) }
        }
        guard started, let cb = plugin.descriptor.on_complete else {
            if passBuffer { releaseSlot(d.slot) }
            return
        }
        let status = ph_status(rawValue: Int32(d.status))
        if passBuffer {
            var b = buffer(slot: d.slot, offset: d.offset, length: d.length)
            if isFree.indices.contains(Int(d.slot)), isFree[Int(d.slot)] { isFree[Int(d.slot)] = false; freeSlots.removeAll { $0 == d.slot } }
            cb(user, d.request, status, d.arg, &b)
        } else {
            cb(user, d.request, status, d.arg, nil)
        }
    }

    // MARK: - control socket

    /// Serves every complete call frame on fd 4, between callbacks.
    func serviceControl() {
        let frames: [[UInt8]]
        do { frames = try control.readAvailable() } catch {
            log(level: PH_LOG_ERROR, "runner: \(error)")
            shutdown(code: 1)
        }
        for f in frames { handleFrame(f) }
        if control.closed { shutdown(code: 1) }   // the core is gone: nobody to serve
    }

    func handleFrame(_ bytes: [UInt8]) {
        guard let obj = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] else {
            try? control.writeFrame(["type": "result", "id": -1, "ok": false, "error": "control frame is not a JSON object"])
            return
        }
        let id = (obj["id"] as? NSNumber) ?? NSNumber(value: -1)
        if (obj["type"] as? String) == "cancel" {
            // The caller went away or gave up: the plugin's next reply to it answers PH_ENOTCONN.
            openCalls.remove(id.uint64Value)
            return
        }
        guard (obj["type"] as? String) == "call" else {
            try? control.writeFrame(["type": "result", "id": id, "ok": false, "error": "unknown frame type \(obj["type"] ?? "nil")"])
            return
        }
        guard let symbol = obj["symbol"] as? String, let sig = obj["signature"] as? String else {
            try? control.writeFrame(["type": "result", "id": id, "ok": false, "error": "call frame needs symbol and signature"])
            return
        }
        let args = obj["args"] as? [Any] ?? []
        guard declared(PH_FEAT_CONTROL, for: "control") else {
            try? control.writeFrame(["type": "result", "id": id, "ok": false,
                                     "error": "plugin \(plugin.name) does not declare PH_FEAT_CONTROL: it serves no control method"])
            return
        }
        let isAsync = (obj["async"] as? NSNumber)?.boolValue == true
        do {
            if isAsync {
                // Open before the call: the method may answer from inside it.
                let call = id.uint64Value
                guard call != 0, !openCalls.contains(call) else { throw CallError(message: "call id \(call) is in use") }
                openCalls.insert(call)
                guard case .i64(let status) = try caller.call(symbol: symbol, signature: sig, args: args, async: (user, call)) else { return }
                if status != Int64(PH_OK.rawValue), openCalls.remove(call) != nil {
                    try? control.writeFrame(["type": "result", "id": id, "ok": false,
                                             "error": "\(symbol) returned \(statusName(ph_status(rawValue: Int32(truncatingIfNeeded: status))))"])
                }
            } else {
                let v = try caller.call(symbol: symbol, signature: sig, args: args)
                try? control.writeFrame(["type": "result", "id": id, "ok": true, "value": v.json])
            }
        } catch {
            if isAsync { openCalls.remove(id.uint64Value) }
            try? control.writeFrame(["type": "result", "id": id, "ok": false, "error": error.message])
        }
        flushBacklog()
        publishTX()
    }

    func shutdown(code: Int32) -> Never {
        if started, let stop = plugin.descriptor.stop { stop(user) }
        flushBacklog()
        publishTX()
        exit(code)
    }

    // MARK: - log

    func log(level: ph_log_level, _ text: String) {
        var bytes = Array(text.utf8)
        if bytes.count > Int(region.slotSize) { bytes.removeLast(bytes.count - Int(region.slotSize)) }
        guard backlog.count - backlogHead < 1024, let slot = allocSlot() else { droppedLogs += 1; return }
        bytes.withUnsafeBytes { UnsafeMutableRawPointer(region.slotPointer(slot)).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        var d = ph_desc()
        d.type = UInt16(PH_MSG_LOG.rawValue)
        d.slot = slot
        d.length = UInt32(bytes.count)
        d.arg = Int64(level.rawValue)
        pushInternal(d)
    }

    // MARK: - the loop

    static func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// Drains RX in batches; spins `spinNanos` when idle, then sleeps in ppoll on fd 5 and fd 4.
    func loop() -> Never {
        while true {
            let n = ph_ring_ready(rx)
            if n == UInt32.max { log(level: PH_LOG_ERROR, "runner: RX ring indices corrupt"); shutdown(code: 2) }
            if n > 0 {
                var d = ph_desc()
                for i in 0..<n {
                    ph_ring_peek_copy(rx, i, &d)
                    // Entries are copied out before dispatch; the batch is released after it.
                    dispatch(d)
                }
                ph_ring_consume(rx, n)
                flushBacklog()
                publishTX()
                notifyWritable()
                continue
            }
            flushBacklog()
            publishTX()
            notifyWritable()
            if waitForWork() { continue }
        }
    }

    /// Returns when RX may have work, TX has room for a waiting call (or control frames were served).
    func waitForWork() -> Bool {
        // Someone waits for TX room (a blocked sender, or runner messages queued).
        let waitsForRoom = !blocked.isEmpty || backlogHead < backlog.count
        if spinNanos > 0 {
            let deadline = Runner.now() + spinNanos
            var spins = 0
            while true {
                // A busy core drains TX within the spin budget: room seen here costs it no eventfd write.
                if ph_ring_ready(rx) != 0 || (waitsForRoom && ph_ring_space(tx) > 0) { return true }
                ph_cpu_relax()
                spins += 1
                if spins & 63 == 0, Runner.now() >= deadline { break }
            }
        }
        // No control check here: ppoll below watches fd 4 too, and readAvailable() left no whole
        // frame unserved, so a pending call wakes us at once.
        let avail = ph_ring_prepare_sleep(rx)
        if avail != 0 { ph_ring_awake(rx); return true }
        // Waiting for TX room: ask the core to write fd 5 when it has consumed, and re-check so
        // the room cannot come unseen.
        if waitsForRoom, ph_ring_prepare_wait_space(tx) > 0 {
            ph_ring_space_awake(tx)
            ph_ring_awake(rx)
            return true
        }
        let r = ph_poll2(RunnerFD.rxEvent, RunnerFD.control, -1)
        ph_ring_awake(rx)
        if waitsForRoom { ph_ring_space_awake(tx) }
        if r > 0 {
            if r & 1 != 0 { var v: UInt64 = 0; _ = ph_eventfd_drain(RunnerFD.rxEvent, &v) }
            if r & 2 != 0 || r & 4 != 0 { serviceControl() }
        }
        return true
    }
}

extension Error {
    var message: String { (self as? CallError)?.message ?? "\(self)" }
}

/// The status's C name from peerhost.h's ph_status_name (one table for runner, SDK and plugins);
/// "status N" for a number the header does not know.
func statusName(_ s: ph_status) -> String {
    let name = String(cString: ph_status_name(Int64(s.rawValue)))
    return s.rawValue <= 0 && name != "PH_E?" ? name : "status \(s.rawValue)"
}
