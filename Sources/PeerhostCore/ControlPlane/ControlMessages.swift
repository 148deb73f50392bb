// Messages on the Unix control socket (Contract 4): one newline-terminated JSON request per
// connection, one newline-terminated JSON reply.
//   {"op":"status"} | {"op":"ctl","plugin":"echo-c","method":"stats","args":["…"]}
//   → {"ok":true,"result":…} | {"ok":false,"error":"…"}
// `args` elements are strings, or {"file":"@path","base64":"…"} for a file the CLI read (see
// ControlArgument).

import Foundation

public enum ControlRequest: Sendable, Equatable {
    case status
    case ctl(plugin: String, method: String, args: [ControlArgument])
}

extension ControlRequest: Codable {
    private enum Keys: String, CodingKey { case op, plugin, method, args }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Keys.self)
        let operation = try container.decode(String.self, forKey: .op)
        switch operation {
        case "status":
            self = .status
        case "ctl":
            self = .ctl(plugin: try container.decode(String.self, forKey: .plugin),
                        method: try container.decode(String.self, forKey: .method),
                        args: try container.decodeIfPresent([ControlArgument].self, forKey: .args) ?? [])
        default:
            throw DecodingError.dataCorruptedError(forKey: .op, in: container,
                                                   debugDescription: "unknown op '\(operation)' (expected status or ctl)")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        switch self {
        case .status:
            try container.encode("status", forKey: .op)
        case .ctl(let plugin, let method, let args):
            try container.encode("ctl", forKey: .op)
            try container.encode(plugin, forKey: .plugin)
            try container.encode(method, forKey: .method)
            try container.encode(args, forKey: .args)
        }
    }
}

/// A reply: `result` when ok, `error` (operator-readable text) when not.
public struct ControlReply<Result: Codable & Sendable>: Codable, Sendable {
    public var ok: Bool
    public var result: Result?
    public var error: String?
    /// A streaming call's answer that is not its last (absent otherwise): more lines follow.
    public var more: Bool?

    public static func success(_ result: Result) -> ControlReply { ControlReply(ok: true, result: result, error: nil) }
    public static func failure(_ message: String) -> ControlReply { ControlReply(ok: false, result: nil, error: message) }
    public static func partial(_ result: Result) -> ControlReply { ControlReply(ok: true, result: result, error: nil, more: true) }

    /// One line of compact JSON, newline-terminated.
    public func line() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var bytes = (try? Array(encoder.encode(self))) ?? Array(#"{"ok":false,"error":"reply could not be encoded"}"#.utf8)
        bytes.append(0x0a)
        return bytes
    }
}

extension ControlRequest {
    public func line() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var bytes = Array(try encoder.encode(self))
        bytes.append(0x0a)
        return bytes
    }
}
