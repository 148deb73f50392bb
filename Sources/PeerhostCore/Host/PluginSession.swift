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
    func sessionDenied(_ session: PluginSession, action: String, object: String, reason: String)
    /// Something the operator should see in `peerhost status` while the plugin keeps running.
    func sessionNote(_ session: PluginSession, _ note: String)
}

/// Counters of one session, read by status and metrics (loop thread writes, others read through
/// the supervisor's snapshot).
struct SessionCounters {
    var bytesIn: UInt64 = 0          // network → plugin
    var bytesOut: UInt64 = 0         // plugin → network
    var messagesIn: UInt64 = 0       // RX descriptors delivered
    var messagesOut: UInt64 = 0      // TX descriptors consumed
    var rxWakeups: UInt64 = 0        // eventfd writes towards the plugin
    var txWakeups: UInt64 = 0        // doorbell reads: the plugin woke the core
    var spaceWakeups: UInt64 = 0     // eventfd writes to a runner that waited for TX room (ABI 1.2)
    var copiedBytes: UInt64 = 0      // payload bytes the core copied (0 on the zero-copy path)
    var receivePauses: UInt64 = 0    // receives parked on ENOBUFS: the plugin held every receive slot
    var connectionsOpen: Int = 0
    var connectionsTotal: UInt64 = 0
    var gatheredWrites: UInt64 = 0   // file_writes submitted as part of a multi-write pwritev
    var descriptorRefusals: UInt64 = 0   // listen/connect/udp_bind/file_open/accept refused at the descriptor budget
    var lingerResets: UInt64 = 0     // closed streams reset because the peer took nothing for the linger time
    var resets: UInt64 = 0           // abortive closes the plugin asked for (conn_reset)
    var lingering: Int = 0           // streams the plugin closed that are still flushing or waiting for the peer's FIN
}

/// The core's side of one running plugin incarnation: its region, rings, slots, connections,
/// UDP sockets, files and timers. Loop thread only. A new incarnation (after a restart) gets a new
/// session and a fresh region; this one is cancelled and drained before its region is unmapped.
///
/// Receive slots: slots [0, udpReserve) are a small core-owned reserve for UDP (one recvmsg per
/// socket is armed into one of them); the rest, [udpReserve, recv_slots), are the kernel's
/// provided-buffer ring for TCP. A slot always returns to the pool its index belongs to, so the
/// two never mix. The reserve exists only when the plugin has a UDP listen grant.
final class PluginSession: IOHandler, @unchecked Sendable {
    enum ConnKind { case stream, listener, connecting, udp }

    /// Where a socket is on its way to closed (a stream walks them in order; the other kinds go
    /// from open straight to done).
    enum Phase {
        case open
        /// The peer sent FIN: the plugin was told (CLOSED) and may still send; its close (the
        /// runner sends one after on_closed returned) starts the flush.
        case peerClosed
        /// The plugin closed: what it sent before still goes out, then FIN.
        case closing
        /// FIN sent: receiving (and discarding) until the peer's FIN or the linger time, so the
        /// final close never meets unread bytes (which would make Linux answer with a RST).
        case finWait
        /// The descriptor is closed (or its close is submitted); the index is freed once nothing
        /// of it is in flight.
        case done
    }

    struct Conn {
        var id: UInt64
        var fd: Int32
        var kind: ConnKind
        /// Closed for the plugin: its id is forgotten (the socket itself may still flush: `phase`).
        var closed = false
        var phase = Phase.open
        var recvArmed = false           // TCP: multishot recv; UDP: one recvmsg into `udpSlot`
        var sendsInFlight = 0           // UDP datagrams in the kernel (streams: `out`)
        /// TCP: what the plugin sent and the kernel has not taken yet, in order (StreamSendQueue).
        var out = StreamSendQueue()
        /// TCP: the peer's FIN arrived.
        var peerFinished = false
        /// TCP: the linger timer's tag while one is armed (0: none), and when bytes last moved.
        var lingerTag: UInt32 = 0
        var lastProgress: UInt64 = 0
        /// A stream the plugin closed whose socket still flushes or waits for the peer's FIN.
        var lingers: Bool { phase == .closing || phase == .finWait }
        var connectInFlight = false
        var udpSlot: UInt32 = PH_NO_SLOT
        var family: Int32 = 0
        /// UDP: where recvmsg writes the sender (private memory; must outlive the recvmsg).
        var peer: UnsafeMutablePointer<sockaddr_storage>? = nil
        /// The shaper's node (streams and UDP sockets of a shaped plugin).
        var shaper: ConnShaper? = nil
        /// UDP datagrams waiting for tokens, in order (the slot stays in flight, i.e. with the core).
        var queuedSends: [QueuedSend] = []
        /// Receive paused by the shaper: not re-armed until the buckets have tokens again.
        var rxPaused = false
        /// A socket bound to a `net.multicast` group: it sends only to that group, within `multicastBudget`.
        var multicastGroup: SocketAddress? = nil
        var multicastBudget = MulticastSendBudget()
    }

    /// A datagram held back by the shaper.
    struct QueuedSend {
        var slot: UInt32
        var offset: UInt32
        var length: UInt32
        var to: SocketAddress
    }

    /// An outbound TCP connect between CONNECT and its COMPLETE. The request's slot is held by
    /// the core until then.
    struct ConnectState {
        var request: UInt64
        var slot: UInt32
        var candidates: [SocketAddress]
        var next: Int
        var timerTag: UInt32
        var timedOut = false
    }

    struct FileState {
        var fd: Int32
        var readable: Bool
        var writable: Bool
        var inFlight = 0
        var closed = false
        /// Writes get numbers in the order the plugin sent them; those still in the kernel, oldest
        /// first (a short write keeps its number while it goes on).
        var nextWrite: UInt64 = 0
        var writesInFlight: [UInt64] = []
        /// FILE_SYNCs waiting for the writes sent before them: (request, last write number it covers).
        var waitingSyncs: [(request: UInt64, covers: UInt64)] = []
    }

    /// A FILE_READ or FILE_WRITE in flight, indexed by its slot (like `sends`).
    struct FileIO {
        var request: UInt64 = 0
        var file: UInt64 = 0
        var write: UInt64 = 0           // FILE_WRITE: its number in FileState.writesInFlight
        var fileOffset: UInt64 = 0
        var offset: UInt32 = 0
        var remaining: UInt32 = 0
        var done: UInt32 = 0
    }

    struct WriteRun {
        var file: UInt64
        var fd: Int32
        var fileOffset: UInt64
        var end: UInt64
        var slots: [UInt32]
    }

    struct OpenState {
        var request: UInt64
        var slot: UInt32
        var path: String
        var readable: Bool
        var writable: Bool
    }

    /// A datagram send in flight, indexed by its slot (a slot is in exactly one operation at a time).
    struct SendState {
        var connIndex: UInt32 = 0
    }

    let plugin: String
    let loop: IOUringLoop
    let region: SharedRegion
    let rxWake: Wakeup
    let txWake: Wakeup
    /// Grants; storage grants change at run time (operator grants: addOperatorGrant/removeOperatorGrant).
    private(set) var access: PluginAccess
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
    /// The plugin's timers, in user space behind one io_uring timeout (PluginTimers says why): the
    /// deadline that timeout is armed for (.max: none) and the serial in its tag (a replaced one
    /// completes with an older serial and is ignored).
    private var timers = PluginTimers()
    private var timerArmedDeadline: UInt64 = .max
    private var timerSerial: UInt32 = 0
    /// Pending timers the plugin may hold ([tuning] plugin_timers; the runner answers PH_EQUOTA
    /// past it, the core drops and counts what a runner sends beyond it).
    var timerBudget = Defaults.pluginTimers
    private var timerBudgetLogged = false
    private let doorbell: UnsafeMutablePointer<UInt64>
    private(set) var counters = SessionCounters()
    /// Per-peer accounting (ABI 1.1): the plugin's table (owned by the supervisor, so it outlives
    /// this incarnation) and the peer tag of each tagged connection, by connection index.
    var peers: PeerTable?
    private var peerOfConn: [UInt32: String] = [:]
    /// Only for a plugin that declared PH_FEAT_PEER_TAGS: what each connection carried before its
    /// first tag (the tag arrives after on_accept, when the first bytes may already be counted),
    /// by connection index; handed to the peer when it is tagged.
    private var peerTagging = false
    private var untagged: [PeerUsage] = []
    private(set) var violated = false
    /// The plugin's metrics (metric_add), set by the supervisor.
    var pluginMetrics: PluginMetrics?
    private var metricAddRefusalLogged = false
    private var lastActivity: UInt64 = 0
    var spinBudgetNanoseconds: UInt64 = 50_000

    // Outbound connects (by conn index) and their deadline timers (timer tag → conn index).
    private var connecting: [UInt32: ConnectState] = [:]
    private var connectTimers: [UInt32: UInt32] = [:]
    private var nextConnectTimer: UInt32 = 0
    private let resolver: Resolver
    private let localAddresses = LocalAddresses()
    // UDP receive reserve (see the type comment).
    private let udpReserve: UInt32
    private var udpFreeSlots: [UInt32] = []
    private var udpWaiting: [UInt32] = []        // sockets with no recvmsg armed for lack of a slot
    // Files: one O_PATH directory per storage grant, open files, operations in flight.
    private var storageDirs: [Int32]
    /// Directories of revoked operator grants: an openat2 submitted before the revoke may still use
    /// one as its base, so they are closed with the others at shutdown, never earlier.
    private var retiredStorageDirs: [Int32] = []
    private var files: [UInt64: FileState] = [:]
    private var fileIO: [FileIO]
    /// file_writes of one TX drain that continue each other in one file, gathered into a single
    /// pwritev: a BitTorrent piece arrives as 64 block writes, and one submission (one io-wq
    /// hand-off, one pass through the file system's write path) costs far less than 64.
    private var gatheredWrite: WriteRun?
    /// Slots of the runs in flight, by the first slot (the run's completion tag).
    private var writeRuns: [UInt32: [UInt32]] = [:]
    /// Most writes in one run (the kernel's IOV_MAX is 1024; a 1 MiB piece is 64 blocks).
    static let maxWriteRun = 256
    private var opens: [UInt32: OpenState] = [:]
    private var nextOpenTag: UInt32 = 0
    private var syncs: [UInt32: (request: UInt64, file: UInt64)] = [:]
    private var nextSyncTag: UInt32 = 0
    private(set) var shuttingDown = false
    /// Sockets and files held for the plugin: every live socket (listeners, streams, connects in
    /// flight, UDP), every file until its descriptor closes, every openat2 in flight. Bounded by
    /// `descriptorBudget` ([tuning] plugin_descriptors; Defaults.pluginDescriptors says why).
    var descriptorsHeld: Int { connIndexByID.count + counters.lingering + files.count + opens.count }
    var descriptorBudget = Defaults.pluginDescriptors
    private var lastDescriptorWarning: UInt64 = 0
    /// The plugin's shaper node (set by the supervisor before start; nil = not shaped).
    var shaping: PluginShaper?
    /// Connections waiting for tokens (conn index), per direction; served by the shaper timer.
    private var shapedWaiting: [Set<UInt32>] = [[], []]
    /// When the earliest pending refill timer fires (.max: none pending), and a serial that keeps
    /// the tags of pending refill timers distinct.
    private var shaperTimerDeadline: UInt64 = .max
    private var shaperTimerSerial: UInt32 = 0
    /// Refill timer tags have this bit (plus a 16-bit serial); plugin timer tags stay below it.
    private static let shaperTimerTag: UInt32 = 1 << 30
    // Key-value store (KVStore.swift), set by the supervisor: the host's store (or why it is
    // unusable) and the manifest's quota (nil: no kv grant).
    var kvStore: Result<KVStore, StoreError>?
    var kvQuota: UInt64?
    private var kvFailureReported = false

    /// Bytes of one connection the core holds before the plugin's send answers PH_EAGAIN ([tuning]
    /// send_queue_per_connection; the runner enforces it from START's arg2, Defaults says why).
    var sendQueueLimit = Defaults.sendQueuePerConnection
    /// How long a closed stream may go without progress (bytes taken by the peer, or its FIN)
    /// before it is reset ([tuning] close_linger_s).
    var lingerNanoseconds = UInt64(Defaults.closeLingerSeconds) * 1_000_000_000
    /// Linger timers (tag with connectTimerBit → conn index); tags come from nextConnectTimer.
    private var lingerTimers: [UInt32: UInt32] = [:]

    /// A connect that neither succeeds nor fails within this time completes with PH_ETIMEDOUT.
    static let connectTimeoutNanoseconds: UInt64 = 10_000_000_000
    /// Timer tags with this bit are connect deadlines; plugin timers use tags below it.
    private static let connectTimerBit: UInt32 = 1 << 31

    nonisolated(unsafe) private static var nextConnID: UInt64 = 1
    /// File ids are global too, so a file id of another plugin is never valid in this session.
    nonisolated(unsafe) private static var nextFileID: UInt64 = 1

    init(plugin: String, loop: IOUringLoop, region: SharedRegion, rxWake: Wakeup, txWake: Wakeup,
         groupID: UInt16, access: PluginAccess, logger: Logger) throws {
        // The storage root and granted directories first: nothing else to undo if that fails.
        storageDirs = try prepareStorage(root: access.storageRoot, layout: access.storage)
        self.plugin = plugin
        self.loop = loop
        self.region = region
        self.rxWake = rxWake
        self.txWake = txWake
        self.access = access
        self.logger = logger
        resolver = Resolver(loop: loop)
        fileIO = Array(repeating: FileIO(), count: Int(region.geometry.slotCount))
        let recvSlots = region.geometry.recvSlots
        let wantsUDP = access.listen.contains { $0.transport == .udp }
        udpReserve = wantsUDP && recvSlots >= 2 ? min(16, max(1, recvSlots / 8)) : 0
        rx = region.rxRing(as: .core)
        tx = region.txRing(as: .core)
        decoder = RequestDecoder(region: region)
        sends = Array(repeating: SendState(), count: Int(region.geometry.slotCount))
        var entries: UInt32 = 1
        while entries < region.geometry.recvSlots { entries <<= 1 }
        do {
            group = try loop.makeBufferGroup(id: groupID, entries: entries)
        } catch {
            for fd in storageDirs where fd >= 0 { Glibc.close(fd) }   // no session will exist to close them
            throw error
        }
        doorbell = .allocate(capacity: 1)
        handler = loop.register(self)
        // Receive slots past the UDP reserve start in the kernel's provided-buffer ring.
        for slot in udpReserve..<region.geometry.recvSlots { giveToKernel(slot) }
        udpFreeSlots = (0..<udpReserve).reversed()
        group.commit()
        armDoorbell()
    }

    deinit { doorbell.deallocate() }

    // MARK: Lifecycle

    /// Puts START with the plugin's config JSON in a plugin-home slot on RX, followed by its udp
    /// connect grants (ABI 1.2: the runner answers an ungranted udp_send PH_EDENIED itself; the
    /// core still decides every send, with the host's own addresses the runner does not know).
    func start(configJSON: [UInt8]) {
        var desc = ph_desc(type: PH_MSG_START)
        desc.arg2 = UInt64(sendQueueLimit)
        desc.arg = Int64(timerBudget)
        let firstPluginSlot = region.geometry.recvSlots
        let grants = Array(access.connect.grants.filter { $0.transport == .udp }.map { $0.description + "\n" }.joined().utf8)
        let payload = configJSON + grants
        if payload.count <= Int(region.geometry.slotSize) {
            payload.withUnsafeBytes { if $0.count > 0 { region.slotAddress(firstPluginSlot).copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
            desc.slot = firstPluginSlot
            desc.length = UInt32(configJSON.count)
            desc.request = UInt64(grants.count) + 1
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
        shuttingDown = true
        // Sockets of every kind: streams (lingering ones too), listeners, pending connects, UDP
        // sockets. The region goes away after this, so nothing queued can still be sent.
        for i in conns.indices { if conns[i] != nil { abortConn(UInt32(i)) } }
        loop.cancelAll(handler) { [self] in
            // Nothing is in flight any more: files and the granted directories (which pending
            // openat2 calls used as their base) can be closed without racing an operation.
            for f in files.values { Glibc.close(f.fd) }
            files.removeAll()
            for fd in storageDirs + retiredStorageDirs where fd >= 0 { Glibc.close(fd) }
            storageDirs.removeAll()
            retiredStorageDirs.removeAll()
            loop.removeBufferGroup(group)
            loop.unregister(handler)
            done()
        }
    }

    // MARK: Once per loop iteration

    /// Drains TX, flushes RX. Returns true when work was done (the loop should not sleep yet).
    func poll(now: UInt64) -> Bool {
        if violated { return false }
        counters.receivePauses = group.parksTotal   // one load: the loop parks, the group counts
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
                let request = try decoder.decode(desc, owns: { [connIndexByID, closedConnIDs] id in
                                                     connIndexByID[id] != nil || closedConnIDs.contains(id) },
                                                 ownsFile: { [files] id in files[id].map { !$0.closed } ?? false })
                if case .fileWrite = request {} else { submitGatheredWrite() }
                handle(request)
            } catch {
                submitGatheredWrite()
                tx.consume(i + 1)
                violate(error)
                return true
            }
            if violated { break }
        }
        submitGatheredWrite()
        tx.consume(ready)
        // A runner that found TX full sleeps on its RX eventfd: room has come back (ph_ring.h, Space).
        if tx.producerWantsSpace() { rxWake.signal(); counters.spaceWakeups &+= 1 }
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
            peerTagging = features & UInt64(PH_FEAT_PEER_TAGS) != 0
            delegate?.sessionReady(self, status: status, features: features)
        case .heartbeatAck(let sequence):
            lastHeartbeatAck = sequence
        case .connPeer(let conn, let peer):
            tagPeer(conn: conn, peer: PeerTable.key(peer))
        case .udpRefused(_, let to):
            delegate?.sessionDenied(self, action: "udp_send", object: to, reason: "no connect grant covers it (answered PH_EDENIED by the runner)")
        case .log(let level, let text, let slot):
            let l: Logger.Level = level >= 3 ? .error : level == 2 ? .warning : level == 1 ? .info : .debug
            logger.log(level: l, "\(Self.oneLine(text))", metadata: ["plugin": "\(plugin)"])
            returnSlot(slot, to: 0)
        case .metric(let name, let value, let slot):
            if let metrics = pluginMetrics, !metrics.metricAdd(name: name, value: value), !metricAddRefusalLogged {
                metricAddRefusalLogged = true   // once per incarnation: the plugin may call it per packet
                logger.warning("metric_add ignored (negative or non-finite value, a name of the host's own, or more than \(Defaults.metricAddMaxNames) names)",
                               metadata: ["plugin": "\(plugin)", "name": "\(name)"])
            }
            returnSlot(slot, to: 0)
        case .free(let slot):
            recycleReceiveSlot(slot)
        case .listen(let request, let address, let slot):
            listen(request: request, address: address, slot: slot)
        case .send(let conn, let slot, let offset, let length):
            guard let index = connIndexByID[conn], let c = conns[Int(index)], c.kind == .stream, !c.closed,
                  c.phase == .open || c.phase == .peerClosed, length > 0 else {
                // Not a connected stream (a listener, a UDP socket, a connect still pending, one
                // that failed), or nothing to send: the payload slot simply goes home.
                streamSendDone(slot: slot, length: length, conn: conn); return
            }
            conns[Int(index)]!.out.append(slot: slot, offset: offset, length: length)
            pump(index)
        case .close(let conn):
            if let index = connIndexByID[conn] { closeGracefully(index) }
        case .reset(let conn):
            if let index = connIndexByID[conn] {
                if conns[Int(index)]?.kind == .stream { counters.resets &+= 1 }
                abortConn(index, reset: true)
            }
        case .timerSet(let timer, let delay):
            guard timers.count < timerBudget else {
                // Our runner answers PH_EQUOTA before this; only a runner that was tampered with
                // gets here. Dropped (that plugin's own timer never fires), said once.
                if !timerBudgetLogged {
                    timerBudgetLogged = true
                    logger.warning("TIMER_SET past the timer budget dropped", metadata: ["plugin": "\(plugin)", "budget": "\(timerBudget)"])
                }
                return
            }
            let now = monotonicNanoseconds()
            let (deadline, overflow) = now.addingReportingOverflow(delay)
            timers.set(timer, deadline: overflow ? .max - 1 : deadline)
            armPluginTimer(now: now)
        case .timerCancel(let timer):
            timers.cancel(timer)   // the armed timeout, if it was for this one, finds nothing due and re-arms
        case .connect(let request, let address, let slot):
            connect(request: request, address: address, slot: slot)
        case .udpBind(let request, let address, let slot):
            udpBind(request: request, address: address, slot: slot)
        case .udpSend(let socket, let slot, let offset, let length, let to):
            udpSend(socket: socket, slot: slot, offset: offset, length: length, to: to)
        case .resolve(let request, let name, let slot):
            resolve(request: request, name: name, slot: slot)
        case .fileOpen(let request, let path, let flags, let slot):
            fileOpen(request: request, path: path, flags: flags, slot: slot)
        case .fileRead(let request, let file, let fileOffset, let slot, let offset):
            fileRead(request: request, file: file, fileOffset: fileOffset, slot: slot, offset: offset)
        case .fileWrite(let request, let file, let fileOffset, let slot, let offset, let length):
            fileWrite(request: request, file: file, fileOffset: fileOffset, slot: slot, offset: offset, length: length)
        case .fileSync(let request, let file):
            fileSync(request: request, file: file)
        case .fileClose(let file):
            fileClose(file)
        case .kv(let request, let kind, let slot, let offset, let length, let keyLength, let scanPrefixLength):
            kv(request: request, kind: kind, slot: slot, offset: offset, length: length, keyLength: keyLength,
               scanPrefixLength: scanPrefixLength)
        case .connRate(let conn, let up, let down):
            // Always inside the plugin's own grant: the plugin bucket caps whatever is asked.
            if let index = connIndexByID[conn], let node = conns[Int(index)]?.shaper {
                node.setRate(up: up, down: down, now: monotonicNanoseconds())
            }
        case .connWeight(let conn, let weight):
            if let index = connIndexByID[conn], let node = conns[Int(index)]?.shaper { node.setWeight(weight) }
        case .controlDone:
            break
        }
    }

    /// A plugin's log text as one line of the host's log: line breaks and other control characters
    /// (C0, DEL, C1 with NEL, U+2028/U+2029) become visible escapes, so a plugin cannot forge a
    /// host log line (or hide part of its own) by embedding "\n2026-… info peerhost: …".
    static func oneLine(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: needsEscape) else { return text }
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            guard needsEscape(scalar) else { out.append(scalar); continue }
            switch scalar {
            case "\n": out.append(contentsOf: "\\n".unicodeScalars)
            case "\r": out.append(contentsOf: "\\r".unicodeScalars)
            default: out.append(contentsOf: "\\u{\(String(scalar.value, radix: 16))}".unicodeScalars)
            }
        }
        return String(out)
    }

    private static func needsEscape(_ s: Unicode.Scalar) -> Bool {
        (s.value < 0x20 && s != "\t") || (0x7f...0x9f).contains(s.value) || s.value == 0x2028 || s.value == 0x2029
    }

    /// A refused request: counted and logged by the delegate, answered with PH_EDENIED.
    private func deny(request: UInt64, action: String, object: String, slot: UInt32,
                      reason: String = "no grant covers it") {
        delegate?.sessionDenied(self, action: action, object: object, reason: reason)
        complete(request: request, status: PH_EDENIED, slot: slot)
    }

    /// True when the plugin holds its whole descriptor budget: the request (if any) is answered
    /// PH_EQUOTA, the refusal counted, and a warning logged at most once a minute (a plugin
    /// retrying in a loop must not flood the log).
    private func atDescriptorBudget(_ action: String, request: UInt64? = nil, slot: UInt32 = PH_NO_SLOT) -> Bool {
        guard descriptorsHeld >= descriptorBudget else { return false }
        counters.descriptorRefusals &+= 1
        let now = monotonicNanoseconds()
        if lastDescriptorWarning == 0 || now &- lastDescriptorWarning >= 60_000_000_000 {
            lastDescriptorWarning = now
            logger.warning("plugin holds its whole descriptor budget: refusing", metadata: [
                "plugin": "\(plugin)", "action": "\(action)", "budget": "\(descriptorBudget)",
                "refused_so_far": "\(counters.descriptorRefusals)"])
        }
        if let request { complete(request: request, status: PH_EQUOTA, slot: slot) }
        return true
    }

    var lastHeartbeatAck: UInt64 = 0

    private func listen(request: UInt64, address: String, slot: UInt32) {
        guard let wanted = try? NetGrant(parsing: address), wanted.transport == .tcp, access.mayBind(wanted) else {
            delegate?.sessionDenied(self, action: "listen", object: address, reason: "no listen grant covers it")
            complete(request: request, status: PH_EDENIED, slot: slot)
            return
        }
        guard !atDescriptorBudget("listen", request: request, slot: slot) else { return }
        do {
            let fd = try Sockets.tcpListener(try SocketAddress(ip: wanted.host, port: wanted.ports.lowerBound))
            let index = addConn(fd: fd, kind: .listener)
            loop.accept(handler, listener: fd, tag: index)
            logger.info("plugin listens", metadata: ["plugin": "\(plugin)", "address": "\(address)"])
            complete(request: request, status: PH_OK, value: Int64(conns[Int(index)]!.id), slot: slot)
        } catch {
            logger.warning("listen failed", metadata: ["plugin": "\(plugin)", "address": "\(address)", "error": "\(error)"])
            delegate?.sessionNote(self, "listen \(address) failed: \(error)")
            complete(request: request, status: errnoStatus(error), slot: slot)
        }
    }

    // MARK: Completions

    func complete(_ c: IOCompletion) {
        switch c.op {
        case .read:
            if c.tag == 0 {
                // The TX doorbell rang; the drain happens in poll(). Re-arm unless we are shutting down.
                if c.result >= 0 {
                    counters.txWakeups &+= 1
                    armDoorbell()
                }
            } else {
                fileReadCompleted(slot: c.tag - 1, result: c.result)
            }
        case .write:
            if let run = writeRuns.removeValue(forKey: c.tag) {
                writeRunCompleted(run, result: c.result)
            } else {
                fileWriteCompleted(slot: c.tag, result: c.result)
            }
        case .fsync:
            fileSyncCompleted(tag: c.tag, result: c.result)
        case .openat:
            fileOpenCompleted(tag: c.tag, result: c.result)
        case .connect:
            connectCompleted(index: c.tag, result: c.result)
        case .recvmsg:
            datagramReceived(socketIndex: c.tag, result: c.result)
        case .sendmsg:
            datagramSent(slot: c.tag, result: c.result)
        case .accept:
            acceptCompleted(listenerIndex: c.tag, result: c.result)
        case .recv:
            recvCompleted(connIndex: c.tag, c)
        case .send:
            sendCompleted(connIndex: c.tag, result: c.result)
        case .timeout where c.tag & Self.connectTimerBit == 0 && c.tag & Self.shaperTimerTag != 0:
            shaperTimerDeadline = .max
            if !shuttingDown { serveShaped() }
        case .timeout where c.tag & Self.connectTimerBit != 0:
            if let index = lingerTimers.removeValue(forKey: c.tag) {
                lingerExpired(index, tag: c.tag, result: c.result)
            } else {
                connectDeadline(tag: c.tag, result: c.result)
            }
        case .timeout:
            pluginTimerFired(tag: c.tag)
        default:
            break
        }
    }

    /// Plugin timer tags: the serial below the shaper's bit (connect and linger tags use bit 31).
    private func pluginTimerTag(_ serial: UInt32) -> UInt32 { serial & (Self.shaperTimerTag - 1) }

    /// Keeps the one io_uring timeout armed for the earliest pending timer: an earlier one replaces
    /// it (removing one timeout from the kernel's short list is cheap).
    private func armPluginTimer(now: UInt64) {
        guard !shuttingDown, let next = timers.earliest(), next < timerArmedDeadline else { return }
        if timerArmedDeadline != .max { loop.cancelTimeout(handler, tag: pluginTimerTag(timerSerial)) }
        timerSerial &+= 1
        timerArmedDeadline = next
        loop.timeout(handler, nanoseconds: next > now ? next - now : 0, tag: pluginTimerTag(timerSerial))
    }

    /// The armed timeout fired: every timer now due goes to the plugin, earliest first, and the
    /// timeout is armed again for the next one.
    private func pluginTimerFired(tag: UInt32) {
        guard tag == pluginTimerTag(timerSerial), timerArmedDeadline != .max, !shuttingDown else { return }
        timerArmedDeadline = .max
        let now = monotonicNanoseconds()
        for id in timers.popDue(now: now) { push(ph_desc(type: PH_MSG_TIMER, id: id)) }
        armPluginTimer(now: now)
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
        // At the budget the connection is closed before the plugin hears of it: the peer sees a
        // normal close, the listener keeps accepting once the plugin lets go of something.
        guard !atDescriptorBudget("accept") else { Glibc.close(result); return }
        let fd = result
        Sockets.setNoDelay(fd)
        let index = addConn(fd: fd, kind: .stream)
        counters.connectionsOpen += 1
        counters.connectionsTotal &+= 1
        conns[Int(index)]!.recvArmed = true
        armReceive(index)
        var desc = ph_desc(type: PH_MSG_ACCEPT, id: conns[Int(index)]!.id, arg: Int64(bitPattern: listener.id))
        encodePeer(fd: fd, into: &desc)
        push(desc)
    }

    /// Receive order: the kernel posts a multishot receive's completions in stream order, each
    /// becomes one DATA pushed onto RX in that order (push keeps FIFO order with what waits in
    /// pendingRX), and a receive stopped by the shaper is re-armed only after its final
    /// completion, so two receives never race on one socket.
    private func recvCompleted(connIndex: UInt32, _ c: IOCompletion) {
        if !c.hasMore { conns[Int(connIndex)]?.recvArmed = false }
        if let bid = c.bufferID {
            let slot = UInt32(bid)
            if c.result > 0, let conn = conns[Int(connIndex)], !conn.closed {
                _ = decoder.owners.transfer(slot, from: .kernel, to: .plugin)
                counters.bytesIn &+= UInt64(c.result)
                if peerTagging { accountPeer(connIndex, inbound: UInt64(c.result)) }
                push(ph_desc(type: PH_MSG_DATA, id: conn.id, slot: slot, length: UInt32(c.result)))
                if let node = conn.shaper, let shaping, shaping.active {
                    // Taken after the fact (the length is known only now); in debt → pause.
                    let now = monotonicNanoseconds()
                    shaping.charge(node, .down, bytes: Int(c.result), now: now)
                    if !conn.rxPaused, !shaping.admit(node, .down, now: now) {
                        conns[Int(connIndex)]!.rxPaused = true
                        if c.hasMore { loop.stopRecv(handler, tag: connIndex) }
                        waitForTokens(connIndex, .down, now: now)
                    }
                }
            } else {
                // Data for a connection the plugin closed (discarded while it lingers), or an
                // empty buffer: straight back.
                _ = decoder.owners.transfer(slot, from: .kernel, to: .core)
                giveToKernel(slot, from: .core)
            }
        }
        guard var conn = conns[Int(connIndex)], conn.phase != .done else { releaseIfDone(connIndex); return }
        if c.result == 0 {
            // The peer's FIN: every byte it sent came before. The socket stays for our side.
            conn.peerFinished = true
            conns[Int(connIndex)] = conn
            switch conn.phase {
            case .open:
                conns[Int(connIndex)]!.phase = .peerClosed
                conns[Int(connIndex)]!.lastProgress = monotonicNanoseconds()
                push(ph_desc(type: PH_MSG_CLOSED, id: conn.id, status: Int16(PH_OK.rawValue)))
                armLinger(connIndex)   // bounds the wait for the plugin's close
            case .finWait:
                finalClose(connIndex)
            case .peerClosed, .closing, .done:
                break
            }
        } else if c.result < 0 && c.result != -ECANCELED {
            // A reset or an error: nothing more can be sent either. Tell the plugin once.
            if !conn.closed {
                let reason: ph_status = c.result == -ECONNRESET ? PH_ERESET : PH_EIO
                push(ph_desc(type: PH_MSG_CLOSED, id: conn.id, status: Int16(reason.rawValue)))
            }
            abortConn(connIndex)
        } else if !c.hasMore && !conn.peerFinished && (conn.closed || !conn.rxPaused) {
            conn.recvArmed = true
            conns[Int(connIndex)] = conn
            armReceive(connIndex)
        }
        releaseIfDone(connIndex)
    }

    /// Arms a stream's receive: multishot, or one buffer at a time while the shaper limits the
    /// connection. A multishot receive resumed over a backlog delivers a slot for every buffer the
    /// kernel has before its stop takes effect — megabytes past the bucket (seen as 5.4 MiB/s
    /// against a 4 MiB/s limit) — while one buffer per admission keeps the overshoot to one slot.
    private func armReceive(_ index: UInt32) {
        guard let conn = conns[Int(index)] else { return }
        conns[Int(index)]!.recvArmed = true
        let shaped = !conn.closed && conn.shaper != nil && (shaping?.active ?? false)
        loop.recv(handler, fd: conn.fd, group: group, tag: index, oneShot: shaped)
    }

    /// The one send in flight on a stream completed (StreamSendQueue says why there is only one):
    /// the bytes it took leave the queue in order, finished sends go home with SEND_DONE, and the
    /// next part of the queue goes out — or, once it is empty on a closed stream, the FIN.
    private func sendCompleted(connIndex index: UInt32, result: Int32) {
        // Only the fields needed: a copy of the Conn held across the queue's mutation below would
        // make it copy its entries (copy-on-write).
        guard let (id, phase, closed) = conns[Int(index)].map({ ($0.id, $0.phase, $0.closed) }) else { return }
        let sent = result > 0 ? Int(result) : 0
        if sent > 0 {
            counters.bytesOut &+= UInt64(sent)
            if peerTagging { accountPeer(index, outbound: UInt64(sent)) }
            conns[Int(index)]!.lastProgress = monotonicNanoseconds()
        }
        conns[Int(index)]!.out.sendCompleted(sent: sent) { streamSendDone(slot: $0.slot, length: $0.length, conn: id) }
        if phase == .done {
            // Aborted while this send was in the kernel: now its slots can go home too.
            conns[Int(index)]!.out.removeUnsent { streamSendDone(slot: $0.slot, length: $0.length, conn: id) }
        } else if result <= 0 {
            // An error (0 bytes for a non-empty send counts as one): the connection is dead.
            if !closed { push(ph_desc(type: PH_MSG_CLOSED, id: id, status: Int16(PH_ERESET.rawValue))) }
            abortConn(index)
        } else if !conns[Int(index)]!.out.isEmpty {
            pump(index)
        } else if phase == .closing {
            sendFIN(index)
        }
        releaseIfDone(index)
    }

    // MARK: Slots

    /// A payload slot whose operation is over (or never started): receive slots go back to their
    /// pool silently, plugin slots back to the plugin with SEND_DONE(id).
    private func payloadSlotHome(_ slot: UInt32, conn: UInt64) {
        guard decoder.owners.transfer(slot, from: .inFlight, to: .core) else { return }
        if decoder.owners.isReceiveSlot(slot) {
            recycleReceiveSlot(slot)
        } else {
            returnSlot(slot, to: conn)
        }
    }

    /// A stream send is over (sent, or dropped with its connection): the slot goes home and the
    /// plugin gets SEND_DONE with the bytes that send handed over — for a receive slot too (slot
    /// PH_NO_SLOT then), so the runner can keep count of what each connection has queued.
    private func streamSendDone(slot: UInt32, length: UInt32, conn: UInt64) {
        guard decoder.owners.transfer(slot, from: .inFlight, to: .core) else { return }
        var desc = ph_desc(type: PH_MSG_SEND_DONE, id: conn, slot: PH_NO_SLOT, length: length)
        if decoder.owners.isReceiveSlot(slot) {
            recycleReceiveSlot(slot)
        } else if decoder.owners.transfer(slot, from: .core, to: .plugin) {
            desc.slot = slot
        }
        push(desc)
    }

    /// A core-owned receive slot goes back to the pool its index belongs to: the UDP reserve or
    /// the kernel's buffer ring.
    private func recycleReceiveSlot(_ slot: UInt32) {
        if slot < udpReserve {
            udpFreeSlots.append(slot)
            armWaitingSockets()
        } else {
            giveToKernel(slot, from: .core)
        }
    }

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

    /// Completes a request, handing its argument slot back (with a result range for RESOLVE and
    /// FILE_READ).
    private func complete(request: UInt64, status: ph_status, value: Int64 = 0, slot: UInt32,
                          offset: UInt32 = 0, length: UInt32 = 0) {
        var desc = ph_desc(type: PH_MSG_COMPLETE, request: request, arg: value, status: Int16(status.rawValue))
        if slot != PH_NO_SLOT, decoder.owners.transfer(slot, from: .core, to: .plugin) {
            desc.slot = slot
            desc.offset = offset
            desc.length = length
        }
        push(desc)
    }

    // MARK: Connections

    /// Ids the core closed on its own (the peer hung up, an error) stay known for a while: the
    /// plugin may still name one in a send, close or rate call it made before it read CLOSED. Such
    /// a descriptor is a no-op (a send's slot goes home), not a violation; a made-up id still is.
    /// Ids are never reused, so a bounded memory of the last 8192 is enough.
    private var closedConnIDs: Set<UInt64> = []
    private var closedConnRing = [UInt64](repeating: 0, count: 8192)
    private var closedConnNext = 0

    private func rememberClosed(_ id: UInt64) {
        let old = closedConnRing[closedConnNext]
        if old != 0 { closedConnIDs.remove(old) }
        closedConnRing[closedConnNext] = id
        closedConnNext = (closedConnNext + 1) % closedConnRing.count
        closedConnIDs.insert(id)
    }

    private func addConn(fd: Int32, kind: ConnKind) -> UInt32 {
        let id = Self.nextConnID
        Self.nextConnID &+= 1
        var conn = Conn(id: id, fd: fd, kind: kind)
        if kind != .listener, let shaping { conn.shaper = shaping.openConnection(now: monotonicNanoseconds()) }
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

    /// The plugin is done with a connection: its id is forgotten (further descriptors naming it are
    /// no-ops), and a stream no longer counts as open. The socket itself may live on (lingering).
    private func forgetForPlugin(_ index: UInt32) {
        guard let conn = conns[Int(index)], !conn.closed else { return }
        conns[Int(index)]!.closed = true
        connIndexByID[conn.id] = nil
        rememberClosed(conn.id)
        if conn.kind == .stream { counters.connectionsOpen -= 1 }
    }

    /// close() from the plugin. A stream closes gracefully: what the plugin sent before still goes
    /// out in order, then FIN (sendFIN), all within the linger bound; other sockets close at once.
    private func closeGracefully(_ index: UInt32) {
        guard let conn = conns[Int(index)], conn.kind == .stream, conn.phase == .open || conn.phase == .peerClosed else {
            abortConn(index); return
        }
        forgetForPlugin(index)
        conns[Int(index)]!.phase = .closing
        counters.lingering += 1
        conns[Int(index)]!.lastProgress = monotonicNanoseconds()
        armLinger(index)
        if conn.out.isEmpty { sendFIN(index) }   // else the last send's completion sends it
    }

    /// Everything the plugin sent is with the kernel: FIN after it (shutdown SHUT_WR queues it behind
    /// the bytes). If the peer's FIN came already the socket closes now; else it lingers, receiving
    /// and discarding, until that FIN or the linger time.
    private func sendFIN(_ index: UInt32) {
        guard let conn = conns[Int(index)], conn.phase == .closing else { return }
        _ = Glibc.shutdown(conn.fd, Int32(SHUT_WR))
        if conn.peerFinished { finalClose(index); return }
        conns[Int(index)]!.phase = .finWait
        conns[Int(index)]!.lastProgress = monotonicNanoseconds()
        if !conn.recvArmed {
            conns[Int(index)]!.recvArmed = true
            armReceive(index)
        }
    }

    /// The end of a graceful close: the descriptor closes (nothing unread waits in it, so no RST).
    private func finalClose(_ index: UInt32) {
        guard let conn = conns[Int(index)], conn.phase != .done else { return }
        conns[Int(index)]!.phase = .done
        if conn.lingers { counters.lingering -= 1 }
        disarmLinger(index)
        conn.shaper?.close(now: monotonicNanoseconds())
        shapedWaiting[0].remove(index)
        shapedWaiting[1].remove(index)
        Self.finishStream(conn.fd)
        loop.cancel(handler, fd: conn.fd)
        loop.close(handler, fd: conn.fd)
        releaseIfDone(index)
    }

    /// Stops I/O on a socket at once: cancels its operations and closes it (the kernel keeps the
    /// file alive until those complete). A stream's unsent bytes are dropped and their slots go home
    /// (those of the send in the kernel when it completes). `reset`: the peer gets a RST (SO_LINGER
    /// 0) instead of the FIN finishStream sends. The index is reused only once nothing is in flight.
    private func abortConn(_ index: UInt32, reset: Bool = false) {
        guard let conn = conns[Int(index)], conn.phase != .done else { return }
        forgetForPlugin(index)
        conns[Int(index)]!.phase = .done
        if conn.lingers { counters.lingering -= 1 }
        disarmLinger(index)
        if conn.kind == .stream {
            if reset {
                var off = linger(l_onoff: 1, l_linger: 0)
                _ = setsockopt(conn.fd, SOL_SOCKET, SO_LINGER, &off, socklen_t(MemoryLayout<linger>.size))
            } else {
                Self.finishStream(conn.fd)
            }
        }
        conn.shaper?.close(now: monotonicNanoseconds())
        conns[Int(index)]!.out.removeUnsent { streamSendDone(slot: $0.slot, length: $0.length, conn: conn.id) }
        for q in conn.queuedSends {
            // Never submitted: the slot goes home as if its send had been cancelled.
            conns[Int(index)]!.sendsInFlight -= 1
            payloadSlotHome(q.slot, conn: conn.id)
        }
        conns[Int(index)]!.queuedSends = []
        shapedWaiting[0].remove(index)   // the index may be reused by another connection
        shapedWaiting[1].remove(index)
        loop.cancel(handler, fd: conn.fd)
        loop.close(handler, fd: conn.fd)
        releaseIfDone(index)
    }

    // MARK: Linger

    /// Arms the linger timer of a stream (once; it re-arms itself while bytes keep moving).
    private func armLinger(_ index: UInt32, after delay: UInt64? = nil) {
        guard conns[Int(index)]?.lingerTag == 0, !shuttingDown else { return }
        let tag = Self.connectTimerBit | (nextConnectTimer & ~Self.connectTimerBit)
        nextConnectTimer &+= 1
        conns[Int(index)]!.lingerTag = tag
        lingerTimers[tag] = index
        loop.timeout(handler, nanoseconds: delay ?? lingerNanoseconds, tag: tag)
    }

    private func disarmLinger(_ index: UInt32) {
        guard let tag = conns[Int(index)]?.lingerTag, tag != 0 else { return }
        conns[Int(index)]!.lingerTag = 0
        if lingerTimers.removeValue(forKey: tag) != nil { loop.cancelTimeout(handler, tag: tag) }
    }

    /// The linger time passed. While bytes moved within it, it starts again from the last progress;
    /// else a stream that still holds unsent bytes is reset (its slots come home: a peer that stopped
    /// reading cannot pin them), and one that sent its FIN closes.
    private func lingerExpired(_ index: UInt32, tag: UInt32, result: Int32) {
        guard result == -ETIME, let conn = conns[Int(index)], conn.lingerTag == tag, conn.phase != .done else { return }
        conns[Int(index)]!.lingerTag = 0
        let idle = monotonicNanoseconds() &- conn.lastProgress
        if idle < lingerNanoseconds {
            armLinger(index, after: lingerNanoseconds - idle)
            return
        }
        switch conn.phase {
        case .finWait:
            finalClose(index)
        case .peerClosed where conn.out.isEmpty:
            // The plugin never closed after CLOSED: close for it.
            closeGracefully(index)
        case .peerClosed, .closing:
            counters.lingerResets &+= 1
            logger.info("closed connection reset: the peer took nothing for the linger time", metadata: [
                "plugin": "\(plugin)", "queued_bytes": "\(conn.out.queuedBytes)", "linger_s": "\(lingerNanoseconds / 1_000_000_000)"])
            abortConn(index, reset: true)
        case .open, .done:
            break
        }
    }

    /// A normal close for the peer (FIN, not RST), also when the runner died: Linux answers close()
    /// with a RST when unread bytes wait in the receive queue — which is the rule, not the
    /// exception, once a dead plugin stopped taking data and the core's receive slots filled up.
    /// So send the FIN first (SHUT_WR: after any bytes already queued), then discard what is
    /// waiting. Both calls are non-blocking (MSG_DONTWAIT), and the drain is bounded so a peer
    /// that keeps sending cannot hold the loop; bytes arriving after it may still draw a RST, but
    /// only after the peer has read its EOF.
    static func finishStream(_ fd: Int32) {
        _ = Glibc.shutdown(fd, Int32(SHUT_WR))
        var scratch = [UInt8](repeating: 0, count: 65_536)
        for _ in 0..<16 {
            let n = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n <= 0 { break }
        }
    }

    // MARK: Per-peer accounting (ABI 1.1)

    private func tagPeer(conn: UInt64, peer: String) {
        guard let index = connIndexByID[conn] else { return }
        if peerOfConn[index] == nil, Int(index) < untagged.count {
            peers?.add(peer: peer, usage: untagged[Int(index)])
            untagged[Int(index)] = PeerUsage()
        }
        peerOfConn[index] = peer
    }

    private func accountPeer(_ index: UInt32, inbound: UInt64 = 0, outbound: UInt64 = 0) {
        if let peer = peerOfConn[index] {
            if inbound > 0 { peers?.add(peer: peer, inbound: inbound) }
            if outbound > 0 { peers?.add(peer: peer, outbound: outbound) }
            return
        }
        if Int(index) >= untagged.count { untagged.append(contentsOf: repeatElement(PeerUsage(), count: Int(index) + 1 - untagged.count)) }
        if inbound > 0 { untagged[Int(index)].bytesIn &+= inbound; untagged[Int(index)].messagesIn &+= 1 }
        if outbound > 0 { untagged[Int(index)].bytesOut &+= outbound; untagged[Int(index)].messagesOut &+= 1 }
    }

    private func releaseIfDone(_ index: UInt32) {
        guard let conn = conns[Int(index)], conn.closed, conn.phase == .done, !conn.recvArmed, conn.sendsInFlight == 0,
              !conn.out.sendInFlight, !conn.connectInFlight else { return }
        conn.peer?.deallocate()
        peerOfConn[index] = nil
        if Int(index) < untagged.count { untagged[Int(index)] = PeerUsage() }
        conns[Int(index)] = nil
        freeConnIndices.append(index)
    }

    /// The peer address goes in the descriptor itself (no slot needed), encoded straight from the
    /// sockaddr as for a datagram's sender (ph_peer_encode: reserved = IPv6 or v4-mapped address,
    /// arg2 = port | family << 16). The runner makes the plugin's text of it, once.
    private func encodePeer(fd: Int32, into desc: inout ph_desc) {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &len) == 0 }
        }
        guard ok else { return }
        desc.arg2 = withUnsafeMutableBytes(of: &desc.reserved) { ph_peer_encode(&storage, $0.baseAddress!.assumingMemoryBound(to: UInt8.self)) }
    }

    // MARK: Violations

    private func violate(_ violation: Violation) {
        guard !violated else { return }
        violated = true
        delegate?.sessionViolated(self, violation)
    }
}

// MARK: - Outbound TCP, UDP, DNS and files

extension PluginSession {
    // MARK: Connect

    /// CONNECT "tcp:HOST:PORT": checked against net.connect (loopback rule included), a name is
    /// resolved by the core, then connected on the loop. The request's slot comes back in COMPLETE.
    fileprivate func connect(request: UInt64, address: String, slot: UInt32) {
        guard let target = try? NetGrant(parsing: address), target.transport == .tcp, target.ports.count == 1,
              target.ports.lowerBound != 0, target.host != "*" else {
            complete(request: request, status: PH_EINVAL, slot: slot)
            return
        }
        let port = target.ports.lowerBound
        // Refuse before resolving: a denied plugin must not get DNS lookups done for it.
        guard access.connect.mayCover(transport: .tcp, host: target.host, port: port) else {
            deny(request: request, action: "connect", object: address, slot: slot, reason: "no connect grant covers it")
            return
        }
        guard !atDescriptorBudget("connect", request: request, slot: slot) else { return }
        if let literal = try? SocketAddress(ip: target.host, port: port) {
            connectResolved(request: request, slot: slot, address: address, host: target.host, port: port, .success([literal]))
        } else {
            resolver.resolve(host: target.host, port: port) { [self] result in
                connectResolved(request: request, slot: slot, address: address, host: target.host, port: port, result)
            }
        }
    }

    fileprivate func connectResolved(request: UInt64, slot: UInt32, address: String, host: String, port: UInt16,
                                     _ result: Result<[SocketAddress], EventLoopError>) {
        guard !shuttingDown else { return }   // the region may be gone: touch nothing
        switch result {
        case .failure(let error):
            logger.info("connect: cannot resolve", metadata: ["plugin": "\(plugin)", "address": "\(address)", "error": "\(error)"])
            complete(request: request, status: PH_ENOENT, slot: slot)
        case .success(let addresses):
            let local = localAddresses.current()
            let allowed = addresses.filter {
                access.connect.allows(transport: .tcp, requestedHost: host, address: IPAddress($0), port: port, local: local)
            }
            guard !allowed.isEmpty else {
                deny(request: request, action: "connect", object: address, slot: slot,
                     reason: "it resolves only to loopback, this host's own or unlisted addresses (\(addresses.map { "\($0)" }.joined(separator: ", ")))")
                return
            }
            startConnect(request: request, slot: slot, candidates: allowed)
        }
    }

    fileprivate func startConnect(request: UInt64, slot: UInt32, candidates: [SocketAddress]) {
        // Checked again: other sockets may have taken the budget while the name was resolving.
        guard !atDescriptorBudget("connect", request: request, slot: slot) else { return }
        let fd: Int32
        do {
            fd = try Sockets.tcpSocket(family: candidates[0].family)
        } catch {
            logger.warning("connect: socket failed", metadata: ["plugin": "\(plugin)", "error": "\(error)"])
            complete(request: request, status: PH_EIO, slot: slot)
            return
        }
        let index = addConn(fd: fd, kind: .connecting)
        let timerTag = Self.connectTimerBit | (nextConnectTimer & ~Self.connectTimerBit)
        nextConnectTimer &+= 1
        connectTimers[timerTag] = index
        connecting[index] = ConnectState(request: request, slot: slot, candidates: candidates, next: 1, timerTag: timerTag)
        conns[Int(index)]!.connectInFlight = true
        loop.connect(handler, fd: fd, to: candidates[0], tag: index)
        loop.timeout(handler, nanoseconds: Self.connectTimeoutNanoseconds, tag: timerTag)
    }

    fileprivate func connectDeadline(tag: UInt32, result: Int32) {
        guard let index = connectTimers.removeValue(forKey: tag) else { return }   // stale or cancelled
        guard result == -ETIME, var state = connecting[index], let conn = conns[Int(index)], conn.connectInFlight else { return }
        state.timedOut = true
        connecting[index] = state
        loop.cancel(handler, fd: conn.fd)   // the connect completes with -ECANCELED → PH_ETIMEDOUT
    }

    fileprivate func connectCompleted(index: UInt32, result: Int32) {
        guard var state = connecting[index], var conn = conns[Int(index)] else { return }
        conns[Int(index)]!.connectInFlight = false
        if conn.closed {
            // Shut down (or closed by a plugin that guessed the id) while connecting.
            finishConnect(index: index, state)
            complete(request: state.request, status: shuttingDown ? PH_ESTOPPING : PH_ECLOSED, slot: state.slot)
            releaseIfDone(index)
            return
        }
        if result == 0 {
            finishConnect(index: index, state)
            // From here on it is exactly an accepted connection.
            conn.kind = .stream
            conn.recvArmed = true
            conns[Int(index)] = conn
            Sockets.setNoDelay(conn.fd)
            counters.connectionsOpen += 1
            counters.connectionsTotal &+= 1
            complete(request: state.request, status: PH_OK, value: Int64(bitPattern: conn.id), slot: state.slot)
            armReceive(index)
            return
        }
        // Try the next allowed address of the name, within the same deadline.
        if !state.timedOut, state.next < state.candidates.count,
           let fd = try? Sockets.tcpSocket(family: state.candidates[state.next].family) {
            Glibc.close(conn.fd)   // nothing is in flight on it: its connect just completed
            let next = state.candidates[state.next]
            state.next += 1
            connecting[index] = state
            conns[Int(index)]!.fd = fd
            conns[Int(index)]!.connectInFlight = true
            loop.connect(handler, fd: fd, to: next, tag: index)
            return
        }
        let status: ph_status
        if state.timedOut || result == -ETIMEDOUT {
            status = PH_ETIMEDOUT
        } else if result == -ECONNREFUSED {
            status = PH_ECONNREFUSED
        } else if result == -EACCES || result == -EPERM {
            status = PH_EDENIED      // a local firewall rule
        } else {
            status = PH_EIO          // unreachable network or host, and the rest
        }
        logger.info("connect failed", metadata: ["plugin": "\(plugin)", "errno": "\(errnoName(-result))",
                                                 "timed_out": "\(state.timedOut)"])
        finishConnect(index: index, state)
        abortConn(index)
        complete(request: state.request, status: status, slot: state.slot)
    }

    /// Forgets the connect state and its deadline timer.
    fileprivate func finishConnect(index: UInt32, _ state: ConnectState) {
        connecting[index] = nil
        if connectTimers.removeValue(forKey: state.timerTag) != nil {
            loop.cancelTimeout(handler, tag: state.timerTag)
        }
    }

    // MARK: UDP

    /// UDP_BIND: a listen grant's address, or a `net.multicast` group (the socket joins it on every
    /// eligible interface and may then send only to the group, rate-limited: MulticastSocket.swift).
    fileprivate func udpBind(request: UInt64, address: String, slot: UInt32) {
        let wanted = try? NetGrant(parsing: address)
        let multicast = wanted.map { access.mayJoin($0) } ?? false
        guard let wanted, wanted.transport == .udp, multicast || access.mayBind(wanted) else {
            let isGroup = wanted.flatMap { IPAddress($0.host) }?.isMulticast ?? false
            deny(request: request, action: "udp_bind", object: address, slot: slot,
                 reason: isGroup ? "no net.multicast grant names this group and port" : "no listen grant covers it")
            return
        }
        guard !atDescriptorBudget("udp_bind", request: request, slot: slot) else { return }
        do {
            let local = try SocketAddress(ip: wanted.host, port: wanted.ports.lowerBound)
            var interfaces: [String] = []
            let fd: Int32
            if multicast {
                let membership = try Sockets.multicastSocket(group: local)
                fd = membership.fd
                interfaces = membership.interfaces
            } else {
                fd = try Sockets.udpSocket(bound: local)
            }
            let index = addConn(fd: fd, kind: .udp)
            let peer = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: 1)   // per socket, not per datagram
            peer.initialize(to: sockaddr_storage())
            conns[Int(index)]!.peer = peer
            conns[Int(index)]!.family = local.family
            if multicast {
                conns[Int(index)]!.multicastGroup = local
                conns[Int(index)]!.multicastBudget = MulticastSendBudget(now: monotonicNanoseconds())
                logger.info("plugin joined multicast group", metadata: [
                    "plugin": "\(plugin)", "group": "\(address)", "interfaces": "\(interfaces.joined(separator: ","))"])
            } else {
                logger.info("plugin bound UDP", metadata: ["plugin": "\(plugin)", "address": "\(address)"])
            }
            complete(request: request, status: PH_OK, value: Int64(bitPattern: conns[Int(index)]!.id), slot: slot)
            armDatagramReceive(index)
        } catch {
            logger.warning("udp_bind failed", metadata: ["plugin": "\(plugin)", "address": "\(address)", "error": "\(error)"])
            complete(request: request, status: errnoStatus(error), slot: slot)
        }
    }

    /// Arms one recvmsg for a UDP socket into a reserve slot, or queues the socket until a slot
    /// comes back (the plugin holds them all: back-pressure, the kernel buffers or drops).
    fileprivate func armDatagramReceive(_ index: UInt32) {
        guard let conn = conns[Int(index)], conn.kind == .udp, !conn.closed, !conn.recvArmed, let peer = conn.peer else { return }
        if let node = conn.shaper, let shaping, shaping.active || conn.rxPaused {
            let now = monotonicNanoseconds()
            if conn.rxPaused || !shaping.admit(node, .down, now: now) {
                // In debt: not re-armed; the socket buffer holds (or drops) what arrives.
                conns[Int(index)]!.rxPaused = true
                waitForTokens(index, .down, now: now)
                return
            }
        }
        guard let slot = udpFreeSlots.popLast() else {
            if !udpWaiting.contains(index) { udpWaiting.append(index) }
            return
        }
        _ = decoder.owners.transfer(slot, from: .core, to: .kernel)
        do {
            // The payload may fill the slot (the sender travels in the descriptor, ABI 1.2).
            // MSG_TRUNC: a longer datagram reports its real length and is dropped.
            try loop.recvmsg(handler, fd: conn.fd, into: region.slotAddress(slot),
                             length: Int(region.geometry.slotSize),
                             peer: UnsafeMutableRawPointer(peer), flags: Int32(MSG_TRUNC), tag: index)
            conns[Int(index)]!.recvArmed = true
            conns[Int(index)]!.udpSlot = slot
        } catch {
            _ = decoder.owners.transfer(slot, from: .kernel, to: .core)
            udpFreeSlots.append(slot)
            if !udpWaiting.contains(index) { udpWaiting.append(index) }
            logger.warning("udp receive not armed", metadata: ["plugin": "\(plugin)", "error": "\(error)"])
        }
    }

    fileprivate func armWaitingSockets() {
        var budget = udpWaiting.count   // a socket that cannot be armed re-queues itself: stop after one pass
        while budget > 0, !udpFreeSlots.isEmpty, !udpWaiting.isEmpty {
            budget -= 1
            armDatagramReceive(udpWaiting.removeFirst())
        }
    }

    fileprivate func datagramReceived(socketIndex index: UInt32, result: Int32) {
        guard var conn = conns[Int(index)] else { return }
        let slot = conn.udpSlot
        conn.recvArmed = false
        conn.udpSlot = PH_NO_SLOT
        conns[Int(index)] = conn
        guard slot != PH_NO_SLOT else { return }
        let room = Int32(region.geometry.slotSize)
        var sender = ph_desc(type: PH_MSG_DATAGRAM, id: conn.id, slot: slot, length: UInt32(max(0, result)))
        if result >= 0, result <= room, !conn.closed, let peer = conn.peer,
           case let family = withUnsafeMutableBytes(of: &sender.reserved, { ph_peer_encode(peer, $0.baseAddress!.assumingMemoryBound(to: UInt8.self)) }),
           family != 0 {
            sender.arg2 = family
            _ = decoder.owners.transfer(slot, from: .kernel, to: .plugin)
            counters.bytesIn &+= UInt64(result)
            if peerTagging { accountPeer(index, inbound: UInt64(result)) }
            if let node = conn.shaper, let shaping, shaping.active {
                shaping.charge(node, .down, bytes: Int(result), now: monotonicNanoseconds())
            }
            push(sender)
            armDatagramReceive(index)
        } else {
            // Cancelled, closed, an error (ICMP unreachable shows up here) or a datagram too big
            // for a slot: the slot stays with the core and the socket keeps receiving.
            _ = decoder.owners.transfer(slot, from: .kernel, to: .core)
            udpFreeSlots.append(slot)
            if result > room {
                logger.debug("datagram larger than a slot dropped", metadata: ["plugin": "\(plugin)", "bytes": "\(result)"])
            }
            if !conn.closed && result != -ECANCELED { armDatagramReceive(index) }
            armWaitingSockets()
        }
        releaseIfDone(index)
    }

    /// UDP_SEND: the destination (already copied out and checked as text by the decoder) must be
    /// a numeric address a net.connect udp grant covers (never a multicast group), or, from a
    /// multicast socket, its own group within the send budget. There is no COMPLETE: the payload slot
    /// goes home when the send is over (plugin slot → SEND_DONE(id = socket)); a refused one is
    /// counted as a denial.
    fileprivate func udpSend(socket: UInt64, slot: UInt32, offset: UInt32, length: UInt32, to: String) {
        guard let index = connIndexByID[socket], let conn = conns[Int(index)], conn.kind == .udp, !conn.closed else {
            payloadSlotHome(slot, conn: socket)
            return
        }
        guard let dest = try? NetGrant(parsing: to), dest.transport == .udp, dest.ports.count == 1,
              dest.ports.lowerBound != 0, let ip = IPAddress(dest.host),
              let address = try? SocketAddress(ip: dest.host, port: dest.ports.lowerBound) else {
            logger.debug("udp_send to a malformed destination dropped", metadata: ["plugin": "\(plugin)", "to": "\(to)"])
            payloadSlotHome(slot, conn: socket)
            return
        }
        let refusal: String?
        if let group = conn.multicastGroup {
            refusal = address != group ? "a socket of the multicast group \(group) sends only to that group"
                : conns[Int(index)]!.multicastBudget.take(now: monotonicNanoseconds()) ? nil : MulticastSendBudget.refusal
        } else if !access.connect.allows(transport: .udp, requestedHost: dest.host, address: ip, port: dest.ports.lowerBound,
                                         local: localAddresses.current()) {
            refusal = ip.isMulticast ? "multicast goes only through a socket bound to a net.multicast group" : "no connect grant covers it"
        } else {
            refusal = nil
        }
        if let refusal {
            delegate?.sessionDenied(self, action: "udp_send", object: to, reason: refusal)
            payloadSlotHome(slot, conn: socket)
            return
        }
        guard address.family == conn.family else {
            logger.debug("udp_send across address families dropped", metadata: ["plugin": "\(plugin)", "to": "\(to)"])
            payloadSlotHome(slot, conn: socket)
            return
        }
        sends[Int(slot)] = SendState(connIndex: index)
        conns[Int(index)]!.sendsInFlight += 1
        shapeDatagram(index, QueuedSend(slot: slot, offset: offset, length: length, to: address))
    }

    fileprivate func datagramSent(slot: UInt32, result: Int32) {
        let index = sends[Int(slot)].connIndex
        conns[Int(index)]?.sendsInFlight -= 1
        if result > 0 { counters.bytesOut &+= UInt64(result) }
        if result > 0, peerTagging { accountPeer(index, outbound: UInt64(result)) }
        payloadSlotHome(slot, conn: conns[Int(index)]?.id ?? 0)
        releaseIfDone(index)
    }

    // MARK: Resolve

    /// RESOLVE name → COMPLETE(status OK, value = number of addresses) with the numeric addresses
    /// one per line ("\n"-terminated) at offset 0 of the request's slot, or PH_ENOENT.
    fileprivate func resolve(request: UInt64, name: String, slot: UInt32) {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:")
        guard name.utf8.count <= 253, name.allSatisfy({ allowed.contains($0) }) else {
            complete(request: request, status: PH_EINVAL, slot: slot)
            return
        }
        resolver.resolve(host: name, port: 0) { [self] result in
            guard !shuttingDown else { return }   // the region may be gone
            guard case .success(let addresses) = result else {
                complete(request: request, status: PH_ENOENT, slot: slot)
                return
            }
            var text: [UInt8] = []
            var seen: Set<String> = []
            for address in addresses where seen.insert(address.ip).inserted {
                let line = Array((address.ip + "\n").utf8)
                if text.count + line.count > Int(region.geometry.slotSize) { break }   // whole lines only
                text += line
            }
            let count = text.reduce(0) { $0 + ($1 == 10 ? 1 : 0) }
            text.withUnsafeBytes { region.slotAddress(slot).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            complete(request: request, status: PH_OK, value: Int64(count), slot: slot, offset: 0, length: UInt32(text.count))
        }
    }

    // MARK: Key-value store

    /// Copies the key (and value) out of the slot, hands the request to the store's worker, and
    /// completes it back on the loop thread once its transaction committed: PH_OK means durable.
    private func kv(request: UInt64, kind: ph_msg_type, slot: UInt32, offset: UInt32, length: UInt32, keyLength: Int64,
                    scanPrefixLength: Int? = nil) {
        let name = kind == PH_MSG_KV_GET ? "kv_get" : kind == PH_MSG_KV_PUT ? "kv_put" : kind == PH_MSG_KV_DELETE ? "kv_delete" : "kv_scan"
        guard let quota = kvQuota else {
            deny(request: request, action: "kv", object: name, slot: slot, reason: "the manifest has no [storage] kv grant")
            return
        }
        let store: KVStore
        switch kvStore {
        case .success(let s)?:
            store = s
        case .failure(let error)?:
            if !kvFailureReported {   // once per incarnation: the log and audit already have the detail
                kvFailureReported = true
                delegate?.sessionDenied(self, action: "kv", object: name, reason: "\(error)")
                delegate?.sessionNote(self, "kv store unavailable: \(error)")
            }
            complete(request: request, status: PH_EIO, slot: slot)
            return
        case nil:
            complete(request: request, status: PH_EIO, slot: slot)
            return
        }
        let base = UnsafeRawBufferPointer(start: region.slotAddress(slot) + Int(offset), count: Int(length))
        let op: KVOperation
        switch kind {
        case PH_MSG_KV_PUT:
            let k = Int(keyLength)   // the decoder checked 1...length
            op = .put(key: Array(base[0..<k]), value: Array(base[k...]))
        case PH_MSG_KV_SCAN:
            let split = scanPrefixLength ?? base.count   // the decoder checked it is within the slot
            op = .scan(prefix: Array(base[0..<split]), start: Array(base[split...]),
                       limit: UInt32(clamping: max(0, keyLength)), capacity: Int(region.geometry.slotSize))
        default:
            guard length > 0 else { complete(request: request, status: PH_EINVAL, slot: slot); return }
            op = kind == PH_MSG_KV_GET ? .get(key: Array(base)) : .delete(key: Array(base))
        }
        let loop = self.loop
        store.submit(plugin: plugin, quota: quota, op) { [self] result in
            loop.execute { [self] in kvCompleted(request: request, slot: slot, result, reportsMore: scanPrefixLength != nil) }
        }
    }

    /// `reportsMore`: a kv_scan_from, whose value carries PH_KV_MORE when keys remain.
    private func kvCompleted(request: UInt64, slot: UInt32, _ result: KVResult, reportsMore: Bool = false) {
        guard !shuttingDown else { return }   // the region may be gone; the write itself is committed
        switch result {
        case .done(let existed):
            complete(request: request, status: PH_OK, value: existed ? 1 : 0, slot: slot)
        case .value(let bytes), .records(let bytes, _, _):
            guard bytes.count <= Int(region.geometry.slotSize) else {
                complete(request: request, status: PH_EINVAL, value: Int64(bytes.count), slot: slot); return
            }
            bytes.withUnsafeBytes { if $0.count > 0 { region.slotAddress(slot).copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
            var count = Int64(bytes.count)
            if case .records(_, let n, let more) = result { count = Int64(n) | (reportsMore && more ? Int64(PH_KV_MORE) : 0) }
            complete(request: request, status: PH_OK, value: count, slot: slot, offset: 0, length: UInt32(bytes.count))
        case .notFound:
            complete(request: request, status: PH_ENOENT, slot: slot)
        case .quotaExceeded(let used, let quota):
            logger.info("kv quota reached", metadata: ["plugin": "\(plugin)", "used": "\(used)", "quota": "\(quota)"])
            complete(request: request, status: PH_EQUOTA, slot: slot)
        case .tooLarge(let size):
            complete(request: request, status: PH_EINVAL, value: Int64(size), slot: slot)
        case .failed(let why):
            logger.error("kv transaction failed", metadata: ["plugin": "\(plugin)", "error": "\(why)"])
            delegate?.sessionNote(self, "kv transaction failed: \(why)")
            complete(request: request, status: PH_EIO, slot: slot)
        }
    }

    // MARK: Files

    fileprivate func fileOpen(request: UInt64, path: String, flags: UInt32, slot: UInt32) {
        guard let openFlags = StorageLayout.openFlags(flags) else {
            complete(request: request, status: PH_EINVAL, slot: slot)
            return
        }
        switch access.storage.resolve(path: path, write: StorageLayout.writes(flags)) {
        case .denied(let reason):
            logger.debug("file_open denied", metadata: ["plugin": "\(plugin)", "path": "\(path)", "reason": "\(reason)"])
            deny(request: request, action: "file_open", object: path, slot: slot, reason: "\(reason)")
        case .beneath(let grant, let remainder):
            refreshGrantedDirectory(grant)
            guard storageDirs[grant] >= 0 else {
                deny(request: request, action: "file_open", object: path, slot: slot,
                     reason: "the granted directory \(access.storage.grants[grant].path) cannot be opened")
                return
            }
            guard !atDescriptorBudget("file_open", request: request, slot: slot) else { return }
            nextOpenTag &+= 1
            let tag = nextOpenTag
            opens[tag] = OpenState(request: request, slot: slot, path: path,
                                   readable: flags & UInt32(PH_FILE_READ) != 0, writable: flags & UInt32(PH_FILE_WRITE) != 0)
            if flags & UInt32(PH_FILE_MKDIRS) != 0 {
                let made = StorageLayout.makeParents(beneath: storageDirs[grant], path: remainder)
                if made != 0 {
                    opens[tag] = nil
                    fileOpenCompleted(tag: tag, result: made, state: OpenState(request: request, slot: slot, path: path, readable: false, writable: false))
                    return
                }
            }
            do {
                // openat2(RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS) under the granted directory: "..",
                // absolute symlinks and links leading out fail in the kernel (EXDEV/ELOOP).
                try loop.openBeneath(handler, directory: storageDirs[grant], path: remainder, flags: openFlags,
                                     mode: 0o600, tag: tag)
            } catch {
                opens[tag] = nil
                complete(request: request, status: PH_EINVAL, slot: slot)
            }
        }
    }

    /// Granted directories follow their path: one that was deleted and made again (or never opened)
    /// is opened again before a file is opened under it (grantedDirectoryIsStale). The old
    /// descriptor retires: an openat2 already submitted may still use it as its base.
    private func refreshGrantedDirectory(_ index: Int) {
        let grant = access.storage.grants[index]
        guard grantedDirectoryIsStale(storageDirs[index], grant) else { return }
        let fd = reopenGrantedDirectory(root: access.storageRoot, grant)
        guard fd >= 0 || storageDirs[index] >= 0 else { return }
        if storageDirs[index] >= 0 { retiredStorageDirs.append(storageDirs[index]) }
        storageDirs[index] = fd
        logger.info("granted directory opened again", metadata: ["plugin": "\(plugin)", "path": "\(grant.path)", "ok": "\(fd >= 0)"])
    }

    /// An operator grant applied live (loop thread): new opens may use it at once. Returns why the
    /// directory could not be opened (the grant is then not applied to this session), or nil.
    func addOperatorGrant(_ grant: StorageLayout.Grant) -> String? {
        if let i = access.storage.grants.firstIndex(where: { $0.path == grant.path }) {
            access.storage.grants[i].writable = grant.writable   // a mode change
            refreshGrantedDirectory(i)                            // the directory may be a new one
            return storageDirs[i] >= 0 ? nil : "\(grant.path): \(String(cString: strerror(ENOENT)))"
        }
        let fd = openOperatorDirectory(grant.path)
        guard fd >= 0 else { return "\(grant.path): \(String(cString: strerror(errno)))" }
        access.storage.grants.append(grant)
        storageDirs.append(fd)
        return nil
    }

    /// Revokes an operator grant (loop thread): new opens under it are denied; files already open
    /// stay open until the plugin closes them (like a permission change on an open file).
    func removeOperatorGrant(directory: String) {
        guard let i = access.storage.grants.firstIndex(where: { $0.path == directory && $0.isAbsolute }) else { return }
        access.storage.grants.remove(at: i)
        retiredStorageDirs.append(storageDirs.remove(at: i))
    }

    fileprivate func fileOpenCompleted(tag: UInt32, result: Int32, state given: OpenState? = nil) {
        guard let state = given ?? opens.removeValue(forKey: tag), !shuttingDown else {
            if result >= 0 { Glibc.close(result) }
            return
        }
        guard result >= 0 else {
            let status = fileStatus(result)
            if result == -EXDEV || result == -ELOOP {
                // The path left the granted directory: a denial, counted like any other.
                delegate?.sessionDenied(self, action: "file_open", object: state.path,
                                        reason: "the path leaves its granted directory (openat2 RESOLVE_BENEATH: \(result == -EXDEV ? "EXDEV" : "ELOOP"))")
            }
            complete(request: state.request, status: status, slot: state.slot)
            return
        }
        let id = Self.nextFileID
        Self.nextFileID &+= 1
        files[id] = FileState(fd: result, readable: state.readable, writable: state.writable)
        complete(request: state.request, status: PH_OK, value: Int64(bitPattern: id), slot: state.slot)
    }

    fileprivate func fileRead(request: UInt64, file: UInt64, fileOffset: UInt64, slot: UInt32, offset: UInt32) {
        let room = region.geometry.slotSize - offset
        guard let f = files[file], !f.closed, f.readable, room > 0 else {
            // Not opened for reading, or no room after offset: the buffer comes straight back.
            _ = decoder.owners.transfer(slot, from: .inFlight, to: .core)
            let readable = files[file]?.readable ?? false
            complete(request: request, status: readable ? PH_OK : PH_EINVAL, slot: slot, offset: offset, length: 0)
            return
        }
        fileIO[Int(slot)] = FileIO(request: request, file: file, fileOffset: fileOffset, offset: offset, remaining: room)
        files[file]!.inFlight += 1
        // Straight into the slot: no copy. tag = slot + 1 (tag 0 is the TX doorbell's read).
        loop.read(handler, fd: f.fd, into: region.slotAddress(slot) + Int(offset), length: room, offset: fileOffset, tag: slot + 1)
    }

    fileprivate func fileReadCompleted(slot: UInt32, result: Int32) {
        guard slot < UInt32(fileIO.count) else { return }
        let io = fileIO[Int(slot)]
        fileOperationDone(io.file)
        _ = decoder.owners.transfer(slot, from: .inFlight, to: .core)
        if result >= 0 {
            complete(request: io.request, status: PH_OK, value: Int64(result), slot: slot, offset: io.offset, length: UInt32(result))
        } else {
            complete(request: io.request, status: fileStatus(result), slot: slot, offset: io.offset, length: 0)
        }
    }

    fileprivate func fileWrite(request: UInt64, file: UInt64, fileOffset: UInt64, slot: UInt32, offset: UInt32, length: UInt32) {
        guard let f = files[file], !f.closed, f.writable else {
            _ = decoder.owners.transfer(slot, from: .inFlight, to: .core)
            complete(request: request, status: PH_EINVAL, slot: slot)
            return
        }
        let number = f.nextWrite
        files[file]!.nextWrite += 1
        files[file]!.writesInFlight.append(number)
        fileIO[Int(slot)] = FileIO(request: request, file: file, write: number, fileOffset: fileOffset, offset: offset, remaining: length)
        files[file]!.inFlight += 1
        if let run = gatheredWrite, run.file == file, run.end == fileOffset, run.slots.count < Self.maxWriteRun {
            gatheredWrite!.slots.append(slot)
            gatheredWrite!.end += UInt64(length)
            return
        }
        submitGatheredWrite()
        gatheredWrite = WriteRun(file: file, fd: f.fd, fileOffset: fileOffset, end: fileOffset + UInt64(length), slots: [slot])
    }

    /// Submits the gathered run: one write for a lone request, else one pwritev tagged with its
    /// first slot.
    private func submitGatheredWrite() {
        guard let run = gatheredWrite else { return }
        gatheredWrite = nil
        guard run.slots.count > 1 else {
            submitWrite(slot: run.slots[0], fd: run.fd)
            return
        }
        withUnsafeTemporaryAllocation(of: iovec.self, capacity: run.slots.count) { vectors in
            for (i, slot) in run.slots.enumerated() {
                let io = fileIO[Int(slot)]
                vectors[i] = iovec(iov_base: region.slotAddress(slot) + Int(io.offset), iov_len: Int(io.remaining))
            }
            loop.writev(handler, fd: run.fd, buffers: UnsafeBufferPointer(vectors), offset: run.fileOffset, tag: run.slots[0])
        }
        writeRuns[run.slots[0]] = run.slots
        counters.gatheredWrites &+= UInt64(run.slots.count)
    }

    private func submitWrite(slot: UInt32, fd: Int32) {
        let io = fileIO[Int(slot)]
        loop.write(handler, fd: fd, from: region.slotAddress(slot) + Int(io.offset), length: io.remaining,
                   offset: io.fileOffset, tag: slot)
    }

    /// A run's pwritev completed: each request gets its share of the bytes written, in order. A
    /// short run (disk full, a signal) leaves requests partly or not at all written; each goes on
    /// alone from where it stopped, so its own error (ENOSPC) or success reaches the plugin.
    private func writeRunCompleted(_ slots: [UInt32], result: Int32) {
        var left = Int64(result)
        for slot in slots {
            guard result >= 0 else { fileWriteCompleted(slot: slot, result: result); continue }
            let length = Int64(fileIO[Int(slot)].remaining)
            let share = min(length, left)
            left -= share
            if share > 0 {
                fileWriteCompleted(slot: slot, result: Int32(share))
            } else if !shuttingDown, let f = files[fileIO[Int(slot)].file] {
                submitWrite(slot: slot, fd: f.fd)
            } else {
                fileWriteCompleted(slot: slot, result: 0)
            }
        }
    }

    fileprivate func fileWriteCompleted(slot: UInt32, result: Int32) {
        guard slot < UInt32(fileIO.count) else { return }
        var io = fileIO[Int(slot)]
        if result > 0, UInt32(result) < io.remaining, !shuttingDown, let f = files[io.file] {
            // Short write (disk nearly full, a signal): continue from where it stopped.
            io.done += UInt32(result)
            io.offset += UInt32(result)
            io.remaining -= UInt32(result)
            io.fileOffset += UInt64(result)
            fileIO[Int(slot)] = io
            submitWrite(slot: slot, fd: f.fd)
            return
        }
        writeFinished(io.file, number: io.write)
        fileOperationDone(io.file)
        _ = decoder.owners.transfer(slot, from: .inFlight, to: .core)
        if result >= 0 {
            complete(request: io.request, status: PH_OK, value: Int64(io.done) + Int64(result), slot: slot)
        } else {
            complete(request: io.request, status: fileStatus(result), value: Int64(io.done), slot: slot)
        }
    }

    /// FILE_SYNC covers every FILE_WRITE the plugin sent to that file before it: a write still in
    /// the kernel could otherwise land after the fsync and not be durable when PH_OK says so. So
    /// the sync waits for those writes (not for later ones) and goes out once they completed.
    fileprivate func fileSync(request: UInt64, file: UInt64) {
        guard let f = files[file], !f.closed else {
            complete(request: request, status: PH_EINVAL, slot: PH_NO_SLOT)
            return
        }
        files[file]!.inFlight += 1
        if f.writesInFlight.isEmpty {
            submitSync(request: request, file: file, fd: f.fd)
        } else {
            files[file]!.waitingSyncs.append((request, f.nextWrite - 1))
        }
    }

    private func submitSync(request: UInt64, file: UInt64, fd: Int32) {
        nextSyncTag &+= 1
        syncs[nextSyncTag] = (request, file)
        loop.fsync(handler, fd: fd, tag: nextSyncTag)
    }

    /// A write is over: syncs that waited only for writes up to it go out, in order.
    private func writeFinished(_ file: UInt64, number: UInt64) {
        guard var f = files[file], let i = f.writesInFlight.firstIndex(of: number) else { return }
        f.writesInFlight.remove(at: i)
        let oldest = f.writesInFlight.first ?? .max
        var ready: [UInt64] = []
        while let sync = f.waitingSyncs.first, sync.covers < oldest {
            f.waitingSyncs.removeFirst()
            ready.append(sync.request)
        }
        files[file] = f
        for request in ready { submitSync(request: request, file: file, fd: f.fd) }
    }

    fileprivate func fileSyncCompleted(tag: UInt32, result: Int32) {
        guard let sync = syncs.removeValue(forKey: tag) else { return }
        fileOperationDone(sync.file)
        complete(request: sync.request, status: result >= 0 ? PH_OK : fileStatus(result), slot: PH_NO_SLOT)
    }

    /// FILE_CLOSE: the id is dead for the plugin at once; the descriptor closes once nothing of
    /// it is in flight (a read still running would otherwise target a reused fd number).
    fileprivate func fileClose(_ file: UInt64) {
        guard files[file] != nil else { return }
        files[file]!.closed = true
        fileOperationDone(file, finished: false)
    }

    fileprivate func fileOperationDone(_ file: UInt64, finished: Bool = true) {
        guard var f = files[file] else { return }
        if finished { f.inFlight -= 1 }
        files[file] = f
        // While shutting down, the drain callback closes whatever is left.
        if f.closed, f.inFlight == 0, !shuttingDown {
            files[file] = nil
            loop.close(handler, fd: f.fd)
        }
    }

    fileprivate func fileStatus(_ result: Int32) -> ph_status {
        switch -result {
        case ENOENT, ENOTDIR: return PH_ENOENT
        case EACCES, EPERM, EROFS, EXDEV, ELOOP: return PH_EDENIED
        case EINVAL, EBADF, EISDIR, ENAMETOOLONG: return PH_EINVAL
        default: return PH_EIO
        }
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

// MARK: - Shaping (Shaper.swift)

extension PluginSession {
    /// A datagram whose slot is already in flight: submitted now if the buckets have tokens and
    /// nothing older of this socket waits, else queued until they refill. Its bytes are taken when
    /// it is submitted, before the kernel sees it. (Streams go through `pump`.)
    fileprivate func shapeDatagram(_ index: UInt32, _ send: QueuedSend) {
        guard let node = conns[Int(index)]?.shaper, let shaping,
              shaping.active || !conns[Int(index)]!.queuedSends.isEmpty else { submitDatagram(index, send); return }
        let now = monotonicNanoseconds()
        if conns[Int(index)]!.queuedSends.isEmpty, shaping.admit(node, .up, now: now) {
            shaping.charge(node, .up, bytes: Int(send.length), now: now)
            submitDatagram(index, send)
        } else {
            conns[Int(index)]!.queuedSends.append(send)
            waitForTokens(index, .up, now: now)
        }
    }

    /// One datagram = one sendmsg: never split, never merged.
    fileprivate func submitDatagram(_ index: UInt32, _ send: QueuedSend) {
        loop.sendmsg(handler, fd: conns[Int(index)]!.fd, from: region.slotAddress(send.slot) + Int(send.offset),
                     length: Int(send.length), to: send.to, tag: send.slot)
    }

    /// Starts the next send of a stream when none is in flight: the head of its queue, gathered into
    /// one sendmsg (StreamSendQueue says why one at a time keeps the order). A shaped connection
    /// sends one slot per admission and waits for tokens when the buckets are empty; each slot is
    /// charged once, when it first goes out.
    fileprivate func pump(_ index: UInt32) {
        guard let conn = conns[Int(index)], conn.kind == .stream, conn.phase != .done,
              !conn.out.sendInFlight, let head = conn.out.first else { return }
        let (fd, count, node) = (conn.fd, conn.out.count, conn.shaper)   // not `conn` itself below: see sendCompleted
        var limit = StreamSendQueue.maxGather
        if let node, let shaping, shaping.active {
            let now = monotonicNanoseconds()
            guard shaping.admit(node, .up, now: now) else { waitForTokens(index, .up, now: now); return }
            if !head.charged {
                shaping.charge(node, .up, bytes: Int(head.remaining), now: now)
                conns[Int(index)]!.out.markFirstCharged()
            }
            limit = 1
        }
        withUnsafeTemporaryAllocation(of: iovec.self, capacity: min(limit, count)) { vectors in
            let n = conns[Int(index)]!.out.startSend(limit: limit) { i, entry in
                vectors[i] = iovec(iov_base: region.slotAddress(entry.slot) + Int(entry.offset), iov_len: Int(entry.remaining))
            }
            loop.sendv(handler, fd: fd, buffers: UnsafeBufferPointer(rebasing: vectors[0..<n]), tag: index)
        }
    }

    fileprivate func waitForTokens(_ index: UInt32, _ direction: ShapingDirection, now: UInt64) {
        shapedWaiting[direction.rawValue].insert(index)
        armShaperTimer(now: now)
    }

    /// A refill timer for the earliest moment a waiting connection could go (at least 1 ms, at
    /// most one allocation interval so shares follow the load). A connection that starts waiting
    /// with an earlier moment than the pending timer's gets a timer of its own: otherwise it would
    /// wait for a later one while its tokens overflow the bucket.
    fileprivate func armShaperTimer(now: UInt64) {
        guard !shuttingDown, let shaping else { return }
        var wait = Shaper.allocationInterval
        for d in ShapingDirection.allCases {
            for index in shapedWaiting[d.rawValue] {
                if let node = conns[Int(index)]?.shaper { wait = min(wait, shaping.delay(node, d)) }
            }
        }
        wait = max(wait, 1_000_000)
        guard now &+ wait &+ 500_000 < shaperTimerDeadline else { return }
        shaperTimerDeadline = now &+ wait
        shaperTimerSerial &+= 1
        loop.timeout(handler, nanoseconds: wait, tag: Self.shaperTimerTag | (shaperTimerSerial & 0xFFFF))
    }

    /// The refill timer fired: every waiting connection that now has tokens goes, in turns — each
    /// round lets every admitted connection submit one send, so a connection with a long queue
    /// does not take the tokens its plugin's other connections wait for.
    fileprivate func serveShaped() {
        guard let shaping else { return }
        let now = monotonicNanoseconds()
        // Receives: resume (the multishot receive is re-armed once its stop has completed); those
        // within their fair share first, then those that borrow their plugin's spare tokens.
        for borrow in [false, true] {
            for index in shapedWaiting[ShapingDirection.down.rawValue] {
                guard let conn = conns[Int(index)], !conn.closed, let node = conn.shaper else {
                    shapedWaiting[1].remove(index); continue
                }
                guard shaping.admit(node, .down, now: now, borrow: borrow) else { continue }
                shapedWaiting[1].remove(index)
                conns[Int(index)]!.rxPaused = false
                if conn.kind == .udp {
                    armDatagramReceive(index)
                } else if !conn.recvArmed, !conn.peerFinished {
                    conns[Int(index)]!.recvArmed = true
                    armReceive(index)
                }
            }
        }
        // Sends: round robin over the connections with something queued, within their share
        // first, then borrowing. A stream has one send in flight at most (its completion pumps the
        // next), so it gets one turn; a UDP socket sends a datagram per turn.
        for borrow in [false, true] {
            var ready = shapedWaiting[ShapingDirection.up.rawValue].sorted()
            while !ready.isEmpty {
                var next: [UInt32] = []
                for index in ready {
                    guard let conn = conns[Int(index)], conn.phase != .done, let node = conn.shaper else {
                        shapedWaiting[0].remove(index); continue
                    }
                    if conn.kind == .stream {
                        guard !conn.out.isEmpty, !conn.out.sendInFlight else { shapedWaiting[0].remove(index); continue }
                        guard shaping.admit(node, .up, now: now, borrow: borrow) else { continue }
                        shapedWaiting[0].remove(index)
                        pump(index)
                        continue
                    }
                    guard !conn.queuedSends.isEmpty else { shapedWaiting[0].remove(index); continue }
                    guard shaping.admit(node, .up, now: now, borrow: borrow) else { continue }
                    let send = conns[Int(index)]!.queuedSends.removeFirst()
                    shaping.charge(node, .up, bytes: Int(send.length), now: now)
                    submitDatagram(index, send)
                    if conns[Int(index)]!.queuedSends.isEmpty { shapedWaiting[0].remove(index) } else { next.append(index) }
                }
                ready = next
            }
        }
        if !shapedWaiting[0].isEmpty || !shapedWaiting[1].isEmpty { armShaperTimer(now: now) }
    }
}
