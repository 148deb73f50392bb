import Foundation
import Testing
@testable import PeerhostCore

@Suite("Metrics")
struct MetricsTests {
    /// The names DESIGN.md "Operator surface" promises, copied here so a rename shows up as a diff.
    static let contractNames: Set<String> = [
        "peerhost_plugin_up", "peerhost_plugin_restarts_total", "peerhost_plugin_bytes_total",
        "peerhost_plugin_messages_total", "peerhost_plugin_connections", "peerhost_ring_depth",
        "peerhost_plugin_violations_total", "peerhost_plugin_denials_total", "peerhost_plugin_cpu_seconds_total",
        "peerhost_plugin_resident_memory_bytes", "peerhost_plugin_storage_bytes", "peerhost_shaper_wait_seconds_total",
        "peerhost_datapath_copied_bytes_total", "peerhost_ring_wakeups_total",
        // Issue 5: supervision and per-peer accounting (ABI 1.1).
        "peerhost_plugin_downtime_seconds_total", "peerhost_peer_bytes_total", "peerhost_peer_messages_total",
        // Issue 6: receive-slot backpressure.
        "peerhost_plugin_receive_pauses_total",
        // Issue 6: file writes gathered into one pwritev.
        "peerhost_plugin_file_writes_gathered_total",
        // Issue 6: the per-plugin descriptor budget.
        "peerhost_plugin_descriptors", "peerhost_plugin_descriptor_refusals_total",
        // Issue 13: streams closed gracefully, within the linger bound.
        "peerhost_plugin_stream_resets_total", "peerhost_plugin_lingering_connections",
        // Issue 14: the core wakes a runner that waits for TX room (no polling).
        "peerhost_ring_space_wakeups_total",
    ]

    /// `| `name` | type | labels | meaning |` rows of docs/metrics.md.
    static func documented() throws -> [String: (type: String, labels: [String])] {
        let text = try String(contentsOfFile: TestSupport.path("docs/metrics.md"), encoding: .utf8)
        var rows: [String: (type: String, labels: [String])] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("| `peerhost_") {
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            let name = cells[0].trimmingCharacters(in: CharacterSet(charactersIn: "`"))
            let labels = cells[2].split(separator: ",").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "` ")) }
            rows[name] = (cells[1], labels)
        }
        return rows
    }

    /// Metric name → TYPE from the exposition text.
    static func rendered(_ text: String) -> [String: String] {
        var types: [String: String] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("# TYPE ") {
            let parts = line.split(separator: " ")
            types[String(parts[2])] = String(parts[3])
        }
        return types
    }

    @Test func docsCatalogAndOutputAgree() throws {
        let metrics = HostMetrics()
        let plugin = metrics.plugin(named: "echo-c")
        plugin.violation("slot_out_of_range")
        plugin.denial("connect")
        plugin.publishPeers([("7463703a31", PeerUsage())])
        let text = String(decoding: metrics.render(), as: UTF8.self)
        let output = Self.rendered(text)
        let documented = try Self.documented()
        let catalog = Dictionary(uniqueKeysWithValues: MetricCatalog.all.map { ($0.name, $0) })

        #expect(Set(documented.keys) == Self.contractNames, "docs/metrics.md vs DESIGN.md contract")
        #expect(Set(catalog.keys) == Self.contractNames, "MetricCatalog vs DESIGN.md contract")
        #expect(Set(output.keys) == Self.contractNames, "/metrics output vs DESIGN.md contract:\n\(text)")
        for (name, row) in documented {
            #expect(output[name] == row.type, "\(name): documented \(row.type), served \(output[name] ?? "nothing")")
            #expect(catalog[name]?.labels == row.labels, "\(name): labels")
            // Every sample line of the metric carries exactly the documented labels.
            for line in text.split(separator: "\n") where line.hasPrefix(name + "{") {
                let labelText = line.drop(while: { $0 != "{" }).dropFirst().prefix(while: { $0 != "}" })
                let keys = labelText.split(separator: ",").map { String($0.prefix(while: { $0 != "=" })) }
                #expect(keys == row.labels, "\(line)")
            }
        }
    }

    @Test func eventsReachTheOutput() {
        let metrics = HostMetrics()
        let plugin = metrics.plugin(named: "echo-c")
        plugin.bytesIn(100)
        plugin.bytesIn(23)
        plugin.bytesOut(7)
        plugin.messages(.inbound, 3)
        plugin.wakeup(.rx)
        plugin.copiedBytes(5)
        plugin.ringDepth(.tx, 9)
        plugin.connections(4)
        plugin.up(true)
        plugin.restart(.hang)
        plugin.addCPUSeconds(0.5)
        plugin.residentMemory(1 << 20)
        plugin.shaperWait(.outbound, seconds: 0.25)
        plugin.restart(.limit)
        plugin.addDowntime(seconds: 1.5)
        metrics.denial(plugin: "echo-c", action: "listen")
        metrics.bytesIn(plugin: "echo-swift", 1)
        let text = String(decoding: metrics.render(), as: UTF8.self)
        for expected in [
            #"peerhost_plugin_bytes_total{plugin="echo-c",direction="in"} 123"#,
            #"peerhost_plugin_bytes_total{plugin="echo-c",direction="out"} 7"#,
            #"peerhost_plugin_messages_total{plugin="echo-c",direction="in"} 3"#,
            #"peerhost_ring_wakeups_total{plugin="echo-c",ring="rx"} 1"#,
            #"peerhost_datapath_copied_bytes_total{plugin="echo-c"} 5"#,
            #"peerhost_ring_depth{plugin="echo-c",ring="tx"} 9"#,
            #"peerhost_plugin_connections{plugin="echo-c"} 4"#,
            #"peerhost_plugin_up{plugin="echo-c"} 1"#,
            #"peerhost_plugin_restarts_total{plugin="echo-c",cause="hang"} 1"#,
            #"peerhost_plugin_restarts_total{plugin="echo-c",cause="crash"} 0"#,
            #"peerhost_plugin_restarts_total{plugin="echo-c",cause="limit"} 1"#,
            #"peerhost_plugin_downtime_seconds_total{plugin="echo-c"} 1.5"#,
            #"peerhost_plugin_cpu_seconds_total{plugin="echo-c"} 0.5"#,
            #"peerhost_plugin_resident_memory_bytes{plugin="echo-c"} 1048576"#,
            #"peerhost_shaper_wait_seconds_total{plugin="echo-c",direction="out"} 0.25"#,
            #"peerhost_plugin_denials_total{plugin="echo-c",action="listen"} 1"#,
            #"peerhost_plugin_bytes_total{plugin="echo-swift",direction="in"} 1"#,
        ] {
            #expect(text.contains(expected), "missing: \(expected)")
        }
    }

    @Test func scrapeHookRunsBeforeRender() {
        let metrics = HostMetrics()
        let plugin = metrics.plugin(named: "p")
        metrics.setScrapeHook { plugin.residentMemory(77) }
        #expect(String(decoding: metrics.render(), as: UTF8.self).contains(#"peerhost_plugin_resident_memory_bytes{plugin="p"} 77"#))
    }

    @Test func concurrentIncrementsAreNotLost() async {
        let metrics = HostMetrics()
        let plugin = metrics.plugin(named: "p")
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask { for _ in 0..<10_000 { plugin.bytesIn(1) } }
            }
        }
        #expect(String(decoding: metrics.render(), as: UTF8.self).contains(#"peerhost_plugin_bytes_total{plugin="p",direction="in"} 80000"#))
    }
}
