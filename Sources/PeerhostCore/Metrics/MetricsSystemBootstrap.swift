// Kept apart from HostMetrics.swift: swift-metrics and swift-prometheus both name types Counter and Gauge.

import Prometheus
import Metrics

extension HostMetrics {
    /// Routes swift-metrics (used by libraries, and later by protocol metrics the plugins report)
    /// into this registry, so /metrics shows them too. Process-global and allowed once
    /// (MetricsSystem.bootstrap traps on a second call): call it from `Host.run`, never from tests.
    public func bootstrapMetricsSystem() {
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
    }
}
