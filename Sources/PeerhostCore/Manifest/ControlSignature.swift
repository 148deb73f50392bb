// Control method signatures ("(i64, string) -> bytes") and the conversion of the CLI's string
// arguments into typed values. The host validates here before anything reaches a runner; the
// runner parses the same grammar again (plan, Contract 3).
//
// Grammar: "(" [type {"," type}] ")" "->" result; type ∈ i64 f64 bool string bytes;
// result ∈ i64 f64 bytes. Spaces are free.

import Foundation

public enum ControlArgumentType: String, Sendable, CaseIterable { case i64, f64, bool, string, bytes }
public enum ControlResultType: String, Sendable, CaseIterable { case i64, f64, bytes }

public struct ControlSignature: Sendable, Hashable, CustomStringConvertible {
    public var arguments: [ControlArgumentType]
    public var result: ControlResultType

    public init(arguments: [ControlArgumentType], result: ControlResultType) {
        self.arguments = arguments
        self.result = result
    }

    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
    }

    public init(parsing text: String) throws(ParseError) {
        let grammar = "expected \"(TYPE, …) -> RESULT\" with TYPE in i64 f64 bool string bytes and RESULT in i64 f64 bytes"
        let compact = text.filter { !$0.isWhitespace }
        guard compact.hasPrefix("("), let close = compact.firstIndex(of: ")"),
              compact[close...].hasPrefix(")->") else {
            throw ParseError(description: "bad signature '\(text)': \(grammar)")
        }
        let argumentList = compact[compact.index(after: compact.startIndex)..<close]
        let resultText = String(compact[compact.index(close, offsetBy: 3)...])
        var arguments: [ControlArgumentType] = []
        if !argumentList.isEmpty {
            for name in argumentList.split(separator: ",", omittingEmptySubsequences: false) {
                guard let type = ControlArgumentType(rawValue: String(name)) else {
                    throw ParseError(description: "bad signature '\(text)': unknown argument type '\(name)' (i64 f64 bool string bytes)")
                }
                arguments.append(type)
            }
        }
        guard let result = ControlResultType(rawValue: resultText) else {
            throw ParseError(description: "bad signature '\(text)': unknown result type '\(resultText)' (i64 f64 bytes)")
        }
        self.init(arguments: arguments, result: result)
    }

    /// Canonical text, as sent to the runner: "(i64, string) -> bytes".
    public var description: String {
        "(\(arguments.map(\.rawValue).joined(separator: ", "))) -> \(result.rawValue)"
    }

    /// Converts the CLI's arguments for `method` into typed values, or says exactly what is wrong.
    public func convert(_ arguments: [ControlArgument], method: String) throws(ControlCallError) -> [ControlArgumentValue] {
        guard arguments.count == self.arguments.count else {
            throw .wrongArgumentCount(method: method, expected: self.arguments, got: arguments.count)
        }
        var values: [ControlArgumentValue] = []
        for (index, (argument, type)) in zip(arguments, self.arguments).enumerated() {
            let position = index + 1
            func bad(_ text: String) -> ControlCallError {
                .badArgument(method: method, position: position, text: text, expected: type)
            }
            switch (type, argument) {
            case (.bytes, .file(_, let contents)):
                values.append(.bytes(contents))
            case (.bytes, .unreadableFile(let literal, let reason)):
                throw .unreadableArgumentFile(method: method, position: position, literal: literal, reason: reason)
            case (.bytes, .text(let text)):
                values.append(.bytes(Array(text.utf8)))
            case (_, .unreadableFile(let text, _)), (_, .file(let text, _)), (_, .text(let text)):
                switch type {
                case .i64:
                    guard let number = Int64(text) else { throw bad(text) }
                    values.append(.i64(number))
                case .f64:
                    guard let number = Double(text), number.isFinite || text.lowercased().contains("inf") else { throw bad(text) }
                    values.append(.f64(number))
                case .bool:
                    switch text {
                    case "true": values.append(.bool(true))
                    case "false": values.append(.bool(false))
                    default: throw bad(text)
                    }
                case .string:
                    values.append(.string(text))
                case .bytes:
                    values.append(.bytes(Array(text.utf8)))
                }
            }
        }
        return values
    }
}

/// An argument as the operator gave it on the command line.
///
/// `@path` arguments are read by the CLI (the host may not see the operator's files): a `bytes`
/// parameter takes the file's contents, any other parameter the literal text, so `@home` stays a
/// valid string.
public enum ControlArgument: Sendable, Equatable, ExpressibleByStringLiteral {
    case text(String)
    case file(literal: String, contents: [UInt8])
    /// An `@path` whose file could not be read; an error only if the parameter is `bytes`.
    case unreadableFile(literal: String, reason: String)

    public init(stringLiteral value: String) { self = .text(value) }

    /// What the CLI does with one argv word: `@path` → try to read the file.
    public static func fromCommandLine(_ word: String) -> ControlArgument {
        guard word.hasPrefix("@"), word.count > 1 else { return .text(word) }
        let path = String(word.dropFirst())
        guard let data = FileManager.default.contents(atPath: path) else {
            let reason = FileManager.default.fileExists(atPath: path) ? "not readable" : "no such file"
            return .unreadableFile(literal: word, reason: reason)
        }
        return .file(literal: word, contents: Array(data))
    }
}

extension ControlArgument: Codable {
    // Wire form on the control socket: "text" | {"file":"@p","base64":"…"} | {"file":"@p","error":"…"}.
    private enum Keys: String, CodingKey { case file, base64, error }

    public init(from decoder: any Decoder) throws {
        if let text = try? decoder.singleValueContainer().decode(String.self) {
            self = .text(text)
            return
        }
        let container = try decoder.container(keyedBy: Keys.self)
        let literal = try container.decode(String.self, forKey: .file)
        if let encoded = try container.decodeIfPresent(String.self, forKey: .base64) {
            guard let data = Data(base64Encoded: encoded) else {
                throw DecodingError.dataCorruptedError(forKey: .base64, in: container, debugDescription: "not base64")
            }
            self = .file(literal: literal, contents: Array(data))
        } else {
            self = .unreadableFile(literal: literal, reason: try container.decode(String.self, forKey: .error))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .text(let text):
            var container = encoder.singleValueContainer()
            try container.encode(text)
        case .file(let literal, let contents):
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(literal, forKey: .file)
            try container.encode(Data(contents).base64EncodedString(), forKey: .base64)
        case .unreadableFile(let literal, let reason):
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(literal, forKey: .file)
            try container.encode(reason, forKey: .error)
        }
    }
}

/// A typed argument, encoded as in Contract 3: {"i64":5} {"f64":1.5} {"bool":true} {"string":"hi"}
/// {"bytes":"<base64>"}.
public enum ControlArgumentValue: Sendable, Equatable, Codable {
    case i64(Int64)
    case f64(Double)
    case bool(Bool)
    case string(String)
    case bytes([UInt8])

    private enum Keys: String, CodingKey { case i64, f64, bool, string, bytes }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Keys.self)
        if let value = try container.decodeIfPresent(Int64.self, forKey: .i64) { self = .i64(value) }
        else if let value = try container.decodeIfPresent(Double.self, forKey: .f64) { self = .f64(value) }
        else if let value = try container.decodeIfPresent(Bool.self, forKey: .bool) { self = .bool(value) }
        else if let value = try container.decodeIfPresent(String.self, forKey: .string) { self = .string(value) }
        else {
            let encoded = try container.decode(String.self, forKey: .bytes)
            guard let data = Data(base64Encoded: encoded) else {
                throw DecodingError.dataCorruptedError(forKey: .bytes, in: container, debugDescription: "not base64")
            }
            self = .bytes(Array(data))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        switch self {
        case .i64(let value): try container.encode(value, forKey: .i64)
        case .f64(let value): try container.encode(value, forKey: .f64)
        case .bool(let value): try container.encode(value, forKey: .bool)
        case .string(let value): try container.encode(value, forKey: .string)
        case .bytes(let value): try container.encode(Data(value).base64EncodedString(), forKey: .bytes)
        }
    }
}

/// A control method's result (Contract 4), encoded as {"i64":1} | {"f64":2.5} | {"bytes":"<base64>"}.
public enum ControlValue: Sendable, Equatable, Codable, CustomStringConvertible {
    case i64(Int64)
    case f64(Double)
    case bytes([UInt8])

    private enum Keys: String, CodingKey { case i64, f64, bytes }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Keys.self)
        if let value = try container.decodeIfPresent(Int64.self, forKey: .i64) { self = .i64(value) }
        else if let value = try container.decodeIfPresent(Double.self, forKey: .f64) { self = .f64(value) }
        else {
            let encoded = try container.decode(String.self, forKey: .bytes)
            guard let data = Data(base64Encoded: encoded) else {
                throw DecodingError.dataCorruptedError(forKey: .bytes, in: container, debugDescription: "not base64")
            }
            self = .bytes(Array(data))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        switch self {
        case .i64(let value): try container.encode(value, forKey: .i64)
        case .f64(let value): try container.encode(value, forKey: .f64)
        case .bytes(let value): try container.encode(Data(value).base64EncodedString(), forKey: .bytes)
        }
    }

    /// How `peerhost ctl` prints it: numbers plainly, bytes as text when valid UTF-8 (JSON results)
    /// and as lowercase hex otherwise.
    public var description: String {
        switch self {
        case .i64(let value): return String(value)
        case .f64(let value): return String(value)
        case .bytes(let value):
            if let text = String(validating: value, as: UTF8.self) { return text }
            return value.map { byte in
                let hex = String(byte, radix: 16)
                return byte < 16 ? "0" + hex : hex
            }.joined()
        }
    }
}

/// Why a control call was refused or failed; the text goes to the operator unchanged.
public enum ControlCallError: Error, Sendable, Equatable, CustomStringConvertible {
    case unknownPlugin(String, known: [String])
    case unknownMethod(plugin: String, method: String, known: [String])
    case wrongArgumentCount(method: String, expected: [ControlArgumentType], got: Int)
    case badArgument(method: String, position: Int, text: String, expected: ControlArgumentType)
    case unreadableArgumentFile(method: String, position: Int, literal: String, reason: String)
    /// The plugin is not running (state and reason from the supervisor).
    case pluginUnavailable(plugin: String, reason: String)
    /// The runner or the plugin reported an error (its text).
    case callFailed(plugin: String, method: String, message: String)

    public var description: String {
        switch self {
        case .unknownPlugin(let name, let known):
            return "no plugin named '\(name)' (configured: \(known.isEmpty ? "none" : known.joined(separator: ", ")))"
        case .unknownMethod(let plugin, let method, let known):
            return "\(plugin) has no control method '\(method)' (methods: \(known.isEmpty ? "none" : known.joined(separator: ", ")))"
        case .wrongArgumentCount(let method, let expected, let got):
            if expected.isEmpty { return "\(method) takes no arguments, got \(got)" }
            let noun = expected.count == 1 ? "argument" : "arguments"
            return "\(method) takes \(expected.count) \(noun) (\(expected.map(\.rawValue).joined(separator: ", "))), got \(got)"
        case .badArgument(let method, let position, let text, let expected):
            let article = expected == .i64 ? "an" : "a"
            let hint = expected == .bool ? " (use true or false)" : ""
            return "argument \(position) of \(method): '\(text)' is not \(article) \(expected.rawValue)\(hint)"
        case .unreadableArgumentFile(let method, let position, let literal, let reason):
            return "argument \(position) of \(method): cannot read \(literal): \(reason)"
        case .pluginUnavailable(let plugin, let reason):
            return "plugin \(plugin) is not running: \(reason)"
        case .callFailed(let plugin, let method, let message):
            return "\(plugin).\(method) failed: \(message)"
        }
    }
}
