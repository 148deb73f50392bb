// Peer addresses and the compact peer format (BEP 23 for trackers, BEP 11 for PEX, BEP 5 for the
// DHT's "values"): 4 address bytes + 2 port bytes per IPv4 peer, 16 + 2 per IPv6 peer, big-endian.
// Text forms follow RFC 5952 for IPv6 (lowercase, longest zero run as "::"), so one address has one
// spelling and equal addresses compare equal as text too.

/// A peer's IP address and TCP port.
public struct PeerAddress: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// 4 bytes (IPv4) or 16 bytes (IPv6).
    public let ip: [UInt8]
    public let port: UInt16
    /// "1.2.3.4" or "2001:db8::1".
    public let host: String

    public init?(ip: [UInt8], port: UInt16) {
        switch ip.count {
        case 4: host = IPText.v4(ip)
        case 16: host = IPText.v6(ip)
        default: return nil
        }
        self.ip = ip
        self.port = port
    }

    /// From a textual address ("1.2.3.4", "::1"; no brackets).
    public init?(host: String, port: UInt16) {
        guard let bytes = IPText.parse(host) else { return nil }
        self.init(ip: bytes, port: port)
    }

    /// "1.2.3.4:6881" or "[::1]:6881" (what `--peer HOST:PORT` takes).
    public init?(parsing text: String) {
        let chars = Array(text.utf8)
        let hostPart: [UInt8]
        let portPart: [UInt8]
        if chars.first == UInt8(ascii: "[") {
            guard let close = chars.firstIndex(of: UInt8(ascii: "]")), close + 1 < chars.count,
                  chars[close + 1] == UInt8(ascii: ":") else { return nil }
            hostPart = Array(chars[1..<close])
            portPart = Array(chars[(close + 2)...])
        } else {
            guard let colon = chars.lastIndex(of: UInt8(ascii: ":")),
                  !chars[..<colon].contains(UInt8(ascii: ":")) else { return nil }
            hostPart = Array(chars[..<colon])
            portPart = Array(chars[(colon + 1)...])
        }
        guard !portPart.isEmpty, portPart.count <= 5, portPart.allSatisfy({ $0 >= 48 && $0 <= 57 }),
              let port = UInt16(String(decoding: portPart, as: UTF8.self)) else { return nil }
        self.init(host: String(decoding: hostPart, as: UTF8.self), port: port)
    }

    public var isIPv6: Bool { ip.count == 16 }

    /// The SDK's connect address: "tcp:1.2.3.4:6881" / "tcp:[::1]:6881".
    public var address: String { "tcp:" + hostPort }
    /// "1.2.3.4:6881" / "[::1]:6881".
    public var hostPort: String { isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }
    public var description: String { hostPort }

    /// 6 or 18 bytes.
    public var compact: [UInt8] { ip + [UInt8(port >> 8), UInt8(port & 0xff)] }

    /// IPv4 first, then by bytes and port (a stable order for messages and tests).
    public static func < (a: PeerAddress, b: PeerAddress) -> Bool {
        if a.ip.count != b.ip.count { return a.ip.count < b.ip.count }
        if a.ip != b.ip { return a.ip.lexicographicallyPrecedes(b.ip) }
        return a.port < b.port
    }
}

public enum CompactPeersError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The string is not a whole number of entries.
    case badLength(bytes: Int, entrySize: Int)

    public var description: String {
        switch self {
        case .badLength(let bytes, let entrySize):
            return "compact peers: \(bytes) bytes is not a multiple of \(entrySize)"
        }
    }
}

public enum CompactPeers {
    public static func decodeIPv4(_ bytes: [UInt8]) throws(CompactPeersError) -> [PeerAddress] {
        try decode(bytes, ipLength: 4)
    }

    public static func decodeIPv6(_ bytes: [UInt8]) throws(CompactPeersError) -> [PeerAddress] {
        try decode(bytes, ipLength: 16)
    }

    /// The addresses of one family, concatenated (addresses of the other family are skipped:
    /// callers split by `isIPv6` first).
    public static func encode(_ peers: [PeerAddress], ipv6: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        for p in peers where p.isIPv6 == ipv6 { out += p.compact }
        return out
    }

    static func decode(_ bytes: [UInt8], ipLength: Int) throws(CompactPeersError) -> [PeerAddress] {
        let size = ipLength + 2
        guard bytes.count % size == 0 else { throw .badLength(bytes: bytes.count, entrySize: size) }
        var out: [PeerAddress] = []
        out.reserveCapacity(bytes.count / size)
        var i = 0
        while i < bytes.count {
            let port = UInt16(bytes[i + ipLength]) << 8 | UInt16(bytes[i + ipLength + 1])
            out.append(PeerAddress(ip: Array(bytes[i..<(i + ipLength)]), port: port)!)
            i += size
        }
        return out
    }
}

/// IP text forms without Foundation or inet_pton.
enum IPText {
    static func v4(_ b: [UInt8]) -> String { "\(b[0]).\(b[1]).\(b[2]).\(b[3])" }

    /// RFC 5952: lowercase, no leading zeros, the longest run (first on a tie) of two or more zero
    /// groups as "::"; IPv4-mapped addresses as ::ffff:a.b.c.d.
    static func v6(_ b: [UInt8]) -> String {
        if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xff && b[11] == 0xff {
            return "::ffff:" + v4(Array(b[12..<16]))
        }
        let groups = (0..<8).map { UInt16(b[2 * $0]) << 8 | UInt16(b[2 * $0 + 1]) }
        var bestStart = -1, bestLength = 0
        var i = 0
        while i < 8 {
            if groups[i] == 0 {
                var j = i
                while j < 8 && groups[j] == 0 { j += 1 }
                if j - i > bestLength { bestStart = i; bestLength = j - i }
                i = j
            } else { i += 1 }
        }
        if bestLength < 2 { bestStart = -1 }
        func hex(_ range: Range<Int>) -> String {
            groups[range].map { String($0, radix: 16) }.joined(separator: ":")
        }
        if bestStart < 0 { return hex(0..<8) }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLength)..<8)
    }

    /// Dotted quad or IPv6 text (with "::" and an optional trailing dotted quad); nil otherwise.
    static func parse(_ s: String) -> [UInt8]? {
        if !s.contains(":") { return parseV4(Substring(s)) }
        return parseV6(s)
    }

    static func parseV4(_ s: Substring) -> [UInt8]? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [UInt8] = []
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
                  !(p.count > 1 && p.hasPrefix("0")), let v = UInt8(p) else { return nil }
            out.append(v)
        }
        return out
    }

    static func isHexDigit(_ c: UInt8) -> Bool {
        (c >= 48 && c <= 57) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70)
    }

    static func parseV6(_ s: String) -> [UInt8]? {
        let halves = s.components(separatedByDoubleColon: ())
        guard halves.count <= 2 else { return nil }
        func groups(_ part: Substring, allowV4Tail: Bool) -> [UInt8]? {
            if part.isEmpty { return [] }
            let fields = part.split(separator: ":", omittingEmptySubsequences: false)
            var out: [UInt8] = []
            for (n, f) in fields.enumerated() {
                if allowV4Tail, n == fields.count - 1, f.contains(".") {
                    guard let v4 = parseV4(f) else { return nil }
                    out += v4
                    continue
                }
                guard !f.isEmpty, f.count <= 4, f.utf8.allSatisfy(isHexDigit), let v = UInt16(f, radix: 16) else { return nil }
                out += [UInt8(v >> 8), UInt8(v & 0xff)]
            }
            return out
        }
        if halves.count == 1 {
            guard let all = groups(halves[0], allowV4Tail: true), all.count == 16 else { return nil }
            return all
        }
        guard let head = groups(halves[0], allowV4Tail: false),
              let tail = groups(halves[1], allowV4Tail: true),
              head.count + tail.count <= 14 else { return nil }
        return head + [UInt8](repeating: 0, count: 16 - head.count - tail.count) + tail
    }
}

extension String {
    /// Splits at each "::" (no Foundation `components(separatedBy:)`).
    fileprivate func components(separatedByDoubleColon: ()) -> [Substring] {
        var parts: [Substring] = []
        var start = startIndex
        var i = startIndex
        while i < endIndex {
            let next = index(after: i)
            if self[i] == ":", next < endIndex, self[next] == ":" {
                parts.append(self[start..<i])
                i = index(after: next)
                start = i
            } else {
                i = next
            }
        }
        parts.append(self[start..<endIndex])
        return parts
    }
}
