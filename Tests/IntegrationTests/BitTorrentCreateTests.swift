import BitTorrentProtocol
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    /// `peerhost ctl bittorrent create`: the CLI reads files itself (no host), so these run the
    /// binary in a scratch directory and check the .torrent it writes — against our parser, against
    /// mktorrent on the same directory, and against libtorrent reading our file.
    @Suite(.serialized) struct BitTorrentCreateTests {
        let scratch: String

        init() throws {
            scratch = NSTemporaryDirectory() + "peerhost-create-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        }

        /// Runs a program in `scratch`; stdout and stderr together.
        func run(_ executable: String, _ arguments: [String], in directory: String? = nil) throws -> (Int32, String) {
            try runProgram(executable, arguments, in: directory ?? scratch)
        }

        func create(_ arguments: [String]) throws -> (Int32, String) {
            try run(Products.peerhost, ["ctl", "bittorrent", "create"] + arguments)
        }

        /// Writes `files` (relative paths) below `scratch/dir`, their bytes consecutive from the
        /// vectors' formula.
        func makeTree(_ dir: String, _ files: [(String, Int)]) throws {
            var position = 0
            for (path, length) in files {
                let full = "\(scratch)/\(dir)/\(path)"
                try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                let bytes = (position..<(position + length)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
                #expect(FileManager.default.createFile(atPath: full, contents: Data(bytes)))
                position += length
            }
        }

        func torrent(_ path: String) throws -> Metainfo {
            let data = try Data(contentsOf: URL(fileURLWithPath: path.hasPrefix("/") ? path : "\(scratch)/\(path)"))
            return try Metainfo.parse(Array(data))
        }

        @Test func aDirectoryGivesTheMktorrentVectorsInfohash() throws {
            defer { try? FileManager.default.removeItem(atPath: scratch) }
            try makeTree("multi", [(".hidden", 1000), ("B", 79_000), ("a-b", 50_000), ("a/b", 70_000), ("sub/empty", 0), ("sub/z.bin", 100_000)])
            let (status, output) = try create(["multi", "--piece-length", "15"])
            #expect(status == 0, "\(output)")
            #expect(output.contains("infohash: 61591ad405820f61ae01cf11526c8c746b15dbef"), "\(output)")
            #expect(output.contains("magnet: magnet:?xt=urn:btih:61591ad405820f61ae01cf11526c8c746b15dbef&dn=multi"), "\(output)")
            let m = try torrent("multi.torrent")
            #expect(m.infoHash.hex == "61591ad405820f61ae01cf11526c8c746b15dbef")
            #expect(m.createdBy?.hasPrefix("peerhost ") == true)
            #expect(m.creationDate != nil)

            // Never overwrites without --force.
            let before = try Data(contentsOf: URL(fileURLWithPath: "\(scratch)/multi.torrent"))
            let (again, againOutput) = try create(["multi", "--piece-length", "32KiB"])
            #expect(again != 0)
            #expect(againOutput.contains("multi.torrent exists; pass --force to overwrite it"), "\(againOutput)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: "\(scratch)/multi.torrent")) == before)
            let (forced, forcedOutput) = try create(["multi", "--piece-length", "16KiB", "--force"])
            #expect(forced == 0, "\(forcedOutput)")
            #expect(try torrent("multi.torrent").info.pieceLength == 16384)

            // `create .` inside the folder: named after it, and the output it writes there is never
            // hashed into the next run.
            for extra in [[], ["--force"]] {
                let (status, output) = try run(Products.peerhost, ["ctl", "bittorrent", "create", ".", "--piece-length", "15"] + extra,
                                               in: "\(scratch)/multi")
                #expect(status == 0, "\(output)")
                #expect(output.contains("infohash: 61591ad405820f61ae01cf11526c8c746b15dbef"), "\(output)")
            }
            #expect(FileManager.default.fileExists(atPath: "\(scratch)/multi/multi.torrent"))
        }

        @Test func matchesMktorrentAndLibtorrentOnAnotherTree() throws {
            defer { try? FileManager.default.removeItem(atPath: scratch) }
            try makeTree("tree", [("Z", 3), ("a b/é.txt", 40_000), ("a b/x/y/z", 123_457), ("a.b", 1), ("a_b/.git/config", 77),
                                  ("zz/empty", 0), ("zz/last", 65_536 * 3)])
            let (status, output) = try create(["tree", "--piece-length", "64KiB", "--out", "ours.torrent"])
            #expect(status == 0, "\(output)")
            let (mk, mkOutput) = try run("/usr/bin/mktorrent", ["-l", "16", "-d", "-o", "theirs.torrent", "tree"])
            #expect(mk == 0, "mktorrent (a test peer, installed by make test): \(mkOutput)")
            let ours = try torrent("ours.torrent")
            let theirs = try torrent("theirs.torrent")
            #expect(ours.infoHash == theirs.infoHash)
            #expect(ours.info.files.map(\.path) == theirs.info.files.map(\.path))
            // libtorrent reads our file and names the same infohash.
            let (lt, ltOutput) = try run("/usr/bin/python3", ["-c", "import libtorrent as lt; print(lt.torrent_info('ours.torrent').info_hash())"])
            #expect(lt == 0, "\(ltOutput)")
            #expect(ltOutput.trimmingCharacters(in: .whitespacesAndNewlines) == ours.infoHash.hex)
        }

        @Test func singleFileWithTrackersCommentAndPrivate() throws {
            defer { try? FileManager.default.removeItem(atPath: scratch) }
            try makeTree("in", [("data.bin", 100_000)])
            let (status, output) = try create(["in/data.bin", "--out", "\(scratch)/t.torrent", "--tracker", "http://a/announce,http://b/announce",
                                               "--tracker", "udp://c:6969", "--private", "--comment", "hello"])
            #expect(status == 0, "\(output)")
            let m = try torrent("t.torrent")
            #expect(!m.info.isMultiFile)
            #expect(m.info.name == "data.bin")
            #expect(m.info.pieceLength == 16384)   // default: 100 kB → 16 KiB pieces
            #expect(m.trackers == [["http://a/announce", "http://b/announce"], ["udp://c:6969"]])
            #expect(m.info.isPrivate)
            #expect(m.comment == "hello")
            #expect(output.contains("&tr=http%3A%2F%2Fa%2Fannounce"))
        }

        @Test func refusesSymlinksSpecialFilesAndBadPieceLengths() throws {
            defer { try? FileManager.default.removeItem(atPath: scratch) }
            try makeTree("d", [("a", 10)])
            #expect(symlink("/etc/passwd", "\(scratch)/d/link") == 0)
            var (status, output) = try create(["d"])
            #expect(status != 0)
            #expect(output.contains("d/link is a symbolic link; links are not followed"), "\(output)")
            #expect(!FileManager.default.fileExists(atPath: "\(scratch)/d.torrent"))
            unlink("\(scratch)/d/link")
            #expect(mkfifo("\(scratch)/d/fifo", 0o600) == 0)
            (status, output) = try create(["d"])
            #expect(status != 0)
            #expect(output.contains("is not a regular file or a directory"), "\(output)")
            unlink("\(scratch)/d/fifo")
            for bad in ["1000", "13", "40000", "512MiB", "x"] {
                (status, output) = try create(["d", "--piece-length", bad])
                #expect(status != 0, "\(bad)")
                #expect(output.contains("--piece-length"), "\(bad): \(output)")
            }
            try makeTree("e", [("empty", 0)])
            (status, output) = try create(["e"])
            #expect(status != 0)
            #expect(output.contains("no data"), "\(output)")
            (status, output) = try create(["missing"])
            #expect(status != 0)
            #expect(output.contains("missing: No such file or directory"), "\(output)")
        }

        @Test func largeInputsShowProgressOnStderr() throws {
            defer { try? FileManager.default.removeItem(atPath: scratch) }
            // 80 MiB of zeros as a sparse file: cheap to make, read in 1 MiB chunks like any file.
            let path = "\(scratch)/big.bin"
            let fd = open(path, O_CREAT | O_WRONLY, 0o644)
            #expect(fd >= 0 && ftruncate(fd, 80 << 20) == 0)
            close(fd)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Products.peerhost)
            p.arguments = ["ctl", "bittorrent", "create", "big.bin"]
            p.currentDirectoryURL = URL(fileURLWithPath: scratch)
            let out = Pipe(), err = Pipe()
            p.standardOutput = out
            p.standardError = err
            try p.run()
            let stderrText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            let stdoutText = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            #expect(p.terminationStatus == 0, "\(stdoutText)\(stderrText)")
            #expect(stderrText.contains("hashing: 100.0%"), "\(stderrText)")
            #expect(stderrText.contains("MB/s"))
            #expect(!stdoutText.contains("hashing"))
            let m = try torrent("big.bin.torrent")   // <name>.torrent, as mktorrent names it
            #expect(m.info.totalLength == 80 << 20)
            #expect(m.info.pieceLength == 64 << 10)   // 80 MiB → 1280 pieces of 64 KiB
        }
    }
}
