// Ed25519 keys for plugin signing (`peerhost keygen`, `peerhost sign`, the trust store).
//
// File formats (docs/signing.md), one line each so they diff and review well:
//   NAME.pub  "ed25519 BASE64(32-byte public key) KEYID"   (the key id is informative; it is recomputed)
//   NAME.key  "ed25519-private BASE64(32-byte seed)"        mode 0600, never committed
// A key id is "ed25519:" + the first 16 hex digits of SHA-256(raw public key): short enough to read
// in `peerhost audit`, long enough that two keys in one trust store never collide by accident.

import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public struct KeyFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "\(path): \(reason)" }
}

public struct PublicSigningKey: Sendable, Equatable {
    public var raw: Data
    public var keyID: String { Self.keyID(raw: raw) }

    public static func keyID(raw: Data) -> String {
        "ed25519:" + SHA256.hash(data: raw).hexString.prefix(16)
    }

    public init(raw: Data) throws(KeyFileError) {
        guard raw.count == 32 else { throw KeyFileError(path: "", reason: "an ed25519 public key is 32 bytes, got \(raw.count)") }
        self.raw = raw
    }

    public var fileText: String { "ed25519 \(raw.base64EncodedString()) \(keyID)\n" }

    public init(fileText text: String, path: String) throws(KeyFileError) {
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" })
        guard words.count >= 2, words[0] == "ed25519", let raw = Data(base64Encoded: String(words[1])), raw.count == 32 else {
            throw KeyFileError(path: path, reason: "not a peerhost public key (expected one line \"ed25519 BASE64 [KEYID]\" with a 32-byte key)")
        }
        self.raw = raw
    }

    public init(contentsOf path: String) throws(KeyFileError) {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw KeyFileError(path: path, reason: FileManager.default.fileExists(atPath: path) ? "not readable" : "no such file")
        }
        try self.init(fileText: text, path: path)
    }

    /// True when `signature` is this key's ed25519 signature of `message`.
    public func isValidSignature(_ signature: Data, for message: Data) -> Bool {
        guard let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else { return false }
        return key.isValidSignature(signature, for: message)
    }
}

public struct PrivateSigningKey: Sendable {
    let key: Curve25519.Signing.PrivateKey

    public static func generate() -> PrivateSigningKey { PrivateSigningKey(key: .init()) }

    public var publicKey: PublicSigningKey {
        // 32 bytes by construction.
        try! PublicSigningKey(raw: key.publicKey.rawRepresentation)
    }

    public func signature(for message: Data) throws -> Data {
        try key.signature(for: message)
    }

    public var fileText: String { "ed25519-private \(key.rawRepresentation.base64EncodedString())\n" }

    public init(contentsOf path: String) throws(KeyFileError) {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw KeyFileError(path: path, reason: FileManager.default.fileExists(atPath: path) ? "not readable" : "no such file")
        }
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" })
        guard words.count == 2, words[0] == "ed25519-private", let raw = Data(base64Encoded: String(words[1])),
              let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: raw) else {
            throw KeyFileError(path: path, reason: "not a peerhost private key (expected one line \"ed25519-private BASE64\"; `peerhost keygen` writes one)")
        }
        self.key = key
    }

    init(key: Curve25519.Signing.PrivateKey) { self.key = key }

    /// Writes `base.key` (0600, created exclusively so an existing key is never overwritten) and
    /// `base.pub`. Returns the two paths.
    public func write(to base: String) throws(KeyFileError) -> (privatePath: String, publicPath: String) {
        let privatePath = base + ".key", publicPath = base + ".pub"
        let folder = (base as NSString).deletingLastPathComponent
        if !folder.isEmpty {
            // 0755: the folder also holds the .pub, which a host running as another user (the
            // unprivileged mode) must read; the private key's own mode 0600 is what protects it.
            try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true,
                                                     attributes: [.posixPermissions: 0o755])
        }
        let fd = open(privatePath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw KeyFileError(path: privatePath, reason: errno == EEXIST ? "already exists (refusing to overwrite a key)" : String(cString: strerror(errno)))
        }
        let bytes = Array(fileText.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        fchmod(fd, 0o600)   // whatever the umask said
        close(fd)
        guard written == bytes.count else { throw KeyFileError(path: privatePath, reason: "short write") }
        do {
            try publicKey.fileText.write(toFile: publicPath, atomically: true, encoding: .utf8)
        } catch {
            throw KeyFileError(path: publicPath, reason: "\(error)")
        }
        return (privatePath, publicPath)
    }
}

extension Sequence where Element == UInt8 {
    /// Lowercase hex.
    var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in self { out.append(digits[Int(byte >> 4)]); out.append(digits[Int(byte & 0xf)]) }
        return String(decoding: out, as: UTF8.self)
    }
}

public enum FileHash {
    /// Lowercase hex SHA-256 of the file's bytes, read in 1 MiB chunks; nil when unreadable.
    public static func sha256(path: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        var hasher = SHA256()
        // read(upToCount:) throws on a read error and returns nil (corelibs) or empty data at EOF.
        do {
            while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
                hasher.update(data: chunk)
            }
        } catch {
            return nil
        }
        return hasher.finalize().hexString
    }
}
