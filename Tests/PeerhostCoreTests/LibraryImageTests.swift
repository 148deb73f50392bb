import CPeerhostShim
import Foundation
import Testing
@testable import PeerhostCore
#if canImport(Glibc)
import Glibc
#endif

/// LibraryImage: the plugin's bytes read once into a sealed memfd and hashed there.
@Suite struct LibraryImageTests {
    /// A scratch file with `bytes`; removed by the caller's defer.
    func scratch(_ bytes: [UInt8]) throws -> String {
        let path = NSTemporaryDirectory() + "peerhost-image-\(UUID().uuidString).so"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    func contents(of fd: Int32, size: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: size + 16)
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, $0.count, 0) }
        return Array(bytes[0..<max(n, 0)])
    }

    @Test func theMemfdIsSealedAgainstEveryChange() throws {
        let path = try scratch(Array("\u{7f}ELF sealed".utf8))
        defer { unlink(path) }
        let image = try LibraryImage.load(path: path)
        defer { image.close() }
        #expect(image.seals == ph_seal_bits_immutable(), "F_SEAL_WRITE|GROW|SHRINK|SEAL: \(image.seals)")
        var one: UInt8 = 0x41
        #expect(pwrite(image.fd, &one, 1, 0) == -1 && errno == EPERM, "a write is refused by the seal")
        #expect(ftruncate(image.fd, 1) == -1 && errno == EPERM, "shrinking is refused")
        #expect(ftruncate(image.fd, 1 << 20) == -1 && errno == EPERM, "growing is refused")
        #expect(fcntl(image.fd, F_GETFD) & FD_CLOEXEC != 0, "the memfd does not leak into other children")
    }

    @Test func theHashIsSha256sumOfTheFile() throws {
        let bytes = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }   // several read chunks
        let path = try scratch(bytes)
        defer { unlink(path) }
        let image = try LibraryImage.load(path: path)
        defer { image.close() }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        p.arguments = [path]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let expected = try #require(out.split(separator: " ").first.map(String.init))
        #expect(image.sha256 == expected)
        #expect(image.size == bytes.count)
        #expect(contents(of: image.fd, size: image.size) == bytes)
    }

    @Test func changingTheFileAfterLoadChangesNothingLoaded() throws {
        let original = Array("original library bytes".utf8)
        let path = try scratch(original)
        defer { unlink(path) }
        let image = try LibraryImage.load(path: path)
        defer { image.close() }
        // Rewritten in place (same inode) and then replaced by another file (new inode).
        let fd = open(path, O_WRONLY)
        let evil = Array("EVIL!!!!".utf8)
        #expect(pwrite(fd, evil, evil.count, 0) == evil.count)
        close(fd)
        #expect(contents(of: image.fd, size: image.size) == original, "an in-place rewrite does not reach the image")
        unlink(path)
        try Data(Array("a different, longer library altogether".utf8)).write(to: URL(fileURLWithPath: path))
        #expect(contents(of: image.fd, size: image.size) == original, "a replaced file does not reach the image")
        let reloaded = try LibraryImage.load(path: path)
        defer { reloaded.close() }
        #expect(reloaded.sha256 != image.sha256, "a new load sees (and hashes) the new bytes")
    }

    @Test func aMissingFileOrADirectoryIsAClearError() throws {
        #expect(throws: LibraryImageError(path: "/nonexistent/lib.so", step: .open, errno: ENOENT)) {
            try LibraryImage.load(path: "/nonexistent/lib.so")
        }
        #expect(throws: LibraryImageError(path: "/tmp", step: .notARegularFile, errno: EINVAL)) {
            try LibraryImage.load(path: "/tmp")
        }
    }
}
