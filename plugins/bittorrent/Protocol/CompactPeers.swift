// Peer addresses and the compact peer format (BEP 23 for trackers, BEP 11 for PEX, BEP 5 for the
// DHT's "values"): 4 address bytes + 2 port bytes per IPv4 peer, 16 + 2 per IPv6 peer, big-endian.
// (One type for trackers, PEX and the DHT.) Text forms follow RFC 5952 for IPv6 (lowercase, longest zero run as "::"), so one address has one
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
        case 4: host = InetText.formatIPv4(ip)
        case 16: host = InetText.formatIPv6(ip)
        default: return nil
        }
        self.ip = ip
        self.port = port
    }

    /// From a textual address ("1.2.3.4", "::1"; no brackets).
    public init?(host: String, port: UInt16) {
        guard let bytes = InetText.parse(host) else { return nil }
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

    /// Tracker and DHT answers: whole entries only, a trailing partial entry and port-0 entries
    /// (nobody listens there) skipped rather than failing the whole list.
    public static func lenientIPv4(_ bytes: [UInt8]) -> [PeerAddress] {
        ((try? decode(Array(bytes.prefix(bytes.count - bytes.count % 6)), ipLength: 4)) ?? []).filter { $0.port != 0 }
    }
    public static func lenientIPv6(_ bytes: [UInt8]) -> [PeerAddress] {
        ((try? decode(Array(bytes.prefix(bytes.count - bytes.count % 18)), ipLength: 16)) ?? []).filter { $0.port != 0 }
    }
    public static func encodeIPv4(_ peers: [PeerAddress]) -> [UInt8] { encode(peers) }
    public static func encodeIPv6(_ peers: [PeerAddress]) -> [UInt8] { encode(peers, ipv6: true) }

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
