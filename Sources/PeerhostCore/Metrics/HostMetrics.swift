// The host's Prometheus metrics: names and labels of DESIGN.md "Operator surface", documented in
// docs/metrics.md (a test keeps the two and the /metrics output in step).
//
// Cost on the event loop: per-plugin series are created once (`plugin(named:)`) and kept as
// swift-prometheus Counter/Gauge objects, whose update is one relaxed atomic add. The loop should
// hold its plugin's `PluginMetrics` and call it directly; the `HostMetrics` convenience methods
// taking a plugin name add a locked dictionary lookup and suit low-rate events only.

import Prometheus
import Synchronization

public enum TrafficDirection: String, Sendable, CaseIterable {
    /// From the network towards the plugin.
    case inbound = "in"
    /// From the plugin towards the network.
    case outbound = "out"
}

public enum RingName: String, Sendable, CaseIterable {
    /// Core → plugin.
    case rx
    /// Plugin → core.
    case tx
}

/// Why a runner was restarted; the `cause` label of peerhost_plugin_restarts_total.
public enum RestartCause: String, Sendable, CaseIterable {
    /// The process died (signal or non-zero exit) on its own.
    case crash
    /// Heartbeats stopped arriving within heartbeat_timeout_ms.
    case hang
    /// The kernel killed it for exceeding a resource limit (the memory cgroup's OOM killer).
    case limit
    /// The core killed it for a bad descriptor or another broken invariant.
    case violation
    /// It exited cleanly without being asked to.
    case exit
    /// It failed during start-up (dlopen, ABI check, plugin start).
    case startFailure = "start_failure"
}

/// One metric as documented: the catalog is the single list docs/metrics.md and the tests check.
public struct MetricDefinition: Sendable, Equatable {
    public enum Kind: String, Sendable { case counter, gauge }
    public var name: String
    public var kind: Kind
    public var labels: [String]
    public var help: String
}

public enum MetricCatalog {
    public static let all: [MetricDefinition] = [
        .init(name: "peerhost_plugin_up", kind: .gauge, labels: ["plugin"],
              help: "1 while the plugin's runner is running and answering heartbeats, else 0."),
        .init(name: "peerhost_plugin_restarts_total", kind: .counter, labels: ["plugin", "cause"],
              help: "Runner restarts by cause: crash, hang, limit, violation, exit, start_failure."),
        .init(name: "peerhost_plugin_downtime_seconds_total", kind: .counter, labels: ["plugin"],
              help: "Time the plugin was not serving after having run: from a runner's death until its successor is running."),
        .init(name: "peerhost_plugin_bytes_total", kind: .counter, labels: ["plugin", "direction"],
              help: "Payload bytes; direction in = from the network towards the plugin, out = towards the network."),
        .init(name: "peerhost_plugin_messages_total", kind: .counter, labels: ["plugin", "direction"],
              help: "Ring messages; direction in = core to plugin (RX ring), out = plugin to core (TX ring)."),
        .init(name: "peerhost_plugin_connections", kind: .gauge, labels: ["plugin"],
              help: "Open connections owned by the plugin."),
        .init(name: "peerhost_ring_depth", kind: .gauge, labels: ["plugin", "ring"],
              help: "Descriptors waiting in the ring (rx = core to plugin, tx = plugin to core), sampled."),
        .init(name: "peerhost_plugin_violations_total", kind: .counter, labels: ["plugin", "kind"],
              help: "Broken invariants by the plugin (bad slot, bad descriptor, ...); each kills the runner."),
        .init(name: "peerhost_plugin_denials_total", kind: .counter, labels: ["plugin", "action"],
              help: "Requests refused by the broker because no grant covers them, by action."),
        .init(name: "peerhost_plugin_cpu_seconds_total", kind: .counter, labels: ["plugin"],
              help: "CPU time (user + system) used by the plugin's runner processes."),
        .init(name: "peerhost_plugin_resident_memory_bytes", kind: .gauge, labels: ["plugin"],
              help: "Resident memory of the plugin's runner, sampled."),
        .init(name: "peerhost_plugin_storage_bytes", kind: .gauge, labels: ["plugin"],
              help: "Bytes the plugin keeps in its storage paths and key-value store."),
        .init(name: "peerhost_shaper_wait_seconds_total", kind: .counter, labels: ["plugin", "direction"],
              help: "Time the plugin's traffic waited for bandwidth tokens, by direction."),
        .init(name: "peerhost_datapath_copied_bytes_total", kind: .counter, labels: ["plugin"],
              help: "Payload bytes copied on the data path (reassembly across slots); zero-copy keeps this low."),
        .init(name: "peerhost_peer_bytes_total", kind: .counter, labels: ["plugin", "peer", "direction"],
              help: "Payload bytes per remote peer the plugin tagged (ABI 1.1 conn_set_peer, peer = hex id); only the plugin's top 10 peers by bytes."),
        .init(name: "peerhost_peer_messages_total", kind: .counter, labels: ["plugin", "peer", "direction"],
              help: "Receives (in) and completed sends (out) per tagged remote peer; only the plugin's top 10 peers by bytes."),
        .init(name: "peerhost_plugin_receive_pauses_total", kind: .counter, labels: ["plugin"],
              help: "Times a connection's receive paused because the plugin held every receive slot; it resumes when slots come back, nothing is lost or closed."),
        .init(name: "peerhost_plugin_file_writes_gathered_total", kind: .counter, labels: ["plugin"],
              help: "file_write requests the core submitted together with the next ones in one pwritev (writes of one TX drain that continue each other in one file)."),
        .init(name: "peerhost_plugin_descriptors", kind: .gauge, labels: ["plugin"],
              help: "Sockets and files the core holds for the plugin, opens and connects in flight included."),
        .init(name: "peerhost_plugin_descriptor_refusals_total", kind: .counter, labels: ["plugin"],
              help: "listen, connect, udp_bind, file_open and incoming connections refused because the plugin held its whole descriptor budget ([tuning] plugin_descriptors)."),
        .init(name: "peerhost_plugin_stream_resets_total", kind: .counter, labels: ["plugin", "reason"],
              help: "TCP connections the core reset: reason linger (the plugin closed, and the peer took nothing for [tuning] close_linger_s while bytes were still queued) or plugin (conn_reset)."),
        .init(name: "peerhost_plugin_lingering_connections", kind: .gauge, labels: ["plugin"],
              help: "TCP connections the plugin closed that the core still flushes or waits on for the peer's FIN."),
        .init(name: "peerhost_ring_wakeups_total", kind: .counter, labels: ["plugin", "ring"],
              help: "eventfd writes to wake the consumer of a ring; far fewer than messages under load."),
        .init(name: "peerhost_ring_space_wakeups_total", kind: .counter, labels: ["plugin"],
              help: "eventfd writes that wake a runner which found the TX ring full and waits for room."),
    ]

    public static func definition(_ name: String) -> MetricDefinition {
        guard let definition = all.first(where: { $0.name == name }) else {
            preconditionFailure("metric \(name) is not in MetricCatalog.all")
        }
        return definition
    }
}

/// Pre-created series of one plugin; cheap to update from the event loop.
public final class PluginMetrics: Sendable {
    public let plugin: String
    private let registry: PrometheusCollectorRegistry
    private let up: Gauge
    private let bytes: [TrafficDirection: Counter]
    private let messages: [TrafficDirection: Counter]
    private let connections: Gauge
    private let ringDepth: [RingName: Gauge]
    private let cpuSeconds: Counter
    private let residentMemory: Gauge
    private let storage: Gauge
    private let shaperWait: [TrafficDirection: Counter]
    private let copiedBytes: Counter
    private let downtime: Counter
    private let peerSeries = Mutex<[String: PeerSeries]>([:])
    private let wakeups: [RingName: Counter]
    private let spaceWakeups: Counter
    private let receivePauses: Counter
    private let gatheredWrites: Counter
    private let descriptors: Gauge
    private let descriptorRefusals: Counter
    private let streamResets: [String: Counter]
    private let lingering: Gauge
    /// The host's table of plugin-defined series (PluginSeries.swift).
    let pluginSeries: PluginSeriesTable

    init(plugin: String, registry: PrometheusCollectorRegistry, pluginSeries: PluginSeriesTable = PluginSeriesTable()) {
        self.plugin = plugin
        self.registry = registry
        self.pluginSeries = pluginSeries
        func counter(_ name: String, _ extra: [(String, String)] = []) -> Counter {
            let definition = MetricCatalog.definition(name)
            return registry.makeCounter(descriptor: HostMetrics.descriptor(definition), labels: [("plugin", plugin)] + extra)
        }
        func gauge(_ name: String, _ extra: [(String, String)] = []) -> Gauge {
            let definition = MetricCatalog.definition(name)
            return registry.makeGauge(descriptor: HostMetrics.descriptor(definition), labels: [("plugin", plugin)] + extra)
        }
        func byDirection(_ name: String) -> [TrafficDirection: Counter] {
            Dictionary(uniqueKeysWithValues: TrafficDirection.allCases.map { ($0, counter(name, [("direction", $0.rawValue)])) })
        }
        up = gauge("peerhost_plugin_up")
        bytes = byDirection("peerhost_plugin_bytes_total")
        messages = byDirection("peerhost_plugin_messages_total")
        connections = gauge("peerhost_plugin_connections")
        ringDepth = Dictionary(uniqueKeysWithValues: RingName.allCases.map { ($0, gauge("peerhost_ring_depth", [("ring", $0.rawValue)])) })
        cpuSeconds = counter("peerhost_plugin_cpu_seconds_total")
        residentMemory = gauge("peerhost_plugin_resident_memory_bytes")
        storage = gauge("peerhost_plugin_storage_bytes")
        shaperWait = byDirection("peerhost_shaper_wait_seconds_total")
        copiedBytes = counter("peerhost_datapath_copied_bytes_total")
        downtime = counter("peerhost_plugin_downtime_seconds_total")
        receivePauses = counter("peerhost_plugin_receive_pauses_total")
        gatheredWrites = counter("peerhost_plugin_file_writes_gathered_total")
        descriptors = gauge("peerhost_plugin_descriptors")
        descriptorRefusals = counter("peerhost_plugin_descriptor_refusals_total")
        streamResets = Dictionary(uniqueKeysWithValues: ["linger", "plugin"].map { ($0, counter("peerhost_plugin_stream_resets_total", [("reason", $0)])) })
        lingering = gauge("peerhost_plugin_lingering_connections")
        wakeups = Dictionary(uniqueKeysWithValues: RingName.allCases.map { ($0, counter("peerhost_ring_wakeups_total", [("ring", $0.rawValue)])) })
        spaceWakeups = counter("peerhost_ring_space_wakeups_total")
        // Known restart causes start at 0 so rate() works from the first restart on.
        for cause in RestartCause.allCases { _ = restartCounter(cause) }
    }

    // Hot path (event loop): one relaxed atomic each.
    public func bytesIn(_ count: Int) { bytes[.inbound]!.increment(by: Int64(count)) }
    public func bytesOut(_ count: Int) { bytes[.outbound]!.increment(by: Int64(count)) }
    public func bytes(_ direction: TrafficDirection, _ count: Int) { bytes[direction]!.increment(by: Int64(count)) }
    public func messages(_ direction: TrafficDirection, _ count: Int = 1) { messages[direction]!.increment(by: Int64(count)) }
    public func wakeup(_ ring: RingName) { wakeups[ring]!.increment() }
    public func wakeups(_ ring: RingName, _ count: Int) { if count > 0 { wakeups[ring]!.increment(by: Int64(count)) } }
    public func spaceWakeups(_ count: Int) { if count > 0 { spaceWakeups.increment(by: Int64(count)) } }
    public func copiedBytes(_ count: Int) { copiedBytes.increment(by: Int64(count)) }
    public func receivePauses(_ count: Int) { if count > 0 { receivePauses.increment(by: Int64(count)) } }
    public func gatheredWrites(_ count: Int) { if count > 0 { gatheredWrites.increment(by: Int64(count)) } }
    public func descriptors(_ held: Int) { descriptors.set(Int64(held)) }
    public func descriptorRefusals(_ count: Int) { if count > 0 { descriptorRefusals.increment(by: Int64(count)) } }
    /// reason: "linger" or "plugin".
    public func streamResets(_ reason: String, _ count: Int) { if count > 0 { streamResets[reason]?.increment(by: Int64(count)) } }
    public func lingering(_ count: Int) { lingering.set(Int64(count)) }
    /// The ABI's metric_add: adds to peerhost_plugin_<name>_total{plugin}. False when refused (a
    /// negative or non-finite value, a name of the host's own, more than 64 names).
    @discardableResult
    public func metricAdd(name: String, value: Double) -> Bool { pluginSeries.add(plugin: plugin, name: name, value: value) }
    /// Replaces the plugin's `[status]` series (Host+PluginStatus.swift).
    public func setStatusSeries(_ series: [PluginSeries]) { pluginSeries.setStatusSeries(plugin: plugin, series) }
    public func ringDepth(_ ring: RingName, _ depth: Int) { ringDepth[ring]!.set(Int64(depth)) }
    public func connections(_ open: Int) { connections.set(Int64(open)) }
    public func shaperWait(_ direction: TrafficDirection, seconds: Double) { shaperWait[direction]!.increment(by: seconds) }

    // Supervisor and accounting (low rate).
    public func up(_ isUp: Bool) { up.set(Int64(isUp ? 1 : 0)) }
    /// Adds CPU time used since the last sample (the caller keeps the previous /proc reading).
    public func addCPUSeconds(_ seconds: Double) { if seconds > 0 { cpuSeconds.increment(by: seconds) } }
    public func residentMemory(_ bytes: UInt64) { residentMemory.set(Int64(clamping: bytes)) }
    public func storage(_ bytes: UInt64) { storage.set(Int64(clamping: bytes)) }
    public func restart(_ cause: RestartCause) { restartCounter(cause).increment() }
    public func addDowntime(seconds: Double) { if seconds > 0 { downtime.increment(by: seconds) } }
    /// `kind` names the broken invariant, e.g. "slot_out_of_range", "slot_not_owned", "bad_type".
    public func violation(_ kind: String) {
        registry.makeCounter(descriptor: HostMetrics.descriptor(MetricCatalog.definition("peerhost_plugin_violations_total")),
                             labels: [("plugin", plugin), ("kind", kind)]).increment()
    }
    /// `action` names the refused request, e.g. "listen", "connect", "file_open", "kv_put".
    public func denial(_ action: String) {
        registry.makeCounter(descriptor: HostMetrics.descriptor(MetricCatalog.definition("peerhost_plugin_denials_total")),
                             labels: [("plugin", plugin), ("action", action)]).increment()
    }

    /// Per-peer series for the plugin's current top peers (PeerTable.top): each series shows the
    /// peer's total since the host started; a peer that leaves the top list loses its series
    /// (Prometheus reads the gap and a later return as a counter reset), so at most `top` peers
    /// ever have series at once.
    func publishPeers(_ top: [(peer: String, usage: PeerUsage)]) {
        peerSeries.withLock { series in
            let keep = Set(top.map(\.peer))
            for (peer, old) in series where !keep.contains(peer) {
                old.counters.forEach { registry.unregisterCounter($0) }
                series[peer] = nil
            }
            for (peer, usage) in top {
                let s = series[peer] ?? PeerSeries(counters: [
                    peerCounter("peerhost_peer_bytes_total", peer, .inbound), peerCounter("peerhost_peer_bytes_total", peer, .outbound),
                    peerCounter("peerhost_peer_messages_total", peer, .inbound), peerCounter("peerhost_peer_messages_total", peer, .outbound),
                ], published: PeerUsage())
                let now = [usage.bytesIn, usage.bytesOut, usage.messagesIn, usage.messagesOut]
                let before = [s.published.bytesIn, s.published.bytesOut, s.published.messagesIn, s.published.messagesOut]
                for i in 0..<4 where now[i] > before[i] { s.counters[i].increment(by: Int64(clamping: now[i] - before[i])) }
                series[peer] = PeerSeries(counters: s.counters, published: usage)
            }
        }
    }

    private struct PeerSeries {
        var counters: [Counter]   // bytes in, bytes out, messages in, messages out
        var published: PeerUsage
    }

    private func peerCounter(_ name: String, _ peer: String, _ direction: TrafficDirection) -> Counter {
        registry.makeCounter(descriptor: HostMetrics.descriptor(MetricCatalog.definition(name)),
                             labels: [("plugin", plugin), ("peer", peer), ("direction", direction.rawValue)])
    }

    private func restartCounter(_ cause: RestartCause) -> Counter {
        registry.makeCounter(descriptor: HostMetrics.descriptor(MetricCatalog.definition("peerhost_plugin_restarts_total")),
                             labels: [("plugin", plugin), ("cause", cause.rawValue)])
    }
}

/// The registry of one host (not the process-global MetricsSystem, so tests get fresh instances).
public final class HostMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let plugins = Mutex<[String: PluginMetrics]>([:])
    private let scrapeHook = Mutex<(@Sendable () -> Void)?>(nil)
    /// Series plugins define: their `[status]` metrics and metric_add counters (PluginSeries.swift).
    let pluginSeries = PluginSeriesTable()

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
    }

    static func descriptor(_ definition: MetricDefinition) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: definition.name, unitName: "", helpText: definition.help)
    }

    /// The plugin's series, created (at zero) on first use. Call at configuration time and keep
    /// the result on the event loop.
    public func plugin(named name: String) -> PluginMetrics {
        plugins.withLock { table in
            if let existing = table[name] { return existing }
            let created = PluginMetrics(plugin: name, registry: registry, pluginSeries: pluginSeries)
            table[name] = created
            return created
        }
    }

    /// Called before every /metrics render: the place to sample gauges (memory, ring depth, CPU).
    public func setScrapeHook(_ hook: (@Sendable () -> Void)?) {
        scrapeHook.withLock { $0 = hook }
    }

    /// Prometheus text exposition format 0.0.4.
    public func render() -> [UInt8] {
        if let hook = scrapeHook.withLock({ $0 }) { hook() }
        var text = registry.emitToBuffer()
        if let last = text.last, last != 0x0a { text.append(0x0a) }
        return text + Array(pluginSeries.render().utf8)
    }

    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    // Convenience forms by plugin name (Contract 4 names); each adds a locked lookup.
    public func bytesIn(plugin: String, _ count: Int) { self.plugin(named: plugin).bytesIn(count) }
    public func bytesOut(plugin: String, _ count: Int) { self.plugin(named: plugin).bytesOut(count) }
    public func messages(plugin: String, _ direction: TrafficDirection, _ count: Int = 1) { self.plugin(named: plugin).messages(direction, count) }
    public func connections(plugin: String, _ open: Int) { self.plugin(named: plugin).connections(open) }
    public func ringDepth(plugin: String, _ ring: RingName, _ depth: Int) { self.plugin(named: plugin).ringDepth(ring, depth) }
    public func violation(plugin: String, kind: String) { self.plugin(named: plugin).violation(kind) }
    public func denial(plugin: String, action: String) { self.plugin(named: plugin).denial(action) }
    public func restart(plugin: String, cause: RestartCause) { self.plugin(named: plugin).restart(cause) }
    public func wakeup(plugin: String, _ ring: RingName) { self.plugin(named: plugin).wakeup(ring) }
    public func copiedBytes(plugin: String, _ count: Int) { self.plugin(named: plugin).copiedBytes(count) }
    public func up(plugin: String, _ isUp: Bool) { self.plugin(named: plugin).up(isUp) }
    public func addCPUSeconds(plugin: String, _ seconds: Double) { self.plugin(named: plugin).addCPUSeconds(seconds) }
    public func residentMemory(plugin: String, _ bytes: UInt64) { self.plugin(named: plugin).residentMemory(bytes) }
    public func storage(plugin: String, _ bytes: UInt64) { self.plugin(named: plugin).storage(bytes) }
    public func shaperWait(plugin: String, _ direction: TrafficDirection, seconds: Double) { self.plugin(named: plugin).shaperWait(direction, seconds: seconds) }
}
