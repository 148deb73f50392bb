// IOUringLoop: the core's single-threaded io_uring event loop (DESIGN.md "Shared-memory transport":
// the io_uring instance belongs to one event-loop thread; other threads hand work to it).
//
// Threading invariant (why this class is `@unchecked Sendable`): after `run()` starts, every method
// except `execute(_:)`, `wake()` and `stop()` must be called on the thread running `run()` — in
// practice from an `IOHandler`, from the `beforeWait` hook, or from a closure passed to `execute`.
// Before `run()` starts, the thread that created the loop may set it up (register handlers and
// buffer groups, queue operations); starting the loop thread orders those writes before the loop's.
// The ring is created with IORING_SETUP_R_DISABLED and enabled inside `run()`, so SINGLE_ISSUER
// binds the ring to the loop thread rather than to the creating thread.
//
// Per-iteration flow (one io_uring_enter per iteration under load, none extra per operation):
//   1. drain `execute` work if another thread signalled,   2. `beforeWait()` (the host drains the
//   plugins' TX rings there),   3. submit everything queued and either wait for one completion
//   (idle) or just collect completions (busy) — multishot receives that stopped on ENOBUFS are
//   re-armed just before, once their buffer group got buffers back,   4. reap CQEs in batches and
//   dispatch each to its handler by user_data (no allocation).

import CLiburing
import CPeerhostShim
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public final class IOUringLoop: @unchecked Sendable {
    public struct Configuration: Sendable {
        /// Submission queue entries. 4096 matches the plugin ring size: one iteration can queue a
        /// send per TX descriptor without an intermediate submit.
        public var submissionEntries: UInt32 = 4096
        /// Completion queue entries: 4× the SQ so bursts of multishot completions do not overflow.
        public var completionEntries: UInt32 = 16384
        /// CQEs reaped per io_uring_peek_batch_cqe call.
        public var reapBatch: Int = 256
        /// Contexts for plain recvmsg (its msghdr must live until completion).
        public var messageContexts: Int = 1024
        public init() {}
    }

    /// One line for the start-up log: which setup flags the kernel accepted.
    public let setupMode: String

    /// Called once per iteration before the loop would sleep. Return true if work was done (the
    /// loop then only collects completions instead of sleeping). The host drains plugin TX rings here
    /// and implements adaptive spinning; before returning false it must arm its own wake-ups.
    public var beforeWait: (() -> Bool)?

    /// When set, every wait is bounded by this many nanoseconds (periodic work in beforeWait, e.g.
    /// token-bucket refills). Timers proper are io_uring timeouts (`timeout(_:nanoseconds:tag:)`).
    public var waitLimitNanos: UInt64?

    // ---- the ring -----------------------------------------------------------------------------
    let ring: UnsafeMutablePointer<io_uring>
    private let ringDisabled: Bool          // created with R_DISABLED; enabled in run()
    private var ringEnabled: Bool
    private let config: Configuration
    private let cqeBatch: UnsafeMutablePointer<UnsafeMutablePointer<io_uring_cqe>?>

    // ---- handler slab (loop thread only) -------------------------------------------------------
    // Parallel arrays indexed by slot. Slot 0 is the loop's own (wake eventfd).
    var handlers: [(any IOHandler)?] = [nil]
    var generations: [UInt8] = [0]
    var outstanding: [Int32] = [0]
    var retiring: [Bool] = [false]
    var cancelling: [Bool] = [false]
    private var freeSlots: [UInt32] = []
    /// Per handler: fds its operations used (for cancelAll), timeouts pending (user_data).
    var handlerFDs: [Set<Int32>] = [[]]
    var lastFD: [Int32] = [-1]
    var handlerTimeouts: [Set<UInt64>] = [[]]
    var drainWaiters: [UInt32: [() -> Void]] = [:]
    /// fds whose multishot receive was cancelled by `cancel(_:fd:)`: never auto re-armed.
    var cancelledFDs: [UInt32: Set<Int32>] = [:]

    // ---- multishot bookkeeping --------------------------------------------------------------------
    struct Armed {
        var fd: Int32
        var group: BufferGroup?     // nil for accept
        var isAccept: Bool
        /// A receive of one buffer (`recv(..., oneShot: true)`): ends with its data, never re-armed.
        var oneShot = false
    }
    /// user_data → armed multishot op; consulted only on a multishot's final CQE.
    var armed: [UInt64: Armed] = [:]
    /// Multishot receives stopped by `stopRecv`: ended, never re-armed by the loop.
    var stoppedRecvs: Set<UInt64> = []
    var groupsWithParked: [BufferGroup] = []
    var bufferGroups: [UInt16: BufferGroup] = [:]
    /// Completions made up by the loop (e.g. a parked receive cancelled), delivered in the reap step
    /// so that no handler is re-entered from inside an operation call.
    var synthetic: [(UInt64, Int32, UInt32)] = []
    var iteration: UInt64 = 0

    // ---- scratch memory that only has to live until submission -----------------------------------
    // io_uring guarantees (IORING_FEAT_SUBMIT_STABLE) that the kernel has copied everything an SQE
    // points at (sockaddrs, msghdrs, open_how, paths, timespecs) once the SQE is consumed, so these
    // private copies live in a bump arena reset after each full submit: no allocation per operation.
    private let arena: UnsafeMutableRawPointer
    private let arenaCapacity = 256 * 1024
    private var arenaUsed = 0

    // ---- recvmsg contexts (msghdr is written back at completion, so it must outlive submit) -------
    struct MessageContext {
        var header: msghdr
        var iov: iovec
        var tag: UInt32
    }
    let messageContexts: UnsafeMutablePointer<MessageContext>
    var freeMessageContexts: [UInt32]

    // ---- cross-thread --------------------------------------------------------------------------
    private let wakeFD: Int32
    private let wakeBuffer: UnsafeMutablePointer<UInt64>
    private let pending = Mutex<[@Sendable () -> Void]>([])
    private var spareQueue: [@Sendable () -> Void] = []
    private let sleeping = Atomic<Bool>(false)
    private let wakePending = Atomic<Bool>(false)
    private let stopRequested = Atomic<Bool>(false)
    private var loopThread: pthread_t?

    /// Creates the ring. Throws `EventLoopError.ioUringUnavailable` with one clear line when the
    /// kernel or the container refuses io_uring; the host prints it and exits (no silent fallback).
    public init(configuration: Configuration = Configuration()) throws {
        config = configuration
        ring = .allocate(capacity: 1)
        ring.initialize(to: io_uring())
        var params = io_uring_params()
        // Preferred: SINGLE_ISSUER|DEFER_TASKRUN (completions run only when this thread waits: no
        // IPIs, no task-work interruptions), then COOP_TASKRUN, then none (older kernels).
        let attempts: [(UInt32, String)] = [
            (ph_uring_setup_flags_preferred(), "SINGLE_ISSUER|DEFER_TASKRUN|COOP_TASKRUN"),
            (ph_uring_setup_flags_coop(), "COOP_TASKRUN"),
            (ph_uring_setup_flags_plain(), "no task-run flags"),
        ]
        var firstError: Int32 = 0
        var mode = ""
        var usedFlags: UInt32 = 0
        for (flags, name) in attempts {
            params = io_uring_params()
            params.flags = flags
            params.cq_entries = configuration.completionEntries
            let r = io_uring_queue_init_params(configuration.submissionEntries, ring, &params)
            if r == 0 { mode = name; usedFlags = flags; break }
            if firstError == 0 { firstError = -r }
            // EPERM/ENOSYS will not change with other flags: report the real cause.
            if -r == EPERM || -r == ENOSYS || -r == ENOMEM { break }
        }
        if mode.isEmpty {
            ring.deallocate()
            throw EventLoopError.ioUringUnavailable(errno: firstError)
        }
        guard ph_uring_feat_submit_stable(params.features) != 0 else {
            io_uring_queue_exit(ring); ring.deallocate()
            throw EventLoopError.missingFeature("IORING_FEAT_SUBMIT_STABLE (kernel older than 5.5)")
        }
        setupMode = mode
        ringDisabled = ph_uring_is_disabled_setup(usedFlags) != 0
        ringEnabled = !ringDisabled
        cqeBatch = .allocate(capacity: configuration.reapBatch)
        arena = .allocate(byteCount: arenaCapacity, alignment: 64)
        messageContexts = .allocate(capacity: configuration.messageContexts)
        freeMessageContexts = (0..<UInt32(configuration.messageContexts)).reversed()
        wakeBuffer = .allocate(capacity: 1)
        wakeBuffer.initialize(to: 0)
        let efd = ph_eventfd(0, 1)
        if efd < 0 {
            let e = errno
            io_uring_queue_exit(ring)
            throw EventLoopError.syscall(step: "eventfd for the loop's wake-ups", errno: e)
        }
        wakeFD = efd
        armWakeRead()
    }

    deinit {
        io_uring_queue_exit(ring)
        ring.deallocate()
        for g in bufferGroups.values { g.releaseMemory() }
        Glibc.close(wakeFD)
        cqeBatch.deallocate()
        arena.deallocate()
        messageContexts.deallocate()
        wakeBuffer.deallocate()
    }

    // MARK: - Running

    /// Runs the loop on the calling thread until `stop()`.
    public func run() {
        loopThread = pthread_self()
        if ringDisabled && !ringEnabled {
            // SINGLE_ISSUER: the enabling thread becomes the ring's only submitter.
            let r = ph_enable_rings(ring)
            precondition(r == 0, "io_uring_enable_rings failed: \(errnoName(-r))")
            ringEnabled = true
        }
        while !stopRequested.load(ordering: .relaxed) {
            runOnce()
        }
        // A stopped loop can be run again (tests); pending work stays queued.
        stopRequested.store(false, ordering: .relaxed)
    }

    /// Asks the loop to return from `run()` after the current iteration. Any thread.
    public func stop() {
        stopRequested.store(true, ordering: .relaxed)
        wake()
    }

    /// Makes the loop's current or next wait return. Any thread. Writes the eventfd only when the
    /// loop is (about to be) asleep, so a busy loop costs the caller one atomic store and load.
    public func wake() {
        wakePending.store(true, ordering: .sequentiallyConsistent)
        if sleeping.load(ordering: .sequentiallyConsistent) {
            _ = ph_eventfd_signal(wakeFD)
        }
    }

    /// Runs `work` on the loop thread. Any thread. This allocates (a closure per call): it is the
    /// control path, not the data path.
    public func execute(_ work: @escaping @Sendable () -> Void) {
        pending.withLock { $0.append(work) }
        wake()
    }

    /// True when called on the thread running the loop.
    public var inLoop: Bool {
        guard let t = loopThread else { return false }
        return pthread_equal(t, pthread_self()) != 0
    }

    func runOnce() {
        iteration &+= 1
        // 1. work from other threads. exchange() (a read-modify-write) synchronises with wake()'s
        //    store, so whatever the waker published before wake() is visible from here on.
        if wakePending.exchange(false, ordering: .sequentiallyConsistent) {
            drainExecuteQueue()
        }
        // 2. the host's hook
        var busy = beforeWait?() ?? false
        if !synthetic.isEmpty { busy = true }
        // 3a. receives parked on ENOBUFS whose group got buffers back (in the previous reap, in
        //     execute work or in beforeWait): their re-arm SQEs must go into THIS submit, or the
        //     loop would sleep with the data sitting in the socket (found by EventLoopTests).
        if !groupsWithParked.isEmpty { rearmParked() }
        // 3. submit, and wait if idle. Dekker-style handshake with wake(): publish `sleeping`, then
        //    look at `wakePending`; a waker stores `wakePending`, then looks at `sleeping`.
        var r: Int32
        if busy {
            r = io_uring_submit_and_get_events(ring)
        } else {
            sleeping.store(true, ordering: .sequentiallyConsistent)
            if wakePending.load(ordering: .sequentiallyConsistent) || stopRequested.load(ordering: .relaxed) {
                sleeping.store(false, ordering: .relaxed)
                r = io_uring_submit_and_get_events(ring)
            } else {
                if let limit = waitLimitNanos {
                    r = ph_wait_timeout(ring, limit)
                } else {
                    r = io_uring_submit_and_wait(ring, 1)
                }
                sleeping.store(false, ordering: .relaxed)
            }
        }
        if r < 0 && r != -EINTR && r != -ETIME && r != -EAGAIN && r != -EBUSY {
            writeStderr("peerhost: io_uring_enter failed: \(errnoName(-r))\n")
        }
        if io_uring_sq_ready(ring) == 0 { arenaUsed = 0 }
        // 4. completions
        reap()
    }

    private func drainExecuteQueue() {
        var local = spareQueue
        spareQueue = []
        pending.withLock { swap(&$0, &local) }
        for work in local { work() }
        local.removeAll(keepingCapacity: true)
        spareQueue = local
    }

    private func reap() {
        if !synthetic.isEmpty {
            let items = synthetic
            synthetic.removeAll(keepingCapacity: true)
            for (ud, res, flags) in items { dispatch(userData: ud, result: res, flags: flags) }
        }
        let batch = UInt32(config.reapBatch)
        while true {
            let n = io_uring_peek_batch_cqe(ring, cqeBatch, batch)
            if n == 0 { break }
            for i in 0..<Int(n) {
                let cqe = cqeBatch[i]!
                dispatch(userData: cqe.pointee.user_data, result: cqe.pointee.res, flags: cqe.pointee.flags)
            }
            io_uring_cq_advance(ring, n)
            if n < batch { break }
        }
    }

    // MARK: - Dispatch

    @inline(__always)
    private func dispatch(userData ud: UInt64, result rawResult: Int32, flags rawFlags: UInt32) {
        var result = rawResult
        guard let op = OpKind(rawValue: UserData.op(ud)) else { return }
        if op.isInternal {
            if op == .loopWake { armWakeRead() }
            return      // cancel / timeout-remove results: nothing to do
        }
        let slot = Int(UserData.slot(ud))
        guard slot < handlers.count, let handler = handlers[slot],
              (generations[slot] & UserData.generationMask) == UserData.generation(ud) else {
            return      // stale: cannot happen while slots are only freed at zero outstanding
        }
        var flags = rawFlags
        var tag = UserData.tag(ud)
        var final = (flags & IOUringFlags.cqeMore) == 0

        switch op {
        case .recv, .accept:
            if final, !stoppedRecvs.isEmpty, stoppedRecvs.remove(ud) != nil {
                // Stopped by stopRecv: it ends here, whatever the kernel said (ENOBUFS included).
                armed[ud] = nil
                if result == -ENOBUFS { result = -ECANCELED }
            } else if final, let arm = armed[ud] {
                if op == .recv && result == -ENOBUFS, let group = arm.group, !cancelling[slot],
                   !(cancelledFDs[UInt32(slot)]?.contains(arm.fd) ?? false) {
                    // The kernel ran out of provided buffers and ended the multishot receive. Park
                    // it; it is re-armed when the group gets buffers back (baselines README trap).
                    group.park(userData: ud, fd: arm.fd, iteration: iteration)
                    if group.parkedCount == 1 { groupsWithParked.append(group) }
                    return
                }
                if arm.oneShot && result > 0 {
                    armed[ud] = nil   // one buffer was all it asked for
                } else if result > 0 || (op == .accept && result >= 0) || (op == .accept && result == -ENOBUFS) {
                    // Still wanted: the kernel ended the multishot for its own reasons. Re-arm and
                    // tell the handler it continues.
                    if !cancelling[slot] && !(cancelledFDs[UInt32(slot)]?.contains(arm.fd) ?? false) {
                        if arm.isAccept { prepAccept(ud, fd: arm.fd) } else { prepRecvGroup(ud, fd: arm.fd, group: arm.group!) }
                        flags |= IOUringFlags.cqeMore
                        final = false
                    } else {
                        armed[ud] = nil
                    }
                } else {
                    armed[ud] = nil
                }
            }
        case .recvmsg:
            // tag field carried the context index; give the caller's tag back
            let ctx = Int(tag)
            tag = messageContexts[ctx].tag
            freeMessageContexts.append(UInt32(ctx))
        case .timeout:
            handlerTimeouts[slot].remove(ud)
        default:
            break
        }
        handler.complete(IOCompletion(op: op, result: result, flags: flags, tag: tag))
        if final { operationFinished(slot: slot) }
    }

    @inline(__always)
    func operationFinished(slot: Int) {
        outstanding[slot] -= 1
        if outstanding[slot] == 0 { drained(slot: slot) }
    }

    private func drained(slot: Int) {
        handlerFDs[slot].removeAll()
        lastFD[slot] = -1
        cancelledFDs[UInt32(slot)] = nil
        cancelling[slot] = false
        if let waiters = drainWaiters.removeValue(forKey: UInt32(slot)) {
            for w in waiters { w() }
        }
        if retiring[slot] && outstanding[slot] == 0 { freeSlot(slot) }
    }

    // MARK: - Handlers

    /// Registers a handler; its completions are routed by the returned id.
    public func register(_ handler: any IOHandler) -> HandlerID {
        let slot: Int
        if let s = freeSlots.popLast() {
            slot = Int(s)
            handlers[slot] = handler
        } else {
            precondition(handlers.count < Int(UserData.maxSlots), "more than 2^20 io handlers on one loop")
            slot = handlers.count
            handlers.append(handler)
            generations.append(0)
            outstanding.append(0)
            retiring.append(false)
            cancelling.append(false)
            handlerFDs.append([])
            lastFD.append(-1)
            handlerTimeouts.append([])
        }
        retiring[slot] = false
        cancelling[slot] = false
        return HandlerID(slot: UInt32(slot), generation: generations[slot] & UserData.generationMask)
    }

    /// Unregisters a handler. If operations are still outstanding, it keeps receiving their
    /// completions (a provided buffer must never be lost) and the slot is freed when they reach 0.
    public func unregister(_ id: HandlerID) {
        let slot = check(id)
        if outstanding[slot] == 0 { freeSlot(slot) } else { retiring[slot] = true }
    }

    private func freeSlot(_ slot: Int) {
        handlers[slot] = nil
        retiring[slot] = false
        generations[slot] = (generations[slot] &+ 1) & UserData.generationMask
        handlerTimeouts[slot].removeAll()
        freeSlots.append(UInt32(slot))
    }

    /// Operations submitted and not yet finished for this handler (multishot ones count once).
    public func outstandingOperations(_ id: HandlerID) -> Int {
        Int(outstanding[check(id)])
    }

    @inline(__always)
    func check(_ id: HandlerID) -> Int {
        let slot = Int(id.slot)
        precondition(slot > 0 && slot < handlers.count && handlers[slot] != nil
                     && generations[slot] & UserData.generationMask == id.generation,
                     "stale or unknown \(id)")
        return slot
    }

    // MARK: - Submission helpers

    /// Next free SQE; when the SQ is full, submit what is queued first.
    @inline(__always)
    func sqe() -> UnsafeMutablePointer<io_uring_sqe> {
        if let s = io_uring_get_sqe(ring) { return s }
        flushSubmissions()
        guard let s = io_uring_get_sqe(ring) else { fatalError("io_uring SQ still full after submit") }
        return s
    }

    /// Submits queued SQEs now (SQ full, or arena full). Before `run()` the ring may still be
    /// disabled: queue at most `submissionEntries` operations before starting the loop.
    func flushSubmissions() {
        precondition(ringEnabled, "too many operations queued before IOUringLoop.run() (SQ/arena full)")
        while io_uring_sq_ready(ring) > 0 {
            let r = io_uring_submit(ring)
            if r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY {
                fatalError("io_uring_submit failed: \(errnoName(-r))")
            }
            if r == -EAGAIN || r == -EBUSY { _ = io_uring_get_events(ring) }
        }
        arenaUsed = 0
    }

    /// Private scratch memory valid until the SQEs queued after it are submitted.
    func scratch(_ size: Int, alignment: Int = 16) -> UnsafeMutableRawPointer {
        var start = (arenaUsed + alignment - 1) & ~(alignment - 1)
        if start + size > arenaCapacity {
            flushSubmissions()
            start = 0
        }
        precondition(size <= arenaCapacity)
        arenaUsed = start + size
        return arena + start
    }

    /// Books an operation for a handler and returns its user_data.
    @inline(__always)
    func begin(_ id: HandlerID, _ op: OpKind, tag: UInt32, fd: Int32?) -> UInt64 {
        let slot = check(id)
        outstanding[slot] += 1
        if let fd, lastFD[slot] != fd {
            handlerFDs[slot].insert(fd)
            lastFD[slot] = fd
        }
        return UserData.encode(slot: UInt32(slot), generation: id.generation, op: op, tag: tag)
    }

    private func armWakeRead() {
        let s = sqe()
        io_uring_prep_read(s, wakeFD, wakeBuffer, 8, 0)
        io_uring_sqe_set_data64(s, UserData.encode(slot: 0, generation: 0, op: .loopWake, tag: 0))
    }

    func prepAccept(_ ud: UInt64, fd: Int32) {
        let s = sqe()
        io_uring_prep_multishot_accept(s, fd, nil, nil, Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue))
        io_uring_sqe_set_data64(s, ud)
    }

    func prepRecvGroup(_ ud: UInt64, fd: Int32, group: BufferGroup, oneShot: Bool = false) {
        let s = sqe()
        if oneShot { ph_prep_recv_group(s, fd, group.groupID) } else { ph_prep_recv_multishot_group(s, fd, group.groupID) }
        io_uring_sqe_set_data64(s, ud)
    }

    // MARK: - Buffer groups

    /// Re-arms receives parked on ENOBUFS whose group got buffers in this iteration (before the
    /// enter) or in the previous one (its reap, where the ENOBUFS may have been parked after the
    /// commit). With DEFER_TASKRUN the kernel can only have run out during the previous enter, so
    /// a commit since then is exactly the condition; re-arming too early only costs one more ENOBUFS.
    private func rearmParked() {
        var i = 0
        while i < groupsWithParked.count {
            let g = groupsWithParked[i]
            if g.lastCommitIteration + 1 >= iteration {
                for p in g.takeParked() {
                    prepRecvGroup(p.userData, fd: p.fd, group: g, oneShot: armed[p.userData]?.oneShot ?? false)
                }
                groupsWithParked.remove(at: i)
            } else {
                i += 1
            }
        }
    }

    func bufferGroupCommitted(_ g: BufferGroup) {
        g.lastCommitIteration = iteration
    }
}

/// Writes a line to fd 2 (the `stderr` global is not concurrency-safe in Swift 6 mode).
func writeStderr(_ s: String) {
    var s = s
    s.withUTF8 { _ = Glibc.write(2, $0.baseAddress, $0.count) }
}

