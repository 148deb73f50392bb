// Magnet links (BEP 9): magnet:?xt=urn:btih:<40 hex | 32 base32>&dn=<name>&tr=<tracker>&x.pe=<host:port>
// Parameters are percent-encoded; '+' means a space (as libtorrent and browsers write it). Indexed
// forms (`tr.1=`, `xt.1=`) count like the plain ones. Unknown parameters (ws, xl, so, …) are ignored.

/// Why a magnet link was refused: the parameter and the reason.
public struct MagnetError: Error, CustomStringConvertible, Equatable, Sendable {
    public let parameter: String
    public let reason: String
    public init(parameter: String, reason: String) {
        self.parameter = parameter
        self.reason = reason
    }
    public var description: String { parameter.isEmpty ? "magnet: \(reason)" : "magnet: \(parameter): \(reason)" }
}

public struct MagnetLink: Sendable, Equatable {
    public let infoHash: InfoHash
    public let displayName: String?
    public let trackers: [String]
    /// `x.pe` peers, "host:port" or "[v6]:port".
    public let peers: [String]

    /// Bound on the text we parse: a magnet is a short link, not a transport for megabytes.
    public static let maxLength = 64 << 10

    public init(infoHash: InfoHash, displayName: String? = nil, trackers: [String] = [], peers: [String] = []) {
        self.infoHash = infoHash
        self.displayName = displayName
        self.trackers = trackers
        self.peers = peers
    }

    public static func parse(_ uri: String) throws(MagnetError) -> MagnetLink {
        let bytes = Array(uri.utf8)
        guard bytes.count <= maxLength else { throw MagnetError(parameter: "", reason: "longer than \(maxLength) bytes") }
        let prefix = Array("magnet:?".utf8)
        guard bytes.count >= prefix.count,
              zip(bytes[0..<prefix.count], prefix).allSatisfy({ lower($0) == $1 }) else {
            throw MagnetError(parameter: "", reason: "does not start with \"magnet:?\"")
        }
        var hash: InfoHash? = nil
        var sawV2 = false
        var name: String? = nil
        var trackers: [String] = []
        var peers: [String] = []
        for pair in bytes[prefix.count...].split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            let eq = pair.firstIndex(of: UInt8(ascii: "=")) ?? pair.endIndex
            let rawKey = String(decoding: pair[pair.startIndex..<eq], as: UTF8.self)
            let rawValue = eq < pair.endIndex ? Array(pair[(eq + 1)...]) : []
            // `tr.1` → `tr`: the index only orders duplicates.
            var key = rawKey.lowercased()
            if let dot = key.lastIndex(of: "."), key[key.index(after: dot)...].allSatisfy(\.isNumber),
               key.index(after: dot) < key.endIndex {
                key = String(key[..<dot])
            }
            guard let value = percentDecode(rawValue) else {
                throw MagnetError(parameter: rawKey, reason: "bad percent-encoding")
            }
            switch key {
            case "xt":
                let text = String(decoding: value, as: UTF8.self)
                let lowered = text.lowercased()
                if lowered.hasPrefix("urn:btih:") {
                    let digits = String(text.dropFirst("urn:btih:".count))
                    let h: InfoHash?
                    switch digits.utf8.count {
                    case 40: h = InfoHash(hex: digits)
                    case 32: h = InfoHash(base32: digits)
                    default: h = nil
                    }
                    guard let h else {
                        throw MagnetError(parameter: rawKey, reason: "btih is not 40 hex or 32 base32 characters")
                    }
                    if let hash, hash != h { throw MagnetError(parameter: rawKey, reason: "names two different infohashes") }
                    hash = h
                } else if lowered.hasPrefix("urn:btmh:") {
                    sawV2 = true
                }
            case "dn":
                name = String(decoding: value, as: UTF8.self)
            case "tr":
                guard let t = String(validating: value, as: UTF8.self), !t.isEmpty else {
                    throw MagnetError(parameter: rawKey, reason: "tracker is empty or not UTF-8")
                }
                if !trackers.contains(t) { trackers.append(t) }
            case "x.pe":
                guard let p = String(validating: value, as: UTF8.self), isHostPort(p) else {
                    throw MagnetError(parameter: rawKey, reason: "peer is not host:port")
                }
                if !peers.contains(p) { peers.append(p) }
            default:
                continue
            }
        }
        guard let hash else {
            throw MagnetError(parameter: "xt", reason: sawV2
                ? "v2-only magnet links (urn:btmh) are not supported yet"
                : "no urn:btih infohash")
        }
        return MagnetLink(infoHash: hash, displayName: name, trackers: trackers, peers: peers)
    }

    /// The link, with the infohash in hex and every value percent-encoded.
    public var uri: String {
        var s = "magnet:?xt=urn:btih:" + infoHash.hex
        if let displayName { s += "&dn=" + MagnetLink.percentEncode(displayName) }
        for t in trackers { s += "&tr=" + MagnetLink.percentEncode(t) }
        for p in peers { s += "&x.pe=" + MagnetLink.percentEncode(p) }
        return s
    }

    static func lower(_ c: UInt8) -> UInt8 {
        (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(c) ? c + 32 : c
    }

    static func percentDecode(_ bytes: [UInt8]) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            switch bytes[i] {
            case UInt8(ascii: "%"):
                guard i + 2 < bytes.count, let hi = Hex.value(bytes[i + 1]), let lo = Hex.value(bytes[i + 2]) else { return nil }
                out.append(hi << 4 | lo)
                i += 3
            case UInt8(ascii: "+"):
                out.append(UInt8(ascii: " "))
                i += 1
            default:
                out.append(bytes[i])
                i += 1
            }
        }
        return out
    }

    /// RFC 3986 unreserved characters stay; every other byte becomes %XX.
    public static func percentEncode(_ text: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for c in text.utf8 {
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
                 UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.append(c)
            default:
                out.append(UInt8(ascii: "%")); out.append(hex[Int(c >> 4)]); out.append(hex[Int(c & 15)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// "host:port" or "[v6]:port" with a port in 1…65535 and a non-empty host.
    static func isHostPort(_ s: String) -> Bool {
        guard let colon = s.lastIndex(of: ":") else { return false }
        let host = s[..<colon]
        let portText = s[s.index(after: colon)...]
        guard !host.isEmpty, let port = Int(portText), (1...65535).contains(port),
              portText.allSatisfy({ $0.isASCII && $0.isNumber }) else { return false }
        if host.hasPrefix("[") { return host.hasSuffix("]") && host.count > 2 }
        return !host.contains(":")
    }
}
