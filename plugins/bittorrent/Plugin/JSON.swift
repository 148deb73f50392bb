// Just enough JSON for the plugin: the operator's config arrives as a JSON object, and control
// results and the status document are JSON by convention. No Foundation in a sandboxed plugin.

import PeerhostSDK   // jsonEscape: the SDK's escaping for control results

/// A parsed JSON value (numbers as Double; the config holds ports, counts and byte rates).
enum JSON: Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSON])
    case object([String: JSON])

    subscript(key: String) -> JSON? { if case .object(let o) = self { return o[key] }; return nil }
    var string: String? { if case .string(let s) = self { return s }; return nil }
    var number: Double? { if case .number(let n) = self { return n }; return nil }
    var int: Int? { number.flatMap { $0.isFinite && $0 == $0.rounded() && abs($0) < 1e15 ? Int($0) : nil } }
    var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    var array: [JSON]? { if case .array(let a) = self { return a }; return nil }

    struct ParseError: Error, CustomStringConvertible {
        let offset: Int
        let what: String
        var description: String { "JSON: at byte \(offset): \(what)" }
    }

    /// Parses one value filling `bytes` (whitespace around it allowed). Depth-bounded.
    static func parse(_ bytes: [UInt8]) throws(ParseError) -> JSON {
        var p = Parser(b: bytes)
        p.space()
        if p.i == bytes.count { return .object([:]) }   // an empty config is an empty table
        let v = try p.value(depth: 0)
        p.space()
        guard p.i == bytes.count else { throw ParseError(offset: p.i, what: "trailing bytes") }
        return v
    }

    struct Parser {
        let b: [UInt8]
        var i = 0
        mutating func space() { while i < b.count, [0x20, 0x09, 0x0a, 0x0d].contains(b[i]) { i += 1 } }
        mutating func expect(_ s: String) throws(ParseError) {
            let u = Array(s.utf8)
            guard i + u.count <= b.count, Array(b[i..<(i + u.count)]) == u else { throw ParseError(offset: i, what: "expected \(s)") }
            i += u.count
        }
        mutating func value(depth: Int) throws(ParseError) -> JSON {
            guard depth < 32 else { throw ParseError(offset: i, what: "nested too deep") }
            guard i < b.count else { throw ParseError(offset: i, what: "unexpected end") }
            switch b[i] {
            case UInt8(ascii: "{"):
                i += 1; space()
                var o: [String: JSON] = [:]
                if i < b.count, b[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
                while true {
                    space()
                    let k = try string()
                    space(); try expect(":"); space()
                    o[k] = try value(depth: depth + 1)
                    space()
                    guard i < b.count else { throw ParseError(offset: i, what: "unexpected end in object") }
                    if b[i] == UInt8(ascii: ",") { i += 1; continue }
                    if b[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
                    throw ParseError(offset: i, what: "expected , or }")
                }
            case UInt8(ascii: "["):
                i += 1; space()
                var a: [JSON] = []
                if i < b.count, b[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
                while true {
                    space()
                    a.append(try value(depth: depth + 1))
                    space()
                    guard i < b.count else { throw ParseError(offset: i, what: "unexpected end in array") }
                    if b[i] == UInt8(ascii: ",") { i += 1; continue }
                    if b[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
                    throw ParseError(offset: i, what: "expected , or ]")
                }
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try expect("true"); return .bool(true)
            case UInt8(ascii: "f"): try expect("false"); return .bool(false)
            case UInt8(ascii: "n"): try expect("null"); return .null
            default:
                let start = i
                while i < b.count, "+-0123456789.eE".utf8.contains(b[i]) { i += 1 }
                guard i > start, let d = Double(String(decoding: b[start..<i], as: UTF8.self)) else {
                    throw ParseError(offset: start, what: "not a JSON value")
                }
                return .number(d)
            }
        }
        mutating func string() throws(ParseError) -> String {
            guard i < b.count, b[i] == UInt8(ascii: "\"") else { throw ParseError(offset: i, what: "expected a string") }
            i += 1
            var out: [UInt8] = []
            while i < b.count {
                let c = b[i]; i += 1
                if c == UInt8(ascii: "\"") { return String(decoding: out, as: UTF8.self) }
                if c == UInt8(ascii: "\\") {
                    guard i < b.count else { break }
                    let e = b[i]; i += 1
                    switch e {
                    case UInt8(ascii: "n"): out.append(0x0a)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "r"): out.append(0x0d)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0c)
                    case UInt8(ascii: "u"):
                        guard i + 4 <= b.count, let v = UInt32(String(decoding: b[i..<(i + 4)], as: UTF8.self), radix: 16) else {
                            throw ParseError(offset: i, what: "bad \\u escape")
                        }
                        i += 4
                        out += Array(String(Unicode.Scalar(v).map(Character.init) ?? "\u{FFFD}").utf8)
                    default: out.append(e)
                    }
                } else {
                    out.append(c)
                }
            }
            throw ParseError(offset: i, what: "unterminated string")
        }
    }
}

/// Builds JSON text. Keys are written in the order given (stable output for people and tests).
struct JSONWriter {
    private(set) var text = ""
    private var needComma: [Bool] = [false]

    private mutating func separator() {
        if needComma[needComma.count - 1] { text += "," }
        needComma[needComma.count - 1] = true
    }
    private mutating func key(_ k: String?) {
        separator()
        if let k { text += "\"\(jsonEscape(k))\":" }
    }
    mutating func beginObject(_ k: String? = nil) { key(k); text += "{"; needComma.append(false) }
    mutating func endObject() { needComma.removeLast(); text += "}" }
    mutating func beginArray(_ k: String? = nil) { key(k); text += "["; needComma.append(false) }
    mutating func endArray() { needComma.removeLast(); text += "]" }
    mutating func field(_ k: String?, _ v: String) { key(k); text += "\"\(jsonEscape(v))\"" }
    mutating func field(_ k: String?, _ v: Int64) { key(k); text += String(v) }
    mutating func field(_ k: String?, _ v: Int) { key(k); text += String(v) }
    mutating func field(_ k: String?, _ v: Bool) { key(k); text += v ? "true" : "false" }
    mutating func field(_ k: String?, _ v: Double) {
        key(k)
        text += v.isFinite ? String(Double((v * 1000).rounded()) / 1000) : "0"
    }
    mutating func null(_ k: String?) { key(k); text += "null" }
}
