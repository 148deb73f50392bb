// Metrics that plugins define (docs/metrics.md "Plugin metrics"):
// - protocol metrics from a plugin's `[status]` answer (`peerhost_<metric_prefix>_*`, e.g.
//   `peerhost_bt_downloaded_bytes_total{plugin,infohash}`), replaced as a whole by each answer, so a
//   series missing from the latest answer is gone from /metrics;
// - counters the plugin adds to with the ABI's metric_add (`peerhost_plugin_<name>_total{plugin}`).
// Their names are chosen by plugin code, so they are not in MetricCatalog: each plugin's docs list
// its own. They are rendered here, after the registry's text, rather than registered with
// swift-prometheus: the input is untrusted, and a name or label set that changes between answers
// must never be able to upset the registry (it refuses a family re-registered with other labels).

import Foundation
import Synchronization

/// One sample of a plugin-defined series.
public struct PluginSeries: Sendable, Equatable {
    public var name: String
    public var kind: MetricDefinition.Kind
    public var help: String
    /// Label pairs after `plugin` (which the host adds), in the order given.
    public var labels: [[String]]
    public var value: Double

    public init(name: String, kind: MetricDefinition.Kind, help: String, labels: [[String]], value: Double) {
        self.name = name
        self.kind = kind
        self.help = help
        self.labels = labels
        self.value = value
    }
}

/// A plugin's answer to its `[status]` method, checked (docs/manifest.md "[status]"):
/// `{"details": {…}, "metrics": [{"name", "type", "help", "labels", "value"}, …]}`.
public struct PluginStatusAnswer: Sendable, Equatable {
    public var details: JSONValue?
    public var series: [PluginSeries]
    /// Why series were left out (one text per reason, with a count), for one log line.
    public var dropped: [String]

    /// Label names a plugin may use: the few that identify a protocol object. `plugin` is the
    /// host's; open-ended names (a peer address per series) would make the cardinality unbounded.
    public static let allowedLabels: Set<String> = ["infohash", "torrent", "topic", "kind", "direction", "state", "tracker", "reason"]
    static let maxNameLength = 128
    static let maxLabelValueLength = 128
    static let maxHelpLength = 256

    struct Wire: Decodable {
        var details: JSONValue?
        var metrics: [Metric]?
        struct Metric: Decodable {
            var name: String
            var type: String?
            var help: String?
            var labels: [String: String]?
            var value: Double
        }
    }

    /// Parses and checks an answer; throws a one-line reason when it is unusable as a whole (the
    /// caller keeps the previous answer). Single bad series are dropped, not fatal.
    public static func parse(_ bytes: [UInt8], metricPrefix: String?, maxBytes: Int = Defaults.statusMaxBytes,
                             maxSeries: Int = Defaults.statusMaxSeries) throws(PluginStatusError) -> PluginStatusAnswer {
        guard bytes.count <= maxBytes else { throw PluginStatusError("answer of \(bytes.count) bytes is larger than \(maxBytes)") }
        let wire: Wire
        do {
            wire = try JSONDecoder().decode(Wire.self, from: Data(bytes))
        } catch {
            throw PluginStatusError("answer is not the status JSON ({\"details\": {...}, \"metrics\": [...]}): \(ControlSocketServer.describe(error))")
        }
        switch wire.details {
        case nil, .null?, .object?: break
        default: throw PluginStatusError("\"details\" must be a JSON object")
        }
        var answer = PluginStatusAnswer(details: wire.details == .null ? nil : wire.details, series: [], dropped: [])
        var reasons: [String: Int] = [:]
        var kinds: [String: MetricDefinition.Kind] = [:]
        var seen: Set<[String]> = []
        let required = metricPrefix.map { "peerhost_\($0)_" }
        let nameCharacters = Set("abcdefghijklmnopqrstuvwxyz0123456789_")
        for m in wire.metrics ?? [] {
            func drop(_ why: String) { reasons[why, default: 0] += 1 }
            guard let required else { drop("the manifest declares no [status] metric_prefix"); continue }
            guard m.name.hasPrefix(required), m.name.count > required.count, m.name.count <= maxNameLength,
                  m.name.allSatisfy({ nameCharacters.contains($0) }) else {
                drop("name not \(required)[a-z0-9_]+"); continue
            }
            let kind: MetricDefinition.Kind
            switch m.type ?? "gauge" {
            case "counter": kind = .counter
            case "gauge": kind = .gauge
            default: drop("type not counter or gauge"); continue
            }
            if let earlier = kinds[m.name], earlier != kind { drop("one name with two types"); continue }
            guard m.value.isFinite else { drop("value not finite"); continue }
            let labels = (m.labels ?? [:]).sorted { $0.key < $1.key }
            guard labels.allSatisfy({ allowedLabels.contains($0.key) }) else {
                drop("label not one of \(allowedLabels.sorted().joined(separator: ", "))"); continue
            }
            guard labels.allSatisfy({ $0.value.utf8.count <= maxLabelValueLength }) else { drop("label value over \(maxLabelValueLength) bytes"); continue }
            let identity = [m.name] + labels.flatMap { [$0.key, $0.value] }
            guard seen.insert(identity).inserted else { drop("duplicate series"); continue }
            guard answer.series.count < maxSeries else { drop("more than \(maxSeries) series"); continue }
            kinds[m.name] = kind
            answer.series.append(PluginSeries(name: m.name, kind: kind, help: String((m.help ?? "").prefix(maxHelpLength)),
                                              labels: labels.map { [$0.key, $0.value] }, value: m.value))
        }
        answer.dropped = reasons.sorted { $0.key < $1.key }.map { "\($0.value) × \($0.key)" }
        return answer
    }
}

/// Why a status answer was not used as a whole.
public struct PluginStatusError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The plugin-defined series of every plugin, rendered after the registry's text.
final class PluginSeriesTable: Sendable {
    private struct State {
        var status: [String: [PluginSeries]] = [:]          // plugin → its latest status series
        var counters: [String: [String: Double]] = [:]      // plugin → metric_add name → total
    }
    private let state = Mutex(State())

    func setStatusSeries(plugin: String, _ series: [PluginSeries]) {
        state.withLock { $0.status[plugin] = series }
    }

    /// metric_add: false when refused (not a counter value, or the plugin has too many names).
    func add(plugin: String, name: String, value: Double) -> Bool {
        guard value.isFinite, value >= 0 else { return false }
        // "bytes" would make peerhost_plugin_bytes_total, the host's own family.
        guard !MetricCatalog.all.contains(where: { $0.name == "peerhost_plugin_\(name)_total" }) else { return false }
        return state.withLock { s in
            var table = s.counters[plugin] ?? [:]
            guard table[name] != nil || table.count < Defaults.metricAddMaxNames else { return false }
            table[name, default: 0] += value
            s.counters[plugin] = table
            return true
        }
    }

    /// Prometheus text for every plugin-defined family: all series of one family together, one
    /// HELP and TYPE (from the first plugin that has it; a series of another type is left out).
    func render() -> String {
        let snapshot = state.withLock { $0 }
        var families: [String: (kind: MetricDefinition.Kind, help: String, lines: [String])] = [:]
        func add(_ name: String, _ kind: MetricDefinition.Kind, _ help: String, _ line: String) {
            if let f = families[name], f.kind != kind { return }
            families[name, default: (kind, help, [])].lines.append(line)
        }
        for (plugin, series) in snapshot.status.sorted(by: { $0.key < $1.key }) {
            for s in series {
                let labels = ([["plugin", plugin]] + s.labels).map { "\($0[0])=\"\(Self.escape($0[1]))\"" }.joined(separator: ",")
                add(s.name, s.kind, s.help.isEmpty ? "Defined by plugin \(plugin) (see its docs)." : s.help,
                    "\(s.name){\(labels)} \(Self.number(s.value))")
            }
        }
        for (plugin, counters) in snapshot.counters.sorted(by: { $0.key < $1.key }) {
            for (name, value) in counters.sorted(by: { $0.key < $1.key }) {
                let family = "peerhost_plugin_\(name)_total"
                add(family, .counter, "Added to by the plugin through the ABI's metric_add (see the plugin's docs).",
                    "\(family){plugin=\"\(Self.escape(plugin))\"} \(Self.number(value))")
            }
        }
        var out = ""
        for (name, family) in families.sorted(by: { $0.key < $1.key }) {
            out += "# HELP \(name) \(Self.escapeHelp(family.help))\n# TYPE \(name) \(family.kind.rawValue)\n"
            out += family.lines.joined(separator: "\n") + "\n"
        }
        return out
    }

    static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    static func escapeHelp(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }

    static func number(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }
}
