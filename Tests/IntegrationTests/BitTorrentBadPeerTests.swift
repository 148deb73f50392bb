import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A hostile BitTorrent peer on loopback: it accepts our plugin's connection, answers the
/// handshake, claims every piece, unchokes, and then misbehaves in one chosen way.
final class HostilePeer: @unchecked Sendable {
    enum Behaviour: Sendable {
        /// Answers every request with bytes of the right length but the wrong content.
        case wrongData
        /// Sends a length prefix of 2 GiB.
        case oversizedMessage
        /// Sends a message id nobody defined.
        case garbledMessage
        /// Sends an extension handshake that is not bencode.
        case badBencode
        /// Sends a bitfield of the wrong length.
        case badBitfield
    }

    let port: UInt16
    let behaviour: Behaviour
    let infoHash: [UInt8]
    let pieceCount: Int
    private let listener: Int32
    private let lock = NSLock()
    private var _closedByPlugin = false
    private var _requestsAnswered = 0
    private var stopped = false

    var closedByPlugin: Bool { lock.lock(); defer { lock.unlock() }; return _closedByPlugin }
    var requestsAnswered: Int { lock.lock(); defer { lock.unlock() }; return _requestsAnswered }
    var endpoint: String { "127.0.0.1:\(port)" }

    init(_ behaviour: Behaviour, infoHash hex: String, pieceCount: Int) throws {
        self.behaviour = behaviour
        self.pieceCount = pieceCount
        infoHash = stride(from: 0, to: hex.count, by: 2).map { i in
            UInt8(hex[hex.index(hex.startIndex, offsetBy: i)..<hex.index(hex.startIndex, offsetBy: i + 2)], radix: 16)!
        }
        port = try BitTorrentPeers.freePort()
        listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(listener, 8) == 0 else { throw TestFailure("hostile peer: cannot listen on \(port)") }
        Thread.detachNewThread { [self] in serve() }
    }

    deinit { stop() }

    func stop() {
        lock.lock(); let was = stopped; stopped = true; lock.unlock()
        if !was { shutdown(listener, Int32(SHUT_RDWR)); close(listener) }
    }

    private func serve() {
        while true {
            let c = accept(listener, nil, nil)
            guard c >= 0 else { return }
            handle(c)
            close(c)
        }
    }

    private func readExactly(_ fd: Int32, _ n: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: n)
        var got = 0
        while got < n {
            let r = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, n - got, 0) }
            if r <= 0 { return nil }
            got += r
        }
        return out
    }

    private func write(_ fd: Int32, _ bytes: [UInt8]) { _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, bytes.count, Int32(MSG_NOSIGNAL)) } }

    private func message(_ id: UInt8, _ payload: [UInt8]) -> [UInt8] {
        let n = UInt32(payload.count + 1)
        return [UInt8(n >> 24), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff), id] + payload
    }

    private func handle(_ fd: Int32) {
        var tv = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard let theirs = readExactly(fd, 68), theirs[0] == 19 else { return }
        var reserved = [UInt8](repeating: 0, count: 8)
        reserved[5] = 0x10   // extension protocol
        write(fd, [19] + Array("BitTorrent protocol".utf8) + reserved + infoHash + Array("-XX0001-hostilepeer!".utf8))
        switch behaviour {
        case .oversizedMessage: write(fd, [0x7f, 0xff, 0xff, 0xff, 7])
        case .garbledMessage: write(fd, message(99, [1, 2, 3]))
        case .badBencode: write(fd, message(20, [0] + Array("d1:mdi1e".utf8)))
        case .badBitfield: write(fd, message(5, [0xff]))
        case .wrongData:
            var bits = [UInt8](repeating: 0xff, count: (pieceCount + 7) / 8)
            if pieceCount % 8 != 0 { bits[bits.count - 1] = UInt8(0xff << (8 - pieceCount % 8) & 0xff) }
            write(fd, message(5, bits))
            write(fd, message(1, []))   // unchoke
        }
        // Read what the plugin sends; answer requests (wrongData) until it hangs up.
        while true {
            guard let head = readExactly(fd, 4) else { break }
            let length = Int(head[0]) << 24 | Int(head[1]) << 16 | Int(head[2]) << 8 | Int(head[3])
            guard length > 0 else { continue }
            guard length < 1 << 20, let body = readExactly(fd, length) else { break }
            if body[0] == 6, case .wrongData = behaviour, body.count == 13 {
                let blockLength = Int(body[9]) << 24 | Int(body[10]) << 16 | Int(body[11]) << 8 | Int(body[12])
                let junk = [UInt8](repeating: 0xA5, count: blockLength)
                write(fd, message(7, Array(body[1..<9]) + junk))
                lock.lock(); _requestsAnswered += 1; lock.unlock()
            }
        }
        lock.lock(); _closedByPlugin = true; lock.unlock()
    }
}

extension Integration {
    /// Peers that lie or send garbage: each is refused or banned, nothing corrupt is written, and
    /// the plugin keeps downloading from an honest libtorrent seeder beside them.
    @Suite(.serialized) struct BitTorrentBadPeerTests {
        @Test func aPeerSendingWrongDataIsBannedAndTheDownloadStaysCorrect() throws {
            let (source, torrent) = try BitTorrentInteropTests.content("lies", size: 2 << 20)
            let liar = try HostilePeer(.wrongData, infoHash: torrent.infoHash, pieceCount: torrent.pieceCount)
            defer { liar.stop() }
            let bt = try BitTorrentHost()
            defer { _ = bt.host.stop() }
            // The liar first, alone: every piece it sends fails its hash check.
            let id = try bt.add(torrent.path, peers: [liar.endpoint])
            try waitUntil("the liar banned", timeout: .seconds(30)) { (try? bt.info(id)["banned"] as? Int) ?? 0 >= 1 }
            #expect(liar.requestsAnswered > 0)
            try waitUntil("the liar's connection closed", timeout: .seconds(10)) { liar.closedByPlugin }
            let info = try bt.info(id)
            #expect((info["hash_failures"] as? Int ?? 0) >= 1)
            #expect(info["pieces_have"] as? Int == 0, "no piece from the liar was accepted")
            // An honest seeder: the download completes and every byte is right.
            let seeder = try LibtorrentPeer(torrent: torrent.path, save: source, seed: true)
            defer { _ = seeder.stop() }
            let (status, out) = try bt.ctl(["add", torrent.path, "--peer", seeder.endpoint])
            #expect(status == 0, "\(out)")
            try bt.waitComplete(id)
            try TestContent.expectIdentical(source + "/lies", bt.downloads + "/lies")
        }

        @Test(arguments: [HostilePeer.Behaviour.oversizedMessage, .garbledMessage, .badBencode, .badBitfield])
        func aPeerSendingGarbageIsDroppedAndOthersAreServed(_ behaviour: HostilePeer.Behaviour) throws {
            let (source, torrent) = try BitTorrentInteropTests.content("garbage", size: 1 << 20)
            let bad = try HostilePeer(behaviour, infoHash: torrent.infoHash, pieceCount: torrent.pieceCount)
            defer { bad.stop() }
            let seeder = try LibtorrentPeer(torrent: torrent.path, save: source, seed: true)
            defer { _ = seeder.stop() }
            let bt = try BitTorrentHost()
            defer { _ = bt.host.stop() }
            let id = try bt.add(torrent.path, peers: [bad.endpoint, seeder.endpoint])
            try waitUntil("the bad peer dropped (\(behaviour))", timeout: .seconds(20)) { bad.closedByPlugin }
            try bt.waitComplete(id)
            try TestContent.expectIdentical(source + "/garbage", bt.downloads + "/garbage")
            #expect(try status(bt.host, "bittorrent")["restarts"] as? Int == 0, "the plugin never crashed")
        }

        @Test func aHandshakeForAnUnknownTorrentIsRefused() throws {
            let bt = try BitTorrentHost()
            defer { _ = bt.host.stop() }
            try waitUntil("the plugin listening", timeout: .seconds(20)) { portIsOpen(bt.port) }
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = bt.port.bigEndian
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            #expect(connected == 0)
            let handshake: [UInt8] = [19] + Array("BitTorrent protocol".utf8) + [UInt8](repeating: 0, count: 8)
                + [UInt8](repeating: 0x42, count: 20) + Array("-XX0001-unknowninfo!".utf8)
            _ = handshake.withUnsafeBytes { send(fd, $0.baseAddress, handshake.count, Int32(MSG_NOSIGNAL)) }
            var tv = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            var buffer = [UInt8](repeating: 0, count: 128)
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 128, 0) }
            #expect(n == 0, "the plugin hangs up without answering (got \(n) bytes)")
            #expect(try status(bt.host, "bittorrent")["state"] as? String == "running")
        }
    }
}

/// True when something accepts TCP connections on 127.0.0.1:port.
func portIsOpen(_ port: UInt16) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = port.bigEndian
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
}
