// Peer addresses and the compact peer formats: 6 bytes per IPv4 peer (BEP 23, also the DHT's
// "values" and PEX "added"), 18 bytes per IPv6 peer (BEP 7 "peers6", PEX "added6").
// NOTE for the merge: the wire helper's branch defines the same two types for PEX; the integrator
// keeps one copy. This file depends only on InetText (IP text <-> bytes).

/// A TCP peer as the core connects to it.
public struct PeerAddress: Hashable, Sendable, CustomStringConvertible {
    /// An IP literal (IPv6 without brackets) or, from a non-compact tracker reply, a host name.
    public let host: String
    public let port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// The core's address form: "tcp:1.2.3.4:6881" or "tcp:[::1]:6881".
    public var address: String { "tcp:" + InetText.hostPort(host, port) }
    public var description: String { InetText.hostPort(host, port) }
}

public enum CompactPeers {
    /// 6-byte entries; a trailing partial entry is ignored (a truncated list still yields its whole
    /// entries), and so are entries with port 0 (nobody listens there).
    public static func decodeIPv4(_ b: [UInt8]) -> [PeerAddress] { decode(b, stride: 6) }

    /// 18-byte entries (BEP 7).
    public static func decodeIPv6(_ b: [UInt8]) -> [PeerAddress] { decode(b, stride: 18) }

    /// Peers whose host is an IPv4 literal; others are skipped.
    public static func encodeIPv4(_ peers: [PeerAddress]) -> [UInt8] {
        var out: [UInt8] = []
        for p in peers {
            guard let ip = InetText.parseIPv4(p.host) else { continue }
            out.append(contentsOf: ip)
            out.appendBE(p.port)
        }
        return out
    }

    /// Peers whose host is an IPv6 literal; others are skipped.
    public static func encodeIPv6(_ peers: [PeerAddress]) -> [UInt8] {
        var out: [UInt8] = []
        for p in peers {
            guard InetText.parseIPv4(p.host) == nil, let ip = InetText.parseIPv6(p.host) else { continue }
            out.append(contentsOf: ip)
            out.appendBE(p.port)
        }
        return out
    }

    static func decode(_ b: [UInt8], stride: Int) -> [PeerAddress] {
        var out: [PeerAddress] = []
        out.reserveCapacity(b.count / stride)
        var i = 0
        while i + stride <= b.count {
            let ipLen = stride - 2
            let port = UInt16(b[i + ipLen]) << 8 | UInt16(b[i + ipLen + 1])
            if port != 0 {
                let host = ipLen == 4 ? InetText.formatIPv4(b[i..<(i + 4)]) : InetText.formatIPv6(b[i..<(i + 16)])
                out.append(PeerAddress(host: host, port: port))
            }
            i += stride
        }
        return out
    }
}
