// One peer connection: protocol state, the framer, the block being received and the send queue.
// The engine (BitTorrentPlugin) decides what to do with messages; this type keeps the bookkeeping
// and the bytes moving.
import PeerhostSDK
import BitTorrentProtocol

final class PeerConnection {
    let conn: Connection
    let outgoing: Bool
    /// "tcp:1.2.3.4:6881" — for an incoming peer, its source address (ephemeral port).
    let address: String
    /// The IP without port: bans and the allowed-fast set use it.
    let ip: String
    var torrent: Torrent?
    let connectedAt: Double

    var framer = PeerWireFramer()
    var handshakeSent = false
    var remote: Handshake?
    var remotePeerID: [UInt8] { remote?.peerID ?? [] }
    var supportsFast: Bool { remote?.supportsFast ?? false }
    var supportsExtensions: Bool { remote?.supportsExtensionProtocol ?? false }

    // Choke/interest state (BEP 3).
    var amChoking = true
    var amInterested = false
    var peerChoking = true
    var peerInterested = false

    /// What the peer has; before the torrent's metadata is known only `pendingHaveAll` /
    /// `pendingBitfield` are kept.
    var have: Bitfield?
    var pendingHaveAll = false
    var pendingBitfield: [UInt8]?
    var pendingHaves: [Int] = []
    var allowedFast: Set<Int> = []

    // Downloading from this peer.
    var outstanding = RequestQueue()
    var queueDepth = RequestQueueDepth()
    var lastPieceAt: Double
    var snubbed = false
    /// The block being streamed in: its request, its own slot, how much arrived. `buffer` is nil
    /// for a block we did not ask for (its bytes are skipped and counted as waste).
    var receiving: (request: BlockRequest, buffer: Buffer?, filled: Int)?

    // Uploading to this peer.
    var uploadQueue: [BlockRequest] = []
    var readsInFlight = 0

    // Extension protocol (BEP 10): the peer's message ids by name, its metadata size, listen port.
    var extensionIDs: [String: UInt8] = [:]
    var metadataSize: Int?
    var listenPort: UInt16?
    var metadataRequested: Set<Int> = []
    var lastPex: Double = 0
    var pexSent: Set<String> = []

    // Sending: small messages gather in `tail` (one slot); a block's slot follows its header.
    /// Buffers handed to the core in order; `block` marks a block read from disk (an upload slot).
    var queue: [(buffer: Buffer, block: Bool)] = []
    var tail: Buffer?
    var blocked = false
    var closed = false

    // Statistics: payload bytes each way, and rates over the last rate window.
    var downloaded: Int64 = 0
    var uploaded: Int64 = 0
    var downRate = RateMeter()
    var upRate = RateMeter()
    var lastReceive: Double
    var lastSend: Double

    init(conn: Connection, outgoing: Bool, address: String, now: Double) {
        self.conn = conn
        self.outgoing = outgoing
        self.address = address
        self.ip = PeerConnection.ip(of: address)
        self.banKey = PeerConnection.banKey(of: address)
        self.connectedAt = now
        self.lastReceive = now
        self.lastSend = now
        self.lastPieceAt = now
    }

    /// What a ban applies to: the IP, except on loopback, where every local peer shares one IP and
    /// only the port tells them apart (tests, and several clients on one machine).
    /// Computed once: every received block records it.
    let banKey: String
    static func banKey(of address: String) -> String {
        let ip = ip(of: address)
        return ip.hasPrefix("127.") || ip == "::1" ? address : ip
    }

    /// "tcp:1.2.3.4:5" → "1.2.3.4"; "tcp:[::1]:5" → "::1".
    static func ip(of address: String) -> String {
        var a = Substring(address)
        if a.hasPrefix("tcp:") || a.hasPrefix("udp:") { a = a.dropFirst(4) }
        if a.hasPrefix("["), let close = a.firstIndex(of: "]") { return String(a[a.index(after: a.startIndex)..<close]) }
        if let colon = a.lastIndex(of: ":") { return String(a[..<colon]) }
        return String(a)
    }

    // MARK: sending

    /// Queues a small message (everything but block payload), coalescing into the tail slot.
    func enqueue(_ message: PeerMessage, host: Host) throws(PluginError) {
        let bytes = message.encoded()
        try enqueue(bytes: bytes, host: host)
    }

    func enqueue(bytes: [UInt8], host: Host) throws(PluginError) {
        var rest = bytes[...]
        while !rest.isEmpty {
            if tail == nil { tail = try host.allocBuffer() }
            let room = tail!.capacity - tail!.offset - tail!.count
            if room == 0 { queue.append((tail!, false)); tail = nil; continue }
            let take = min(room, rest.count)
            try tail!.append(rest.prefix(take))
            rest = rest.dropFirst(take)
        }
    }

    /// Queues a block: its header, then its slot (the bytes read from the file, no copy).
    func enqueueBlock(_ request: BlockRequest, _ block: Buffer, host: Host) throws(PluginError) {
        try enqueue(.pieceHeader(piece: request.piece, begin: request.begin, length: request.length), host: host)
        if let t = tail { queue.append((t, false)); tail = nil }
        queue.append((block, true))
    }

    /// Sends what is queued until the core pushes back (PH_EAGAIN → wait for onWritable).
    /// Returns how many block slots were handed to the core; throws when the connection is gone.
    func flush(host: Host, now: Double) throws(PluginError) -> Int {
        if let t = tail, !blocked { queue.append((t, false)); tail = nil }
        guard !blocked else { return 0 }
        var sent = 0
        var blocks = 0
        defer { if sent > 0 { queue.removeFirst(sent) } }
        for q in queue {
            do {
                try host.send(conn, q.buffer)
                sent += 1
                if q.block { blocks += 1 }
                lastSend = now
            } catch .again {
                blocked = true
                return blocks
            }
        }
        return blocks
    }

    /// Frees every buffer this connection holds (on close); returns how many were block slots.
    @discardableResult
    func releaseBuffers(host: Host) -> Int {
        let blocks = queue.filter(\.block).count
        for q in queue { host.free(q.buffer) }
        queue.removeAll()
        if let t = tail { host.free(t); tail = nil }
        if let r = receiving, let b = r.buffer { host.free(b) }
        receiving = nil
        return blocks
    }
}

/// Bytes per second over a sliding window of one-second buckets.
struct RateMeter {
    private var buckets = [Double](repeating: 0, count: 5)
    private var current = 0.0
    private var second: Int = 0

    mutating func add(_ bytes: Int, now: Double) {
        roll(now)
        current += Double(bytes)
    }

    mutating func roll(_ now: Double) {
        let s = Int(now)
        if s != second {
            let steps = min(s - second, buckets.count)
            for _ in 0..<max(steps, 0) { buckets.removeFirst(); buckets.append(current); current = 0 }
            second = s
        }
    }

    /// Average over the last full seconds.
    mutating func rate(now: Double) -> Double {
        roll(now)
        return buckets.reduce(0, +) / Double(buckets.count)
    }
}
