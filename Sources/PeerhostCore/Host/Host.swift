import Foundation
import Logging
import PeerhostRing
import PeerhostSandbox
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// The running host: one io_uring loop thread that owns every plugin's sockets, rings and timers,
/// one supervisor per enabled plugin, and the control plane. `Host.run(config:)` is what
/// `peerhost run` calls; it returns after SIGTERM/SIGINT once every plugin is stopped.
public final class Host: HostControl, @unchecked Sendable {
    let config: HostConfig
    let loop: IOUringLoop
    let metrics: HostMetrics
    let logger: Logger
    /// `<data_dir>/audit.log`: grants, denials, violations, kills, restarts (AuditLog.swift).
    let audit: AuditLog
    let started = ContinuousClock.now
    /// The working directory at start: a relative config path is read against it on reload.
    let startDirectory = FileManager.default.currentDirectoryPath
    /// Loop thread only.
    private var supervisors: [PluginSupervisor] = []
    private var published: [String: SessionCounters] = [:]
    /// /dev/kmsg, opened at start: names the syscall behind a runner's SIGSYS death.
    let kernelLog = KernelLog()
    /// `peerhost learn`: the one plugin that runs, and what its runner called.
    var learn: LearnRequest?
    let learner = SeccompLearner()
    /// `<data_dir>/usage.log`: per-plugin usage records (UsageLog.swift), written by `accountingLoop`.
    let usageLog: UsageLog
    /// The cgroup hierarchies found at start (nil: none; plugins get rlimits only), and the name of
    /// this core's own subtree in them: its pid, so hosts side by side never share a group.
    let cgroups = Cgroups.discover()
    let cgroupInstance = "\(getpid())"
    /// Bandwidth shaping (Shaper.swift): global → plugin → connection buckets. Loop thread only.
    let shaper: Shaper

    init(config: HostConfig, loop: IOUringLoop, metrics: HostMetrics, logger: Logger) {
        self.config = config
        self.loop = loop
        self.metrics = metrics
        self.logger = logger
        self.audit = AuditLog(path: (config.host.dataDirectory as NSString).appendingPathComponent("audit.log"))
        self.usageLog = UsageLog(path: (config.host.dataDirectory as NSString).appendingPathComponent("usage.log"))
        self.shaper = Shaper(up: config.shaping.up, down: config.shaping.down, now: monotonicNanoseconds())
        cgroups?.removeStaleInstances()   // groups of an earlier core that died without stopping
    }

    /// `<data_dir>/store.sqlite` (KVStore.swift), opened once before the plugins start. A store
    /// that cannot be trusted is not replaced: kv calls fail with PH_EIO and the reason (with the
    /// fix) is logged, audited and shown in the status of each plugin that uses it.
    var store: Result<KVStore, StoreError>?

    /// Operator grants read from the store at start (OperatorGrants.swift), by plugin.
    private var grantsAtStart: [String: [OperatorGrant]] = [:]
    /// The runner's own files on a private root, found once at start; every plugin (and every
    /// reload) binds them.
    private var runnerFiles: Result<(mountPoint: String, binds: [BindMount]), PrivateRootError>?

    private func openStore() {
        // Also when an earlier run wrote a store (the marker): it may hold operator grants.
        let marker = (config.host.dataDirectory as NSString).appendingPathComponent(KVStore.markerName)
        guard config.enabledPlugins.contains(where: { $0.manifest.storage.kvQuota != nil })
                || FileManager.default.fileExists(atPath: marker) else { return }
        do throws(StoreError) {
            let kv = try KVStore.open(dataDirectory: config.host.dataDirectory)
            store = .success(kv)
            logger.info("key-value store open", metadata: ["path": "\(kv.path)"])
            switch OperatorGrants.load(from: kv) {
            case .success(let grants): grantsAtStart = Dictionary(grouping: grants, by: \.plugin)
            case .failure(let error): logger.error("\(error)")
            }
        } catch {
            store = .failure(error)
            logger.error("\(error)")
            audit.record(plugin: "host", pid: 0, action: "kv", object: KVStore.fileName, decision: .failed, reason: "\(error)")
        }
    }

    /// Starts everything, serves until SIGTERM/SIGINT, stops everything.
    public static func run(config: HostConfig) async throws {
        _ = try await run(config: config, learn: nil)
    }

    /// `learn` given: only that plugin runs, in learn mode, for `learn.seconds`; then the host stops
    /// itself and returns what the runner called (see SeccompLearner.swift).
    @discardableResult
    public static func run(config: HostConfig, learn: LearnRequest?) async throws -> [LearnedSyscall] {
        var logger = Logger(label: "peerhost")
        logger.logLevel = Logger.Level(rawValue: config.host.logLevel.rawValue) ?? .info
        let metrics = HostMetrics()
        metrics.bootstrapMetricsSystem()
        let loop: IOUringLoop
        do {
            loop = try IOUringLoop()
        } catch {
            // One clear line: the data path is io_uring and there is no silent fallback.
            throw HostError.ioUringUnavailable("\(error)")
        }
        if geteuid() != 0 {
            logger.warning("running unprivileged: each plugin's namespace maps to your own uid \(geteuid()) instead of its own host uid (uid_base + index), so plugins share one host uid with the core; run as root for per-plugin uids")
        }
        // Every plugin's sockets and files are the core's own descriptors: take the whole hard
        // limit (services and shells often start with a soft limit of 1024).
        let openFiles = raiseOpenFileLimit()
        let budgets = config.tuning.pluginDescriptors * config.plugins.filter(\.enabled).count
        if openFiles < UInt64(budgets) + 256 {
            logger.warning("RLIMIT_NOFILE is \(openFiles), below what the enabled plugins may hold (plugin_descriptors \(config.tuning.pluginDescriptors) each, \(budgets) in all) plus the core's own: a busy host may run out of descriptors before a plugin reaches its budget; raise the hard limit or lower [tuning] plugin_descriptors")
        }
        // The audit log and the plugins' storage live in the data dir from the first spawn on.
        try? FileManager.default.createDirectory(atPath: config.host.dataDirectory, withIntermediateDirectories: true,
                                                 attributes: [.posixPermissions: 0o700])
        let host = Host(config: config, loop: loop, metrics: metrics, logger: logger)
        host.learn = learn
        host.openStore()   // before the loop thread exists: opening reads and checks the file
        if let why = host.kernelLog.unavailable {
            logger.warning("\(why) (/dev/kmsg): a runner killed by seccomp will be audited with syscall 'unknown'")
        }
        host.startLoopThread()
        await host.onLoop { host.startPlugins() }
        metrics.setScrapeHook { [weak host] in host?.publishMetrics() }
        let plane = try await ControlPlane.start(settings: config.host, control: host, metrics: metrics)
        try plane.writeRunFile()
        print(plane.readyLine(plugins: config.plugins))
        fflush(nil)
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: plane), .init(service: HostService(host: host))],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        if let learn {
            // The learn run ends by itself: the same graceful stop as SIGTERM (plugins get STOP).
            Task {
                try? await Task.sleep(for: .seconds(learn.seconds))
                kill(getpid(), SIGTERM)
            }
        }
        let accounting = Task { await host.accountingLoop() }
        let pluginStatus = Task { await host.statusLoop() }
        try await group.run()
        accounting.cancel()
        pluginStatus.cancel()
        guard learn != nil else { return [] }
        for error in host.learner.errors { logger.error("learn: \(error)") }
        return host.learner.observed.map {
            LearnedSyscall(name: $0.key, callsBeforeLoad: $0.value.beforeLoad, callsAfterLoad: $0.value.afterLoad)
        }.sorted { $0.name < $1.name }
    }

    func startLoopThread() {
        loop.beforeWait = { [unowned self] in pollSessions() }
        startNamedThread("peerhost-loop") { [loop] in loop.run() }
    }

    /// Loop thread only.
    func supervisor(named name: String) -> PluginSupervisor? { supervisors.first { $0.name == name } }

    /// Runs `body` on the loop thread and returns its result.
    func onLoop<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            loop.execute { continuation.resume(returning: body()) }
        }
    }

    // MARK: Loop thread

    /// Once per host: the private root's mount point and the runner's own files (ld.so --list).
    func findRunnerFiles() {
        let runnerPath = (ExecutableLocation.directory as NSString).appendingPathComponent("peerhost-runner")
        do throws(PrivateRootError) {
            runnerFiles = .success((try PrivateRoot.defaultMountPoint(dataDirectory: config.host.dataDirectory),
                                    try PrivateRoot.runnerBinds(runnerPath: runnerPath)))
        } catch {
            runnerFiles = .failure(error)
        }
    }

    private func startPlugins() {
        findRunnerFiles()
        // Learn mode runs the one plugin it learns, enabled in the config or not.
        let plugins = learn.map { l in config.plugins.filter { $0.name == l.plugin } } ?? config.enabledPlugins
        for plugin in plugins {
            let prepared = prepare(plugin)
            if case .failure(let failure) = prepared {
                logger.error("plugin not started", metadata: ["plugin": "\(plugin.name)", "error": "\(failure)"])
            }
            let rate = plugin.effectiveBandwidth
            let supervisor = makeSupervisor(plugin, prepared,
                                            shaping: shaper.addPlugin(plugin.name, weight: plugin.weight, up: rate.up, down: rate.down,
                                                                      now: monotonicNanoseconds()),
                                            grants: grantsAtStart[plugin.name] ?? [])
            if learn != nil { supervisor.learner = learner }
            supervisors.append(supervisor)
            guard case .success = prepared else { continue }
            supervisor.start()
        }
    }

    /// Once per plugin (and per reload): its verified bytes (kept for every restart) and its
    /// libraries' binds, or why it cannot start. Loop thread.
    func prepare(_ plugin: HostConfig.PluginConfig) -> Result<(LibraryImage, PluginFiles), PreparationFailure> {
        do {
            let path = try plugin.manifest.resolveLibrary()
            let image = try LibraryImage.load(path: path)
            // Verified on the sealed bytes every start of this plugin will copy, not on the file.
            if let refusal = verify(plugin, sha256: image.sha256, libraryPath: path, trust: trust) {
                image.close()
                throw VerificationRefused(description: refusal)
            }
            do {
                guard let runner = try runnerFiles?.get() else { throw VerificationRefused(description: "the runner's files are not known yet") }
                let binds = try PrivateRoot.pluginBinds(libraryPath: path, excluding: runner.binds)
                let target = PrivateRoot.pluginDirectory + "/" + (path as NSString).lastPathComponent
                return .success((image, PluginFiles(mountPoint: runner.mountPoint, binds: runner.binds + binds, libraryTarget: target)))
            } catch {
                image.close()
                throw error
            }
        } catch let error as LibraryNotFoundError {
            return .failure(PreparationFailure(description: "library \(plugin.manifest.library) not found (\(error))"))
        } catch {
            return .failure(PreparationFailure(description: "\(error)"))
        }
    }

    /// A supervisor for `plugin` (marked failed when it could not be prepared), not yet started.
    func makeSupervisor(_ plugin: HostConfig.PluginConfig, _ prepared: Result<(LibraryImage, PluginFiles), PreparationFailure>,
                        shaping: PluginShaper, grants: [OperatorGrant]) -> PluginSupervisor {
        let ready = try? prepared.get()
        let supervisor = PluginSupervisor(config: plugin, tuning: config.tuning,
                                          runnerPath: (ExecutableLocation.directory as NSString).appendingPathComponent("peerhost-runner"),
                                          library: ready?.0, files: ready?.1, cgroups: cgroups, cgroupInstance: cgroupInstance,
                                          uidBase: config.host.uidBase, loop: loop,
                                          metrics: metrics.plugin(named: plugin.name), logger: logger, audit: audit)
        supervisor.kernelLog = kernelLog
        supervisor.shaping = shaping
        supervisor.store = store
        for grant in grants { _ = supervisor.applyOperatorGrant(grant) }
        if case .failure(let failure) = prepared { supervisor.markFailed(reason: failure.description) }
        return supervisor
    }

    /// Replaces the supervisor of `name` (reload). Loop thread.
    func replaceSupervisor(named name: String, with supervisor: PluginSupervisor) {
        if let i = supervisors.firstIndex(where: { $0.name == name }) { supervisors[i] = supervisor } else { supervisors.append(supervisor) }
    }

    /// The trust store, read once at start-up; its problems (a named folder missing, a bad .pub)
    /// are logged, not fatal.
    private lazy var trust: TrustStore = {
        let store = TrustStore(config: config)
        logger.info("plugin signatures checked against \(store.keys.count) trusted key(s)",
                    metadata: ["keys": "\(store.keys.keys.sorted().joined(separator: ", "))",
                               "folders": "\(store.directories.joined(separator: ", "))"])
        for problem in store.problems { logger.warning("trust store: \(problem)") }
        return store
    }()

    /// Secure bootstrapping: the hash of the sealed bytes that will be loaded, against the manifest's
    /// pin and its signature, before a runner exists. Returns the refusal (the plugin's status
    /// reason), or nil to start it. Every outcome is an audit line with action "verify".
    private func verify(_ plugin: HostConfig.PluginConfig, sha256 hash: String, libraryPath: String, trust: TrustStore) -> String? {
        switch PluginVerifier.verify(manifest: plugin.manifest, librarySHA256: hash, libraryPath: libraryPath, trust: trust) {
        case .verified(let keyID, let signedTime, _):
            audit.record(plugin: plugin.name, pid: 0, action: "verify", object: libraryPath, decision: .allowed,
                         reason: "sha256 \(hash) signed by \(keyID) at \(signedTime)")
            return nil
        case .refused(let failure):
            // The escape hatch excuses the signature only: a pinned manifest hash still holds.
            if config.security.allowUnsigned.contains(plugin.name), !failure.isPinnedHashMismatch {
                logger.warning("STARTING UNVERIFIED PLUGIN: listed in [security] allow_unsigned; its code is not authenticated",
                               metadata: ["plugin": "\(plugin.name)", "why": "\(failure)"])
                audit.record(plugin: plugin.name, pid: 0, action: "verify", object: libraryPath, decision: .allowed,
                             reason: "allow_unsigned: \(failure)")
                return nil
            }
            let reason = "verification failed: \(failure)"
            logger.error("plugin refused", metadata: ["plugin": "\(plugin.name)", "reason": "\(reason)"])
            audit.record(plugin: plugin.name, pid: 0, action: "verify", object: libraryPath, decision: .denied, reason: reason)
            return reason
        }
    }

    /// Once per loop iteration: every live session drains its TX ring and flushes RX.
    private func pollSessions() -> Bool {
        let now = monotonicNanoseconds()
        var worked = false
        for supervisor in supervisors {
            if let session = supervisor.session, session.poll(now: now) { worked = true }
        }
        return worked
    }

    /// Moves loop-side counters into the Prometheus registry (on scrape, from the HTTP thread).
    private func publishMetrics() {
        let semaphore = DispatchSemaphore(value: 0)
        loop.execute { [self] in
            for supervisor in supervisors {
                let now = supervisor.counters
                let before = published[supervisor.name] ?? SessionCounters()
                let m = metrics.plugin(named: supervisor.name)
                m.bytesIn(Int(now.bytesIn &- before.bytesIn))
                m.bytesOut(Int(now.bytesOut &- before.bytesOut))
                m.messages(.inbound, Int(now.messagesIn &- before.messagesIn))
                m.messages(.outbound, Int(now.messagesOut &- before.messagesOut))
                m.copiedBytes(Int(now.copiedBytes &- before.copiedBytes))
                m.receivePauses(Int(now.receivePauses &- before.receivePauses))
                m.gatheredWrites(Int(now.gatheredWrites &- before.gatheredWrites))
                m.descriptorRefusals(Int(now.descriptorRefusals &- before.descriptorRefusals))
                m.descriptors(supervisor.session?.descriptorsHeld ?? 0)
                m.streamResets("linger", Int(now.lingerResets &- before.lingerResets))
                m.streamResets("plugin", Int(now.resets &- before.resets))
                m.lingering(supervisor.session?.counters.lingering ?? 0)
                m.wakeups(.rx, Int(now.rxWakeups &- before.rxWakeups))
                m.wakeups(.tx, Int(now.txWakeups &- before.txWakeups))
                m.spaceWakeups(Int(now.spaceWakeups &- before.spaceWakeups))
                m.connections(now.connectionsOpen)
                if let wait = shaper.plugins[supervisor.name]?.takeUnpublishedWait() {
                    m.shaperWait(.outbound, seconds: Double(wait[0]) / 1e9)
                    m.shaperWait(.inbound, seconds: Double(wait[1]) / 1e9)
                }
                if case .success(let kv)? = store { m.storage(kv.usage(plugin: supervisor.name)) }   // kv bytes
                if let session = supervisor.session {
                    m.ringDepth(.rx, Int(session.region.depth(rx: true)))
                    m.ringDepth(.tx, Int(session.region.depth(rx: false)))
                }
                supervisor.sampleUsage()   // CPU, memory and downtime counters
                m.publishPeers(supervisor.peers.top(Defaults.peerMetricsTop))
                published[supervisor.name] = now
            }
            semaphore.signal()
        }
        _ = semaphore.wait(timeout: .now() + 2)
    }

    /// Off the loop thread: every second, samples each plugin's byte rates (for status); every
    /// `usage_log_interval_s`, appends one usage record per plugin to usage.log (disk I/O here,
    /// never on the loop). Ends when its task is cancelled at shutdown.
    func accountingLoop() async {
        let interval = config.tuning.usageLogIntervalSeconds
        var elapsed = 0
        while !Task.isCancelled {
            do { try await Task.sleep(for: .seconds(1)) } catch { return }
            elapsed += 1
            let due = interval > 0 && elapsed >= interval
            let records: [UsageRecord] = await onLoop { [self] in
                supervisors.forEach { $0.sampleRates() }
                guard due else { return [] }
                let time = AuditEvent.now()
                return supervisors.map { $0.sampleUsage(); return $0.usageRecord(time: time) }
            }
            if due {
                elapsed = 0
                usageLog.append(records)
                if let error = usageLog.file.takeError() { logger.error("usage log: \(error)") }
            }
        }
    }

    func stopAll() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            loop.execute { [self] in
                var remaining = supervisors.count
                if remaining == 0 { continuation.resume(); return }
                for supervisor in supervisors {
                    supervisor.stop {
                        remaining -= 1
                        if remaining == 0 { continuation.resume() }
                    }
                }
            }
        }
        // Give the loop a moment to complete the cancellations, then stop it.
        await onLoop { }
        loop.stop()
        cgroups?.removeInstance(cgroupInstance)   // the plugins' groups are gone with their runners
    }

    // MARK: HostControl

    public func statusDocument() async -> StatusDocument {
        let uptime = ContinuousClock.now - started
        let plugins: [StatusDocument.PluginStatus] = await onLoop { [self] in
            var result: [StatusDocument.PluginStatus] = []
            for plugin in config.plugins {
                var status = StatusDocument.PluginStatus(configured: plugin)
                if let s = supervisors.first(where: { $0.name == plugin.name }) {
                    let c = s.counters
                    status.state = StatusDocument.PluginState(rawValue: s.state.rawValue) ?? .stopped
                    status.reason = s.reason.isEmpty ? nil : s.reason
                    status.pid = s.pid
                    status.restarts = s.restarts
                    status.connections = c.connectionsOpen
                    status.bytesIn = c.bytesIn
                    status.bytesOut = c.bytesOut
                    let usage = s.sampleUsage()
                    status.cpuSeconds = s.cpuSecondsTotal
                    status.memoryBytes = usage?.memoryBytes ?? 0
                    status.bytesInPerSecond = s.rates.inbound
                    status.bytesOutPerSecond = s.rates.outbound
                    status.lastCause = s.lastCause?.rawValue
                    status.rate = shaper.plugins[plugin.name].map(\.status)
                    status.grants += s.operatorGrants.map(\.summary)
                    status.details = s.statusDetails
                    if case .success(let kv)? = store { status.storageBytes = kv.usage(plugin: plugin.name) }
                }
                result.append(status)
            }
            return result
        }
        let seconds = Double(uptime.components.seconds) + Double(uptime.components.attoseconds) / 1e18
        return StatusDocument(host: .init(version: PeerhostVersion.current, pid: getpid(), uptimeSeconds: seconds,
                                          ioBackend: "io_uring (\(loop.setupMode))"),
                              plugins: plugins)
    }

    public func callControl(plugin: String, method: String, args: [ControlArgument]) async throws -> ControlValue {
        try await callControl(plugin: plugin, method: method, args: args, streaming: nil)
    }

    public func callControl(plugin: String, method: String, args: [ControlArgument],
                            partial: @escaping @Sendable (ControlValue) -> Bool) async throws -> ControlValue {
        try await callControl(plugin: plugin, method: method, args: args, streaming: partial)
    }

    private func callControl(plugin: String, method: String, args: [ControlArgument],
                             streaming partial: RunnerControlChannel.Partial?) async throws -> ControlValue {
        // "host" is reserved as a plugin name: `peerhost ctl host METHOD …` is for the host itself.
        if plugin == "host" { return try await hostMethod(method, args: args) }
        guard let configured = config.plugins.first(where: { $0.name == plugin }) else {
            throw ControlCallError.unknownPlugin(plugin, known: config.plugins.map(\.name))
        }
        // The live supervisor's manifest: after `ctl host reload` it may declare other methods.
        let (channel, manifest): (RunnerControlChannel?, PluginManifest) = await onLoop { [self] in
            guard let s = supervisors.first(where: { $0.name == plugin }) else { return (nil, configured.manifest) }
            return (s.state == .running ? s.controlChannelForCalls : nil, s.config.manifest)
        }
        let prepared = try manifest.prepareControlCall(method: method, arguments: args)
        guard let channel else {
            let reason: String = await onLoop { [self] in
                guard let s = supervisors.first(where: { $0.name == plugin }) else { return "disabled in config" }
                return "state \(s.state.rawValue)" + (s.reason.isEmpty ? "" : ": \(s.reason)")
            }
            throw ControlCallError.pluginUnavailable(plugin: plugin, reason: reason)
        }
        return try await channel.call(plugin: plugin, method: method, symbol: prepared.method.symbol,
                                      signature: prepared.method.signature.description, args: prepared.arguments,
                                      isAsync: prepared.method.isAsync, partial: partial,
                                      written: { [self] in
            // The frame is in the socket: now wake the runner for it through RX.
            loop.execute { [self] in
                supervisors.first(where: { $0.name == plugin && $0.state == .running })?.session?.notifyControl(request: 0)
            }
        })
    }
}

/// Stops the plugins when the service group shuts down (SIGTERM/SIGINT).
struct HostService: Service {
    let host: Host
    func run() async throws {
        try? await gracefulShutdown()
        await host.stopAll()
    }
}

/// A plugin whose bytes or signature did not verify (the reason is the verifier's, already audited).
struct VerificationRefused: Error, CustomStringConvertible {
    let description: String
}

/// Why a plugin could not be prepared to run (its library, signature or private root); its status reason.
struct PreparationFailure: Error, CustomStringConvertible {
    let description: String
}

/// What `peerhost learn` asks of `Host.run`.
public struct LearnRequest: Sendable {
    public var plugin: String
    public var seconds: Int
    public init(plugin: String, seconds: Int) {
        self.plugin = plugin
        self.seconds = seconds
    }
}

public enum HostError: Error, CustomStringConvertible {
    case ioUringUnavailable(String)
    public var description: String {
        switch self {
        case .ioUringUnavailable(let why):
            "io_uring is required and not available here: \(why). Peerhost's data path runs on io_uring only; check kernel.io_uring_disabled and the container's seccomp profile."
        }
    }
}

func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// CPU seconds and resident memory of a process, from /proc (the fallback of
/// PluginSupervisor.resourceUsage when the runner has no cgroup with the counter).
struct ProcessUsage {
    var cpuSeconds: Double
    var residentBytes: UInt64

    static func read(pid: Int32) -> ProcessUsage? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        // Fields after "(comm)": state is field 3; utime and stime are fields 14 and 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 22, let utime = Double(fields[11]), let stime = Double(fields[12]),
              let rssPages = UInt64(fields[21]) else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        return ProcessUsage(cpuSeconds: (utime + stime) / ticks, residentBytes: rssPages * UInt64(sysconf(Int32(_SC_PAGESIZE))))
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard one; returns the soft limit in force.
func raiseOpenFileLimit() -> UInt64 {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
    if limit.rlim_cur < limit.rlim_max {
        var raised = limit
        raised.rlim_cur = limit.rlim_max
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { return UInt64(raised.rlim_cur) }
    }
    return UInt64(limit.rlim_cur)
}
