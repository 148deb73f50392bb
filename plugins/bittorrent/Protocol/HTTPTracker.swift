// HTTP tracker protocol (BEP 3 announce, BEP 23 compact peers, BEP 7 peers6, BEP 48 scrape) as
// bytes in and bytes out. The plugin owns the connection: it connects to `connectAddress` through
// the core, writes the request bytes, feeds what it reads to an HTTPResponseReader and parses the
// body. Requests are HTTP/1.0 with "Connection: close", so a response ends at the latest when the
// tracker closes the connection.
//
// https:// trackers are not available: a plugin gets plain TCP from the core and has no TLS stack
// (pulling one into a plugin under its seccomp profile is out of scope), so HTTPTracker refuses the
// URL with an error that says so, and the plugin skips that tracker (udp:// or http:// ones work).

public enum AnnounceEvent: String, Sendable, Equatable {
    case started, completed, stopped

    /// BEP 15 numbering: 0 none, 1 completed, 2 started, 3 stopped.
    var udpCode: UInt32 {
        switch self { case .completed: 1; case .started: 2; case .stopped: 3 }
    }
}

public struct AnnounceRequest: Sendable, Equatable {
    public var infoHash: [UInt8]
    public var peerID: [UInt8]
    public var port: UInt16
    public var uploaded: Int64
    public var downloaded: Int64
    public var left: Int64
    public var event: AnnounceEvent?
    /// How many peers we want; -1 lets the tracker choose (UDP), omitted from HTTP then.
    public var numWant: Int
    /// Identifies us across IP changes; the same for every announce of one session.
    public var key: UInt32
    public var compact: Bool
    /// Echo of a tracker's "tracker id" from an earlier reply.
    public var trackerID: String?

    public init(infoHash: [UInt8], peerID: [UInt8], port: UInt16, uploaded: Int64 = 0, downloaded: Int64 = 0,
                left: Int64, event: AnnounceEvent? = nil, numWant: Int = 50, key: UInt32 = 0,
                compact: Bool = true, trackerID: String? = nil) {
        self.infoHash = infoHash
        self.peerID = peerID
        self.port = port
        self.uploaded = uploaded
        self.downloaded = downloaded
        self.left = left
        self.event = event
        self.numWant = numWant
        self.key = key
        self.compact = compact
        self.trackerID = trackerID
    }
}

/// Why a tracker exchange failed; `description` names the input or the step.
public enum TrackerError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The URL could not be used; the string says why.
    case badURL(url: String, reason: String)
    /// The tracker answered with "failure reason".
    case failure(String)
    /// A status other than 200: the status line as received (and a failure reason if the body had one).
    case httpStatus(line: String, detail: String?)
    /// The HTTP response could not be read; the string names the part.
    case badHTTP(String)
    /// A limit was crossed (what, limit in bytes).
    case tooLarge(String, limit: Int)
    /// The connection closed before the response was complete.
    case truncated(String)
    /// The bencoded body was refused by the decoder.
    case bencode(BencodeError)
    /// The body decoded but a field is missing or has the wrong type or size.
    case badField(key: String, reason: String)
    /// UDP tracker: an error packet, a timeout or a malformed datagram.
    case udp(String)

    public var description: String {
        switch self {
        case .badURL(let url, let reason): "tracker URL \"\(url)\": \(reason)"
        case .failure(let text): "tracker failure: \(text)"
        case .httpStatus(let line, let detail): "tracker answered \"\(line)\"" + (detail.map { ": \($0)" } ?? "")
        case .badHTTP(let what): "tracker HTTP response: \(what)"
        case .tooLarge(let what, let limit): "tracker HTTP response: \(what) larger than \(limit) bytes"
        case .truncated(let what): "tracker HTTP response: connection closed \(what)"
        case .bencode(let e): "tracker response body: \(e)"
        case .badField(let key, let reason): "tracker response key \"\(key)\": \(reason)"
        case .udp(let what): "UDP tracker: \(what)"
        }
    }
}

/// A tracker URL by scheme: what the plugin needs to pick the transport.
public enum TrackerURL: Sendable, Equatable {
    case http(HTTPTracker)
    case udp(host: String, port: UInt16)

    public static func parse(_ url: String) throws(TrackerError) -> TrackerURL {
        let lower = url.lowercased()
        if lower.hasPrefix("udp://") {
            let (host, port, _) = try splitAuthority(url, afterScheme: url.dropFirst(6), defaultPort: nil)
            return .udp(host: host, port: port)
        }
        return .http(try HTTPTracker(url: url))
    }
}

/// "host[:port]" or "[v6][:port]" then the rest ("/path?query"), from the text after "scheme://".
func splitAuthority(_ url: String, afterScheme rest: Substring, defaultPort: UInt16?) throws(TrackerError)
    -> (host: String, port: UInt16, pathAndQuery: Substring) {
    let end = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
    var authority = rest[..<end]
    let pathAndQuery = rest[end...]
    if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }  // userinfo: dropped
    var host: Substring
    var portText: Substring? = nil
    if authority.hasPrefix("[") {
        guard let close = authority.firstIndex(of: "]") else { throw .badURL(url: url, reason: "IPv6 host without \"]\"") }
        host = authority[authority.index(after: authority.startIndex)..<close]
        let after = authority[authority.index(after: close)...]
        if !after.isEmpty {
            guard after.hasPrefix(":") else { throw .badURL(url: url, reason: "text after the IPv6 host") }
            portText = after.dropFirst()
        }
        guard InetText.parseIPv6(host) != nil else { throw .badURL(url: url, reason: "\"\(host)\" is not an IPv6 address") }
    } else if let colon = authority.lastIndex(of: ":") {
        host = authority[..<colon]
        portText = authority[authority.index(after: colon)...]
    } else {
        host = authority
    }
    guard !host.isEmpty else { throw .badURL(url: url, reason: "no host") }
    guard host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_" || $0 == ":") }) else {
        throw .badURL(url: url, reason: "host \"\(host)\" has characters a host name cannot have")
    }
    let port: UInt16
    if let portText, !portText.isEmpty {
        guard portText.allSatisfy({ $0.isASCII && $0.isNumber }), let p = UInt16(portText), p != 0 else {
            throw .badURL(url: url, reason: "port \"\(portText)\" is not 1...65535")
        }
        port = p
    } else if let defaultPort {
        port = defaultPort
    } else {
        throw .badURL(url: url, reason: "no port (a udp:// tracker URL needs one)")
    }
    return (String(host).lowercased(), port, pathAndQuery)
}

public struct HTTPTracker: Sendable, Equatable {
    public let url: String
    public let host: String
    public let port: UInt16
    /// The path without the query, at least "/".
    public let path: String
    /// The announce URL's own query (e.g. a passkey), kept in front of ours; nil when there is none.
    public let query: String?
    public var userAgent = "Peerhost/0.1"

    public init(url: String) throws(TrackerError) {
        let lower = url.lowercased()
        if lower.hasPrefix("https://") {
            throw .badURL(url: url, reason: "https trackers are not available to a plugin (the core gives it plain TCP and it has no TLS); use an http:// or udp:// tracker")
        }
        guard lower.hasPrefix("http://") else {
            throw .badURL(url: url, reason: "not an http:// URL")
        }
        let (host, port, rest) = try splitAuthority(url, afterScheme: url.dropFirst(7), defaultPort: 80)
        var pathAndQuery = rest
        if let hash = pathAndQuery.firstIndex(of: "#") { pathAndQuery = pathAndQuery[..<hash] }
        var path: Substring = pathAndQuery
        var query: Substring? = nil
        if let q = pathAndQuery.firstIndex(of: "?") {
            path = pathAndQuery[..<q]
            query = pathAndQuery[pathAndQuery.index(after: q)...]
        }
        guard !pathAndQuery.contains(where: { $0 == " " || $0 == "\r" || $0 == "\n" || !$0.isASCII }) else {
            throw .badURL(url: url, reason: "the path or query has spaces, line breaks or non-ASCII characters")
        }
        self.url = url
        self.host = host
        self.port = port
        self.path = path.isEmpty ? "/" : String(path)
        self.query = (query?.isEmpty ?? true) ? nil : String(query!)
    }

    /// "tcp:host:port" for the core's connect call (a host name is left for the core to resolve).
    public var connectAddress: String { "tcp:" + InetText.hostPort(host, port) }

    var hostHeader: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return port == 80 ? h : "\(h):\(port)"
    }

    public func announceRequestBytes(_ r: AnnounceRequest) -> [UInt8] {
        var q: [String] = []
        if let query { q.append(query) }
        q.append("info_hash=" + percentEncode(r.infoHash))
        q.append("peer_id=" + percentEncode(r.peerID))
        q.append("port=\(r.port)")
        q.append("uploaded=\(r.uploaded)")
        q.append("downloaded=\(r.downloaded)")
        q.append("left=\(r.left)")
        q.append("compact=\(r.compact ? 1 : 0)")
        if r.numWant >= 0 { q.append("numwant=\(r.numWant)") }
        q.append("key=" + InetText.hex(withUnsafeBytes(of: r.key.bigEndian, Array.init)))
        if let event = r.event { q.append("event=\(event.rawValue)") }
        if let tid = r.trackerID { q.append("trackerid=" + percentEncode(Array(tid.utf8))) }
        return request(path: path, query: q.joined(separator: "&"))
    }

    /// The BEP 48 scrape URL: the last path component must start with "announce", which becomes
    /// "scrape" ("/announce.php" -> "/scrape.php"). nil when it does not (scraping is then unsupported).
    public var scrapePath: String? {
        let slash = path.lastIndex(of: "/") ?? path.startIndex
        let lastComponent = path[path.index(after: slash)...]
        guard lastComponent.hasPrefix("announce") else { return nil }
        return String(path[...slash]) + "scrape" + String(lastComponent.dropFirst("announce".count))
    }

    public func scrapeRequestBytes(infoHashes: [[UInt8]]) -> [UInt8]? {
        guard let scrapePath else { return nil }
        var q: [String] = []
        if let query { q.append(query) }
        for h in infoHashes { q.append("info_hash=" + percentEncode(h)) }
        return request(path: scrapePath, query: q.joined(separator: "&"))
    }

    func request(path: String, query: String) -> [UInt8] {
        let target = query.isEmpty ? path : path + "?" + query
        let text = "GET \(target) HTTP/1.0\r\nHost: \(hostHeader)\r\nUser-Agent: \(userAgent)\r\n"
            + "Accept-Encoding: identity\r\nConnection: close\r\n\r\n"
        return Array(text.utf8)
    }
}

/// RFC 3986 percent-encoding for binary query values: unreserved bytes (A-Z a-z 0-9 - . _ ~) stay,
/// everything else becomes %XX with uppercase hex.
public func percentEncode(_ bytes: [UInt8]) -> String {
    let upper: [UInt8] = Array("0123456789ABCDEF".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count * 3)
    for b in bytes {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            out.append(b)
        default:
            out.append(UInt8(ascii: "%")); out.append(upper[Int(b >> 4)]); out.append(upper[Int(b & 0xf)])
        }
    }
    return String(decoding: out, as: UTF8.self)
}

/// Incremental HTTP/1.x response reader. Feed bytes as they arrive; `feed` returns true once the
/// response is complete (Content-Length reached, last chunk read); a response with neither ends at
/// EOF: call `finishAtEOF()` when the connection closes. A status other than 200 is an error that
/// quotes the status line, raised when the response is complete so a bencoded failure reason in
/// the body can be named too.
public struct HTTPResponseReader: Sendable {
    public static let maxHeaderBytes = 16 << 10
    public static let maxBodyBytes = 4 << 20

    public private(set) var status = 0
    public private(set) var statusLine = ""
    /// Header names lowercased; a repeated header keeps its last value.
    public private(set) var headers: [String: String] = [:]
    public private(set) var body: [UInt8] = []
    public private(set) var isComplete = false

    enum Framing: Sendable { case length(Int), chunked, untilClose }
    enum ChunkState: Sendable { case size, data(remaining: Int), dataEnd, trailer }
    var buffer: [UInt8] = []
    var headerDone = false
    var framing: Framing = .untilClose
    var chunk: ChunkState = .size

    public init() {}

    @discardableResult
    public mutating func feed(_ bytes: [UInt8]) throws(TrackerError) -> Bool {
        guard !isComplete else { return true }
        buffer.append(contentsOf: bytes)
        if !headerDone {
            guard let end = headerEnd() else {
                if buffer.count > Self.maxHeaderBytes { throw .tooLarge("header", limit: Self.maxHeaderBytes) }
                return false
            }
            guard end.headerLength <= Self.maxHeaderBytes else { throw .tooLarge("header", limit: Self.maxHeaderBytes) }
            try parseHeader(Array(buffer[0..<end.headerLength]))
            buffer.removeFirst(end.total)
            headerDone = true
        }
        try consumeBody()
        if isComplete { try checkStatus() }
        return isComplete
    }

    /// The connection closed: completes a read-until-close body, else the response was cut short.
    public mutating func finishAtEOF() throws(TrackerError) {
        if isComplete { return }
        guard headerDone else { throw .truncated("before the end of the header (\(buffer.count) bytes read)") }
        switch framing {
        case .untilClose:
            isComplete = true
            try checkStatus()
        case .length(let n):
            throw .truncated("after \(body.count) of \(n) body bytes (Content-Length)")
        case .chunked:
            throw .truncated("inside a chunked body after \(body.count) bytes")
        }
    }

    mutating func checkStatus() throws(TrackerError) {
        guard status == 200 else {
            var detail: String? = nil
            if let v = try? Bencode.decode(body, limits: .message), let reason = v["failure reason"]?.text { detail = reason }
            throw .httpStatus(line: statusLine, detail: detail)
        }
    }

    /// The header ends at CRLFCRLF (or LFLF from sloppy servers).
    func headerEnd() -> (headerLength: Int, total: Int)? {
        var i = 0
        while i < buffer.count {
            if buffer[i] == 10 {
                if i + 1 < buffer.count, buffer[i + 1] == 10 { return (i, i + 2) }
                if i + 2 < buffer.count, buffer[i + 1] == 13, buffer[i + 2] == 10 { return (i, i + 3) }
            }
            i += 1
        }
        return nil
    }

    mutating func parseHeader(_ raw: [UInt8]) throws(TrackerError) {
        var lines = textLines(raw)
        guard !lines.isEmpty else { throw .badHTTP("empty status line") }
        let first = lines.removeFirst()
        statusLine = String(first)
        let parts = first.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), parts[1].count == 3, let code = Int(parts[1]) else {
            throw .badHTTP("status line \"\(first.prefix(80))\" is not HTTP/1.x NNN")
        }
        status = code
        var lengths: Set<String> = []
        for line in lines where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { throw .badHTTP("header line \"\(line.prefix(80))\" has no colon") }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].drop(while: { $0 == " " || $0 == "\t" })
            var v = String(value)
            while v.last == " " || v.last == "\t" { v.removeLast() }
            if name == "content-length" { lengths.insert(v) }
            headers[name] = v
        }
        if let te = headers["transfer-encoding"], te.lowercased().contains("chunked") {
            framing = .chunked
        } else if let cl = headers["content-length"] {
            guard lengths.count == 1, cl.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(cl) else {
                throw .badHTTP("Content-Length \"\(lengths.sorted().joined(separator: ", "))\" is not one decimal number")
            }
            guard n <= Self.maxBodyBytes else { throw .tooLarge("body (Content-Length \(n))", limit: Self.maxBodyBytes) }
            framing = .length(n)
        } else {
            framing = .untilClose
        }
        // 204 and 304 have no body whatever the headers say.
        if status == 204 || status == 304 { framing = .length(0) }
    }

    mutating func consumeBody() throws(TrackerError) {
        switch framing {
        case .untilClose:
            body.append(contentsOf: buffer); buffer.removeAll()
            if body.count > Self.maxBodyBytes { throw .tooLarge("body", limit: Self.maxBodyBytes) }
        case .length(let n):
            let take = min(n - body.count, buffer.count)
            body.append(contentsOf: buffer[0..<take]); buffer.removeFirst(take)
            if body.count == n { isComplete = true }
        case .chunked:
            try consumeChunks()
        }
    }

    mutating func consumeChunks() throws(TrackerError) {
        while true {
            switch chunk {
            case .size:
                guard let nl = buffer.firstIndex(of: 10) else {
                    if buffer.count > 1024 { throw .badHTTP("chunk size line longer than 1024 bytes") }
                    return
                }
                var line = String(decoding: buffer[0..<nl], as: UTF8.self)
                buffer.removeFirst(nl + 1)
                if line.hasSuffix("\r") { line.removeLast() }
                let sizeText = line.split(separator: ";", maxSplits: 1).first.map { $0.trimmingSpaces() } ?? ""
                guard !sizeText.isEmpty, sizeText.count <= 8, let size = Int(sizeText, radix: 16) else {
                    throw .badHTTP("chunk size \"\(line.prefix(40))\" is not hexadecimal")
                }
                guard body.count + size <= Self.maxBodyBytes else { throw .tooLarge("body", limit: Self.maxBodyBytes) }
                chunk = size == 0 ? .trailer : .data(remaining: size)
            case .data(let remaining):
                let take = min(remaining, buffer.count)
                body.append(contentsOf: buffer[0..<take]); buffer.removeFirst(take)
                if take < remaining { chunk = .data(remaining: remaining - take); return }
                chunk = .dataEnd
            case .dataEnd:
                if buffer.count >= 1 && buffer[0] == 10 { buffer.removeFirst(1); chunk = .size; continue }
                guard buffer.count >= 2 else { return }
                guard buffer[0] == 13, buffer[1] == 10 else { throw .badHTTP("chunk data not followed by CRLF") }
                buffer.removeFirst(2)
                chunk = .size
            case .trailer:
                // Trailer fields until an empty line.
                guard let nl = buffer.firstIndex(of: 10) else {
                    if buffer.count > 4096 { throw .tooLarge("chunked trailer", limit: 4096) }
                    return
                }
                let empty = nl == 0 || (nl == 1 && buffer[0] == 13)
                buffer.removeFirst(nl + 1)
                if empty { isComplete = true; return }
            }
        }
    }
}

/// Lines split at LF with a trailing CR removed. Done on bytes: as a Swift String, "\r\n" is one
/// Character, so splitting text at "\n" would not split CRLF lines.
func textLines(_ bytes: [UInt8]) -> [Substring] {
    bytes.split(separator: 10, omittingEmptySubsequences: false).map { line in
        Substring(String(decoding: line.last == 13 ? line.dropLast() : line[...], as: UTF8.self))
    }
}

extension Substring {
    func trimmingSpaces() -> String {
        String(self.drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed())
    }
}

public struct AnnounceResponse: Sendable, Equatable {
    public var interval: Int
    public var minInterval: Int?
    public var peers: [PeerAddress]
    public var complete: Int?
    public var incomplete: Int?
    public var trackerID: String?
    public var warning: String?

    public init(interval: Int, minInterval: Int? = nil, peers: [PeerAddress], complete: Int? = nil,
                incomplete: Int? = nil, trackerID: String? = nil, warning: String? = nil) {
        self.interval = interval
        self.minInterval = minInterval
        self.peers = peers
        self.complete = complete
        self.incomplete = incomplete
        self.trackerID = trackerID
        self.warning = warning
    }

    /// A bencoded announce reply: compact IPv4 "peers" (BEP 23), "peers6" (BEP 7) or a list of
    /// {ip, port[, peer id]} dictionaries (BEP 3); "failure reason" becomes TrackerError.failure.
    public static func parse(bencoded: [UInt8]) throws(TrackerError) -> AnnounceResponse {
        let root: Bencode
        do { root = try Bencode.decode(bencoded, limits: .reply) } catch { throw .bencode(error) }
        guard root.dictionary != nil else { throw .badField(key: "(root)", reason: "not a dictionary") }
        if let reason = root["failure reason"] {
            throw .failure(reason.text ?? String(decoding: reason.bytes ?? [], as: UTF8.self))
        }
        guard let intervalValue = root["interval"] else { throw .badField(key: "interval", reason: "missing") }
        let interval = try nonNegative(intervalValue, key: "interval")
        var peers: [PeerAddress] = []
        if let p = root["peers"] {
            switch p {
            case .bytes(let b):
                guard b.count % 6 == 0 else { throw .badField(key: "peers", reason: "compact string of \(b.count) bytes is not a multiple of 6") }
                peers += CompactPeers.lenientIPv4(b)
            case .list(let items):
                for (i, item) in items.enumerated() {
                    guard let ip = item["ip"]?.text, !ip.isEmpty else { throw .badField(key: "peers[\(i)].ip", reason: "missing or not text") }
                    guard let port = item["port"]?.integer, port > 0, port <= 65535 else {
                        throw .badField(key: "peers[\(i)].port", reason: "missing or not 1...65535")
                    }
                    var host = ip
                    if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
                    if let v6 = InetText.parseIPv6(host), InetText.parseIPv4(host) == nil { host = InetText.formatIPv6(v6) }
                    if let a = PeerAddress(host: host, port: UInt16(port)) { peers.append(a) }   // IP literals only: the core connects to addresses
                }
            default:
                throw .badField(key: "peers", reason: "neither a compact string nor a list")
            }
        }
        if let p6 = root["peers6"] {
            guard let b = p6.bytes, b.count % 18 == 0 else { throw .badField(key: "peers6", reason: "not a string of 18-byte entries") }
            peers += CompactPeers.lenientIPv6(b)
        }
        return AnnounceResponse(
            interval: interval,
            minInterval: try root["min interval"].map { v throws(TrackerError) in try nonNegative(v, key: "min interval") },
            peers: peers,
            complete: try root["complete"].map { v throws(TrackerError) in try nonNegative(v, key: "complete") },
            incomplete: try root["incomplete"].map { v throws(TrackerError) in try nonNegative(v, key: "incomplete") },
            trackerID: root["tracker id"]?.text,
            warning: root["warning message"]?.text)
    }
}

func nonNegative(_ v: Bencode, key: String) throws(TrackerError) -> Int {
    guard let i = v.integer else { throw .badField(key: key, reason: "not an integer") }
    guard i >= 0, i <= Int64(Int32.max) else { throw .badField(key: key, reason: "\(i) is out of range") }
    return Int(i)
}

public struct ScrapeStats: Sendable, Equatable {
    /// Seeders now.
    public var complete: Int
    /// Completed downloads ever.
    public var downloaded: Int
    /// Leechers now.
    public var incomplete: Int
    public init(complete: Int, downloaded: Int, incomplete: Int) {
        self.complete = complete
        self.downloaded = downloaded
        self.incomplete = incomplete
    }
}

public struct ScrapeResponse: Sendable, Equatable {
    public var files: [[UInt8]: ScrapeStats]
    public init(files: [[UInt8]: ScrapeStats]) { self.files = files }

    /// BEP 48: {"files": {infohash: {complete, downloaded, incomplete}}}; a missing count reads 0
    /// (some trackers leave out "downloaded").
    public static func parse(bencoded: [UInt8]) throws(TrackerError) -> ScrapeResponse {
        let root: Bencode
        do { root = try Bencode.decode(bencoded, limits: .reply) } catch { throw .bencode(error) }
        if let reason = root["failure reason"] ?? root["failure_reason"] {
            throw .failure(reason.text ?? "")
        }
        guard let files = root["files"]?.dictionary else { throw .badField(key: "files", reason: "missing or not a dictionary") }
        var out: [[UInt8]: ScrapeStats] = [:]
        for (hash, stats) in files {
            guard hash.count == 20 else { throw .badField(key: "files", reason: "key of \(hash.count) bytes is not a 20-byte infohash") }
            guard stats.dictionary != nil else { throw .badField(key: "files.\(InetText.hex(hash))", reason: "not a dictionary") }
            func count(_ k: String) throws(TrackerError) -> Int {
                guard let v = stats[k] else { return 0 }
                return try nonNegative(v, key: "files.\(InetText.hex(hash)).\(k)")
            }
            out[hash] = ScrapeStats(complete: try count("complete"), downloaded: try count("downloaded"), incomplete: try count("incomplete"))
        }
        return ScrapeResponse(files: out)
    }
}
