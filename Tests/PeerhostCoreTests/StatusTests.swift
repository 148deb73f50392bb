import Foundation
import Testing
@testable import PeerhostCore

/// Validates JSON against the subset of JSON Schema 2020-12 that docs/status.schema.json uses:
/// type (name or list), properties, required, additionalProperties (bool), items, enum, minimum,
/// and local $ref into $defs. Anything else in the schema is a test failure, so the schema cannot
/// silently grow a keyword this checker ignores.
struct SchemaSubsetValidator {
    let root: JSONValue
    static let understood: Set<String> = ["$schema", "$id", "title", "description", "type", "required",
                                          "additionalProperties", "properties", "items", "$ref", "$defs",
                                          "enum", "minimum"]

    func validate(_ value: JSONValue, against schemaValue: JSONValue, at path: String = "$") -> [String] {
        guard case .object(let schema) = schemaValue else { return ["\(path): schema is not an object"] }
        var problems: [String] = []
        for key in schema.keys.sorted() where !Self.understood.contains(key) {
            problems.append("\(path): schema keyword '\(key)' is not understood by the test's validator")
        }
        if case .string(let reference)? = schema["$ref"] {
            let name = reference.replacingOccurrences(of: "#/$defs/", with: "")
            guard let target = root["$defs"]?[name] else { return problems + ["\(path): unresolved $ref \(reference)"] }
            problems += validate(value, against: target, at: path)
        }
        if let types = schema["type"] {
            var allowed: [String] = []
            if case .string(let one) = types { allowed = [one] }
            if case .array(let many) = types { allowed = many.compactMap { if case .string(let t) = $0 { t } else { nil } } }
            if !allowed.contains(where: { Self.matches(value, $0) }) {
                return problems + ["\(path): expected \(allowed.joined(separator: " or ")), found \(value)"]
            }
        }
        if case .array(let choices)? = schema["enum"], !choices.contains(value) {
            problems.append("\(path): \(value) is not one of \(choices)")
        }
        if let minimum = schema["minimum"].flatMap(Self.number), let number = Self.number(value), number < minimum {
            problems.append("\(path): \(number) is below \(minimum)")
        }
        if case .object(let object) = value {
            var properties: [String: JSONValue] = [:]
            if case .object(let declared)? = schema["properties"] { properties = declared }
            if case .array(let required)? = schema["required"] {
                for case .string(let key) in required where object[key] == nil {
                    problems.append("\(path): missing required key '\(key)'")
                }
            }
            if schema["additionalProperties"] == .bool(false) {
                for key in object.keys.sorted() where properties[key] == nil {
                    problems.append("\(path): unexpected key '\(key)'")
                }
            }
            for (key, child) in object.sorted(by: { $0.key < $1.key }) {
                if let childSchema = properties[key] { problems += validate(child, against: childSchema, at: "\(path).\(key)") }
            }
        }
        if case .array(let items) = value, let itemSchema = schema["items"] {
            for (index, item) in items.enumerated() {
                problems += validate(item, against: itemSchema, at: "\(path)[\(index)]")
            }
        }
        return problems
    }

    static func number(_ value: JSONValue) -> Double? {
        switch value {
        case .integer(let number): return Double(number)
        case .number(let number): return number
        default: return nil
        }
    }

    static func matches(_ value: JSONValue, _ type: String) -> Bool {
        switch (type, value) {
        case ("null", .null), ("object", .object), ("array", .array), ("string", .string), ("boolean", .bool),
             ("integer", .integer), ("number", .integer), ("number", .number): return true
        default: return false
        }
    }
}

@Suite("Status document")
struct StatusTests {
    static func loadSchema() throws -> SchemaSubsetValidator {
        let data = try Data(contentsOf: URL(fileURLWithPath: TestSupport.path("docs/status.schema.json")))
        return SchemaSubsetValidator(root: try JSONDecoder().decode(JSONValue.self, from: data))
    }

    static let sample = StatusDocument(
        host: .init(version: PeerhostVersion.current, pid: 4242, uptimeSeconds: 12.5, ioBackend: "io_uring"),
        plugins: [
            .init(name: "echo-c", state: .running, pid: 4300, restarts: 1, connections: 3, bytesIn: 100, bytesOut: 90,
                  cpuSeconds: 0.25, memoryBytes: 4 << 20, storageBytes: 0, grants: ["net.listen tcp:127.0.0.1:7001"],
                  details: .object(["greeting": .string("hi"), "echoed": .integer(7)])),
            .init(name: "echo-swift", state: .backoff, reason: "exited with signal 9 (SIGKILL)"),
        ])

    @Test func encodedDocumentMatchesSchema() throws {
        let validator = try Self.loadSchema()
        let json = try JSONDecoder().decode(JSONValue.self, from: Data(Self.sample.encodedJSON()))
        #expect(validator.validate(json, against: validator.root) == [])
        // Unknown values are explicit nulls (the key is always there); details is omitted.
        guard case .array(let plugins)? = json["plugins"] else { Issue.record("no plugins array"); return }
        #expect(plugins[1]["pid"] == .null)
        #expect(plugins[1]["reason"] == .string("exited with signal 9 (SIGKILL)"))
        #expect(plugins[1]["details"] == nil)
    }

    @Test func validatorCatchesBrokenDocuments() throws {
        let validator = try Self.loadSchema()
        let json = try JSONDecoder().decode(JSONValue.self, from: Data(Self.sample.encodedJSON()))
        guard case .object(var document) = json, case .array(let plugins)? = document["plugins"],
              case .object(var first) = plugins[0], case .object(var second) = plugins[1] else {
            Issue.record("unexpected shape")
            return
        }
        first.removeValue(forKey: "restarts")
        first["state"] = .string("sleeping")
        second["bytes_in"] = .string("lots")
        document["plugins"] = .array([.object(first), .object(second)])
        document["extra"] = .integer(1)
        let problems = validator.validate(.object(document), against: validator.root)
        #expect(problems.contains("$.plugins[0]: missing required key 'restarts'"))
        #expect(problems.contains { $0.hasPrefix("$.plugins[0].state: string(\"sleeping\") is not one of") }, "\(problems)")
        #expect(problems.contains { $0.hasPrefix("$.plugins[1].bytes_in: expected integer") })
        #expect(problems.contains("$: unexpected key 'extra'"))
    }

    @Test func roundTrips() throws {
        #expect(try StatusDocument.decode(Self.sample.encodedJSON()) == Self.sample)
    }

    @Test func tableShowsEveryPlugin() {
        let table = Self.sample.table
        #expect(table.contains("PLUGIN"))
        #expect(table.contains("echo-c      running  4300"))
        #expect(table.contains("exited with signal 9 (SIGKILL)"))
    }

    @Test func entryForAConfiguredPlugin() throws {
        let root = TestSupport.repositoryRoot
        let config = try HostConfig.load(origin: .development(path: root + "/config/peerhost.toml"), currentDirectory: root)
        var plugin = config.plugins[0]
        let starting = StatusDocument.PluginStatus(configured: plugin)
        #expect(starting.state == .starting)
        #expect(starting.grants == ["net.listen tcp:127.0.0.1:7001"])
        plugin.enabled = false
        #expect(StatusDocument.PluginStatus(configured: plugin).reason == "disabled in config")
    }
}
