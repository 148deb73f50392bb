import Foundation
import Testing
@testable import PeerhostCore

/// Plugin status details and metrics (manifest [status], PluginSeries.swift): the manifest keys,
/// how an untrusted answer is checked, and how plugin-defined series render on /metrics.
@Suite("PluginStatus")
struct PluginStatusTests {
    private func manifest(_ status: String, signature: String = "() -> bytes") -> Result<PluginManifest, TOMLFileError> {
        Result { () throws(TOMLFileError) -> PluginManifest in
            let text = """
                [plugin]
                name = "bt"
                version = "1.0.0"
                library = "libbt.so"
                abi = "1"

                [[control]]
                name = "status"
                symbol = "bt_status"
                signature = "\(signature)"

                \(status)
                """
            return try PluginManifest(source: try TOMLSource(text: text, displayName: "m.toml"), absolutePath: "/x/m.toml")
        }
    }

    private func error(_ r: Result<PluginManifest, TOMLFileError>) -> String {
        if case .failure(let e) = r { return e.description }
        return ""
    }

    @Test func manifestStatusTable() throws {
        let ok = try manifest("[status]\nmethod = \"status\"\nmetric_prefix = \"bt\"").get()
        #expect(ok.status == .init(method: "status", metricPrefix: "bt"))
        #expect(try manifest("[status]\nmethod = \"status\"").get().status?.metricPrefix == nil)
        #expect(try manifest("").get().status == nil)
        #expect(error(manifest("[status]\nmethod = \"nope\"")).contains("key 'status.method'"))
        #expect(error(manifest("[status]\nmethod = \"status\"", signature: "(i64) -> bytes")).contains("() -> bytes"))
        #expect(error(manifest("[status]\nmethod = \"status\"\nmetric_prefix = \"plugin\"")).contains("reserved"))
        #expect(error(manifest("[status]\nmethod = \"status\"\nmetric_prefix = \"Bt-x\"")).contains("not a metric prefix"))
        #expect(error(manifest("[status]\nmethod = \"status\"\nextra = 1")).contains("extra"))
        // Signed when present; absent, the canonical form is what it was before [status] existed.
        let canonical = try CanonicalManifest.text(ok, librarySHA256: "00", signedTime: "t")
        #expect(canonical.contains("\nstatus\tstatus\tbt\nsigned\tt\n"))
        #expect(!(try CanonicalManifest.text(try manifest("").get(), librarySHA256: "00", signedTime: "t")).contains("\nstatus"))
    }

    @Test func goodAnswerIsParsed() throws {
        let json = """
            {"details": {"torrents": [{"name": "a", "progress": 0.5}]},
             "metrics": [{"name": "peerhost_bt_downloaded_bytes_total", "type": "counter", "help": "Bytes.",
                          "labels": {"infohash": "abcd"}, "value": 123},
                         {"name": "peerhost_bt_peers", "value": 4}]}
            """
        let answer = try PluginStatusAnswer.parse(Array(json.utf8), metricPrefix: "bt")
        #expect(answer.details == .object(["torrents": .array([.object(["name": .string("a"), "progress": .number(0.5)])])]))
        #expect(answer.series == [
            PluginSeries(name: "peerhost_bt_downloaded_bytes_total", kind: .counter, help: "Bytes.", labels: [["infohash", "abcd"]], value: 123),
            PluginSeries(name: "peerhost_bt_peers", kind: .gauge, help: "", labels: [], value: 4),
        ])
        #expect(answer.dropped.isEmpty)
    }

    @Test func badAnswersAreRefusedOrTrimmed() throws {
        func refused(_ text: String, prefix: String? = "bt", maxBytes: Int = 1 << 20) -> Bool {
            (try? PluginStatusAnswer.parse(Array(text.utf8), metricPrefix: prefix, maxBytes: maxBytes)) == nil
        }
        #expect(refused("{\"details\": {"), "not JSON")
        #expect(refused("[1,2]"))
        #expect(refused("{\"details\": 5}"), "details must be an object")
        #expect(refused("{\"details\": {\"a\": \"\(String(repeating: "x", count: 200))\"}}", maxBytes: 100), "size bound")
        #expect(refused("{\"metrics\": [{\"name\": \"peerhost_bt_x\"}]}"), "a series without a value")

        let series = [
            #"{"name": "peerhost_other_x", "value": 1}"#,                               // outside the prefix
            #"{"name": "peerhost_bt_", "value": 1}"#,                                    // prefix only
            #"{"name": "peerhost_bt_Upper", "value": 1}"#,                               // bad characters
            #"{"name": "peerhost_bt_x", "type": "histogram", "value": 1}"#,              // bad type
            #"{"name": "peerhost_bt_x", "labels": {"plugin": "evil"}, "value": 1}"#,     // the host's label
            #"{"name": "peerhost_bt_x", "labels": {"peer": "1.2.3.4"}, "value": 1}"#,    // open-ended label
            #"{"name": "peerhost_bt_ok", "labels": {"infohash": "a"}, "value": 1}"#,
            #"{"name": "peerhost_bt_ok", "labels": {"infohash": "a"}, "value": 2}"#,     // duplicate
            #"{"name": "peerhost_bt_ok", "type": "counter", "labels": {"infohash": "b"}, "value": 1}"#, // second type
        ]
        let answer = try PluginStatusAnswer.parse(Array("{\"metrics\": [\(series.joined(separator: ","))]}".utf8), metricPrefix: "bt")
        #expect(answer.series.map(\.name) == ["peerhost_bt_ok"])
        #expect(answer.dropped.count >= 5, "\(answer.dropped)")
        let noPrefix = try PluginStatusAnswer.parse(Array(#"{"details": {}, "metrics": [{"name": "peerhost_bt_ok", "value": 1}]}"#.utf8), metricPrefix: nil)
        #expect(noPrefix.series.isEmpty && noPrefix.details == .object([:]), "details only without a declared prefix")

        let many = (0..<600).map { #"{"name": "peerhost_bt_s", "labels": {"infohash": "\#($0)"}, "value": \#($0)}"# }
        let bounded = try PluginStatusAnswer.parse(Array("{\"metrics\": [\(many.joined(separator: ","))]}".utf8), metricPrefix: "bt")
        #expect(bounded.series.count == Defaults.statusMaxSeries)
        #expect(bounded.dropped == ["100 × more than 500 series"])
    }

    @Test func pluginSeriesRenderAndAnswersReplaceEachOther() throws {
        let metrics = HostMetrics()
        let bt = metrics.plugin(named: "bittorrent")
        bt.setStatusSeries([
            PluginSeries(name: "peerhost_bt_downloaded_bytes_total", kind: .counter, help: "Bytes \"downloaded\".", labels: [["infohash", "a\"b"]], value: 5),
            PluginSeries(name: "peerhost_bt_downloaded_bytes_total", kind: .counter, help: "", labels: [["infohash", "cd"]], value: 1.5),
        ])
        #expect(bt.metricAdd(name: "pieces_verified", value: 2))
        #expect(bt.metricAdd(name: "pieces_verified", value: 3))
        #expect(!bt.metricAdd(name: "bytes", value: 1), "would shadow peerhost_plugin_bytes_total")
        #expect(!bt.metricAdd(name: "x", value: -1), "a counter never goes down")
        var text = String(decoding: metrics.render(), as: UTF8.self)
        #expect(text.contains("# TYPE peerhost_bt_downloaded_bytes_total counter\n"))
        #expect(text.contains(#"peerhost_bt_downloaded_bytes_total{plugin="bittorrent",infohash="a\"b"} 5"#))
        #expect(text.contains(#"peerhost_bt_downloaded_bytes_total{plugin="bittorrent",infohash="cd"} 1.5"#))
        #expect(text.contains("# TYPE peerhost_plugin_pieces_verified_total counter\n"))
        #expect(text.contains(#"peerhost_plugin_pieces_verified_total{plugin="bittorrent"} 5"#))
        #expect(text.components(separatedBy: "# TYPE peerhost_bt_downloaded_bytes_total").count == 2, "one family, one TYPE")
        #expect(MetricsTests.rendered(text)["peerhost_plugin_bytes_total"] == "counter", "the host's own family is untouched")
        // The next answer replaces the previous one: a series it lacks is gone.
        bt.setStatusSeries([PluginSeries(name: "peerhost_bt_downloaded_bytes_total", kind: .counter, help: "", labels: [["infohash", "cd"]], value: 9)])
        text = String(decoding: metrics.render(), as: UTF8.self)
        #expect(!text.contains(#"infohash="a\"b""#))
        #expect(text.contains(#"peerhost_bt_downloaded_bytes_total{plugin="bittorrent",infohash="cd"} 9"#))
        for i in 0..<Defaults.metricAddMaxNames { _ = bt.metricAdd(name: "n\(i)", value: 1) }
        #expect(!bt.metricAdd(name: "one_too_many", value: 1), "names are bounded per plugin")
    }
}
