import Foundation

/// Paths and temp files shared by the PeerhostCore tests.
enum TestSupport {
    /// The checkout's root, from this file's path (Tests/PeerhostCoreTests/TestSupport.swift).
    static let repositoryRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static func path(_ relative: String) -> String { repositoryRoot + "/" + relative }

    /// A fresh directory under /tmp, removed by the caller with `removeDirectory`.
    static func makeTemporaryDirectory() throws -> String {
        let path = "/tmp/peerhost-test-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func removeDirectory(_ path: String) { try? FileManager.default.removeItem(atPath: path) }

    static func write(_ text: String, to path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// A minimal valid manifest for plugin `name` (15 lines, so a key appended after it is on line 16+).
    static func manifest(name: String, listen: String = "tcp:127.0.0.1:7001") -> String {
        """
        [plugin]
        name = "\(name)"
        version = "0.1.0"
        library = "lib\(name).so"
        abi = "1"

        [net]
        listen = ["\(listen)"]

        [[control]]
        name = "stats"
        symbol = "\(name.replacingOccurrences(of: "-", with: "_"))_stats"
        signature = "() -> bytes"

        """
    }
}
