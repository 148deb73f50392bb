import Foundation
import Testing
@testable import PeerhostCore

/// config/grafana-dashboard.json: every metric it queries is documented (docs/metrics.md), in the
/// catalog, and rendered by the host's registry. (Tests/IntegrationTests/AccountingTests.swift
/// checks the same names against a running host's /metrics.)
@Suite struct DashboardTests {
    /// Every PromQL expression in the dashboard: panel targets and templating queries.
    static func expressions() throws -> [String] {
        let data = try Data(contentsOf: URL(fileURLWithPath: TestSupport.path("config/grafana-dashboard.json")))
        let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        var exprs: [String] = []
        for panel in dashboard["panels"] as? [[String: Any]] ?? [] {
            for target in panel["targets"] as? [[String: Any]] ?? [] {
                if let e = target["expr"] as? String { exprs.append(e) }
            }
        }
        let templating = dashboard["templating"] as? [String: Any]
        for variable in templating?["list"] as? [[String: Any]] ?? [] where variable["type"] as? String == "query" {
            if let q = variable["query"] as? String { exprs.append(q) }
            if let q = (variable["query"] as? [String: Any])?["query"] as? String { exprs.append(q) }
        }
        return exprs
    }

    /// Metric names in PromQL: identifiers starting with peerhost_ (the dashboard queries nothing else).
    static func metricNames(_ expr: String) -> Set<String> {
        let regex = try! NSRegularExpression(pattern: "peerhost_[a-z0-9_]+")
        let range = NSRange(expr.startIndex..., in: expr)
        return Set(regex.matches(in: expr, range: range).compactMap { Range($0.range, in: expr).map { String(expr[$0]) } })
    }

    @Test func everyQueriedMetricIsDocumentedInTheCatalogAndRendered() throws {
        let exprs = try Self.expressions()
        #expect(exprs.count >= 14, "panels with queries: \(exprs.count)")
        let queried = exprs.reduce(into: Set<String>()) { $0.formUnion(Self.metricNames($1)) }
        let documented = Set(try MetricsTests.documented().keys)
        let metrics = HostMetrics()
        let plugin = metrics.plugin(named: "p")
        plugin.violation("bad_type")
        plugin.denial("connect")
        plugin.publishPeers([("aa", PeerUsage())])
        let rendered = Set(MetricsTests.rendered(String(decoding: metrics.render(), as: UTF8.self)).keys)
        for name in queried.sorted() {
            #expect(documented.contains(name), "\(name) is queried by the dashboard but not in docs/metrics.md")
            #expect(MetricCatalog.all.contains { $0.name == name }, "\(name) is not in MetricCatalog")
            #expect(rendered.contains(name), "\(name) is not rendered by HostMetrics")
        }
        // The panels the issue asks for.
        for wanted in ["peerhost_plugin_bytes_total", "peerhost_shaper_wait_seconds_total", "peerhost_plugin_cpu_seconds_total",
                       "peerhost_plugin_resident_memory_bytes", "peerhost_plugin_restarts_total", "peerhost_plugin_denials_total",
                       "peerhost_plugin_violations_total", "peerhost_ring_depth", "peerhost_plugin_storage_bytes"] {
            #expect(queried.contains(wanted), "the dashboard shows \(wanted)")
        }
    }

    @Test func theNameParserFindsNamesInsideFunctionsAndSelectors() {
        #expect(Self.metricNames(#"topk(10, sum by (plugin) (rate(peerhost_peer_bytes_total{plugin=~"$plugin"}[5m]))) / peerhost_plugin_up"#)
                == ["peerhost_peer_bytes_total", "peerhost_plugin_up"])
    }
}
