// Local Service Discovery (BEP 14): HTTP-over-UDP-multicast announces. The plugin sends what
// `encode` returns to the multicast group through its multicast grant and feeds received
// datagrams with their source address to `decode`; the peer's address is the datagram's source IP
// with the announced port.

public enum LocalPeerDiscovery {
    public static let ipv4Group = "239.192.152.143"
    public static let ipv6Group = "ff15::efc0:988f"
    public static let port: UInt16 = 6771
    /// "send a LSD announce every 5 minutes … no more than 1 announce per minute".
    public static let announceInterval: Double = 300
    public static let minimumInterval: Double = 60
    /// Keep a packet with several infohashes below this (MTU/fragmentation).
    public static let maxDatagram = 1400

    /// The group as the core's address: "udp:239.192.152.143:6771" or "udp:[ff15::efc0:988f]:6771".
    public static func groupAddress(ipv6: Bool = false) -> String {
        "udp:" + InetText.hostPort(ipv6 ? ipv6Group : ipv4Group, port)
    }

    /// One announce with every given infohash. Use `encodeAll` to respect the 1400-byte limit.
    public static func encode(infoHashes: [[UInt8]], port: UInt16, cookie: String?, ipv6: Bool = false) -> [UInt8] {
        var s = "BT-SEARCH * HTTP/1.1\r\nHost: \(InetText.hostPort(ipv6 ? ipv6Group : ipv4Group, Self.port))\r\nPort: \(port)\r\n"
        for h in infoHashes { s += "Infohash: \(InetText.hex(h))\r\n" }
        if let cookie { s += "cookie: \(cookie)\r\n" }
        s += "\r\n\r\n"
        return Array(s.utf8)
    }

    /// As many announces as it takes to keep each at or under 1400 bytes.
    public static func encodeAll(infoHashes: [[UInt8]], port: UInt16, cookie: String?, ipv6: Bool = false) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var batch: [[UInt8]] = []
        for h in infoHashes {
            if !batch.isEmpty, encode(infoHashes: batch + [h], port: port, cookie: cookie, ipv6: ipv6).count > maxDatagram {
                out.append(encode(infoHashes: batch, port: port, cookie: cookie, ipv6: ipv6))
                batch = []
            }
            batch.append(h)
        }
        if !batch.isEmpty { out.append(encode(infoHashes: batch, port: port, cookie: cookie, ipv6: ipv6)) }
        return out
    }

    public struct Announce: Sendable, Equatable {
        public var port: UInt16
        public var infoHashes: [[UInt8]]
        public var cookie: String?

        /// The peers this announce names, given the datagram's source IP.
        public func peers(sourceHost: String) -> [PeerAddress] {
            PeerAddress(host: sourceHost, port: port).map { [$0] } ?? []
        }
    }

    public enum DecodeError: Error, Equatable, Sendable, CustomStringConvertible {
        case notLSD(String)
        case badHeader(name: String, value: String)
        case missing(String)

        public var description: String {
            switch self {
            case .notLSD(let line): "LSD: request line \"\(line)\" is not BT-SEARCH * HTTP/1.1"
            case .badHeader(let name, let value): "LSD: header \(name) has an unusable value \"\(value)\""
            case .missing(let name): "LSD: no \(name) header"
            }
        }
    }

    /// Parses an announce. Header names in any case; several Infohash lines; unknown headers ignored;
    /// bad infohash lines skipped if at least one is good. Returns nil for our own announce (cookie
    /// equal to `ownCookie`), which multicast loopback hands back to us.
    public static func decode(_ datagram: [UInt8], ownCookie: String?) throws(DecodeError) -> Announce? {
        guard datagram.count <= 8192 else { throw .notLSD("(datagram of \(datagram.count) bytes)") }
        let lines = textLines(datagram)
        guard let first = lines.first else { throw .notLSD("") }
        let words = first.split(separator: " ")
        guard words.count == 3, words[0] == "BT-SEARCH", words[1] == "*", words[2].uppercased().hasPrefix("HTTP/1.") else {
            throw .notLSD(String(first.prefix(60)))
        }
        var port: UInt16?
        var hashes: [[UInt8]] = []
        var badHash: String?
        var cookie: String?
        for line in lines.dropFirst() {
            if line.isEmpty { break }
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased().trimmingCharacters()
            let value = line[line.index(after: colon)...].trimmingSpaces()
            switch name {
            case "port":
                guard let p = UInt16(value), p != 0 else { throw .badHeader(name: "Port", value: value) }
                port = p
            case "infohash":
                if value.count == 40, let h = InetText.unhex(value) { hashes.append(h) } else { badHash = value }
            case "cookie":
                cookie = value
            default:
                continue
            }
        }
        guard let port else { throw .missing("Port") }
        if hashes.isEmpty {
            if let badHash { throw .badHeader(name: "Infohash", value: String(badHash.prefix(60))) }
            throw .missing("Infohash")
        }
        if let ownCookie, cookie == ownCookie { return nil }
        return Announce(port: port, infoHashes: hashes, cookie: cookie)
    }

    /// When to announce: every 5 minutes per torrent, at most one datagram a minute; with more
    /// torrents than fit one datagram, round-robin over them.
    public struct Scheduler: Sendable {
        public var lastSent = -Double.infinity
        var next = 0
        public init() {}

        /// The datagram to send now, or nil when it is too soon.
        public mutating func due(infoHashes: [[UInt8]], port: UInt16, cookie: String?, now: Double, ipv6: Bool = false) -> [UInt8]? {
            guard !infoHashes.isEmpty else { return nil }
            let batches = LocalPeerDiscovery.encodeAll(infoHashes: infoHashes, port: port, cookie: cookie, ipv6: ipv6)
            // With one batch, every 5 minutes; with several, spread them over the 5 minutes but
            // never faster than one a minute.
            let gap = max(LocalPeerDiscovery.minimumInterval, LocalPeerDiscovery.announceInterval / Double(batches.count))
            guard now - lastSent >= gap else { return nil }
            lastSent = now
            let d = batches[next % batches.count]
            next = (next + 1) % batches.count
            return d
        }
    }
}

extension String {
    func trimmingCharacters() -> String { Substring(self).trimmingSpaces() }
}
