// The signature sidecar of a manifest (docs/signing.md): a small TOML file
//
//   plugin = "echo-c"
//   key = "ed25519:0123456789abcdef"
//   sha256 = "…64 hex…"                # the library bytes that were signed
//   signed = "2026-11-25T16:40:00Z"
//   signature = "BASE64 of 64 bytes"    # ed25519 over CanonicalManifest.text(manifest, sha256, signed)
//
// Where it lives: `manifest.sig` beside the manifest; or, when the library was found in the build
// products folder rather than beside the manifest (bundled plugins in development, whose hash
// differs between debug and release), `<plugin>.manifest.sig` beside that library.

import Foundation

public struct SignatureFile: Sendable, Equatable {
    public var plugin: String
    public var keyID: String
    public var librarySHA256: String
    public var signedTime: String
    public var signature: Data

    public static let schemaKeys = ["plugin", "key", "sha256", "signed", "signature"]

    public init(plugin: String, keyID: String, librarySHA256: String, signedTime: String, signature: Data) {
        self.plugin = plugin
        self.keyID = keyID
        self.librarySHA256 = librarySHA256
        self.signedTime = signedTime
        self.signature = signature
    }

    public init(contentsOf path: String) throws(TOMLFileError) {
        let source = try TOMLSource(contentsOf: path)
        let root = source.rootReader
        try root.allowOnly(Self.schemaKeys)
        plugin = try root.requiredString("plugin")
        keyID = try root.requiredString("key")
        librarySHA256 = try root.requiredString("sha256")
        if librarySHA256.count != 64 || !librarySHA256.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) {
            throw root.error("sha256", .badValue("expected 64 lowercase hex digits"))
        }
        signedTime = try root.requiredString("signed")
        let text = try root.requiredString("signature")
        guard let bytes = Data(base64Encoded: text), bytes.count == 64 else {
            throw root.error("signature", .badValue("expected the base64 of a 64-byte ed25519 signature"))
        }
        signature = bytes
    }

    public var fileText: String {
        """
        # Signature of the \(plugin) manifest: ed25519 over its canonical form (docs/signing.md).
        plugin = "\(plugin)"
        key = "\(keyID)"
        sha256 = "\(librarySHA256)"
        signed = "\(signedTime)"
        signature = "\(signature.base64EncodedString())"

        """
    }

    /// Where the sidecar for `manifest` is looked for, first match wins: beside the manifest (an
    /// explicit signature of exactly this manifest), then beside a library that is not in the
    /// manifest's folder (the build products folder, where development builds sign what they build).
    public static func candidates(manifest: PluginManifest, libraryPath: String) -> [String] {
        let libraryFolder = ((libraryPath as NSString).deletingLastPathComponent as NSString).standardizingPath
        let besideManifest = (manifest.directory as NSString).appendingPathComponent("manifest.sig")
        if libraryFolder == (manifest.directory as NSString).standardizingPath {
            return [besideManifest]
        }
        return [besideManifest, (libraryFolder as NSString).appendingPathComponent("\(manifest.name).manifest.sig")]
    }

    /// Where `peerhost sign` writes a sidecar when not told (--out): beside the manifest when the
    /// library sits there (an installed plugin), else beside the library (a build products folder),
    /// so signing the checkout's manifests never writes into the checkout.
    public static func defaultLocation(manifest: PluginManifest, libraryPath: String) -> String {
        let candidates = candidates(manifest: manifest, libraryPath: libraryPath)
        return candidates.count > 1 ? candidates[1] : candidates[0]
    }

    /// Signs `manifest` for the library bytes hashing to `librarySHA256`.
    public static func sign(manifest: PluginManifest, librarySHA256: String, key: PrivateSigningKey,
                            signedTime: String = AuditEvent.now()) throws -> SignatureFile {
        let message = try CanonicalManifest.text(manifest, librarySHA256: librarySHA256, signedTime: signedTime)
        let signature = try key.signature(for: Data(message.utf8))
        return SignatureFile(plugin: manifest.name, keyID: key.publicKey.keyID, librarySHA256: librarySHA256,
                             signedTime: signedTime, signature: signature)
    }
}
