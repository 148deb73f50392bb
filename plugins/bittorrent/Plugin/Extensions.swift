// The extension protocol (BEP 10) and what rides on it: metadata exchange (BEP 9), so a magnet
// link becomes a torrent, and peer exchange (BEP 11).
import PeerhostSDK
import BitTorrentProtocol

extension BitTorrentPlugin {
    func extensionMessage(_ p: PeerConnection, _ t: Torrent, _ id: UInt8, _ payload: [UInt8]) {
        switch id {
        case 0:
            do {
                let h = try ExtensionHandshake.decode(payload)
                p.extensionIDs = [:]
                for (name, id) in h.messages where id > 0 && id < 256 { p.extensionIDs[name] = UInt8(id) }
                if let size = h.metadataSize { p.metadataSize = size }
                if let port = h.listenPort { p.listenPort = port }
                if t.info == nil { requestMetadata(p, t) }
            } catch {
                dropPeer(p, reason: "bad extension handshake: \(error)")
            }
        case ExtensionIDs.metadata:
            do {
                metadataMessage(p, t, try MetadataMessage.decode(payload))
            } catch {
                dropPeer(p, reason: "bad ut_metadata message: \(error)")
            }
        case ExtensionIDs.pex:
            guard let pex = try? PexMessage.decode(payload) else { return }   // PEX is advisory: ignore junk
            for a in pex.added.prefix(50) { addAddress(t, a.address.address, source: "pex") }
            connectMore(t)
        default:
            break   // an id we never assigned: ignore (BEP 10)
        }
    }

    // MARK: BEP 9

    func requestMetadata(_ p: PeerConnection, _ t: Torrent) {
        guard t.info == nil, let theirID = p.extensionIDs["ut_metadata"], theirID != 0, let size = p.metadataSize else { return }
        if t.metadataAssembler == nil {
            do { t.metadataAssembler = try MetadataAssembler(infoHash: t.infoHash.bytes, totalSize: size) } catch {
                dropPeer(p, reason: "metadata size \(size): \(error)")
                return
            }
        }
        // A few pieces per peer at a time; what a peer rejects or never answers goes to others.
        while p.metadataRequested.count < 4, let piece = t.metadataAssembler?.nextRequest() {
            p.metadataRequested.insert(piece)
            send(p, .extended(id: theirID, payload: MetadataMessage.request(piece: piece).encoded()))
        }
        flush(p)
    }

    func metadataMessage(_ p: PeerConnection, _ t: Torrent, _ m: MetadataMessage) {
        switch m {
        case .request(let piece):
            guard let theirID = p.extensionIDs["ut_metadata"], theirID != 0 else { return }
            guard let raw = t.meta?.rawInfo, piece >= 0, piece * 16_384 < raw.count else {
                if let theirID = p.extensionIDs["ut_metadata"] { send(p, .extended(id: theirID, payload: MetadataMessage.reject(piece: piece).encoded())) }
                return
            }
            let chunk = Array(raw[(piece * 16_384)..<min(raw.count, (piece + 1) * 16_384)])
            send(p, .extended(id: theirID, payload: MetadataMessage.data(piece: piece, totalSize: raw.count, data: chunk).encoded()))
        case .data(let piece, let totalSize, let data):
            guard t.info == nil, var a = t.metadataAssembler else { return }
            p.metadataRequested.remove(piece)
            do {
                if let info = try a.add(piece: piece, data: data, totalSize: totalSize) {
                    t.metadataAssembler = nil
                    metadataComplete(t, info)
                } else {
                    t.metadataAssembler = a
                    requestMetadata(p, t)
                }
            } catch {
                // Wrong size or a hash mismatch: start over, from other peers too.
                host.log(.warn, "bittorrent: \(t.displayName): metadata from \(p.address): \(error)")
                t.metadataAssembler = nil
                for c in t.peers { peers[c]?.metadataRequested.removeAll() }
                dropPeer(p, reason: "bad metadata")
            }
        case .reject(let piece):
            p.metadataRequested.remove(piece)
            t.metadataAssembler?.requestFailed(piece: piece)
        case .unknown:
            break   // BEP 9: ignore message types we do not know
        }
    }

    func metadataComplete(_ t: Torrent, _ infoBytes: [UInt8]) {
        do {
            let info = try InfoDictionary.parse(infoBytes)
            t.meta = Metainfo(info: info, rawInfo: infoBytes, trackers: t.trackers)
        } catch {
            fail(t, "metadata: \(error)")
            return
        }
        t.displayName = t.meta!.info.name
        t.have = Bitfield(count: t.meta!.info.pieceCount)
        t.files = t.meta!.info.files.map { TorrentFileHandle(length: $0.length) }
        t.makePicker()
        t.state = t.paused ? .paused : .downloading
        host.log(.info, "bittorrent: \(t.displayName): metadata received (\(infoBytes.count) bytes, \(t.meta!.info.pieceCount) pieces)")
        createEmptyFiles(t)
        putInfo(t)
        saveResume(t)
        for c in t.peers { if let p = peers[c] { applyPendingHaves(p, t); requestBlocks(p); flush(p) } }
        if t.have.isComplete { t.state = .seeding }
    }

    // MARK: BEP 11

    /// Once a minute: the peers we are connected to (their listen addresses) that this peer was
    /// not told about yet.
    func sendPex(_ p: PeerConnection, _ t: Torrent) {
        guard let theirID = p.extensionIDs["ut_pex"], theirID != 0, !t.isPrivate else { return }
        var added: [PexPeer] = []
        for c in t.peers where c != p.conn {
            guard let q = peers[c], q.remote != nil else { continue }
            let port = q.outgoing ? nil : q.listenPort
            let address = q.outgoing ? q.address : port.map { "tcp:\(q.ip):\($0)" }
            guard let address, let port = q.outgoing ? UInt16(address.split(separator: ":").last ?? "") : port,
                  !p.pexSent.contains(address), let pa = PeerAddress(host: q.ip, port: port) else { continue }
            added.append(PexPeer(address: pa))
            p.pexSent.insert(address)
            if added.count == 50 { break }
        }
        guard !added.isEmpty else { return }
        send(p, .extended(id: theirID, payload: PexMessage(added: added, dropped: []).encoded()))
    }
}

extension Torrent {
    var isPrivate: Bool { info?.isPrivate ?? false }
}
