// Fast resume: each torrent's metainfo, save directory, state and verified pieces live in the
// plugin's key-value store, so a restart of the plugin or the host goes on where it stopped without
// hashing or fetching verified pieces again. A piece is recorded only after its blocks were written
// and the files synced: what the store says we have is on disk.
//
// A kv call carries key and value in one 16 KiB pool slot, so the record ("t/<infohash>") stays
// small — state, counters, the verified-pieces bitfield — and the info dictionary, written once,
// is split into chunks ("i/<infohash>/<n>") read back with one kv_get each. Restoring scans the
// records in 16 partitions by the infohash's first hex digit, so one scan answer (one slot) holds
// a partition's records.
import PeerhostSDK
import BitTorrentProtocol

/// One torrent's resume record, bencoded (version 1).
struct ResumeData: Equatable {
    static let keyPrefix = Array("t/".utf8)
    static func key(_ hash: InfoHash) -> [UInt8] { keyPrefix + Array(hash.hex.utf8) }
    static func infoKey(_ hash: InfoHash, _ chunk: Int) -> [UInt8] { Array("i/\(hash.hex)/\(chunk)".utf8) }
    /// Bytes of info dictionary per kv value (key and value share one 16 KiB slot).
    static let infoChunk = 15_000
    /// The bitfield rides in the record: up to 96,000 pieces (a 12,000-byte bitfield).
    static let maxHaveBytes = 12_000

    var infoHash: InfoHash
    /// Length of the canonical info dictionary kept in chunks; 0 while a magnet's metadata is unknown.
    var infoLength: Int
    var trackers: [[String]]
    var name: String
    var saveRoot: String
    var paused: Bool
    /// Verified pieces in wire order (BEP 3 bitfield).
    var have: [UInt8]
    var uploaded: Int64
    var downloaded: Int64
    /// Peers the operator added (--peer), kept so a restart reconnects to them.
    var peers: [String]
    var rateUp: Int64 = 0
    var rateDown: Int64 = 0

    func encoded() -> [UInt8] {
        let d: [(String, Bencode)] = [
            ("v", .integer(1)),
            ("infohash", .bytes(infoHash.bytes)),
            ("trackers", .list(trackers.map { .list($0.map { Bencode.string($0) }) })),
            ("name", .string(name)),
            ("dir", .string(saveRoot)),
            ("paused", .integer(paused ? 1 : 0)),
            ("have", .bytes(have)),
            ("uploaded", .integer(uploaded)),
            ("downloaded", .integer(downloaded)),
            ("peers", .list(peers.prefix(20).map { Bencode.string($0) })),
            ("info_length", .integer(Int64(infoLength))),
            ("rate_up", .integer(rateUp)),
            ("rate_down", .integer(rateDown)),
        ]
        return Bencode.dict(d).encoded()
    }

    struct DecodeError: Error, CustomStringConvertible {
        let why: String
        var description: String { "resume data: \(why)" }
    }

    static func decode(_ bytes: [UInt8]) throws(DecodeError) -> ResumeData {
        let v: Bencode
        do { v = try Bencode.decode(bytes) } catch { throw DecodeError(why: "\(error)") }
        guard v["v"]?.integer == 1 else { throw DecodeError(why: "unknown version") }
        guard let h = v["infohash"]?.bytes, let hash = InfoHash(bytes: h) else { throw DecodeError(why: "infohash") }
        guard let dir = v["dir"]?.text, let name = v["name"]?.text, let have = v["have"]?.bytes else {
            throw DecodeError(why: "missing dir, name or have")
        }
        let trackers = (v["trackers"]?.list ?? []).map { tier in (tier.list ?? []).compactMap(\.text) }
        guard let infoLength = v["info_length"]?.integer, infoLength >= 0, infoLength <= 64 << 20 else { throw DecodeError(why: "info_length") }
        return ResumeData(infoHash: hash, infoLength: Int(infoLength), trackers: trackers, name: name, saveRoot: dir,
                          paused: v["paused"]?.integer == 1, have: have,
                          uploaded: v["uploaded"]?.integer ?? 0, downloaded: v["downloaded"]?.integer ?? 0,
                          peers: (v["peers"]?.list ?? []).compactMap(\.text),
                          rateUp: max(0, v["rate_up"]?.integer ?? 0), rateDown: max(0, v["rate_down"]?.integer ?? 0))
    }
}

extension BitTorrentPlugin {
    func resumeRecord(_ t: Torrent) -> ResumeData {
        ResumeData(infoHash: t.infoHash, infoLength: t.meta?.rawInfo.count ?? 0, trackers: t.trackers, name: t.displayName,
                   saveRoot: t.saveRoot, paused: t.paused, have: t.have.wire.count <= ResumeData.maxHaveBytes ? t.have.wire : [],
                   uploaded: t.totalUploaded, downloaded: t.totalDownloaded,
                   peers: t.addresses.filter { $0.value.source == "peer" }.map(\.key).sorted(),
                   rateUp: Int64(t.rateUp), rateDown: Int64(t.rateDown))
    }

    /// Syncs the torrent's open files, then records what is on disk.
    func saveResume(_ t: Torrent) {
        guard !t.resumeSaving else { return }
        // Files closed to make room are being synced: their pieces count once that is done.
        guard t.evictionSyncs == 0 else { t.resumeDirty = true; return }
        t.resumeSaving = true
        t.resumeDirty = false
        t.lastResumeSave = now
        let value = resumeRecord(t).encoded()
        t.savingPieces = t.have.setCount
        var syncs = 0
        for i in t.files.indices {
            guard let id = t.files[i].id, let r = try? host.fileSync(id) else { continue }
            pending[r] = .sync(t.infoHash)
            t.files[i].dirty = false   // a write issued from now on makes it dirty again
            syncs += 1
        }
        if syncs == 0 {
            putResume(t, value)
        } else {
            resumeSyncs[t.infoHash] = (syncs, value)
        }
    }

    func syncDone(_ hash: InfoHash, _ result: Result<Int64, PluginError>) {
        guard var s = resumeSyncs[hash], let t = torrents[hash] else { return }
        if case .failure(let e) = result {
            host.log(.warn, "bittorrent: \(t.displayName): sync failed: \(e); resume data not updated")
            for i in t.files.indices where t.files[i].id != nil { t.files[i].dirty = true }   // not known to be on disk
            resumeSyncs[hash] = nil
            t.resumeSaving = false
            t.resumeDirty = true
            return
        }
        s.left -= 1
        if s.left > 0 { resumeSyncs[hash] = s; return }
        resumeSyncs[hash] = nil
        putResume(t, s.value)
    }

    func putResume(_ t: Torrent, _ value: [UInt8]) {
        do {
            let r = try host.kvPut(ResumeData.key(t.infoHash), value)
            pending[r] = .resumePut(t.infoHash)
        } catch {
            t.resumeSaving = false
            t.resumeDirty = true
            host.log(.warn, "bittorrent: \(t.displayName): saving resume data: \(error)")
        }
    }

    func deleteResume(_ hash: InfoHash) {
        if let r = try? host.kvDelete(ResumeData.key(hash)) { pending[r] = .kvWrite }
    }

    /// The info dictionary in chunks, once per torrent (at add, or when a magnet's metadata came).
    func putInfo(_ t: Torrent) {
        guard let raw = t.meta?.rawInfo else { return }
        var chunk = 0
        var i = 0
        while i < raw.count {
            let part = Array(raw[i..<min(raw.count, i + ResumeData.infoChunk)])
            if let r = try? host.kvPut(ResumeData.infoKey(t.infoHash, chunk), part) { pending[r] = .kvWrite }
            chunk += 1
            i += ResumeData.infoChunk
        }
    }

    func deleteResume(_ hash: InfoHash, infoLength: Int) {
        if let r = try? host.kvDelete(ResumeData.key(hash)) { pending[r] = .kvWrite }
        for c in 0..<((infoLength + ResumeData.infoChunk - 1) / ResumeData.infoChunk) {
            if let r = try? host.kvDelete(ResumeData.infoKey(hash, c)) { pending[r] = .kvWrite }
        }
    }

    /// At start: the records of every torrent this plugin had, in 16 scans.
    func startRestore() throws(PluginError) {
        for digit in Array("0123456789abcdef") {
            let r = try host.kvScan(prefix: ResumeData.keyPrefix + Array(String(digit).utf8), limit: 10_000)
            pending[r] = .restore
        }
    }

    func restore(_ result: Result<Int64, PluginError>, _ buffer: Buffer?) {
        defer { if let buffer { host.free(buffer) } }
        guard case .success = result, let records = buffer?.kvRecords else {
            if case .failure(let e) = result { host.log(.error, "bittorrent: reading resume data: \(e)") }
            return
        }
        for (key, value) in records {
            do {
                let r = try ResumeData.decode(value)
                guard torrents[r.infoHash] == nil, restoring[r.infoHash] == nil else { continue }
                let chunks = (r.infoLength + ResumeData.infoChunk - 1) / ResumeData.infoChunk
                if chunks == 0 { try addRestored(r, info: nil); continue }
                restoring[r.infoHash] = RestoreState(record: r, chunks: Array(repeating: nil, count: chunks), left: chunks)
                for c in 0..<chunks {
                    let q = try? host.kvGet(ResumeData.infoKey(r.infoHash, c))
                    if let q { pending[q] = .restoreInfo(r.infoHash, c) }
                }
            } catch {
                host.log(.error, "bittorrent: \(String(decoding: key, as: UTF8.self)): \(error); skipped")
            }
        }
    }

    func restoreInfo(_ hash: InfoHash, _ chunk: Int, _ result: Result<Int64, PluginError>, _ buffer: Buffer?) {
        defer { if let buffer { host.free(buffer) } }
        guard var s = restoring[hash], chunk < s.chunks.count else { return }
        guard case .success = result, let b = buffer else {
            restoring[hash] = nil
            host.log(.error, "bittorrent: resume data for \(hash.hex): info chunk \(chunk) missing; skipped (add the torrent again)")
            return
        }
        if s.chunks[chunk] == nil { s.chunks[chunk] = b.array; s.left -= 1 }
        restoring[hash] = s
        guard s.left == 0 else { return }
        restoring[hash] = nil
        let info = s.chunks.flatMap { $0! }
        do {
            try addRestored(s.record, info: info)
        } catch {
            host.log(.error, "bittorrent: \(error); skipped")
        }
    }

    func addRestored(_ r: ResumeData, info infoBytes: [UInt8]?) throws(AddError) {
        var meta: Metainfo?
        if let infoBytes {
            do {
                let info = try InfoDictionary.parse(infoBytes)
                meta = Metainfo(info: info, rawInfo: infoBytes, trackers: r.trackers)
            } catch { throw AddError("resume data for \(r.infoHash.hex): \(error)") }
            guard meta!.infoHash == r.infoHash else { throw AddError("resume data for \(r.infoHash.hex): info does not match its infohash") }
        }
        let t = Torrent(infoHash: r.infoHash, meta: meta, name: r.name, saveRoot: r.saveRoot, trackers: r.trackers, paused: r.paused)
        t.startedAt = now
        if let info = meta?.info, let have = try? Bitfield(count: info.pieceCount, wire: r.have) {
            t.have = have
            if !r.paused && have.isComplete { t.state = .seeding }
        }
        t.rateUp = UInt64(r.rateUp)
        t.rateDown = UInt64(r.rateDown)
        t.uploadedBefore = r.uploaded
        t.downloadedBefore = r.downloaded
        t.resumeDirty = false
        t.savedPieces = t.have.setCount
        for p in r.peers { t.addresses[p] = AddressState(source: "peer") }
        insert(t)
        createEmptyFiles(t)
        host.log(.info, "bittorrent: resumed \(t.displayName) (\(t.infoHash.hex)): \(t.have.setCount) of \(meta?.info.pieceCount ?? 0) pieces verified")
    }
}

/// A torrent whose info dictionary chunks are being read back from the store.
struct RestoreState {
    let record: ResumeData
    var chunks: [[UInt8]?]
    var left: Int
}
