// One torrent: what we have, what is being assembled, its files, peers and trackers.
import PeerhostSDK
import BitTorrentProtocol
import Crypto

final class Torrent {
    enum State: Equatable {
        /// A magnet link: the info dictionary is still being fetched from peers (BEP 9).
        case metadata
        /// Hashing data already in the save directory.
        case checking
        case downloading
        case seeding
        case paused
        case failed(String)

        var name: String {
            switch self {
            case .metadata: return "metadata"
            case .checking: return "checking"
            case .downloading: return "downloading"
            case .seeding: return "seeding"
            case .paused: return "paused"
            case .failed: return "failed"
            }
        }
    }

    let infoHash: InfoHash
    var meta: Metainfo?
    var info: InfoDictionary? { meta?.info }
    var displayName: String
    /// Where the files go: a manifest grant ("downloads") or an operator-granted absolute dir.
    let saveRoot: String
    var state: State
    /// True while the operator paused it (kept across restarts).
    var paused: Bool
    var trackers: [[String]]
    var magnetURI: String?
    /// Operator limits for this torrent, bytes/s each way (0 = none).
    var rateUp: UInt64 = 0
    var rateDown: UInt64 = 0

    var picker: PiecePicker?
    /// Pieces written to disk and verified: what we announce and serve.
    var have: Bitfield
    var files: [TorrentFileHandle] = []

    /// Pieces whose blocks are arriving, each block in a slot of its own until the hash checks.
    var assembling: [Int: PieceAssembly] = [:]
    /// Verified pieces whose blocks are being written: piece → writes outstanding.
    var writing: [Int: Int] = [:]
    /// Block digests of pieces that failed their hash, with who sent each block: when the piece
    /// later verifies, a block that differs names the peer that lied.
    var failedBlocks: [Int: [(digest: [UInt8], peer: String)]] = [:]

    var peers: Set<Connection> = []
    var addresses: [String: AddressState] = [:]
    var banned: Set<String> = []

    // Statistics: payload bytes this session and before (from resume data).
    var uploaded: Int64 = 0
    var downloaded: Int64 = 0
    var wasted: Int64 = 0
    var uploadedBefore: Int64 = 0
    var downloadedBefore: Int64 = 0
    var hashFailures: Int64 = 0
    var piecesVerified: Int64 = 0
    var bannedCount: Int64 = 0
    var downRate = RateMeter()
    var upRate = RateMeter()

    // Metadata exchange (magnet).
    var metadataAssembler: MetadataAssembler?

    // Trackers: when each announce is due.
    var nextAnnounce: Double = 0
    var announcing = false
    var announcedStarted = false
    var trackerIndex = 0
    var lastTrackerError: String?
    var trackerPeers = 0
    /// Scrapes (Trackers.swift): none until an announce with an event was accepted.
    var nextScrape = Double.infinity
    var scraping = false
    var swarm: SwarmScrape?
    var scrapeError: String?

    // Resume data: dirty since the last save; saving now.
    var resumeDirty = true
    var resumeSaving = false
    /// Syncs of files closed to make room, not yet answered: a resume record waits for them.
    var evictionSyncs = 0
    var lastResumeSave: Double = 0
    /// Verified pieces in the record being written, and in the last one the store acknowledged.
    var savingPieces = 0
    var savedPieces = 0
    var completedAnnounced = false
    /// When it was added or restored, and when its last piece was written, in this session
    /// (`info`'s download_seconds: what a benchmark or an operator compares between clients).
    var startedAt: Double?
    var completedAt: Double?

    init(infoHash: InfoHash, meta: Metainfo?, name: String, saveRoot: String, trackers: [[String]], paused: Bool) {
        self.infoHash = infoHash
        self.meta = meta
        self.displayName = name
        self.saveRoot = saveRoot
        self.trackers = trackers
        self.paused = paused
        self.have = Bitfield(count: meta?.info.pieceCount ?? 0)
        self.state = paused ? .paused : (meta == nil ? .metadata : .downloading)
        if let info = meta?.info { files = info.files.map { TorrentFileHandle(length: $0.length) } }
    }

    var isComplete: Bool { info != nil && have.isComplete }
    var progress: Double {
        guard let info else { return 0 }
        if info.totalLength == 0 { return 1 }
        var bytes: Int64 = 0
        for i in 0..<info.pieceCount where have[i] { bytes += Int64(info.pieceSize(i)) }
        return Double(bytes) / Double(info.totalLength)
    }
    var bytesLeft: Int64 {
        guard let info else { return 0 }
        var bytes: Int64 = info.totalLength
        for i in 0..<info.pieceCount where have[i] { bytes -= Int64(info.pieceSize(i)) }
        return bytes
    }
    var totalUploaded: Int64 { uploadedBefore + uploaded }
    var totalDownloaded: Int64 { downloadedBefore + downloaded }
    var ratio: Double {
        let size = Double(info?.totalLength ?? 0)
        return size > 0 ? Double(totalUploaded) / size : 0
    }
    var active: Bool { !paused && { if case .failed = state { return false }; return true }() }

    /// The file's path for file_open: `<saveRoot>/<name>` or `<saveRoot>/<name>/<path…>`.
    func path(ofFile index: Int) -> String {
        ([saveRoot] + info!.relativePath(ofFile: index)).joined(separator: "/")
    }

    /// Starts picking once the metadata is known (at add, from resume data, or after BEP 9).
    func makePicker() {
        guard let info else { return }
        picker = PiecePicker(pieceCount: info.pieceCount, pieceSize: { info.pieceSize($0) }, have: have)
    }
}

/// An address we may connect to, and how that went.
struct AddressState {
    var lastAttempt: Double = -1_000
    var failures = 0
    var connected = false
    /// Where it came from: "peer" (operator), "tracker", "pex", "dht", "lsd", "incoming".
    var source: String
    /// It had every piece when we last spoke: a seed has nothing for us once we seed too, and
    /// reconnecting to it would only get "upload to upload" hang-ups, once a second.
    var seed = false
    /// Our own listen address (a tracker lists us too): never dialled again.
    var ourselves = false
}

/// Blocks of one piece in their own slots, with the peer each came from. A class: blocks arrive one
/// at a time into `Torrent.assembling`, and a struct there was copied (its slot and sender arrays)
/// on every block.
final class PieceAssembly {
    var blocks: [Buffer?]
    var from: [String]
    var received = 0

    init(blockCount: Int) {
        blocks = Array(repeating: nil, count: blockCount)
        from = Array(repeating: "", count: blockCount)
    }

    var isComplete: Bool { received == blocks.count }

    /// SHA-1 over the blocks in order, straight from the slots.
    func digest() -> [UInt8] {
        var h = Insecure.SHA1()
        for b in blocks { if let b { h.update(bufferPointer: b.bytes) } }
        return Array(h.finalize())
    }

    func blockDigests() -> [[UInt8]] {
        blocks.map { b in
            guard let b else { return [] }
            var h = Insecure.SHA1()
            h.update(bufferPointer: b.bytes)
            return Array(h.finalize())
        }
    }

    func free(host: Host) { for b in blocks { if let b { host.free(b) } } }
}

/// A torrent file as the core opened it (file_open is asynchronous: operations wait for it).
struct TorrentFileHandle {
    let length: Int64
    var id: FileID?
    var opening = false
    /// Waiting for room under `max_open_files` (BitTorrentPlugin.openWaitingFiles).
    var queuedForOpen = false
    var failed: String?
    var waiting: [(FileID?) -> Void] = []
    /// Reads and writes issued on `id` and not yet answered: such a file is never closed to make room.
    var inFlight = 0
    /// Written since the last sync was asked of it: closing it to make room syncs it first.
    var dirty = false
    /// The plugin's file-use clock at its last use (the least recently used file is closed first).
    var lastUse: UInt64 = 0
}
