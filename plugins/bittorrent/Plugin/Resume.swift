// Fast resume: each torrent's metainfo, save directory, state and verified pieces live in the
// plugin's key-value store (one key per torrent), so a restart of the plugin or the host goes on
// where it stopped without hashing or fetching verified pieces again. A piece is recorded only
// after its blocks were written and the files synced: what the store says we have is on disk.
import PeerhostSDK
import BitTorrentProtocol

/// One torrent's resume record, bencoded (version 1).
struct ResumeData: Equatable {
    static let keyPrefix = Array("t/".utf8)
    static func key(_ hash: InfoHash) -> [UInt8] { keyPrefix + Array(hash.hex.utf8) }

    var infoHash: InfoHash
    /// The canonical info dictionary; nil while a magnet's metadata is unknown.
    var info: [UInt8]?
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

    func encoded() -> [UInt8] {
        var d: [(String, Bencode)] = [
            ("v", .integer(1)),
            ("infohash", .bytes(infoHash.bytes)),
            ("trackers", .list(trackers.map { .list($0.map { Bencode.string($0) }) })),
            ("name", .string(name)),
            ("dir", .string(saveRoot)),
            ("paused", .integer(paused ? 1 : 0)),
            ("have", .bytes(have)),
            ("uploaded", .integer(uploaded)),
            ("downloaded", .integer(downloaded)),
            ("peers", .list(peers.map { Bencode.string($0) })),
        ]
        if let info { d.append(("info", .bytes(info))) }
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
        return ResumeData(infoHash: hash, info: v["info"]?.bytes, trackers: trackers, name: name, saveRoot: dir,
                          paused: v["paused"]?.integer == 1, have: have,
                          uploaded: v["uploaded"]?.integer ?? 0, downloaded: v["downloaded"]?.integer ?? 0,
                          peers: (v["peers"]?.list ?? []).compactMap(\.text))
    }
}

extension BitTorrentPlugin {
    func resumeRecord(_ t: Torrent) -> ResumeData {
        ResumeData(infoHash: t.infoHash, info: t.meta?.rawInfo, trackers: t.trackers, name: t.displayName,
                   saveRoot: t.saveRoot, paused: t.paused, have: t.have.wire,
                   uploaded: t.totalUploaded, downloaded: t.totalDownloaded,
                   peers: t.addresses.filter { $0.value.source == "peer" }.map(\.key).sorted())
    }

    /// Syncs the torrent's open files, then records what is on disk.
    func saveResume(_ t: Torrent) {
        guard !t.resumeSaving else { return }
        t.resumeSaving = true
        t.resumeDirty = false
        t.lastResumeSave = now
        let value = resumeRecord(t).encoded()
        var syncs = 0
        for f in t.files {
            guard let id = f.id, let r = try? host.fileSync(id) else { continue }
            pending[r] = .sync(t.infoHash)
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

    /// At start: every torrent from the store, with the pieces it had.
    func restore(_ result: Result<Int64, PluginError>, _ buffer: Buffer?) {
        defer { if let buffer { host.free(buffer) } }
        restored = true
        guard case .success = result, let records = buffer?.kvRecords else {
            if case .failure(let e) = result { host.log(.error, "bittorrent: reading resume data: \(e)") }
            return
        }
        for (key, value) in records {
            do {
                let r = try ResumeData.decode(value)
                try addRestored(r)
            } catch {
                host.log(.error, "bittorrent: \(String(decoding: key, as: UTF8.self)): \(error); skipped")
            }
        }
        if !records.isEmpty { host.log(.info, "bittorrent: resumed \(torrents.count) torrent(s) from the store") }
    }

    func addRestored(_ r: ResumeData) throws(AddError) {
        var meta: Metainfo?
        if let infoBytes = r.info {
            do {
                let info = try InfoDictionary.parse(infoBytes)
                meta = Metainfo(info: info, rawInfo: infoBytes, trackers: r.trackers)
            } catch { throw AddError("resume data for \(r.infoHash.hex): \(error)") }
            guard meta!.infoHash == r.infoHash else { throw AddError("resume data for \(r.infoHash.hex): info does not match its infohash") }
        }
        let t = Torrent(infoHash: r.infoHash, meta: meta, name: r.name, saveRoot: r.saveRoot, trackers: r.trackers, paused: r.paused)
        if let info = meta?.info, let have = try? Bitfield(count: info.pieceCount, wire: r.have) {
            t.have = have
            if !r.paused && have.isComplete { t.state = .seeding }
        }
        t.uploadedBefore = r.uploaded
        t.downloadedBefore = r.downloaded
        t.resumeDirty = false
        for p in r.peers { t.addresses[p] = AddressState(source: "peer") }
        insert(t)
    }
}
