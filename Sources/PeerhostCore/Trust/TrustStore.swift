// The keys whose plugin signatures the host accepts: every `*.pub` in the built-in trust folder
// (`sandbox/trust/` of the checkout, or /etc/peerhost/trust on an installed system) plus the
// folders the config names in `[security] trust` (docs/signing.md).

import Foundation

public struct TrustStore: Sendable {
    public struct Key: Sendable, Equatable {
        public var key: PublicSigningKey
        /// The .pub file it came from, for `peerhost audit`.
        public var path: String
    }
    /// By key id.
    public private(set) var keys: [String: Key] = [:]
    /// The folders read, in order.
    public private(set) var directories: [String] = []
    /// Unreadable folders or key files: reported at start-up and by `peerhost audit`, never fatal
    /// (a missing key only means fewer plugins verify).
    public private(set) var problems: [String] = []

    public init() {}

    public init(directories: [String]) {
        for directory in directories { add(directory: directory) }
    }

    /// The built-in folders plus the config's `[security] trust`.
    public init(config: HostConfig, executableDirectory: String = ExecutableLocation.directory) {
        self.init(directories: Self.builtInDirectories(executableDirectory: executableDirectory) + config.security.trustDirectories)
    }

    public mutating func add(directory: String) {
        directories.append(directory)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue,
              let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else {
            problems.append("trust folder \(directory) does not exist or is not readable")
            return
        }
        for name in names.sorted() where name.hasSuffix(".pub") {
            let path = (directory as NSString).appendingPathComponent(name)
            do {
                let key = try PublicSigningKey(contentsOf: path)
                if keys[key.keyID] == nil { keys[key.keyID] = Key(key: key, path: path) }
            } catch {
                problems.append(error.description)
            }
        }
    }

    public mutating func add(key: PublicSigningKey, path: String) {
        keys[key.keyID] = Key(key: key, path: path)
    }

    public func key(id: String) -> Key? { keys[id] }

    /// `sandbox/trust` of the checkout the executable was built in (walking up, as config discovery
    /// does), and /etc/peerhost/trust when it exists.
    public static func builtInDirectories(executableDirectory: String) -> [String] {
        var result: [String] = []
        var directory = (executableDirectory as NSString).standardizingPath
        while true {
            let candidate = (directory as NSString).appendingPathComponent("sandbox/trust")
            if FileManager.default.fileExists(atPath: (directory as NSString).appendingPathComponent(ConfigDiscovery.developmentRelativePath)),
               FileManager.default.fileExists(atPath: candidate) {
                result.append(candidate)
                break
            }
            let parent = (directory as NSString).deletingLastPathComponent
            if parent == directory || parent.isEmpty { break }
            directory = parent
        }
        if FileManager.default.fileExists(atPath: systemDirectory) { result.append(systemDirectory) }
        return result
    }

    public static let systemDirectory = "/etc/peerhost/trust"
}
