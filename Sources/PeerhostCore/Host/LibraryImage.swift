// LibraryImage: a plugin library read ONCE into a sealed memfd. The hash is taken over the sealed
// bytes, and the runner's clone child copies those same bytes onto its private tmpfs
// (PrivateRoot.LibraryCopy), so what is verified is what is loaded: replacing or rewriting the
// file on disk after start-up changes nothing, restarts included (DESIGN.md "The runner's
// start-up sequence": verify the bytes that are loaded, not a path).
import CPeerhostShim
import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public struct LibraryImage: Sendable {
    /// Sealed memfd (F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL), O_CLOEXEC. Owned by
    /// the image: `close()` once no runner will be started from it again.
    public let fd: Int32
    /// Bytes in the memfd.
    public let size: Int
    /// Lowercase hex SHA-256 (swift-crypto) of exactly the sealed bytes.
    public let sha256: String
    /// Where the bytes were read from (for messages and the loader's dependency list only).
    public let path: String

    /// Reads `path` into a new memfd, seals it, and hashes the sealed bytes.
    public static func load(path: String) throws(LibraryImageError) -> LibraryImage {
        let file = open(path, O_RDONLY | O_CLOEXEC)
        guard file >= 0 else { throw .init(path: path, step: .open, errno: errno) }
        defer { Glibc.close(file) }
        var st = stat()
        guard fstat(file, &st) == 0 else { throw .init(path: path, step: .open, errno: errno) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw .init(path: path, step: .notARegularFile, errno: EINVAL) }

        let name = "peerhost-lib:" + (path as NSString).lastPathComponent
        let memfd = ph_memfd_create(name)
        guard memfd >= 0 else { throw .init(path: path, step: .memfd, errno: errno) }
        var keep = false
        defer { if !keep { Glibc.close(memfd) } }

        // Copy: whatever the file holds while we read it is what the memfd gets; from then on the
        // file no longer matters.
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var copied = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { read(file, $0.baseAddress!, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw .init(path: path, step: .read, errno: errno) }
            if n == 0 { break }
            var off = 0
            while off < n {
                let w = buffer.withUnsafeBytes { write(memfd, $0.baseAddress! + off, n - off) }
                if w < 0 && errno == EINTR { continue }
                if w <= 0 { throw .init(path: path, step: .write, errno: w < 0 ? errno : EIO) }
                off += w
            }
            copied += n
        }
        guard ph_memfd_seal_immutable(memfd) == 0 else { throw .init(path: path, step: .seal, errno: errno) }

        // Hash the sealed memfd itself (not the bytes read from the file): the digest then
        // describes exactly what every runner will copy.
        var hasher = SHA256()
        var offset = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { pread(memfd, $0.baseAddress!, $0.count, off_t(offset)) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw .init(path: path, step: .read, errno: errno) }
            if n == 0 { break }
            buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            offset += n
        }
        guard offset == copied else { throw .init(path: path, step: .read, errno: EIO) }
        let digest = hasher.finalize().map { String(format: "%02x", $0) }.joined()
        keep = true
        return LibraryImage(fd: memfd, size: copied, sha256: digest, path: path)
    }

    /// The seals the memfd carries (F_GET_SEALS), for checks and tests.
    public var seals: Int32 { ph_memfd_get_seals(fd) }

    public func close() { Glibc.close(fd) }
}

public struct LibraryImageError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Step: String, Sendable {
        case open, notARegularFile = "not a regular file", memfd, read, write, seal
    }
    public let path: String
    public let step: Step
    public let errno: Int32
    public var description: String {
        "loading library \(path): \(step.rawValue): \(String(cString: strerror(errno))) (errno \(errno))"
    }
}
