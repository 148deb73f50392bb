import CPeerhostABI
import CPeerhostShim
import Foundation
import Logging
import PeerhostRing
import PeerhostSandbox
#if canImport(Glibc)
import Glibc
#endif

/// Supervises one plugin: spawns its runner in the sandbox, watches heartbeats and exits, kills it
/// on a violation or a hang, and restarts it with exponential backoff. Loop thread only, except
/// `controlChannel`, which is thread-safe.
final class PluginSupervisor: IOHandler, PluginSessionDelegate, @unchecked Sendable {
    enum State: String, Sendable { case starting, running, backoff, stopped, failed }

    let config: HostConfig.PluginConfig
    let tuning: HostConfig.Tuning
    let runnerPath: String
    /// The verified bytes, loaded once at host start: every incarnation (restarts too) copies
    /// these same bytes onto its private root.
    /// nil only for a plugin that could not be prepared (it is marked failed and never spawned).
    let library: LibraryImage?
    /// The runner's private root: mount point and read-only binds (runner and plugin libraries).
    let files: PluginFiles?
    /// Where per-plugin cgroups can be made (nil: none) and the core's own subtree name in them.
    let cgroups: Cgroups?
    let cgroupInstance: String
    let uidBase: UInt32
    let loop: IOUringLoop
    let metrics: PluginMetrics
    let logger: Logger
    let audit: AuditLog
    let groupID: UInt16

    private(set) var handler: HandlerID!
    private(set) var state: State = .stopped
    private(set) var reason = ""
    private(set) var restarts = 0
    private(set) var session: PluginSession?
    private(set) var process: SpawnedProcess?
    private var channel: RunnerControlChannel?
    private var incarnation: UInt64 = 0
    /// This incarnation's runner said hello: a second one, like a `fail` once it runs, is not from
    /// the runner's start-up code but written by the plugin into fd 4 (issue 15).
    private var helloSeen = false
    private var heartbeatSequence: UInt64 = 0
    private var killCause: RestartCause?
    private var consecutiveFailures = 0
    private var runningSince: ContinuousClock.Instant?
    /// Since when the plugin has been down after having run (nil: up, or never started); the
    /// downtime counter is advanced by `accrueDowntime`.
    private var downSince: ContinuousClock.Instant?
    /// The cause of the last runner death or start failure (status and usage log).
    private(set) var lastCause: RestartCause?
    /// Accounting, loop thread only (`sampleUsage`, `sampleRates`): CPU seconds of every runner
    /// so far, the last sample (a new pid starts from 0), downtime, bytes/s over the last sample.
    private(set) var cpuSecondsTotal: Double = 0
    private(set) var lastUsage: ResourceUsage?
    private(set) var downtimeSeconds: Double = 0
    /// Per-peer accounting across incarnations (ABI 1.1 conn_set_peer).
    let peers = PeerTable()
    private var rateSample: (at: ContinuousClock.Instant, bytesIn: UInt64, bytesOut: UInt64)?
    private(set) var rates: (inbound: Double, outbound: Double) = (0, 0)
    private var stopping = false
    private var stoppedCallbacks: [() -> Void] = []
    /// Counters of earlier incarnations, so totals survive restarts.
    private var retired = SessionCounters()
    /// The limits of the live (or last) incarnation and how each is enforced.
    private(set) var enforcedLimits: EnforcedLimits?
    private var cgroup: PluginCgroup?
    private var loggedLimitFallback = false
    /// The host's /dev/kmsg reader: names the syscall of a SIGSYS death (KernelLog.swift).
    var kernelLog: KernelLog?
    /// The host's key-value store, or why it is unusable (KVStore.swift); nil: kv calls fail PH_EIO.
    var store: Result<KVStore, StoreError>?
    /// Learn mode (`peerhost learn`): the runner's filter notifies instead of killing and this
    /// records what it calls (SeccompLearner.swift).
    var learner: SeccompLearner?
    /// The plugin's shaper node (Shaper.swift), kept across restarts; nil = not shaped.
    var shaping: PluginShaper?
    /// Directories the operator granted at run time (OperatorGrants.swift): part of every
    /// incarnation's storage grants, and applied to the live session when they change.
    private(set) var operatorGrants: [OperatorGrant] = []
    /// The latest good `details` from the plugin's `[status]` method (Host+PluginStatus.swift).
    var statusDetails: JSONValue?
    /// The profile of the current incarnation (set by `start`).
    private(set) var syscallProfile: SyscallProfile?

    private enum TimerTag: UInt32 { case heartbeat = 1, restart = 2, stopGrace = 3 }

    var name: String { config.name }

    init(config: HostConfig.PluginConfig, tuning: HostConfig.Tuning, runnerPath: String, library: LibraryImage?,
         files: PluginFiles?, cgroups: Cgroups?, cgroupInstance: String,
         uidBase: UInt32, loop: IOUringLoop, metrics: PluginMetrics, logger: Logger, audit: AuditLog) {
        self.config = config
        self.tuning = tuning
        self.runnerPath = runnerPath
        self.library = library
        self.files = files
        self.cgroups = cgroups
        self.cgroupInstance = cgroupInstance
        self.uidBase = uidBase
        self.loop = loop
        self.metrics = metrics
        self.logger = logger
        self.audit = audit
        self.groupID = UInt16(1 + config.index)
        handler = loop.register(self)
    }

    // MARK: Start

    func start() {
        guard session == nil, !stopping else { return }
        incarnation &+= 1
        helloSeen = false
        state = .starting
        reason = ""
        killCause = nil
        // The syscall profile: parsed and linted before every spawn. A bad or dangerous profile
        // does not get better by restarting, so the plugin is left failed.
        do {
            let profile = try SyscallProfile.forManifest(config.manifest)
            let findings = profile.lint()
            if !findings.isEmpty {
                let text = findings.map { "\($0.syscall) (\($0.reason))" }.joined(separator: "; ")
                refuse("syscall profile \(profile.displayName) allows dangerous syscalls: \(text)",
                       object: profile.displayName)
                return
            }
            syscallProfile = profile
        } catch {
            refuse("syscall profile: \(error)", object: config.manifest.sandbox.syscallProfile ?? EmbeddedProfiles.defaultDisplayName)
            return
        }
        do {
            try spawn()
        } catch {
            reason = "\(error)"
            logger.error("plugin failed to start", metadata: ["plugin": "\(name)", "error": "\(error)"])
            audit.record(plugin: name, pid: 0, action: "spawn", object: name, decision: .failed, reason: reason)
            failed(cause: .startFailure)
        }
    }

    private func spawn() throws {
        guard let library, let files else { throw SpawnError(step: .args, errno: EINVAL) }
        let geometry = RegionGeometry(ringEntries: UInt32(tuning.ringEntries), slotSize: UInt32(tuning.slotSize),
                                      slotCount: UInt32(tuning.slotCount), recvSlots: UInt32(tuning.receiveSlots))
        let region = try SharedRegion.create(name: name, geometry: geometry)
        let rxWake = try Wakeup.make(nonBlocking: true)
        let txWake = try Wakeup.make(nonBlocking: true)
        let pair: [Int32]
        do {
            let (coreEnd, runnerEnd) = try Sockets.streamPair()
            pair = [coreEnd, runnerEnd]
        } catch {
            rxWake.close(); txWake.close()
            throw error
        }
        let session = try PluginSession(plugin: name, loop: loop, region: region, rxWake: rxWake, txWake: txWake,
                                        groupID: groupID, access: PluginAccess(config: config, operatorGrants: operatorGrants.map(\.layoutGrant)),
                                        logger: logger)
        session.delegate = self
        session.peers = peers
        session.pluginMetrics = metrics
        session.shaping = shaping
        session.kvStore = store
        session.kvQuota = config.manifest.storage.kvQuota
        session.spinBudgetNanoseconds = UInt64(tuning.spinMicroseconds) * 1000
        session.descriptorBudget = tuning.pluginDescriptors
        session.sendQueueLimit = tuning.sendQueuePerConnection
        session.timerBudget = tuning.pluginTimers
        session.lingerNanoseconds = UInt64(tuning.closeLingerSeconds) * 1_000_000_000
        // Limits: a cgroup (the parent moves the child into it before releasing it), else rlimits.
        let limits = PluginLimits.make(config.manifest.limits, plugin: name, cgroups: cgroups, instance: cgroupInstance)
        if let why = limits.fallbackReason, !loggedLimitFallback {
            loggedLimitFallback = true
            logger.warning("plugin limits without cgroups: memory by RLIMIT_AS (address space, coarse), cpu_percent not enforced",
                           metadata: ["plugin": "\(name)", "reason": "\(why)"])
        }
        let cgroupProcs: [Int32]
        do {
            cgroupProcs = try limits.cgroup?.openProcs() ?? []
        } catch {
            limits.cgroup?.remove()
            Glibc.close(pair[0]); Glibc.close(pair[1])
            session.shutdown { rxWake.close(); txWake.close() }
            throw error
        }
        defer { cgroupProcs.forEach { Glibc.close($0) } }
        let output: (read: Int32, write: Int32)
        do {
            output = try RunnerOutput.pipe()
        } catch {
            limits.cgroup?.remove()
            Glibc.close(pair[0]); Glibc.close(pair[1])
            session.shutdown { rxWake.close(); txWake.close() }
            throw error
        }
        // The runner loads the copy of the verified bytes on its read-only tmpfs, never a host path.
        let copy = PrivateRoot.LibraryCopy(fd: library.fd, size: library.size, target: files.libraryTarget)
        let spec = SpawnSpec(runnerPath: runnerPath,
                             argv: ["peerhost-runner", "--plugin", name, "--library", files.libraryTarget] + limits.runnerArguments
                                 + (learner == nil ? ["--syscalls", syscallProfile?.encoded ?? ""]
                                                   : ["--syscalls", "", "--seccomp", "learn"])
                                 + (onCheck == nil ? [] : ["--check", config.manifest.controls.isEmpty ? "-" : config.manifest.controls.map(\.symbol).joined(separator: ",")]),
                             environment: ["SWIFT_BACKTRACE=enable=no", "PEERHOST_SPIN_US=\(tuning.spinMicroseconds)"],
                             fds: [region.fd, pair[1], rxWake.fd, txWake.fd],
                             hostUID: hostIdentity.uid, hostGID: hostIdentity.gid,
                             root: PrivateRoot(mountPoint: files.mountPoint, binds: files.binds, library: copy),
                             cgroupProcs: cgroupProcs, stdio: output.write)
        let spawned: SpawnedProcess
        do {
            spawned = try SandboxSpawner.spawn(spec)
        } catch {
            limits.cgroup?.remove()
            Glibc.close(pair[0]); Glibc.close(pair[1])
            Glibc.close(output.read); Glibc.close(output.write)
            session.shutdown { rxWake.close(); txWake.close() }
            throw error
        }
        self.cgroup = limits.cgroup
        self.enforcedLimits = limits.enforced
        Glibc.close(pair[1])
        Glibc.close(output.write)   // the child has its copies: EOF comes when it is gone
        RunnerOutput.startReader(fd: output.read, plugin: name, logger: logger)
        self.session = session
        self.process = spawned
        if let learner {
            learner.markLoading()
            learner.attach(pid: spawned.pid, pidfd: spawned.pidfd)
        }
        let channel = RunnerControlChannel(fd: pair[0])
        self.channel = channel
        let me = incarnation
        channel.start { [self, loop] event in
            loop.execute { self.controlEvent(event, incarnation: me) }
        }
        session.start(configJSON: config.startConfigJSON)
        logger.info("plugin starting", metadata: ["plugin": "\(name)", "pid": "\(spawned.pid)"])
        audit.record(plugin: name, pid: spawned.pid, action: "spawn", object: name, decision: .allowed,
                     reason: "grants: " + (config.grantSummary.isEmpty && operatorGrants.isEmpty ? "none"
                                           : (config.grantSummary + operatorGrants.map(\.summary)).joined(separator: "; "))
                        + "; library sha256 \(library.sha256); limits: \(limits.enforced)")
        loop.timeout(handler, nanoseconds: UInt64(tuning.heartbeatIntervalMilliseconds) * 1_000_000, tag: TimerTag.heartbeat.rawValue)
    }

    /// The host uid/gid the runner's namespace root maps to: its own unprivileged id per plugin
    /// when the core runs as root; the core's own id otherwise (one-uid map, weaker: plugins share a
    /// host uid with the core and each other; the host says so at start-up).
    var hostIdentity: (uid: UInt32, gid: UInt32) {
        if geteuid() == 0 { return (uidBase + UInt32(config.index), uidBase + UInt32(config.index)) }
        return (geteuid(), getegid())
    }

    // MARK: Events

    private func controlEvent(_ event: RunnerControlChannel.Event, incarnation: UInt64) {
        guard incarnation == self.incarnation else { return }
        // The closed set: hello once, then (during start-up only) fail; check only for `peerhost
        // check`. Anything else of these is the plugin's own writing on the control socket.
        func forged(_ frame: String) {
            audit.record(plugin: name, pid: process?.pid ?? 0, action: "control", object: "\(frame) frame", decision: .denied,
                         reason: "a start-up frame after start-up, written by the plugin itself: ignored")
            logger.warning("forged control frame ignored", metadata: ["plugin": "\(name)", "frame": "\(frame)"])
        }
        switch event {
        case .hello(let pluginName, let version, let abi, _):
            // Not by state: the runner's READY (on the ring) may overtake its hello (on fd 4).
            guard !helloSeen else { forged("hello"); return }
            helloSeen = true
            logger.info("runner loaded plugin", metadata: ["plugin": "\(name)", "reported": "\(pluginName) \(version)", "abi": "\(abi)"])
        case .check(let loaded):
            guard onCheck != nil else { forged("check"); return }
            stopping = true   // the runner exits after its report: that is no crash to restart
            onCheck?(.success(loaded))
        case .fail(let step, let message):
            guard state != .running else { forged("fail"); return }
            reason = "\(step): \(message)"
            if onCheck != nil { stopping = true; onCheck?(.failure(PluginCheck.Refusal(step: step, message: message))) }
            logger.error("runner refused the plugin", metadata: ["plugin": "\(name)", "step": "\(step)", "error": "\(message)"])
            killCause = .startFailure
        case .closed:
            // EOF: the runner exited (or closed fd 4, which it never does while alive). Reap it off
            // the loop thread, then tear the incarnation down.
            guard let process else { return }
            startNamedThread("ph-reap-runner") { [self, loop, kernelLog] in
                let exit = try? process.wait()
                // SIGSYS = the seccomp filter killed it: ask the kernel's log which syscall.
                let killer: KernelLog.Lookup? = if let exit, !exit.exited, exit.code == SIGSYS {
                    kernelLog?.seccompKill(pid: process.pid) ?? .unknown(why: "kernel log unreadable")
                } else {
                    nil
                }
                loop.execute { self.exited(exit, killedBy: killer, incarnation: incarnation) }
            }
        }
    }

    func sessionReady(_ session: PluginSession, status: Int16, features: UInt64) {
        if status != 0 {
            reason = "start() returned \(status)"
            killCause = .startFailure
            kill()
            return
        }
        state = .running
        runningSince = .now
        accrueDowntime()
        downSince = nil
        // A kv grant on an unusable store: the plugin runs, and its status says why kv fails.
        if config.manifest.storage.kvQuota != nil, case .failure(let error)? = store { reason = "kv store unavailable: \(error)" }
        metrics.up(true)
        logger.info("plugin running", metadata: ["plugin": "\(name)", "pid": "\(process?.pid ?? 0)"])
    }

    func sessionViolated(_ session: PluginSession, _ violation: Violation) {
        metrics.violation(violation.kind.rawValue)
        logger.error("plugin violated the ring protocol; killing it", metadata: ["plugin": "\(name)", "violation": "\(violation)"])
        reason = "violation: \(violation)"
        killCause = .violation
        audit.record(plugin: name, pid: pid ?? 0, action: "ring", object: violation.kind.rawValue, decision: .killed,
                     reason: "\(violation)")
        kill()
    }

    func sessionDenied(_ session: PluginSession, action: String, object: String, reason: String) {
        metrics.denial(action)
        logger.warning("denied", metadata: ["plugin": "\(name)", "action": "\(action)", "object": "\(object)"])
        audit.record(plugin: name, pid: pid ?? 0, action: action, object: object, decision: .denied, reason: reason)
    }

    func sessionNote(_ session: PluginSession, _ note: String) {
        reason = note
    }

    func complete(_ c: IOCompletion) {
        switch TimerTag(rawValue: c.tag) {
        case .heartbeat:
            heartbeat()
        case .restart:
            if state == .backoff && !stopping { start() }
        case .stopGrace:
            if session != nil { kill() }
        case nil:
            break
        }
    }

    private var lastAckSeen: UInt64 = 0
    private var missedSince: ContinuousClock.Instant?

    private func heartbeat() {
        guard let session, !stopping else { return }
        // A plugin that answered the previous beat is alive; one that has not answered for longer
        // than the timeout is hung (spinning, blocked) and gets killed.
        if session.lastHeartbeatAck == heartbeatSequence || state == .starting && heartbeatSequence == 0 {
            missedSince = nil
        } else if missedSince == nil {
            missedSince = .now
        }
        if let since = missedSince, ContinuousClock.now - since > .milliseconds(tuning.heartbeatTimeoutMilliseconds) {
            reason = "no heartbeat answer for \(tuning.heartbeatTimeoutMilliseconds) ms"
            logger.error("plugin stopped answering heartbeats; killing it", metadata: ["plugin": "\(name)"])
            killCause = .hang
            audit.record(plugin: name, pid: pid ?? 0, action: "kill", object: "heartbeat", decision: .killed, reason: reason)
            kill()
            return
        }
        heartbeatSequence &+= 1
        session.sendHeartbeat(sequence: heartbeatSequence)
        loop.timeout(handler, nanoseconds: UInt64(tuning.heartbeatIntervalMilliseconds) * 1_000_000, tag: TimerTag.heartbeat.rawValue)
    }

    private func kill() {
        guard let process else { return }
        _ = process.signal(SIGKILL)
    }

    /// The runner is gone: cancel and drain every operation on its pool, then unmap; restart later.
    private func exited(_ exit: ProcessExit?, killedBy killer: KernelLog.Lookup?, incarnation: UInt64) {
        guard incarnation == self.incarnation, let session else { return }
        var cause: RestartCause = killCause ?? (exit.map { $0.exited && $0.code == 0 } == true ? .exit : .crash)
        var exitText = exit.map { "\($0)" } ?? "unknown exit"
        // The cgroup's OOM killer sends SIGKILL: say so, the signal alone does not.
        if let group = cgroup, exit == ProcessExit(exited: false, code: SIGKILL), (group.oomKills() ?? 0) > 0 {
            exitText += ", killed by the memory limit (\(enforcedLimits?.memoryBytes.map { "\($0 >> 20) MiB" } ?? "?") by \(group.version.rawValue))"
            if killCause == nil { cause = .limit }
        }
        if runningSince != nil || downSince == nil { downSince = .now }
        cgroup?.remove()
        cgroup = nil
        let exitedPID = process?.pid ?? 0
        if let process { Glibc.close(process.pidfd) }
        process = nil
        channel?.close()
        channel = nil
        metrics.up(false)
        retired.add(session.counters)
        self.session = nil
        heartbeatSequence = 0
        missedSince = nil
        session.shutdown { [rxWake = session.rxWake, txWake = session.txWake] in
            rxWake.close()
            txWake.close()
        }
        if stopping {
            state = .stopped
            downSince = nil   // stopped on purpose: not downtime
            logger.info("plugin stopped", metadata: ["plugin": "\(name)", "exit": "\(exitText)"])
            let callbacks = stoppedCallbacks
            stoppedCallbacks = []
            callbacks.forEach { $0() }
            return
        }
        if killCause == nil || reason.isEmpty { reason = "runner exited (\(exitText))" }
        if let killer {
            // Name the syscall and the way to allow it: the operator reads this line in `status`.
            reason += ": killed by seccomp: \(killer.object), which its syscall profile does not allow; to allow it, list it in "
                + "a profile the manifest names in [sandbox] syscalls (`peerhost learn \(name)` records what the plugin calls; docs/syscall-profiles.md)"
            audit.record(plugin: name, pid: exitedPID, action: "syscall", object: killer.object, decision: .killed,
                         reason: "not allowed by syscall profile \(syscallProfile?.displayName ?? "?")")
        }
        audit.record(plugin: name, pid: exitedPID, action: "exit", object: exitText, decision: .info,
                     reason: "cause \(cause.rawValue): \(reason)")
        logger.warning("plugin exited", metadata: ["plugin": "\(name)", "exit": "\(exitText)", "cause": "\(cause.rawValue)",
                                                   "reason": "\(reason)"])
        if let onCheck {
            // `peerhost check`: the runner died before its report (a constructor killed by seccomp…).
            stopping = true
            onCheck(.failure(PluginCheck.Refusal(step: "load", message: reason)))
            state = .stopped
            return
        }
        failed(cause: cause)
    }

    private func failed(cause: RestartCause) {
        if let since = runningSince, ContinuousClock.now - since > .seconds(30) { consecutiveFailures = 0 }
        runningSince = nil
        consecutiveFailures += 1
        lastCause = cause
        // The cause leads the reason, so status, audit and logs tell crash, hang, limit, violation
        // and start failure apart with the same word the metric's `cause` label uses.
        let why = reason.hasPrefix(cause.rawValue + ": ") ? String(reason.dropFirst(cause.rawValue.count + 2)) : reason
        reason = "\(cause.rawValue): \(why)"
        if tuning.crashLoopLimit > 0 && consecutiveFailures > tuning.crashLoopLimit {
            state = .failed
            reason = "crash loop: \(consecutiveFailures - 1) restarts without 30 s of stable running; last cause \(cause.rawValue): \(why)"
            logger.error("plugin keeps failing; leaving it down", metadata: ["plugin": "\(name)", "reason": "\(reason)"])
            audit.record(plugin: name, pid: 0, action: "restart", object: name, decision: .failed, reason: reason)
            return
        }
        restarts += 1
        metrics.restart(cause)   // counted when a restart is scheduled, not when the plugin is left down
        state = .backoff
        let exponent = min(consecutiveFailures - 1, 20)
        let delayMs = Self.jittered(min(tuning.backoffCapMilliseconds, tuning.backoffBaseMilliseconds << exponent))
        logger.info("restarting plugin after backoff", metadata: ["plugin": "\(name)", "delay_ms": "\(delayMs)"])
        audit.record(plugin: name, pid: 0, action: "restart", object: name, decision: .restarted,
                     reason: "cause \(cause.rawValue), restart \(restarts) in \(delayMs) ms: \(reason)")
        loop.timeout(handler, nanoseconds: UInt64(delayMs) * 1_000_000, tag: TimerTag.restart.rawValue)
    }

    /// "Equal jitter": a uniform delay in [d/2, d]. Plugins that died together (a host-wide cause:
    /// memory pressure, a bad upgrade, a peer flood hitting them all) then restart spread out
    /// instead of in lockstep, while every delay stays at least half the exponential backoff, so
    /// a crash loop still slows down as intended.
    static func jittered(_ delayMs: Int) -> Int {
        guard delayMs > 1 else { return delayMs }
        return delayMs / 2 + Int.random(in: 0...(delayMs - delayMs / 2))
    }

    /// Adds the time down since the last call to the downtime counter (at scrape and when the
    /// plugin is running again), so the counter also grows while a plugin stays down.
    func accrueDowntime() {
        guard let since = downSince else { return }
        let now = ContinuousClock.now
        let d = (now - since).components
        let seconds = Double(d.seconds) + Double(d.attoseconds) / 1e18
        metrics.addDowntime(seconds: seconds)
        downtimeSeconds += seconds
        downSince = now
    }

    /// A plugin whose syscall profile is unusable or dangerous: failed, audited as action "profile".
    private func refuse(_ why: String, object: String) {
        logger.error("plugin not started", metadata: ["plugin": "\(name)", "error": "\(why)"])
        audit.record(plugin: name, pid: 0, action: "profile", object: object, decision: .failed, reason: why)
        markFailed(reason: why)
    }

    /// A plugin that cannot even be spawned (its library is missing): failed, with the reason.
    func markFailed(reason: String) {
        state = .failed
        self.reason = reason
        metrics.up(false)
    }

    // MARK: Stop

    /// Asks the plugin to stop (STOP on the ring), then SIGKILLs it after `grace`. `done` runs on
    /// the loop thread once it is gone.
    func stop(grace: Duration = .seconds(2), done: @escaping () -> Void) {
        stopping = true
        guard let session else {
            state = .stopped
            done()
            return
        }
        stoppedCallbacks.append(done)
        session.sendStop()
        let ns = UInt64(grace.components.seconds) * 1_000_000_000 + UInt64(grace.components.attoseconds / 1_000_000_000)
        loop.timeout(handler, nanoseconds: ns, tag: TimerTag.stopGrace.rawValue)
    }

    // MARK: Operator grants

    /// Records `grant` for every later incarnation and applies it to the live one. Returns why the
    /// live session could not use it (it still applies from the next start), or nil.
    func applyOperatorGrant(_ grant: OperatorGrant) -> String? {
        operatorGrants.removeAll { $0.directory == grant.directory }
        operatorGrants.append(grant)
        return session?.addOperatorGrant(grant.layoutGrant)
    }

    func revokeOperatorGrant(directory: String) {
        operatorGrants.removeAll { $0.directory == directory }
        session?.removeOperatorGrant(directory: directory)
    }

    // MARK: Control and status

    var controlChannelForCalls: RunnerControlChannel? { state == .running ? channel : nil }

    /// `peerhost check`: the runner is started to load and report only (PluginCheck.swift).
    var onCheck: ((Result<PluginCheck.Loaded, PluginCheck.Refusal>) -> Void)?

    /// A reload's new supervisor carries the old one's totals, so the host's published counters
    /// (deltas of these) never run backwards.
    func inheritCounters(from old: PluginSupervisor) {
        retired = old.counters
        retired.connectionsOpen = 0
    }

    /// Totals across incarnations plus the live one.
    var counters: SessionCounters {
        var total = retired
        if let session { total.add(session.counters); total.connectionsOpen = session.counters.connectionsOpen }
        else { total.connectionsOpen = 0 }
        return total
    }

    var pid: Int32? { process?.pid }

    /// Samples the live runner, adds its CPU since the last sample to the total and the metric,
    /// and sets the memory gauge (0 when no runner lives). CPU a runner used between its last
    /// sample and its death is not seen (its cgroup and /proc entry are gone by then).
    @discardableResult
    func sampleUsage() -> ResourceUsage? {
        let usage = resourceUsage()
        if let usage {
            let previous = lastUsage?.pid == usage.pid ? lastUsage!.cpuSeconds : 0
            if usage.cpuSeconds > previous {
                cpuSecondsTotal += usage.cpuSeconds - previous
                metrics.addCPUSeconds(usage.cpuSeconds - previous)
            }
            metrics.residentMemory(usage.memoryBytes)
        } else {
            metrics.residentMemory(0)
        }
        lastUsage = usage
        accrueDowntime()
        return usage
    }

    /// Bytes per second each way since the previous call at least a second ago.
    func sampleRates() {
        let now = ContinuousClock.now
        let c = counters
        if let last = rateSample {
            let d = (now - last.at).components
            let seconds = Double(d.seconds) + Double(d.attoseconds) / 1e18
            guard seconds >= 1 else { return }
            rates = (Double(c.bytesIn &- last.bytesIn) / seconds, Double(c.bytesOut &- last.bytesOut) / seconds)
        }
        rateSample = (now, c.bytesIn, c.bytesOut)
    }

    /// The usage-log record of this plugin now (after `sampleUsage`).
    func usageRecord(time: String) -> UsageRecord {
        let c = counters
        return UsageRecord(time: time, plugin: name, state: state.rawValue, pid: pid, restarts: restarts,
                           lastCause: lastCause?.rawValue, connections: c.connectionsOpen, bytesIn: c.bytesIn,
                           bytesOut: c.bytesOut, messagesIn: c.messagesIn, messagesOut: c.messagesOut,
                           cpuSeconds: cpuSecondsTotal, memoryBytes: lastUsage?.memoryBytes ?? 0,
                           cpuSource: lastUsage?.cpuSource ?? "none", memorySource: lastUsage?.memorySource ?? "none",
                           downtimeSeconds: downtimeSeconds)
    }

    /// CPU seconds and memory of the live runner: from its cgroup where the host made one with the
    /// counter (v1 memory.usage_in_bytes / cpuacct.usage, v2 memory.current / cpu.stat), else
    /// from /proc/<pid> (RSS, utime + stime). Pseudo-files only: cheap enough for the loop thread.
    func resourceUsage() -> ResourceUsage? {
        guard let pid = process?.pid else { return nil }
        let proc = ProcessUsage.read(pid: pid)
        let group = cgroup?.usage()
        guard proc != nil || group?.cpuSeconds != nil else { return nil }
        return ResourceUsage(pid: pid,
                             cpuSeconds: group?.cpuSeconds ?? proc?.cpuSeconds ?? 0,
                             memoryBytes: group?.memoryBytes ?? proc?.residentBytes ?? 0,
                             cpuSource: group?.cpuSeconds != nil ? (cgroup?.version.rawValue ?? "cgroup") : "proc",
                             memorySource: group?.memoryBytes != nil ? (cgroup?.version.rawValue ?? "cgroup") : "proc")
    }
}

/// One sample of a runner's resource use (PluginSupervisor.resourceUsage).
struct ResourceUsage: Sendable, Equatable {
    var pid: Int32
    var cpuSeconds: Double
    var memoryBytes: UInt64
    /// Where each figure came from: "cgroup_v1", "cgroup_v2" or "proc".
    var cpuSource: String
    var memorySource: String
}

/// The runner's private root for one plugin (PrivateRoot without the per-spawn library fd).
struct PluginFiles: Sendable {
    /// The empty host directory each child mounts its own tmpfs on.
    var mountPoint: String
    /// The runner's files and the plugin library's own dependencies, read-only.
    var binds: [BindMount]
    /// Where the verified bytes are copied inside, e.g. "/plugin/libecho-c.so".
    var libraryTarget: String
}

extension SessionCounters {
    mutating func add(_ other: SessionCounters) {
        bytesIn &+= other.bytesIn
        bytesOut &+= other.bytesOut
        messagesIn &+= other.messagesIn
        messagesOut &+= other.messagesOut
        rxWakeups &+= other.rxWakeups
        txWakeups &+= other.txWakeups
        spaceWakeups &+= other.spaceWakeups
        copiedBytes &+= other.copiedBytes
        receivePauses &+= other.receivePauses
        gatheredWrites &+= other.gatheredWrites
        descriptorRefusals &+= other.descriptorRefusals
        lingerResets &+= other.lingerResets
        resets &+= other.resets
        connectionsTotal &+= other.connectionsTotal
    }
}
