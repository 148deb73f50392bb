// Shared by the metainfo and builder tests: the committed vectors in protocols/bittorrent/vectors/
// and the formula their content was made from (README there says how).

enum Vectors {
    /// protocols/bittorrent/vectors, found from this source file's path (tests run from any cwd).
    static let directory: String = {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        parts.removeLast(3)   // Tests/BitTorrentProtocolTests/Vectors.swift
        return parts.joined(separator: "/") + "/protocols/bittorrent/vectors"
    }()

    static func read(_ name: String) -> [UInt8] {
        let path = directory + "/" + name
        guard let f = fopen(path, "rb") else { fatalError("cannot open \(path)") }
        defer { fclose(f) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buffer, 1, buffer.count, f)
            if n == 0 { break }
            out.append(contentsOf: buffer[0..<n])
        }
        return out
    }

    /// Byte i of the vectors' content stream.
    static func streamByte(_ i: Int) -> UInt8 { UInt8(truncatingIfNeeded: i &* 31 &+ 7) }
    static func stream(_ range: Range<Int>) -> [UInt8] { range.map(streamByte) }

    /// mktorrent-single.torrent: `single.bin`, 1,000,000 stream bytes, `mktorrent -l 16 -d -a URL`.
    static let singleInfoHash = "94333329467b01d11b75e18571190c9105fa04a5"
    static let singleTracker = "http://127.0.0.1:6969/announce"

    /// mktorrent-multi.torrent: folder `multi`, `mktorrent -l 15 -d`; its files in mktorrent's order
    /// hold consecutive stream bytes (300,000 in all).
    static let multiInfoHash = "61591ad405820f61ae01cf11526c8c746b15dbef"
    static let multiFiles: [(path: [String], length: Int64)] = [
        ([".hidden"], 1000), (["B"], 79_000), (["a-b"], 50_000), (["a", "b"], 70_000),
        (["sub", "empty"], 0), (["sub", "z.bin"], 100_000),
    ]

    /// libtorrent-hybrid.torrent: the same `multi` folder, libtorrent 2.0.8 `create_torrent(fs, 32768)`
    /// (hybrid v1+v2, padding files); this is its v1 infohash.
    static let hybridInfoHash = "eeb93e11bdb9974b22f0d35f224a825640a0e8be"
}

#if canImport(Glibc)
import Glibc
#endif
