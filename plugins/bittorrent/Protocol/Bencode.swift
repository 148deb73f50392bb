// Bencode (BEP 3), strict: the decoder accepts only the canonical form — integers without leading
// zeros or "-0", byte-string lengths without leading zeros, dictionary keys as byte strings in
// strictly ascending raw-byte order, no trailing bytes — so encode(decode(x)) == x for every input
// it accepts. That is what makes an infohash computed from a decoded `info` dictionary equal the
// SHA-1 of the bytes on the wire. Depth and size limits bound what a hostile peer or file can make
// the decoder allocate.
// Replies from trackers and messages from peers and DHT nodes are never hashed, and real ones do
// not all sort their keys (chihaya, a common tracker, writes "interval" before "complete"): their
// limits (`.message`, `.reply`) take dictionary keys in any order. Duplicate keys are refused in
// every mode: which value would count is ambiguous.

/// A bencoded value. Byte strings are bytes, not text: a `pieces` string is binary.
public enum Bencode: Hashable, Sendable {
    case integer(Int64)
    case bytes([UInt8])
    case list([Bencode])
    /// Keys in any order here; `encode` writes them sorted by raw bytes (the canonical form).
    case dictionary([[UInt8]: Bencode])

    public static func string(_ s: String) -> Bencode { .bytes(Array(s.utf8)) }
    public static func dict(_ pairs: [(String, Bencode)]) -> Bencode {
        var d: [[UInt8]: Bencode] = [:]
        for (k, v) in pairs { d[Array(k.utf8)] = v }
        return .dictionary(d)
    }

    // MARK: accessors (nil when the value has another type)

    public var integer: Int64? { if case .integer(let v) = self { return v }; return nil }
    public var bytes: [UInt8]? { if case .bytes(let v) = self { return v }; return nil }
    public var list: [Bencode]? { if case .list(let v) = self { return v }; return nil }
    public var dictionary: [[UInt8]: Bencode]? { if case .dictionary(let v) = self { return v }; return nil }
    /// A byte string that is valid UTF-8.
    public var text: String? {
        guard let b = bytes else { return nil }
        return String(validating: b, as: UTF8.self)
    }
    public subscript(key: String) -> Bencode? { dictionary?[Array(key.utf8)] }
}

/// Where and why a bencoded input was refused.
public struct BencodeError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Kind: Equatable, Sendable {
        case truncated
        case unexpectedByte(UInt8)
        case badInteger
        case integerOverflow
        case badLength
        case tooLong(limit: Int)
        case tooDeep(limit: Int)
        case keyNotString
        case keysOutOfOrder
        case duplicateKey
        case trailingBytes
    }
    public let kind: Kind
    /// Byte offset in the input where the problem was found.
    public let offset: Int

    public var description: String {
        let what: String
        switch kind {
        case .truncated: what = "input ends inside a value"
        case .unexpectedByte(let b): what = "unexpected byte 0x\(String(b, radix: 16)) where a value starts"
        case .badInteger: what = "integer is not canonical (leading zero, \"-0\" or no digits)"
        case .integerOverflow: what = "integer does not fit in 64 bits"
        case .badLength: what = "string length is not canonical"
        case .tooLong(let limit): what = "string or container longer than the limit (\(limit))"
        case .tooDeep(let limit): what = "nested deeper than the limit (\(limit))"
        case .keyNotString: what = "dictionary key is not a byte string"
        case .keysOutOfOrder: what = "dictionary keys are not in ascending byte order"
        case .duplicateKey: what = "dictionary key appears twice"
        case .trailingBytes: what = "bytes follow the value"
        }
        return "bencode: at byte \(offset): \(what)"
    }
}

extension Bencode {
    /// The order a decoder takes dictionary keys in.
    public enum KeyOrder: Sendable {
        /// Strictly ascending raw bytes, the canonical form: encode(decode(x)) == x.
        case canonical
        /// Any order, for input that is never re-encoded or hashed.
        case any
    }

    /// Bounds and key order for untrusted input. The defaults fit a .torrent of a large torrent
    /// (pieces string of 20 bytes per piece) and stay far below what would hurt the plugin's memory
    /// limit; they take the canonical form only.
    public struct Limits: Sendable {
        public var maxDepth: Int
        public var maxStringLength: Int
        public var maxItems: Int
        public var keyOrder: KeyOrder
        public init(maxDepth: Int = 64, maxStringLength: Int = 64 << 20, maxItems: Int = 1 << 20, keyOrder: KeyOrder = .canonical) {
            self.maxDepth = maxDepth
            self.maxStringLength = maxStringLength
            self.maxItems = maxItems
            self.keyOrder = keyOrder
        }
        /// Metainfo, info dictionaries, resume records: canonical only.
        public static let `default` = Limits()
        /// Peer messages (extension handshake, ut_metadata headers, PEX, KRPC): small, keys in any order.
        public static let message = Limits(maxDepth: 16, maxStringLength: 1 << 20, maxItems: 16_384, keyOrder: .any)
        /// Tracker replies (announce, scrape): as large as the default, keys in any order.
        public static let reply = Limits(keyOrder: .any)
    }

    /// Decodes exactly one value filling all of `input`.
    public static func decode<C: Collection>(_ input: C, limits: Limits = .default) throws(BencodeError) -> Bencode
    where C.Element == UInt8 {
        let bytes = Array(input)
        var parser = Parser(bytes: bytes, limits: limits)
        let value = try parser.value(depth: 0)
        guard parser.position == bytes.count else { throw BencodeError(kind: .trailingBytes, offset: parser.position) }
        return value
    }

    /// Decodes one value at the start of `input` and says how many bytes it took (ut_metadata data
    /// messages carry raw bytes after a bencoded header).
    public static func decodePrefix<C: Collection>(_ input: C, limits: Limits = .message) throws(BencodeError) -> (Bencode, Int)
    where C.Element == UInt8 {
        var parser = Parser(bytes: Array(input), limits: limits)
        let value = try parser.value(depth: 0)
        return (value, parser.position)
    }

    /// The canonical encoding.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        encode(into: &out)
        return out
    }

    public func encode(into out: inout [UInt8]) {
        switch self {
        case .integer(let v):
            out.append(UInt8(ascii: "i")); out.append(contentsOf: String(v).utf8); out.append(UInt8(ascii: "e"))
        case .bytes(let b):
            out.append(contentsOf: String(b.count).utf8); out.append(UInt8(ascii: ":")); out.append(contentsOf: b)
        case .list(let items):
            out.append(UInt8(ascii: "l"))
            for item in items { item.encode(into: &out) }
            out.append(UInt8(ascii: "e"))
        case .dictionary(let d):
            out.append(UInt8(ascii: "d"))
            for key in d.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
                Bencode.bytes(key).encode(into: &out)
                d[key]!.encode(into: &out)
            }
            out.append(UInt8(ascii: "e"))
        }
    }

    struct Parser {
        let bytes: [UInt8]
        let limits: Limits
        var position = 0
        var items = 0

        init(bytes: [UInt8], limits: Limits) { self.bytes = bytes; self.limits = limits }

        mutating func value(depth: Int) throws(BencodeError) -> Bencode {
            guard depth <= limits.maxDepth else { throw BencodeError(kind: .tooDeep(limit: limits.maxDepth), offset: position) }
            guard position < bytes.count else { throw BencodeError(kind: .truncated, offset: position) }
            items += 1
            guard items <= limits.maxItems else { throw BencodeError(kind: .tooLong(limit: limits.maxItems), offset: position) }
            switch bytes[position] {
            case UInt8(ascii: "i"):
                position += 1
                let v = try integer(until: UInt8(ascii: "e"))
                return .integer(v)
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                return .bytes(try string())
            case UInt8(ascii: "l"):
                position += 1
                var list: [Bencode] = []
                while true {
                    guard position < bytes.count else { throw BencodeError(kind: .truncated, offset: position) }
                    if bytes[position] == UInt8(ascii: "e") { position += 1; return .list(list) }
                    list.append(try value(depth: depth + 1))
                }
            case UInt8(ascii: "d"):
                position += 1
                var dict: [[UInt8]: Bencode] = [:]
                var previous: [UInt8]? = nil
                while true {
                    guard position < bytes.count else { throw BencodeError(kind: .truncated, offset: position) }
                    if bytes[position] == UInt8(ascii: "e") { position += 1; return .dictionary(dict) }
                    let keyOffset = position
                    guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[position]) else {
                        throw BencodeError(kind: .keyNotString, offset: position)
                    }
                    let key = try string()
                    switch limits.keyOrder {
                    case .canonical:
                        if let p = previous {
                            if p == key { throw BencodeError(kind: .duplicateKey, offset: keyOffset) }
                            if !p.lexicographicallyPrecedes(key) { throw BencodeError(kind: .keysOutOfOrder, offset: keyOffset) }
                        }
                        previous = key
                    case .any:
                        if dict[key] != nil { throw BencodeError(kind: .duplicateKey, offset: keyOffset) }
                    }
                    dict[key] = try value(depth: depth + 1)
                }
            default:
                throw BencodeError(kind: .unexpectedByte(bytes[position]), offset: position)
            }
        }

        /// Digits up to `terminator`, canonical: no leading zeros, no "-0", at least one digit.
        mutating func integer(until terminator: UInt8) throws(BencodeError) -> Int64 {
            let start = position
            var negative = false
            if position < bytes.count, bytes[position] == UInt8(ascii: "-") { negative = true; position += 1 }
            let digitsStart = position
            var magnitude: UInt64 = 0
            while position < bytes.count, bytes[position] != terminator {
                let c = bytes[position]
                guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") else {
                    throw BencodeError(kind: .badInteger, offset: position)
                }
                let (m1, o1) = magnitude.multipliedReportingOverflow(by: 10)
                let (m2, o2) = m1.addingReportingOverflow(UInt64(c - UInt8(ascii: "0")))
                guard !o1, !o2 else { throw BencodeError(kind: .integerOverflow, offset: start) }
                magnitude = m2
                position += 1
            }
            guard position < bytes.count else { throw BencodeError(kind: .truncated, offset: position) }
            let digits = position - digitsStart
            guard digits > 0,
                  !(digits > 1 && bytes[digitsStart] == UInt8(ascii: "0")),
                  !(negative && magnitude == 0) else { throw BencodeError(kind: .badInteger, offset: start) }
            position += 1   // the terminator
            if negative {
                guard magnitude <= UInt64(Int64.max) + 1 else { throw BencodeError(kind: .integerOverflow, offset: start) }
                return magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)
            }
            guard magnitude <= UInt64(Int64.max) else { throw BencodeError(kind: .integerOverflow, offset: start) }
            return Int64(magnitude)
        }

        mutating func string() throws(BencodeError) -> [UInt8] {
            let start = position
            var length = 0
            while position < bytes.count, bytes[position] != UInt8(ascii: ":") {
                let c = bytes[position]
                guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") else { throw BencodeError(kind: .badLength, offset: position) }
                length = length * 10 + Int(c - UInt8(ascii: "0"))
                guard length <= limits.maxStringLength else {
                    throw BencodeError(kind: .tooLong(limit: limits.maxStringLength), offset: start)
                }
                position += 1
            }
            guard position < bytes.count else { throw BencodeError(kind: .truncated, offset: position) }
            guard position > start, !(position - start > 1 && bytes[start] == UInt8(ascii: "0")) else {
                throw BencodeError(kind: .badLength, offset: start)
            }
            position += 1   // ':'
            guard bytes.count - position >= length else { throw BencodeError(kind: .truncated, offset: bytes.count) }
            defer { position += length }
            return Array(bytes[position..<(position + length)])
        }
    }
}
