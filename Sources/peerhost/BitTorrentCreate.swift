// `peerhost ctl bittorrent create FILE|DIR`: makes a v1 .torrent on the client side (no host needed).
// The files are read here with a 1 MiB buffer and fed to TorrentBuilder in the torrent's order.
//
// Choices, and why:
// - A directory's files are sorted by their relative path as bytes ("a-b" before "a/b", like C's
//   strcmp on the joined path). That is mktorrent's order, so the same directory and piece length
//   give the same infohash with both tools (protocols/bittorrent/vectors/mktorrent-multi.torrent).
// - Hidden files (".name") are included, as mktorrent and libtorrent include them (Transmission
//   leaves them out): a torrent of a directory should hold what is in it; leaving files out
//   silently would surprise more.
// - Symbolic links are refused, not followed: following one can pull in files from anywhere on the
//   machine (or loop), and what the torrent holds should be what the operator sees in the folder.
//   Sockets, FIFOs and devices are refused too. Empty directories cannot be expressed in v1 metainfo
//   and are left out (empty files are kept).
// - The output is never overwritten without --force; it is written to a temporary file and renamed.

import ArgumentParser
import BitTorrentProtocol
import Foundation
import PeerhostCore
#if canImport(Glibc)
import Glibc
#endif

struct BitTorrentCreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create a .torrent (BitTorrent v1) from a file or a directory.",
        discussion: """
            Reads FILE, or every regular file below DIR (hidden files included, sorted by path as \
            mktorrent sorts them; symbolic links, sockets, FIFOs and devices are refused), hashes it into \
            pieces and writes a .torrent (default <name>.torrent in the current directory; an existing \
            file is kept unless --force). Prints the infohash and a magnet link. The host need not run.

            Each --tracker is one tier (BEP 12); URLs separated by commas inside one --tracker share a tier. \
            --piece-length takes a size (262144, 256KiB, 4MiB) or, as mktorrent's -l, a power of two's \
            exponent (18 = 256 KiB); it must be a multiple of 16 KiB up to 256 MiB. The default is a power of \
            two from 16 KiB to 16 MiB giving about 1000–2000 pieces.

            Examples:
              peerhost ctl bittorrent create ~/iso/debian.iso --tracker http://tracker.example:6969/announce
              peerhost ctl bittorrent create photos/ --piece-length 1MiB --private --out /tmp/photos.torrent
            """
    )

    @Argument(help: ArgumentHelp("The file or directory to share.", valueName: "FILE|DIR"))
    var input: String

    @Option(name: .long, help: ArgumentHelp("Where to write the .torrent (default: ./<name>.torrent).", valueName: "F"))
    var out: String?

    @Option(name: .long, help: ArgumentHelp("Announce URL; repeat for more tiers, comma-separate URLs of one tier.", valueName: "URL"))
    var tracker: [String] = []

    @Option(name: .long, help: ArgumentHelp("Piece length: bytes (256KiB) or a log2 exponent (18).", valueName: "N"))
    var pieceLength: String?

    @Flag(name: .long, help: "Mark the torrent private (BEP 27: trackers only, no DHT/PEX/LSD).")
    var `private` = false

    @Option(name: .long, help: ArgumentHelp("A comment stored in the torrent.", valueName: "C"))
    var comment: String?

    @Flag(name: .long, help: "Overwrite the output file if it exists.")
    var force = false

    /// Non-mutating, so `BitTorrentCreateCommand.parse(args).run()` works on the parsed value.
    func run() throws {
        let inputName = URL(fileURLWithPath: input).standardizedFileURL.lastPathComponent
        let outPath = URL(fileURLWithPath: out ?? inputName + ".torrent").standardizedFileURL.path
        // The output may land inside the folder being shared (`create .`): it is never part of it,
        // or a second run with --force would hash the previous torrent into the new one.
        let source = try Self.collect(input, excluding: outPath)
        let pl = try pieceLength.map(Self.parsePieceLength) ?? TorrentBuilder.defaultPieceLength(totalLength: source.total)
        if !force, FileManager.default.fileExists(atPath: outPath) {
            throw CommandFailure("\(outPath) exists; pass --force to overwrite it")
        }

        var builder = TorrentBuilder(name: source.name, files: source.files.map { ($0.components, $0.length) },
                                     pieceLength: pl, isMultiFile: source.isDirectory)
        var progress = Progress(total: source.total)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        for file in source.files {
            let fd = open(file.absolute, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
            guard fd >= 0 else { throw CommandFailure("\(file.absolute): cannot open: \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            var readBytes: Int64 = 0
            while true {
                let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw CommandFailure("\(file.absolute): read failed: \(String(cString: strerror(errno)))")
                }
                if n == 0 { break }
                readBytes += Int64(n)
                guard readBytes <= file.length else { break }
                builder.feed(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                progress.advance(by: Int64(n))
            }
            guard readBytes == file.length else {
                throw CommandFailure("\(file.absolute): its size changed while it was read (\(file.length) bytes listed, \(readBytes > file.length ? "more" : "\(readBytes)") read)")
            }
        }
        progress.finish()

        let tiers = tracker.map { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
        let bytes: [UInt8]
        do {
            bytes = try builder.finish(trackers: tiers, comment: comment, createdBy: "peerhost \(PeerhostVersion.current)",
                                       creationDate: Int64(time(nil)), isPrivate: `private`)
        } catch {
            throw CommandFailure("\(input): \(error)")
        }
        let metainfo: Metainfo
        do { metainfo = try Metainfo.parse(bytes) } catch { throw CommandFailure("internal: \(error)") }

        // Write beside the destination, then rename: a reader never sees half a torrent, and a
        // failure leaves any old file as it was.
        let temporary = outPath + ".tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(bytes)) else {
            throw CommandFailure("\(temporary): cannot write: \(String(cString: strerror(errno)))")
        }
        if !force, FileManager.default.fileExists(atPath: outPath) {
            unlink(temporary)
            throw CommandFailure("\(outPath) appeared while hashing; pass --force to overwrite it")
        }
        guard rename(temporary, outPath) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw CommandFailure("\(outPath): cannot write: \(reason)")
        }
        let info = metainfo.info
        print("wrote \(outPath): \(info.files.count) file\(info.files.count == 1 ? "" : "s"), \(info.totalLength) bytes, \(info.pieceCount) pieces of \(ByteSize.format(UInt64(info.pieceLength)))")
        print("infohash: \(metainfo.infoHash.hex)")
        print("magnet: \(metainfo.magnetLink.uri)")
    }

    // MARK: input

    struct InputFile {
        let absolute: String
        let components: [String]
        let length: Int64
    }

    struct Source {
        let name: String
        let isDirectory: Bool
        let files: [InputFile]
        var total: Int64 { files.reduce(0) { $0 + $1.length } }
    }

    static func collect(_ input: String, excluding excluded: String) throws -> Source {
        let absolute = URL(fileURLWithPath: input).standardizedFileURL.path
        var st = stat()
        guard lstat(absolute, &st) == 0 else { throw CommandFailure("\(input): \(String(cString: strerror(errno)))") }
        // The torrent's name is the last component of the real path (so `create .` names the folder).
        let name = URL(fileURLWithPath: absolute).lastPathComponent
        if let problem = InfoDictionary.componentProblem(Array(name.utf8)) {
            throw CommandFailure("\(input): cannot be a torrent's name: \(problem)")
        }
        switch st.st_mode & S_IFMT {
        case S_IFLNK:
            throw CommandFailure("\(input) is a symbolic link; links are not followed, pass the path it points to")
        case S_IFREG:
            return Source(name: name, isDirectory: false,
                          files: [InputFile(absolute: absolute, components: [name], length: Int64(st.st_size))])
        case S_IFDIR:
            var files: [InputFile] = []
            try walk(directory: absolute, relative: [], excluding: excluded, into: &files)
            guard !files.isEmpty else { throw CommandFailure("\(input): no files below this directory") }
            // mktorrent's order: the relative path with "/" compared as bytes.
            files.sort { Array($0.components.joined(separator: "/").utf8).lexicographicallyPrecedes(Array($1.components.joined(separator: "/").utf8)) }
            return Source(name: name, isDirectory: true, files: files)
        default:
            throw CommandFailure("\(input) is not a regular file or a directory")
        }
    }

    static func walk(directory: String, relative: [String], excluding excluded: String, into files: inout [InputFile]) throws {
        guard let dir = opendir(directory) else {
            throw CommandFailure("\(directory): cannot list: \(String(cString: strerror(errno)))")
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let bytes = withUnsafeBytes(of: entry.pointee.d_name) { raw in Array(raw.prefix { $0 != 0 }) }
            if bytes == Array(".".utf8) || bytes == Array("..".utf8) { continue }
            let shown = directory + "/" + String(decoding: bytes, as: UTF8.self)
            if let problem = InfoDictionary.componentProblem(bytes) {
                throw CommandFailure("\(shown): cannot be stored in a torrent: \(problem)")
            }
            names.append(String(decoding: bytes, as: UTF8.self))
        }
        for name in names {
            let path = directory + "/" + name
            if path == excluded || path == excluded + ".tmp-\(getpid())" { continue }
            var st = stat()
            guard lstat(path, &st) == 0 else { throw CommandFailure("\(path): \(String(cString: strerror(errno)))") }
            switch st.st_mode & S_IFMT {
            case S_IFREG:
                files.append(InputFile(absolute: path, components: relative + [name], length: Int64(st.st_size)))
            case S_IFDIR:
                try walk(directory: path, relative: relative + [name], excluding: excluded, into: &files)
            case S_IFLNK:
                throw CommandFailure("\(path) is a symbolic link; links are not followed (copy or move the target into the folder, or remove the link)")
            default:
                throw CommandFailure("\(path) is not a regular file or a directory (socket, FIFO or device)")
            }
        }
    }

    /// "262144", "256KiB", "4MiB" or a log2 exponent below 64 ("18" = 256 KiB, as mktorrent -l).
    static func parsePieceLength(_ text: String) throws -> Int {
        let bytes: UInt64
        if let exponent = Int(text), exponent >= 0, exponent < 64 {
            guard exponent >= 14, exponent <= 28 else {
                throw CommandFailure("--piece-length \(text): as an exponent it must be 14…28 (16 KiB…256 MiB)")
            }
            bytes = 1 << UInt64(exponent)
        } else {
            do { bytes = try ByteSize.parse(text) } catch { throw CommandFailure("--piece-length: \(error)") }
        }
        guard bytes >= UInt64(InfoDictionary.minPieceLength), bytes <= UInt64(InfoDictionary.maxPieceLength),
              bytes % UInt64(InfoDictionary.minPieceLength) == 0 else {
            throw CommandFailure("--piece-length \(text): must be a multiple of 16 KiB from 16 KiB to 256 MiB")
        }
        return Int(bytes)
    }

    /// Percent and MB/s on stderr for inputs of 64 MiB or more, at most twice a second; on a terminal
    /// the line is rewritten in place.
    struct Progress {
        let total: Int64
        var done: Int64 = 0
        let start = Date()
        var last = Date()
        let enabled: Bool
        let terminal = isatty(2) == 1

        init(total: Int64) {
            self.total = total
            self.enabled = total >= 64 << 20
        }

        mutating func advance(by n: Int64) {
            done += n
            guard enabled else { return }
            let now = Date()
            guard now.timeIntervalSince(last) >= (terminal ? 0.5 : 5) else { return }
            last = now
            report(now)
        }

        func report(_ now: Date) {
            let seconds = max(now.timeIntervalSince(start), 0.001)
            let percent = Double(done) * 100 / Double(max(total, 1))
            let rate = Double(done) / seconds / 1_000_000
            let line = String(format: "hashing: %5.1f%%  %.1f MB/s", percent, rate)
            FileHandle.standardError.write(Data((terminal ? "\r" + line : line + "\n").utf8))
        }

        func finish() {
            guard enabled else { return }
            report(Date())
            if terminal { FileHandle.standardError.write(Data("\n".utf8)) }
        }
    }
}
