// Checking existing data when a torrent is added: files already in the save directory (a seed, or
// a download moved by hand) are hashed piece by piece, and the pieces that verify count as had.
// Files are opened read-only for this, so checking never creates or changes anything; a missing
// file makes every piece touching it "missing" without a read. Pieces go in order, so a file is
// opened when the check reaches it and closed once the check has passed it: a torrent of thousands
// of files holds only the few one piece spans.
import PeerhostSDK
import BitTorrentProtocol

/// The check of one torrent: read-only handles, the piece in progress, progress for status.
final class TorrentCheck {
    var handles: [FileID?]
    var missing: [Bool]
    /// Files whose open was asked for (open now, closed again, or missing).
    var attempted: [Bool]
    /// Opens not answered yet; the check waits for them before reading its piece.
    var opensPending = 0
    /// Files below this index are behind the check and closed.
    var closedBelow = 0
    var nextPiece = 0
    var current: (piece: Int, blocks: [Buffer?], left: Int)?
    var found = 0
    init(fileCount: Int) {
        handles = Array(repeating: nil, count: fileCount)
        missing = Array(repeating: false, count: fileCount)
        attempted = Array(repeating: false, count: fileCount)
    }
}

extension BitTorrentPlugin {
    func startCheck(_ t: Torrent) {
        guard let info = t.info else { return }
        let check = TorrentCheck(fileCount: info.files.count)
        checks[t.infoHash] = check
        t.state = .checking
        if info.files.isEmpty { finishCheck(t, check); return }
        checkNextPiece(t, check)
    }

    /// Opens the files of `spans` the check has not reached yet; true when it must wait for them.
    func openFilesAhead(_ t: Torrent, _ check: TorrentCheck, _ spans: [FileSpan]) -> Bool {
        guard let info = t.info else { return false }
        for span in spans where !check.attempted[span.file] {
            check.attempted[span.file] = true
            if info.files[span.file].isPadding { continue }   // zeros, not on disk
            do {
                let r = try host.fileOpen(t.path(ofFile: span.file), flags: UInt32(PH_FILE_READ))
                pending[r] = .checkOpen(t.infoHash, span.file)
                check.opensPending += 1
                countOpenFile(check: true)   // one piece's files at most, outside max_open_files
            } catch {
                check.missing[span.file] = true
            }
        }
        return check.opensPending > 0
    }

    /// Closes the handles of files that end before file `first`: no piece still to check reads them.
    func closeFilesBehind(_ check: TorrentCheck, first: Int) {
        while check.closedBelow < first {
            if let h = check.handles[check.closedBelow] { try? host.fileClose(h); checkFilesOpen -= 1 }
            check.handles[check.closedBelow] = nil
            check.closedBelow += 1
        }
    }

    func checkOpened(_ hash: InfoHash, _ index: Int, _ result: Result<Int64, PluginError>) {
        guard let t = torrents[hash], let check = checks[hash] else {
            checkFilesOpen -= 1   // counted when asked for; its torrent went away meanwhile
            if case .success(let id) = result { try? host.fileClose(FileID(id)) }
            return
        }
        switch result {
        case .success(let id): check.handles[index] = FileID(id)
        case .failure: check.missing[index] = true; checkFilesOpen -= 1
        }
        check.opensPending -= 1
        if check.opensPending == 0 { checkNextPiece(t, check) }
    }

    func checkNextPiece(_ t: Torrent, _ check: TorrentCheck) {
        guard let info = t.info, checks[t.infoHash] === check else { return }
        while check.nextPiece < info.pieceCount, check.opensPending == 0 {
            let piece = check.nextPiece
            let start = Int64(piece) * Int64(info.pieceLength)
            let size = info.pieceSize(piece)
            let spans = info.spans(offset: start, length: size)
            if let first = spans.first { closeFilesBehind(check, first: first.file) }
            if openFilesAhead(t, check, spans) { return }   // checkOpened comes back here
            check.nextPiece += 1
            if spans.contains(where: { !info.files[$0.file].isPadding && (check.missing[$0.file] || check.handles[$0.file] == nil) }) { continue }
            let blockCount = (size + 16_383) / 16_384
            var buffers: [Buffer] = []
            for _ in 0..<blockCount {
                guard let b = try? host.allocBuffer() else { break }
                buffers.append(b)
            }
            guard buffers.count == blockCount else {
                for b in buffers { host.free(b) }
                check.nextPiece -= 1
                return   // out of slots for now: the tick resumes the check
            }
            check.current = (piece, Array(repeating: nil, count: blockCount), blockCount)
            for (i, b) in buffers.enumerated() {
                let length = min(16_384, size - i * 16_384)
                let job = ReadJob(torrent: t.infoHash, purpose: .check(piece: piece, block: i), request: BlockRequest(piece: piece, begin: i * 16_384, length: length),
                                  spans: info.spans(offset: start + Int64(i * 16_384), length: length), handles: check.handles)
                readNext(job, b)
            }
            return
        }
        finishCheck(t, check)
    }

    func checkBlockRead(_ job: ReadJob, _ buffer: Buffer, ok: Bool) {
        guard case .check(let piece, let block) = job.purpose, let t = torrents[job.torrent], let check = checks[job.torrent],
              var current = check.current, current.piece == piece else {
            host.free(buffer)
            return
        }
        var b = buffer
        b.raw.offset = 0
        b.raw.length = ok ? UInt32(job.request.length) : 0
        current.blocks[block] = b
        current.left -= 1
        check.current = current
        guard current.left == 0 else { return }
        check.current = nil
        let a = PieceAssembly(blockCount: current.blocks.count)
        a.blocks = current.blocks
        let good = current.blocks.allSatisfy { ($0?.count ?? 0) > 0 } && a.digest() == t.info!.pieceHashes[piece]
        a.free(host: host)
        if good { t.have[piece] = true; check.found += 1 }
        checkNextPiece(t, check)
    }

    func finishCheck(_ t: Torrent, _ check: TorrentCheck) {
        checks[t.infoHash] = nil
        for case let h? in check.handles { try? host.fileClose(h); checkFilesOpen -= 1 }
        t.makePicker()
        t.state = t.paused ? .paused : (t.have.isComplete ? .seeding : .downloading)
        t.resumeDirty = true
        host.log(.info, "bittorrent: \(t.displayName): checked, \(check.found) of \(t.info?.pieceCount ?? 0) pieces present")
        createEmptyFiles(t)
        saveResume(t)
        t.nextAnnounce = 0
        connectMore(t)
    }

    /// Zero-length files have no piece to write them: create them once the torrent is known.
    func createEmptyFiles(_ t: Torrent) {
        guard let info = t.info else { return }
        for (i, f) in info.files.enumerated() where f.length == 0 && !f.isPadding { withFile(t, i) { _ in } }
    }
}
