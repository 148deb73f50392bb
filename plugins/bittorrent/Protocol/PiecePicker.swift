// Which blocks to request next (BEP 3 "piece downloading strategy", with the usual refinements):
// finish partially requested pieces first (so pieces complete, verify and become tradeable), then
// rarest-first among the pieces the peer has (random among equally rare, so peers in a swarm do not
// all chase the same piece), except that the first few pieces are picked at random (a new peer needs
// a complete piece to trade quickly, and the rarest piece is often slow to get). Endgame: once every
// missing block has been requested, the remaining blocks are requested from further peers too, never
// twice from the same peer, and the engine cancels the duplicates when a block arrives.
//
// Pure state: the engine reports what happens (peer bitfields and haves, blocks received, requests
// rejected or lost, hash results) and asks for work. Pieces are split into `blockSize` blocks, the
// last block of a piece shorter. A piece whose blocks have all arrived waits for `pieceVerified` or
// `pieceFailed` and is not picked meanwhile.

public typealias PeerKey = UInt64

/// One `request` (BEP 3): `length` bytes of piece `piece` from offset `begin`.
public struct BlockRequest: Hashable, Sendable, CustomStringConvertible {
    public let piece: Int
    public let begin: Int
    public let length: Int
    public init(piece: Int, begin: Int, length: Int) { self.piece = piece; self.begin = begin; self.length = length }
    public var description: String { "piece \(piece) +\(begin) (\(length) bytes)" }
}

public struct PiecePicker: Sendable {
    enum Slot: Equatable, Sendable {
        case wanted
        case requested([PeerKey])   // every peer it is outstanding from; more than one only in endgame
        case received
    }

    struct Partial: Sendable {
        var blocks: [Slot]
        var wanted: Int
        var received: Int
        /// The peers whose blocks were accepted, for banning when the hash check fails.
        var contributors: Set<PeerKey> = []
    }

    public let pieceCount: Int
    public let blockSize: Int
    public let randomFirstPieces: Int
    /// In endgame, at most this many peers are asked for the same block.
    public var endgameMaxPeersPerBlock = 3

    /// Verified pieces.
    public private(set) var have: Bitfield
    let sizes: [Int]
    /// How many connected peers have each piece.
    public private(set) var availability: [Int]
    var partials: [Int: Partial] = [:]
    /// Every block received, waiting for the hash check.
    public var awaitingVerification: Set<Int> { Set(pending.keys) }
    /// Pieces awaiting verification → the peers that sent their blocks.
    var pending: [Int: Set<PeerKey>] = [:]
    /// Partial or pending, per piece: the new-piece scan reads this array instead of two hash tables.
    var busy: [Bool]
    var outstanding: [PeerKey: PeerRequests] = [:]
    var rng: SplitMix64

    /// One peer's outstanding requests, and how many of them each piece has: `pick` asks which
    /// pieces the peer is fetching once per batch, and building that set from the requests (up to
    /// the queue depth, hundreds) cost more than keeping the count.
    struct PeerRequests {
        private(set) var blocks: Set<BlockRequest> = []
        private(set) var pieces: [Int: Int] = [:]

        mutating func insert(_ b: BlockRequest) {
            if blocks.insert(b).inserted { pieces[b.piece, default: 0] += 1 }
        }

        mutating func remove(_ b: BlockRequest) {
            guard blocks.remove(b) != nil, let n = pieces[b.piece] else { return }
            pieces[b.piece] = n > 1 ? n - 1 : nil
        }
    }

    public init(pieceCount: Int, pieceSize: (Int) -> Int, have: Bitfield, blockSize: Int = 16384,
                randomFirstPieces: Int = 4, rng seed: UInt64? = nil) {
        precondition(pieceCount >= 0 && have.count == pieceCount, "have has \(have.count) pieces, torrent \(pieceCount)")
        precondition(blockSize > 0, "block size must be positive")
        self.pieceCount = pieceCount
        self.blockSize = blockSize
        self.randomFirstPieces = randomFirstPieces
        self.have = have
        self.sizes = (0..<pieceCount).map { i in
            let s = pieceSize(i)
            precondition(s > 0, "piece \(i) has size \(s)")
            return s
        }
        self.availability = [Int](repeating: 0, count: pieceCount)
        self.busy = [Bool](repeating: false, count: pieceCount)
        self.rng = seed.map(SplitMix64.init(seed:)) ?? SplitMix64()
    }

    // MARK: sizes

    public func pieceSize(_ index: Int) -> Int { sizes[index] }
    public func blockCount(piece index: Int) -> Int { (sizes[index] + blockSize - 1) / blockSize }
    public func block(piece: Int, index k: Int) -> BlockRequest {
        let begin = k * blockSize
        return BlockRequest(piece: piece, begin: begin, length: min(blockSize, sizes[piece] - begin))
    }

    /// The block index of `b` when `b` is exactly one of this torrent's blocks.
    func blockIndex(_ b: BlockRequest) -> Int? {
        guard b.piece >= 0, b.piece < pieceCount, b.begin >= 0, b.begin % blockSize == 0, b.begin < sizes[b.piece] else { return nil }
        let k = b.begin / blockSize
        guard b.length == min(blockSize, sizes[b.piece] - b.begin) else { return nil }
        return k
    }

    // MARK: availability

    public mutating func peerHas(bitfield: Bitfield) {
        precondition(bitfield.count == pieceCount, "bitfield of \(bitfield.count) pieces for a torrent of \(pieceCount)")
        for i in bitfield.indices { availability[i] += 1 }
    }

    public mutating func peerHas(piece: Int) {
        precondition(piece >= 0 && piece < pieceCount, "piece \(piece) out of range")
        availability[piece] += 1
    }

    /// A peer disconnected: its pieces no longer count (pass the bitfield it had at the end).
    public mutating func peerLost(bitfield: Bitfield) {
        precondition(bitfield.count == pieceCount, "bitfield of \(bitfield.count) pieces for a torrent of \(pieceCount)")
        for i in bitfield.indices { availability[i] = max(0, availability[i] - 1) }
    }

    // MARK: state

    public var isComplete: Bool { have.isComplete }

    /// True when every block of every missing piece is requested or received (and some are missing).
    public var isEndgame: Bool {
        guard !have.isComplete else { return false }
        let untouched = pieceCount - have.setCount - pending.count - partials.count
        guard untouched == 0 else { return false }
        for p in partials.values where p.wanted > 0 { return false }
        return true
    }

    /// The requests outstanding from `peer` (for cancels on choke, and to check an arriving block
    /// was asked for: BEP 6 says an unrequested piece closes the connection).
    public func outstanding(for peer: PeerKey) -> Set<BlockRequest> { outstanding[peer]?.blocks ?? [] }

    /// Whether the block still has to be written: false for duplicates (endgame) and blocks of
    /// pieces already complete.
    public func isNeeded(_ b: BlockRequest) -> Bool {
        guard let k = blockIndex(b), let p = partials[b.piece] else { return false }
        return p.blocks[k] != .received
    }

    /// Whether `peerHas` has a piece we still lack (send `interested`).
    public func isInterested(in peerHas: Bitfield) -> Bool { peerHas.hasAny(notIn: have) }

    // MARK: picking

    public mutating func pick(for peer: PeerKey, peerHas: Bitfield, count: Int, startNew: Bool = true) -> [BlockRequest] {
        pick(for: peer, peerHas: peerHas, count: count, onlyFrom: nil, startNew: startNew)
    }

    /// `onlyFrom`: restrict to these pieces (BEP 6 allowed-fast pieces while the peer chokes us).
    /// `suggested`: pieces the peer sent `suggest piece` for (BEP 6), started before rarest-first
    /// (a seed suggests what it has in cache, or what keeps copies even in super-seeding).
    /// `startNew` false: only pieces already started. The engine holds every received block of an
    /// unfinished piece in a slot; when its slots run short, new pieces would take the slots the
    /// started ones need to finish, and with many peers none would (measured: 50 peers, 9 MB held
    /// in 32 partial pieces, no piece done for 17 s).
    public mutating func pick(for peer: PeerKey, peerHas: Bitfield, count: Int, onlyFrom: Set<Int>?,
                              suggested: [Int] = [], startNew: Bool = true) -> [BlockRequest] {
        precondition(peerHas.count == pieceCount, "bitfield of \(peerHas.count) pieces for a torrent of \(pieceCount)")
        guard count > 0 else { return [] }
        var out: [BlockRequest] = []
        func allowed(_ p: Int) -> Bool { peerHas[p] && (onlyFrom?.contains(p) ?? true) }

        // 1. Partial pieces this peer is fetching, then pieces nobody fetches any more (their
        // requests came back), the closest to complete first. A piece spread over many peers is
        // done only when its slowest block arrives, and until pieces are done we have nothing to
        // offer: in a swarm of slow peers, tit-for-tat then chokes us. So a peer keeps to its own
        // pieces, and joins pieces other peers are fetching only once no new piece is left.
        let mine = outstanding[peer]?.pieces ?? [:]
        var own: [(Int, Int)] = [], idle: [(Int, Int)] = [], others: [(Int, Int)] = []
        for (p, partial) in partials where partial.wanted > 0 && allowed(p) {
            let requested = partial.blocks.count - partial.wanted - partial.received
            if mine[p] != nil { own.append((partial.wanted, p)) } else if requested == 0 { idle.append((partial.wanted, p)) } else { others.append((partial.wanted, p)) }
        }
        for (_, p) in own.sorted(by: <) + idle.sorted(by: <) {
            take(from: p, for: peer, count: count, into: &out)
            if out.count >= count { return out }
        }

        // 2. New pieces: suggested ones, then random while we have few, then rarest-first.
        for p in suggested where startNew && out.count < count && p >= 0 && p < pieceCount && isUntouched(p) && allowed(p) {
            start(p)
            take(from: p, for: peer, count: count, into: &out)
        }
        while startNew, out.count < count, let p = newPiece(peerHas: peerHas, onlyFrom: onlyFrom) {
            start(p)
            take(from: p, for: peer, count: count, into: &out)
        }

        // 3. Pieces other peers are fetching, the closest to complete first.
        for (_, p) in others.sorted(by: <) where out.count < count {
            take(from: p, for: peer, count: count, into: &out)
        }
        if out.count >= count || !isEndgame { return out }

        // 4. Endgame: blocks outstanding elsewhere, the least duplicated first.
        var candidates: [(BlockRequest, Int)] = []
        for (p, partial) in partials where allowed(p) {
            for (k, slot) in partial.blocks.enumerated() {
                if case .requested(let peers) = slot, !peers.contains(peer), peers.count < endgameMaxPeersPerBlock {
                    candidates.append((block(piece: p, index: k), peers.count))
                }
            }
        }
        candidates.sort { ($0.1, $0.0.piece, $0.0.begin) < ($1.1, $1.0.piece, $1.0.begin) }
        for (b, _) in candidates.prefix(count - out.count) {
            let k = b.begin / blockSize
            if case .requested(let peers) = partials[b.piece]!.blocks[k] {
                partials[b.piece]!.blocks[k] = .requested(peers + [peer])
            }
            outstanding[peer, default: PeerRequests()].insert(b)
            out.append(b)
        }
        return out
    }

    func isUntouched(_ p: Int) -> Bool { !busy[p] && !have[p] }

    mutating func start(_ p: Int) {
        let n = blockCount(piece: p)
        partials[p] = Partial(blocks: [Slot](repeating: .wanted, count: n), wanted: n, received: 0)
        busy[p] = true
    }

    /// The partial is changed in place (through its dictionary index): a copy taken out and stored
    /// back copied its block array on every call.
    mutating func take(from p: Int, for peer: PeerKey, count: Int, into out: inout [BlockRequest]) {
        guard let i = partials.index(forKey: p) else { return }
        let n = partials.values[i].blocks.count
        var k = 0
        while k < n, out.count < count, partials.values[i].wanted > 0 {
            if case .wanted = partials.values[i].blocks[k] {
                partials.values[i].blocks[k] = .requested([peer])
                partials.values[i].wanted -= 1
                let b = block(piece: p, index: k)
                outstanding[peer, default: PeerRequests()].insert(b)
                out.append(b)
            }
            k += 1
        }
    }

    /// A piece nobody has started: uniformly random while fewer than `randomFirstPieces` are
    /// verified, else one of the rarest, chosen uniformly among them. Two passes (the first finds
    /// the lowest availability and how many pieces share it, the second takes the r-th of those)
    /// over the bitfield bytes, skipping bytes with no piece the peer has and we lack: no sort, no
    /// hash lookups, one random number.
    mutating func newPiece(peerHas: Bitfield, onlyFrom: Set<Int>?) -> Int? {
        let random = have.setCount < randomFirstPieces
        let busy = self.busy
        let availability = self.availability
        let peerWire = peerHas.wire
        let haveWire = have.wire
        let count = pieceCount
        let list: [Int]? = onlyFrom.map { $0.filter { $0 >= 0 && $0 < count }.sorted() }

        func forEachCandidate(_ body: (Int) -> Void) {
            if let list {
                for p in list where !busy[p] && peerWire[p >> 3] & ~haveWire[p >> 3] & (0x80 >> UInt8(p & 7)) != 0 { body(p) }
                return
            }
            for byteIndex in 0..<peerWire.count {
                var bits = peerWire[byteIndex] & ~haveWire[byteIndex]
                while bits != 0 {
                    let bit = bits.leadingZeroBitCount
                    bits &= ~(0x80 >> UInt8(bit))
                    let p = byteIndex << 3 | bit
                    if !busy[p] { body(p) }
                }
            }
        }

        var best = Int.max
        var ties = 0
        forEachCandidate { p in
            let a = random ? 0 : availability[p]
            if a < best { best = a; ties = 1 } else if a == best { ties += 1 }
        }
        guard ties > 0 else { return nil }
        var r = Int(rng.next(upperBound: UInt64(ties)))
        var chosen: Int? = nil
        forEachCandidate { p in
            guard chosen == nil, random || availability[p] == best else { return }
            if r == 0 { chosen = p }
            r -= 1
        }
        return chosen
    }

    // MARK: events

    /// A block arrived from `peer`. `alsoRequestedFrom`: peers to send `cancel` to (endgame).
    /// Duplicates and blocks of pieces not being downloaded are ignored.
    @discardableResult
    public mutating func blockReceived(_ b: BlockRequest, from peer: PeerKey) -> (pieceComplete: Bool, alsoRequestedFrom: [PeerKey]) {
        outstanding[peer]?.remove(b)
        // In place, through the dictionary index (see take).
        guard let k = blockIndex(b), let i = partials.index(forKey: b.piece) else { return (false, []) }
        var others: [PeerKey] = []
        switch partials.values[i].blocks[k] {
        case .received:
            return (false, [])
        case .requested(let peers):
            if peers.count > 1 || peers.first != peer {
                others = peers.filter { $0 != peer }
                for o in others { outstanding[o]?.remove(b) }
            }
        case .wanted:
            partials.values[i].wanted -= 1
        }
        partials.values[i].blocks[k] = .received
        partials.values[i].received += 1
        partials.values[i].contributors.insert(peer)
        if partials.values[i].received == partials.values[i].blocks.count {
            let partial = partials.remove(at: i).value
            pending[b.piece] = partial.contributors
            return (true, others)
        }
        return (false, others)
    }

    /// The request will not be answered (reject, choke without the fast extension): the block is
    /// wanted again unless another peer still has it outstanding.
    public mutating func requestFailed(_ b: BlockRequest, peer: PeerKey) {
        outstanding[peer]?.remove(b)
        guard let k = blockIndex(b), var partial = partials[b.piece],
              case .requested(var peers) = partial.blocks[k], let i = peers.firstIndex(of: peer) else { return }
        peers.remove(at: i)
        if peers.isEmpty {
            partial.blocks[k] = .wanted
            partial.wanted += 1
        } else {
            partial.blocks[k] = .requested(peers)
        }
        // A piece with nothing received and nothing outstanding is untouched again, so that
        // rarest-first, not "continue partial pieces", decides when it is picked.
        if partial.received == 0, partial.wanted == partial.blocks.count {
            partials[b.piece] = nil
            busy[b.piece] = false
        } else {
            partials[b.piece] = partial
        }
    }

    /// A peer disconnected (or choked us without the fast extension): all its requests go back.
    /// Call `peerLost(bitfield:)` as well when it disconnected.
    public mutating func peerGone(_ peer: PeerKey) {
        guard let requests = outstanding.removeValue(forKey: peer) else { return }
        for b in requests.blocks.sorted(by: { ($0.piece, $0.begin) < ($1.piece, $1.begin) }) {
            requestFailed(b, peer: peer)
        }
    }

    /// The piece's hash matched (or resume data says we have it). Returns the peers that sent it.
    @discardableResult
    public mutating func pieceVerified(_ index: Int) -> Set<PeerKey> {
        precondition(index >= 0 && index < pieceCount, "piece \(index) out of range")
        let contributors = pending.removeValue(forKey: index) ?? []
        dropPartial(index)
        busy[index] = false
        have[index] = true
        return contributors
    }

    /// The piece's hash did not match: every block is wanted again. Returns the peers that sent its
    /// blocks: a sole contributor sent bad data (ban it); with several, the engine decides (e.g. ban
    /// a peer once it appears in failed pieces repeatedly, or re-download from one peer).
    @discardableResult
    public mutating func pieceFailed(_ index: Int) -> Set<PeerKey> {
        precondition(index >= 0 && index < pieceCount, "piece \(index) out of range")
        let contributors = pending.removeValue(forKey: index) ?? []
        dropPartial(index)
        busy[index] = false
        have[index] = false
        return contributors
    }

    mutating func dropPartial(_ index: Int) {
        guard let partial = partials.removeValue(forKey: index) else { return }
        for (k, slot) in partial.blocks.enumerated() {
            if case .requested(let peers) = slot {
                let b = block(piece: index, index: k)
                for p in peers { outstanding[p]?.remove(b) }
            }
        }
    }
}

/// How many requests to keep outstanding to one peer: enough to cover the bandwidth-delay product
/// plus `queueSeconds` of transfer (libtorrent's request_queue_time idea: the queue must not run dry
/// while the next requests travel and the peer reads its disk). Grows at once, shrinks gently so a
/// short dip in the measured rate does not starve the pipe.
public struct RequestQueueDepth: Sendable {
    public let min: Int
    public let max: Int
    public var blockSize: Int
    public var queueSeconds: Double
    public private(set) var depth: Int

    public init(min: Int = 4, max: Int = 500, blockSize: Int = 16384, queueSeconds: Double = 3) {
        precondition(min >= 1 && max >= min, "queue depth bounds \(min)...\(max)")
        self.min = min
        self.max = max
        self.blockSize = blockSize
        self.queueSeconds = queueSeconds
        self.depth = min
    }

    public mutating func update(bytesPerSecond: Double, rttSeconds: Double?) {
        guard bytesPerSecond.isFinite, bytesPerSecond >= 0 else { return }
        let rtt = rttSeconds.flatMap { $0.isFinite && $0 >= 0 ? $0 : nil } ?? 0
        let wanted = (bytesPerSecond * (queueSeconds + rtt) / Double(blockSize)).rounded(.up)
        let target = Swift.min(Swift.max(wanted.isFinite ? Int(Swift.min(wanted, Double(Int32.max))) : max, min), max)
        if target >= depth {
            depth = target
        } else {
            depth = Swift.max(target, depth - Swift.max(1, (depth - target) / 4))
        }
    }
}
