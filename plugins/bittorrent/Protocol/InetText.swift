// IP address text <-> bytes without Foundation or inet_pton (the protocol target is pure Swift).
// Trackers, LPD and the DHT all carry addresses both ways: as text in URLs, headers and the
// "udp:IP:port" / "tcp:IP:port" strings the core understands, and as 4- or 16-byte network-order
// fields in compact peer and node info.

public enum InetText {
    /// "1.2.3.4" -> [1, 2, 3, 4]; nil unless exactly four decimal octets 0...255 (no leading zeros
    /// beyond "0" itself, so "01.2.3.4" is refused: some resolvers read that as octal).
    public static func parseIPv4(_ s: Substring) -> [UInt8]? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(4)
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
            if p.count > 1 && p.first == "0" { return nil }
            guard let v = UInt16(p), v <= 255 else { return nil }
            out.append(UInt8(v))
        }
        return out
    }

    public static func parseIPv4(_ s: String) -> [UInt8]? { parseIPv4(Substring(s)) }

    /// RFC 4291 text form (with "::" and an optional trailing dotted IPv4) -> 16 bytes.
    /// A zone ("%eth0") is refused: it has no meaning in a compact peer entry.
    public static func parseIPv6(_ s: Substring) -> [UInt8]? {
        guard !s.isEmpty, !s.contains("%") else { return nil }
        var text = s
        var tail: [UInt8] = []   // trailing embedded IPv4
        if let lastColon = text.lastIndex(of: ":"), text[text.index(after: lastColon)...].contains(".") {
            guard let v4 = parseIPv4(text[text.index(after: lastColon)...]) else { return nil }
            tail = v4
            text = text[...lastColon]
            // "::1.2.3.4" leaves "::", "64:ff9b::1.2.3.4" leaves "64:ff9b::", "a:b:c:d:e:f:1.2.3.4" leaves "…f:"
            if text.hasSuffix(":") && !text.hasSuffix("::") { text = text.dropLast() }
        }
        let groupsWanted = (16 - tail.count) / 2
        func groups(_ part: Substring) -> [UInt16]? {
            if part.isEmpty { return [] }
            var g: [UInt16] = []
            for h in part.split(separator: ":", omittingEmptySubsequences: false) {
                // Hex digits only: UInt16(_:radix:) alone would take "+1".
                guard !h.isEmpty, h.count <= 4, h.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 | 0x20 >= 97 && $0 | 0x20 <= 102) }),
                      let v = UInt16(h, radix: 16) else { return nil }
                g.append(v)
            }
            return g
        }
        var words: [UInt16]
        if let range = text.firstRange(of: "::") {
            guard let head = groups(text[..<range.lowerBound]),
                  let rest = groups(text[range.upperBound...]),
                  !text[range.upperBound...].contains("::"),
                  head.count + rest.count < groupsWanted else { return nil }
            words = head + Array(repeating: 0, count: groupsWanted - head.count - rest.count) + rest
        } else {
            guard let all = groups(text), all.count == groupsWanted else { return nil }
            words = all
        }
        var out: [UInt8] = []
        out.reserveCapacity(16)
        for w in words { out.append(UInt8(w >> 8)); out.append(UInt8(w & 0xff)) }
        out.append(contentsOf: tail)
        return out.count == 16 ? out : nil
    }

    public static func parseIPv6(_ s: String) -> [UInt8]? { parseIPv6(Substring(s)) }

    /// Either family: 4 or 16 bytes.
    public static func parse(_ s: String) -> [UInt8]? { parseIPv4(s) ?? parseIPv6(s) }

    public static func formatIPv4<C: Collection>(_ b: C) -> String where C.Element == UInt8 {
        b.map { String($0) }.joined(separator: ".")
    }

    /// RFC 5952 canonical text: lowercase, no leading zeros, the longest run (>= 2) of zero groups
    /// as "::" (the first one on a tie), IPv4-mapped addresses as ::ffff:a.b.c.d (section 5).
    public static func formatIPv6<C: Collection>(_ b: C) -> String where C.Element == UInt8 {
        let bytes = Array(b)
        precondition(bytes.count == 16)
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff {
            return "::ffff:" + formatIPv4(bytes[12..<16])
        }
        var words: [UInt16] = []
        for i in stride(from: 0, to: 16, by: 2) { words.append(UInt16(bytes[i]) << 8 | UInt16(bytes[i + 1])) }
        var bestStart = -1, bestLen = 0, i = 0
        while i < 8 {
            if words[i] == 0 {
                var j = i
                while j < 8 && words[j] == 0 { j += 1 }
                if j - i > bestLen { bestStart = i; bestLen = j - i }
                i = j
            } else { i += 1 }
        }
        func hex(_ ws: ArraySlice<UInt16>) -> String { ws.map { String($0, radix: 16) }.joined(separator: ":") }
        if bestLen < 2 { return hex(words[...]) }
        return hex(words[..<bestStart]) + "::" + hex(words[(bestStart + bestLen)...])
    }

    /// 4 bytes -> dotted quad, 16 -> RFC 5952.
    public static func format(_ b: [UInt8]) -> String {
        b.count == 4 ? formatIPv4(b) : formatIPv6(b)
    }

    /// "host:port" as a URL authority or an address string needs it: IPv6 in brackets.
    public static func hostPort(_ host: String, _ port: UInt16) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    public static func hex<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes { out.append(hexDigits[Int(b >> 4)]); out.append(hexDigits[Int(b & 0xf)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Hex text (either case) -> bytes; nil on odd length or a non-hex character.
    public static func unhex<S: StringProtocol>(_ s: S) -> [UInt8]? {
        let u = Array(s.utf8)
        guard u.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(u.count / 2)
        var i = 0
        while i < u.count {
            guard let h = nibble(u[i]), let l = nibble(u[i + 1]) else { return nil }
            out.append(h << 4 | l)
            i += 2
        }
        return out
    }
}

// Big-endian integer reading/writing for the binary formats (UDP tracker, compact info, table file).
extension Array where Element == UInt8 {
    mutating func appendBE<T: FixedWidthInteger>(_ v: T) {
        var x = v.bigEndian
        Swift.withUnsafeBytes(of: &x) { self.append(contentsOf: $0) }
    }
}

func readBE<T: FixedWidthInteger>(_ b: [UInt8], _ offset: Int, as: T.Type = T.self) -> T {
    var v: T = 0
    for i in 0..<(T.bitWidth / 8) { v = v << 8 | T(b[offset + i]) }
    return v
}
