// Secure bootstrapping (DESIGN.md "Capabilities and manifests"): before a runner is spawned, the
// library's bytes must match the manifest's pinned sha256 (when it has one) and the manifest must
// carry a signature, by a trusted key, over its canonical form with those bytes' hash.

import Foundation

public enum Verification: Sendable, Equatable {
    /// Signed by `keyID` at `signedTime`, over these bytes and this manifest.
    case verified(keyID: String, signedTime: String, signatureFile: String)
    case refused(VerificationFailure)

    public var isVerified: Bool { if case .verified = self { return true } else { return false } }
}

/// Why a plugin was refused; the text names the mismatch (it becomes the plugin's status reason).
public enum VerificationFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// The manifest pins a hash and the loaded bytes differ.
    case libraryHashMismatch(manifestSHA256: String, librarySHA256: String)
    /// No sidecar at any of the places looked at.
    case signatureMissing(tried: [String])
    /// The sidecar exists but is not a valid signature file.
    case signatureUnreadable(String)
    /// The sidecar names another plugin.
    case signatureForOtherPlugin(file: String, plugin: String)
    /// The sidecar was made for other library bytes (rebuilt, tampered, or rolled back).
    case signedHashMismatch(file: String, signedSHA256: String, librarySHA256: String)
    /// The signing key is not in the trust store.
    case untrustedKey(file: String, keyID: String)
    /// The ed25519 check failed: the manifest changed since signing, or the signature is forged.
    case badSignature(file: String, keyID: String)
    /// The manifest's syscall profile cannot be read, so its hash cannot be checked.
    case profileUnreadable(String)

    /// The bytes differ from the manifest's own sha256: never excused by allow_unsigned.
    public var isPinnedHashMismatch: Bool {
        if case .libraryHashMismatch = self { return true } else { return false }
    }

    public var description: String {
        switch self {
        case .libraryHashMismatch(let pinned, let actual):
            return "library sha256 \(actual) differs from the manifest's sha256 \(pinned)"
        case .signatureMissing(let tried):
            return "no signature (looked for \(tried.joined(separator: ", "))); sign it with `peerhost sign`, or list the plugin in [security] allow_unsigned"
        case .signatureUnreadable(let why):
            return "signature unreadable: \(why)"
        case .signatureForOtherPlugin(let file, let plugin):
            return "signature \(file) is for plugin '\(plugin)'"
        case .signedHashMismatch(let file, let signed, let actual):
            return "library sha256 \(actual) differs from the signed sha256 \(signed) (\(file)): the library was rebuilt or modified since signing"
        case .untrustedKey(let file, let keyID):
            return "signature \(file) is by key \(keyID), which is not in the trust store"
        case .badSignature(let file, let keyID):
            return "signature \(file) by key \(keyID) does not match the manifest: a grant, limit, control method or the syscall profile changed since signing, or the signature is forged"
        case .profileUnreadable(let why):
            return why
        }
    }
}

public enum PluginVerifier {
    /// Checks `manifest` for the library bytes hashing to `librarySHA256`, with the sidecar found
    /// beside `libraryPath` or the manifest (`SignatureFile.candidates`).
    public static func verify(manifest: PluginManifest, librarySHA256: String, libraryPath: String,
                              trust: TrustStore) -> Verification {
        let tried = SignatureFile.candidates(manifest: manifest, libraryPath: libraryPath)
        let found = tried.first { FileManager.default.fileExists(atPath: $0) }
        return verify(manifest: manifest, librarySHA256: librarySHA256, signaturePath: found, tried: tried, trust: trust)
    }

    /// Checks with the sidecar at `signaturePath` (nil = none found; `tried` says where it was looked for).
    public static func verify(manifest: PluginManifest, librarySHA256: String, signaturePath: String?,
                              tried: [String] = [], trust: TrustStore) -> Verification {
        if let pinned = manifest.sha256, pinned != librarySHA256 {
            return .refused(.libraryHashMismatch(manifestSHA256: pinned, librarySHA256: librarySHA256))
        }
        guard let signaturePath else { return .refused(.signatureMissing(tried: tried)) }
        let file: SignatureFile
        do {
            file = try SignatureFile(contentsOf: signaturePath)
        } catch {
            return .refused(.signatureUnreadable(error.description))
        }
        guard file.plugin == manifest.name else {
            return .refused(.signatureForOtherPlugin(file: signaturePath, plugin: file.plugin))
        }
        guard file.librarySHA256 == librarySHA256 else {
            return .refused(.signedHashMismatch(file: signaturePath, signedSHA256: file.librarySHA256, librarySHA256: librarySHA256))
        }
        guard let key = trust.key(id: file.keyID) else {
            return .refused(.untrustedKey(file: signaturePath, keyID: file.keyID))
        }
        let message: String
        do {
            message = try CanonicalManifest.text(manifest, librarySHA256: librarySHA256, signedTime: file.signedTime)
        } catch {
            return .refused(.profileUnreadable(error.description))
        }
        guard key.key.isValidSignature(file.signature, for: Data(message.utf8)) else {
            return .refused(.badSignature(file: signaturePath, keyID: file.keyID))
        }
        return .verified(keyID: file.keyID, signedTime: file.signedTime, signatureFile: signaturePath)
    }

    /// Lowercase hex SHA-256 of the library file. The host calls this until the loaded bytes come
    /// from a sealed memfd (`LibraryImage.sha256`), which then replaces it so the hash checked is
    /// the hash of the bytes the runner maps.
    public static func librarySHA256(path: String) -> String? {
        FileHash.sha256(path: path)
    }
}
