import CPeerhostABI
import CPeerhostShim
import Logging
import PeerhostRing
#if canImport(Glibc)
import Glibc
#endif

/// What a session reports to its owner (the supervisor). Called on the loop thread.
protocol PluginSessionDelegate: AnyObject {
    func sessionReady(_ session: PluginSession, status: Int16, features: UInt64)
    func sessionViolated(_ session: PluginSession, _ violation: Violation)
    func sessionDenied(_ session: PluginSession, action: String, object: String)
}

/// Counters of one session, read by status and metrics (loop thread writes, others read through
/// the supervisor's snapshot).
struct SessionCounters {
    var bytesIn: UInt64 = 0          // network → plugin
    var bytesOut: UInt64 = 0         // plugin → network
    var messagesIn: UInt64 = 0       // RX descriptors delivered
    var messagesOut: UInt64 = 0      // TX descriptors consumed
    var rxWakeups: UInt64 = 0        // eventfd writes towards the plugin
    var copiedBytes: UInt64 = 0      // payload bytes the core copied (0 on the zero-copy path)
    var connectionsOpen: Int = 0
    var connectionsTotal: UInt64 = 0
}

/// The core's side of one running plugin incarnation: its region, rings, slots, connections and
/// timers. Loop thread only. A new incarnation (after a restart) gets a new session and a fresh
/// region; this one is cancelled and drained before its region is unmapped.
final class PluginSession: IOHandler, @unchecked Sendable {
    enum ConnKind { case stream, listener }

    struct Conn {
        var id: UInt64
        var fd: Int32
        var kind: ConnKind
        var closed = false
        var recvArmed = false
        var sendsInFlight = 0
    }

    /// A send in flight, indexed by its slot (a slot is in exactly one operation at a time).
    struct SendState {
        var connIndex: UInt32 = 0
        var offset: UInt32 = 0
        var remaining: UInt32 = 0
    }

    let plugin: String
    let loop: IOUringLoop
    let region: SharedRegion
    let rxWake: Wakeup
    let txWake: Wakeup
    let grants: [NetGrant]
    let logger: Logger
    weak var delegate: PluginSessionDelegate?

    private(set) var handler: HandlerID!
    private var rx: RingView
    private var tx: RingView
    private(set) var decoder: RequestDecoder
    private let group: BufferGroup
    private var pendingRX: [ph_desc] = []      // events that did not fit in RX yet, in order
    private var pendingRXHead = 0
    private var rxUnpublished = false          // written to RX since the last publish
    private var conns: [Conn?] = []
    private var freeConnIndices: [UInt32] = []
    private var connIndexByID: [UInt64: UInt32] = [:]
    private var sends: [SendState]
    private var timerIDsByTag: [UInt32: UInt64] = [:]
    private var timerTagsByID: [UInt64: UInt32] = [:]
    private var nextTimerTag: UInt32 = 1
    private let doorbell: UnsafeMutablePointer<UInt64>
    private(set) var counters = SessionCounters()
    private(set) var violated = false
    private var lastActivity: UInt64 = 0
    var spinBudgetNanoseconds: UInt64 = 50_000

    nonisolated(unsafe) private static var nextConnID: UInt64 = 1

    init(plugin: String, loop: IOUringLoop, region: SharedRegion, rxWake: Wakeup, txWake: Wakeup,
         groupID: UInt16, grants: [NetGrant], logger: Logger) throws {
        self.plugin = plugin
        self.loop = loop
        self.region = region
        self.rxWake = rxWake
        self.txWake = txWake
        self.grants = grants
        self.logger = logger
        rx = region.rxRing(as: .core)
        tx = region.txRing(as: .core)
        decoder = RequestDecoder(region: region)
        sends = Array(repeating: SendState(), count: Int(region.geometry.slotCount))
        var entries: UInt32 = 1
        while entries < region.geometry.recvSlots { entries <<= 1 }
        group = try loop.makeBufferGroup(id: groupID, entries: entries)
        doorbell = .allocate(capacity: 1)
        handler = loop.register(self)
        // Every receive slot starts in the kernel's provided-buffer ring.
        for slot in 0..<region.geometry.recvSlots { giveToKernel(slot) }
        group.commit()
        armDoorbell()
    }

    deinit { doorbell.deallocate() }

    // MARK: Lifecycle

    /// Puts START with the plugin's config JSON in a plugin-home slot on RX.
    func start(configJSON: [UInt8]) {
        var desc = ph_desc(type: PH_MSG_START)
        let firstPluginSlot = region.geometry.recvSlots
        if !configJSON.isEmpty && configJSON.count <= Int(region.geometry.slotSize) {
            configJSON.withUnsafeBytes { region.slotAddress(firstPluginSlot).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            desc.slot = firstPluginSlot
            desc.length = UInt32(configJSON.count)
        }
        push(desc)
        flushRX()
    }

    func sendHeartbeat(sequence: UInt64) { push(ph_desc(type: PH_MSG_HEARTBEAT, request: sequence)) }
    func sendStop() { push(ph_desc(type: PH_MSG_STOP)); flushRX() }
    func notifyControl(request: UInt64) { push(ph_desc(type: PH_MSG_CONTROL, request: request)); flushRX() }

    /// Cancels every operation, closes every socket, and calls `done` once nothing in flight can
    /// touch the pool any more: only then may the region be unmapped.
    func shutdown(done: @escaping () -> Void) {
        for i in conns.indices { if conns[i] != nil { closeConn(UInt32(i), notify: false) } }
        loop.cancelAll(handler) { [self] in
            loop.removeBufferGroup(group)
            loop.unregister(handler)
            done()
        }
    }

    // MARK: Once per loop iteration

    /// Drains TX, flushes RX. Returns true when work was done (the loop should not sleep yet).
    func poll(now: UInt64) -> Bool {
        if violated { return false }
        tx.awake()
        var worked = drainTX()
        worked = flushRX() || worked
        if worked { lastActivity = now; return true }
        // Adaptive wait: keep polling for a short budget after the last activity, then sleep.
        if now &- lastActivity < spinBudgetNanoseconds { return true }
        guard let arrived = tx.prepareSleep() else {
            violate(Violation(.ringIndex, "TX tail is more than \(tx.entries) entries ahead of head"))
            return false
        }
        if arrived > 0 { tx.awake(); return true }
        return false
    }

    private func drainTX() -> Bool {
        guard let ready = tx.ready() else {
            violate(Violation(.ringIndex, "TX tail is more than \(tx.entries) entries ahead of head"))
            return false
        }
        guard ready > 0 else { return false }
        for i in 0..<ready {
            let desc = tx.copy(at: i)   // the one read of plugin-written memory
            do {
                let request = try decoder.decode(desc) { [connIndexByID] id in connIndexByID[id] != nil }
                handle(request)
            } catch {
                tx.consume(i + 1)
                violate(error)
                return true
            }
            if violated { break }
        }
        tx.consume(ready)
        counters.messagesOut &+= UInt64(ready)
        if group.stagedCount > 0 { group.commit() }
        return true
    }

    @discardableResult
    private func flushRX() -> Bool {
        var moved = false
        while pendingRXHead < pendingRX.count, rx.put(pendingRX[pendingRXHead]) {
            pendingRXHead += 1
            moved = true
        }
        if pendingRXHead == pendingRX.count, pendingRXHead > 0 {
            pendingRX.removeAll(keepingCapacity: true)
            pendingRXHead = 0
        }
        if moved || rxUnpublished {
            rxUnpublished = false
            rx.publish()
            if rx.consumerWantsWakeup() {
                rxWake.signal()
                counters.rxWakeups &+= 1
            }
        }
        if group.stagedCount > 0 { group.commit() }
        return moved
    }

    /// Queues an RX event; written straight into the ring when there is room and nothing older waits.
    private func push(_ desc: ph_desc) {
        counters.messagesIn &+= 1
        if pendingRXHead == pendingRX.count, rx.put(desc) { rxUnpublished = true; return }
        pendingRX.append(desc)
    }

    var rxBacklog: Int { pendingRX.count - pendingRXHead }

    // MARK: Requests

    private func handle(_ request: PluginRequest) {
        switch request {
        case .ready(let status, let features):
            delegate?.sessionReady(self, status: status, features: features)
        case .heartbeatAck(let sequence):
            lastHeartbeatAck = sequence
        case .log(let level, let text, let slot):
            let l: Logger.Level = level >= 3 ? .error : level == 2 ? .warning : level == 1 ? .info : .debug
            logger.log(level: l, "\(text)", metadata: ["plugin": "\(plugin)"])
            returnSlot(slot, to: 0)
        case .metric(_, _, let slot):
            returnSlot(slot, to: 0)
        case .free(let slot):
            giveToKernel(slot, from: .core)
        case .listen(let request, let address, let slot):
            listen(request: request, address: address, slot: slot)
        case .send(let conn, let slot, let offset, let length):
            guard let index = connIndexByID[conn], let c = conns[Int(index)], c.kind == .stream, !c.closed else {
                complete(request: 0, status: PH_ENOTCONN, slot: slot); return
            }
            sends[Int(slot)] = SendState(connIndex: index, offset: offset, remaining: length)
            conns[Int(index)]!.sendsInFlight += 1
            loop.send(handler, fd: c.fd, from: region.slotAddress(slot) + Int(offset), length: Int(length), tag: slot)
        case .close(let conn):
            if let index = connIndexByID[conn] { closeConn(index, notify: false) }
        case .timerSet(let timer, let delay):
            let tag = nextTimerTag
            nextTimerTag &+= 1
            if nextTimerTag == 0 { nextTimerTag = 1 }
            timerIDsByTag[tag] = timer
            timerTagsByID[timer] = tag
            loop.timeout(handler, nanoseconds: delay, tag: tag)
        case .timerCancel(let timer):
            if let tag = timerTagsByID.removeValue(forKey: timer) {
                timerIDsByTag[tag] = nil
                loop.cancelTimeout(handler, tag: tag)
            }
        case .connect(let request, _, let slot), .udpBind(let request, _, let slot),
             .resolve(let request, _, let slot), .fileOpen(let request, _, _, let slot):
            complete(request: request, status: PH_ENOTSUP, slot: slot)
        case .udpSend(_, let slot, _, _, _), .fileWrite(_, _, _, let slot, _, _):
            _ = decoder.owners.transfer(slot, from: .inFlight, to: .core)
            returnSlot(slot, to: 0)
        case .fileRead(let request, _, _, let slot, _):
            _ = decoder.owners.transfer(slot, from: .inFlight, to: .core)
            complete(request: request, status: PH_ENOTSUP, slot: slot)
        case .kv(let request, _, let slot, _, _, _):
            complete(request: request, status: PH_ENOTSUP, slot: slot)
        case .fileSync(let request, _):
            complete(request: request, status: PH_ENOTSUP, slot: PH_NO_SLOT)
        case .fileClose, .connRate, .connWeight, .controlDone:
            break
        }
    }

    var lastHeartbeatAck: UInt64 = 0

    private func listen(request: UInt64, address: String, slot: UInt32) {
        guard let wanted = try? NetGrant(parsing: address), wanted.transport == .tcp, wanted.ports.count == 1,
              grants.contains(where: { $0.covers(wanted) }) else {
            delegate?.sessionDenied(self, action: "listen", object: address)
            complete(request: request, status: PH_EDENIED, slot: slot)
            return
        }
        do {
            let fd = try Sockets.tcpListener(try SocketAddress(ip: wanted.host, port: wanted.ports.lowerBound))
            let index = addConn(fd: fd, kind: .listener)
            loop.accept(handler, listener: fd, tag: index)
            logger.info("plugin listens", metadata: ["plugin": "\(plugin)", "address": "\(address)"])
            complete(request: request, status: PH_OK, value: Int64(conns[Int(index)]!.id), slot: slot)
        } catch {
            logger.warning("listen failed", metadata: ["plugin": "\(plugin)", "address": "\(address)", "error": "\(error)"])
            complete(request: request, status: errnoStatus(error), slot: slot)
        }
    }

    // MARK: Completions

    func complete(_ c: IOCompletion) {
        switch c.op {
        case .read:
            // The TX doorbell rang; the drain happens in poll(). Re-arm unless we are shutting down.
            if c.result >= 0 { armDoorbell() }
        case .accept:
            acceptCompleted(listenerIndex: c.tag, result: c.result)
        case .recv:
            recvCompleted(connIndex: c.tag, c)
        case .send:
            sendCompleted(slot: c.tag, result: c.result)
        case .timeout:
            if let timer = timerIDsByTag.removeValue(forKey: c.tag) {
                timerTagsByID[timer] = nil
                if c.result == -ETIME || c.result == 0 { push(ph_desc(type: PH_MSG_TIMER, id: timer)) }
            }
        default:
            break
        }
    }

    private func armDoorbell() {
        loop.read(handler, fd: txWake.fd, into: UnsafeMutableRawPointer(doorbell), length: 8, offset: 0, tag: 0)
    }

    private func acceptCompleted(listenerIndex: UInt32, result: Int32) {
        guard result >= 0 else {
            if result != -ECANCELED { logger.warning("accept failed", metadata: ["plugin": "\(plugin)", "errno": "\(errnoName(-result))"]) }
            return
        }
        guard let listener = conns[Int(listenerIndex)], !listener.closed else { Glibc.close(result); return }
        let fd = result
        Sockets.setNoDelay(fd)
        let index = addConn(fd: fd, kind: .stream)
        counters.connectionsOpen += 1
        counters.connectionsTotal &+= 1
        conns[Int(index)]!.recvArmed = true
        loop.recv(handler, fd: fd, group: group, tag: index)
        var desc = ph_desc(type: PH_MSG_ACCEPT, id: conns[Int(index)]!.id, arg: Int64(bitPattern: listener.id))
        encodePeer(fd: fd, into: &desc)
        push(desc)
    }

    private func recvCompleted(connIndex: UInt32, _ c: IOCompletion) {
        if !c.hasMore { conns[Int(connIndex)]?.recvArmed = false }
        if let bid = c.bufferID {
            let slot = UInt32(bid)
            if c.result > 0, let conn = conns[Int(connIndex)], !conn.closed {
                _ = decoder.owners.transfer(slot, from: .kernel, to: .plugin)
                counters.bytesIn &+= UInt64(c.result)
                push(ph_desc(type: PH_MSG_DATA, id: conn.id, slot: slot, length: UInt32(c.result)))
            } else {
                // Data for a connection the plugin closed, or an empty buffer: straight back.
                _ = decoder.owners.transfer(slot, from: .kernel, to: .core)
                giveToKernel(slot, from: .core)
            }
        }
        guard var conn = conns[Int(connIndex)] else { return }
        if c.result == 0 || (c.result < 0 && c.result != -ECANCELED) {
            // EOF or error: tell the plugin once, then release the socket.
            if !conn.closed {
                let reason: ph_status = c.result == 0 ? PH_OK : (c.result == -ECONNRESET ? PH_ERESET : PH_EIO)
                push(ph_desc(type: PH_MSG_CLOSED, id: conn.id, status: Int16(reason.rawValue)))
                closeConn(connIndex, notify: false)
            }
        } else if !c.hasMore && !conn.closed {
            conn.recvArmed = true
            conns[Int(connIndex)] = conn
            loop.recv(handler, fd: conn.fd, group: group, tag: connIndex)
        }
        releaseIfDone(connIndex)
    }

    private func sendCompleted(slot: UInt32, result: Int32) {
        var state = sends[Int(slot)]
        let index = state.connIndex
        if result > 0 { counters.bytesOut &+= UInt64(result) }
        if result > 0, UInt32(result) < state.remaining, let conn = conns[Int(index)], !conn.closed {
            // Short send: continue from where the kernel stopped; the slot stays in flight.
            state.offset += UInt32(result)
            state.remaining -= UInt32(result)
            sends[Int(slot)] = state
            loop.send(handler, fd: conn.fd, from: region.slotAddress(slot) + Int(state.offset), length: Int(state.remaining), tag: slot)
            return
        }
        conns[Int(index)]?.sendsInFlight -= 1
        let connID = conns[Int(index)]?.id ?? 0
        if result < 0, result != -ECANCELED, let conn = conns[Int(index)], !conn.closed {
            push(ph_desc(type: PH_MSG_CLOSED, id: conn.id, status: Int16(PH_ERESET.rawValue)))
            closeConn(index, notify: false)
        }
        // The slot goes home: receive slots to the kernel, plugin slots back to the plugin.
        _ = decoder.owners.transfer(slot, from: .inFlight, to: .core)
        if decoder.owners.isReceiveSlot(slot) {
            giveToKernel(slot, from: .core)
        } else {
            returnSlot(slot, to: connID)
        }
        releaseIfDone(index)
    }

    // MARK: Slots

    /// Hands a core-owned receive slot to the kernel's buffer ring (committed once per iteration).
    private func giveToKernel(_ slot: UInt32, from: SlotOwnership.Owner = .core) {
        guard decoder.owners.transfer(slot, from: from, to: .kernel) else { return }
        group.add(bufferID: UInt16(slot), address: region.slotAddress(slot), length: region.geometry.slotSize)
    }

    /// Gives a core-held plugin slot back with SEND_DONE (no payload).
    private func returnSlot(_ slot: UInt32, to conn: UInt64) {
        guard decoder.owners.transfer(slot, from: .core, to: .plugin) else { return }
        push(ph_desc(type: PH_MSG_SEND_DONE, id: conn, slot: slot))
    }

    /// Completes a request, handing its argument slot back.
    private func complete(request: UInt64, status: ph_status, value: Int64 = 0, slot: UInt32) {
        var desc = ph_desc(type: PH_MSG_COMPLETE, request: request, arg: value, status: Int16(status.rawValue))
        if slot != PH_NO_SLOT, decoder.owners.transfer(slot, from: .core, to: .plugin) {
            desc.slot = slot
        }
        push(desc)
    }

    // MARK: Connections

    private func addConn(fd: Int32, kind: ConnKind) -> UInt32 {
        let id = Self.nextConnID
        Self.nextConnID &+= 1
        let conn = Conn(id: id, fd: fd, kind: kind)
        let index: UInt32
        if let reuse = freeConnIndices.popLast() {
            index = reuse
            conns[Int(index)] = conn
        } else {
            index = UInt32(conns.count)
            conns.append(conn)
        }
        connIndexByID[id] = index
        return index
    }

    /// Stops I/O on a connection: cancels its operations and closes the socket (the kernel keeps
    /// the file alive until those complete). The index is reused only once nothing is in flight.
    private func closeConn(_ index: UInt32, notify: Bool) {
        guard var conn = conns[Int(index)], !conn.closed else { return }
        conn.closed = true
        conns[Int(index)] = conn
        connIndexByID[conn.id] = nil
        if conn.kind == .stream { counters.connectionsOpen -= 1 }
        loop.cancel(handler, fd: conn.fd)
        loop.close(handler, fd: conn.fd)
        releaseIfDone(index)
    }

    private func releaseIfDone(_ index: UInt32) {
        guard let conn = conns[Int(index)], conn.closed, !conn.recvArmed, conn.sendsInFlight == 0 else { return }
        conns[Int(index)] = nil
        freeConnIndices.append(index)
    }

    /// The peer address goes in the descriptor itself (no slot needed): reserved[0..<16] holds the
    /// IPv6 (or v4-mapped) address, arg2 the port and family.
    private func encodePeer(fd: Int32, into desc: inout ph_desc) {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &len) == 0 }
        }
        guard ok, let peer = try? withUnsafeBytes(of: &storage, { try SocketAddress(copying: $0.baseAddress!, length: len) }) else { return }
        var bytes = [UInt8](repeating: 0, count: 16)
        if peer.family == AF_INET {
            bytes[10] = 0xff; bytes[11] = 0xff
            let parts = peer.ip.split(separator: ".").compactMap { UInt8($0) }
            if parts.count == 4 { bytes.replaceSubrange(12..<16, with: parts) }
        } else {
            var in6 = in6_addr()
            if inet_pton(AF_INET6, peer.ip, &in6) == 1 { withUnsafeBytes(of: &in6) { bytes = Array($0) } }
        }
        withUnsafeMutableBytes(of: &desc.reserved) { $0.copyBytes(from: bytes) }
        desc.arg2 = UInt64(peer.port) | UInt64(peer.family == AF_INET ? 4 : 6) << 16
    }

    // MARK: Violations

    private func violate(_ violation: Violation) {
        guard !violated else { return }
        violated = true
        delegate?.sessionViolated(self, violation)
    }
}

private func errnoStatus(_ error: Error) -> ph_status {
    guard case EventLoopError.syscall(_, let e) = error else { return PH_EINVAL }
    switch e {
    case EADDRINUSE: return PH_EADDRINUSE
    case EACCES, EPERM: return PH_EDENIED
    default: return PH_EIO
    }
}
