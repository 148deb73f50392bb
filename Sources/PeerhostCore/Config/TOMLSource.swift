// A parsed TOML file plus what is needed to report errors in it, and typed readers over its tables.
//
// TOMLKit's tables are C++-backed, non-Sendable classes; we copy the tree once into `TOMLNode`
// (a plain Sendable value) and do all validation on that copy.

import Foundation
import TOMLKit

/// A TOML value copied out of TOMLKit.
public indirect enum TOMLNode: Sendable, Equatable {
    case table([String: TOMLNode])
    case array([TOMLNode])
    case string(String)
    case integer(Int64)
    case float(Double)
    case boolean(Bool)
    /// Dates and times: no Peerhost key takes one; kept (as text) only to report a wrong type.
    case dateTime(String)

    /// The type as an operator reads it in an error message.
    public var typeName: String {
        switch self {
        case .table: return "a table"
        case .array: return "an array"
        case .string: return "a string"
        case .integer: return "an integer"
        case .float: return "a float"
        case .boolean: return "a boolean"
        case .dateTime: return "a date/time"
        }
    }

    init(_ value: any TOMLValueConvertible) {
        switch value.type {
        case .table:
            var entries: [String: TOMLNode] = [:]
            if let table = value.table {
                for (key, child) in table { entries[key] = TOMLNode(child) }
            }
            self = .table(entries)
        case .array:
            self = .array(value.array.map { $0.map { TOMLNode($0) } } ?? [])
        case .string: self = .string(value.string ?? "")
        case .int: self = .integer(Int64(value.int ?? 0))
        case .double: self = .float(value.double ?? 0)
        case .bool: self = .boolean(value.bool ?? false)
        case .date, .time, .dateTime: self = .dateTime(value.debugDescription)
        }
    }

    /// The value as JSON (tables → objects, arrays → arrays); used for a plugin's config table.
    public var jsonValue: JSONValue {
        switch self {
        case .table(let entries): return .object(entries.mapValues { $0.jsonValue })
        case .array(let items): return .array(items.map { $0.jsonValue })
        case .string(let text), .dateTime(let text): return .string(text)
        case .integer(let number): return .integer(number)
        case .float(let number): return .number(number)
        case .boolean(let flag): return .bool(flag)
        }
    }
}

/// One TOML file: its name for messages, its key→line index and its root table.
public struct TOMLSource: Sendable {
    /// How errors name the file: the path as given, or `<embedded default config>`.
    public let displayName: String
    public let lineIndex: TOMLKeyLineIndex
    public let root: [String: TOMLNode]

    /// Parses `text`; a syntax error carries TOMLKit's line.
    public init(text: String, displayName: String) throws(TOMLFileError) {
        self.displayName = displayName
        do {
            try TOMLHeaderCheck.check(text)
        } catch {
            throw TOMLFileError(file: displayName, line: error.line, key: nil,
                                problem: .syntax("a table header must start with a key, found \(error.found)"))
        }
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let parseError as TOMLParseError {
            throw TOMLFileError(file: displayName, line: parseError.source.begin.line, key: nil,
                                problem: .syntax(parseError.description))
        } catch {
            throw TOMLFileError(file: displayName, line: nil, key: nil, problem: .syntax("\(error)"))
        }
        guard case .table(let root) = TOMLNode(table) else {
            throw TOMLFileError(file: displayName, line: nil, key: nil, problem: .syntax("document is not a table"))
        }
        self.root = root
        self.lineIndex = TOMLKeyLineIndex(text: text)
    }

    /// Reads and parses the file at `path`.
    public init(contentsOf path: String) throws(TOMLFileError) {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            let reason = FileManager.default.fileExists(atPath: path)
                ? "not readable as UTF-8 text" : "no such file"
            throw TOMLFileError(file: path, line: nil, key: nil, problem: .unreadable(reason))
        }
        try self.init(text: text, displayName: path)
    }

    public func error(at keyPath: String?, _ problem: TOMLProblem) -> TOMLFileError {
        TOMLFileError(file: displayName, line: keyPath.flatMap { lineIndex.line(for: $0) }, key: keyPath, problem: problem)
    }

    public var rootReader: TOMLTableReader { TOMLTableReader(source: self, path: "", entries: root) }
}

/// Typed, strict access to one table. Each schema table starts with `allowOnly` so unknown keys are
/// reported before anything else, then reads its keys with the typed accessors, which name the
/// key path in every error.
public struct TOMLTableReader: Sendable {
    public let source: TOMLSource
    /// The table's own path (`""` for the root, `plugin[0]`, `storage`).
    public let path: String
    public let entries: [String: TOMLNode]

    public func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    public func error(_ key: String, _ problem: TOMLProblem) -> TOMLFileError {
        source.error(at: keyPath(key), problem)
    }

    /// Unknown keys are errors (typos must not silently fall back to defaults).
    public func allowOnly(_ known: [String]) throws(TOMLFileError) {
        for key in entries.keys.sorted() where !known.contains(key) {
            throw error(key, .unknownKey(known: known))
        }
    }

    public func contains(_ key: String) -> Bool { entries[key] != nil }

    public func string(_ key: String) throws(TOMLFileError) -> String? {
        guard let node = entries[key] else { return nil }
        guard case .string(let value) = node else { throw wrongType(key, "a string", node) }
        return value
    }

    public func requiredString(_ key: String) throws(TOMLFileError) -> String {
        guard let value = try string(key) else { throw error(key, .missingKey) }
        return value
    }

    public func integer(_ key: String) throws(TOMLFileError) -> Int64? {
        guard let node = entries[key] else { return nil }
        guard case .integer(let value) = node else { throw wrongType(key, "an integer", node) }
        return value
    }

    /// An integer within `range`; the message gives the range.
    public func integer(_ key: String, in range: ClosedRange<Int64>) throws(TOMLFileError) -> Int64? {
        guard let value = try integer(key) else { return nil }
        guard range.contains(value) else {
            throw error(key, .badValue("\(value) is out of range (\(range.lowerBound)…\(range.upperBound))"))
        }
        return value
    }

    public func boolean(_ key: String) throws(TOMLFileError) -> Bool? {
        guard let node = entries[key] else { return nil }
        guard case .boolean(let value) = node else { throw wrongType(key, "a boolean (true or false)", node) }
        return value
    }

    /// An array of strings, each with its own key path (`net.listen[1]`) for later errors.
    public func stringArray(_ key: String) throws(TOMLFileError) -> [(value: String, keyPath: String)]? {
        guard let node = entries[key] else { return nil }
        guard case .array(let items) = node else { throw wrongType(key, "an array of strings", node) }
        var result: [(value: String, keyPath: String)] = []
        for (index, item) in items.enumerated() {
            let itemPath = "\(keyPath(key))[\(index)]"
            guard case .string(let text) = item else {
                throw source.error(at: itemPath, .wrongType(expected: "a string", found: item.typeName))
            }
            result.append((text, itemPath))
        }
        return result
    }

    public func table(_ key: String) throws(TOMLFileError) -> TOMLTableReader? {
        guard let node = entries[key] else { return nil }
        guard case .table(let children) = node else { throw wrongType(key, "a table", node) }
        return TOMLTableReader(source: source, path: keyPath(key), entries: children)
    }

    /// `[[key]]` tables, or an inline array of tables.
    public func tableArray(_ key: String) throws(TOMLFileError) -> [TOMLTableReader]? {
        guard let node = entries[key] else { return nil }
        guard case .array(let items) = node else { throw wrongType(key, "an array of tables", node) }
        var readers: [TOMLTableReader] = []
        for (index, item) in items.enumerated() {
            let itemPath = "\(keyPath(key))[\(index)]"
            guard case .table(let children) = item else {
                throw source.error(at: itemPath, .wrongType(expected: "a table", found: item.typeName))
            }
            readers.append(TOMLTableReader(source: source, path: itemPath, entries: children))
        }
        return readers
    }

    private func wrongType(_ key: String, _ expected: String, _ found: TOMLNode) -> TOMLFileError {
        error(key, .wrongType(expected: expected, found: found.typeName))
    }
}
