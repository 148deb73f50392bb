// A plugin's manifest (plugins/*/manifest.toml): what the plugin is and everything it may do.
// The broker grants nothing else. Schema and rules: docs/manifest.md.

import Foundation

public struct PluginManifest: Sendable {
    /// Absolute path of the manifest file; relative paths inside resolve against its folder.
    public var path: String
    public var directory: String { (path as NSString).deletingLastPathComponent }

    // [plugin]
    public var name: String
    public var version: String
    /// As written: a file name or a path relative to the manifest's folder (see `resolveLibrary`).
    public var library: String
    /// Lowercase hex SHA-256 of the library. Optional: bundled plugins are built by SwiftPM, so
    /// their hash is only known after the build and lives in the signature sidecar instead
    /// (docs/signing.md). When present, the loaded bytes must match it.
    public var sha256: String?
    /// The ABI version as written ("1" or "1.MINOR"); part of the signed canonical form.
    public var abi: String
    /// The ABI major version the plugin is built for; this host serves 1.
    public var abiMajor: Int

    public var net: NetGrants
    public var storage: StorageGrants
    public var limits: ResourceLimits
    public var sandbox: SandboxSettings
    public var controls: [ControlMethod]
    /// `[status]`: the control method the host calls every `status_interval_s` for the plugin's
    /// status details and protocol metrics (docs/manifest.md "[status]"); nil = none.
    public var status: StatusSettings?

    public struct StatusSettings: Sendable, Equatable {
        /// A declared `[[control]]` method with signature "() -> bytes".
        public var method: String
        /// Metric names the plugin may export start with `peerhost_<metricPrefix>_`; nil = details only.
        public var metricPrefix: String?
    }

    /// Prefixes the core's own metric families use: a plugin may not claim them.
    public static let reservedMetricPrefixes: Set<String> = ["plugin", "ring", "peer", "shaper", "datapath", "host", "status"]

    public struct NetGrants: Sendable, Equatable {
        public var listen: [NetGrant] = []
        public var connect: [NetGrant] = []
        public var multicast: [NetGrant] = []
    }

    public struct StorageGrants: Sendable, Equatable {
        public struct PathGrant: Sendable, Equatable {
            public enum Mode: String, Sendable { case read = "r", readWrite = "rw" }
            /// Relative to `<data_dir>/<plugin>/`, never absolute, never containing `..`.
            public var path: String
            public var mode: Mode
            /// Bytes; nil = no quota of its own.
            public var quota: UInt64?
        }
        public var paths: [PathGrant] = []
        /// Bytes the plugin may keep in the key-value store; nil = no store access.
        public var kvQuota: UInt64?
    }

    public struct ResourceLimits: Sendable, Equatable {
        public var memoryBytes: UInt64?
        public var cpuPercent: Int?
        public var openFiles: Int?
        /// Bytes per second; 0 = unlimited, nil = not set.
        public var bandwidthUp: UInt64?
        public var bandwidthDown: UInt64?
    }

    public struct SandboxSettings: Sendable, Equatable {
        public enum Namespace: String, Sendable, CaseIterable { case user, pid, net, mount, ipc, uts, cgroup }
        /// Default: all six of Contract 1.
        public var namespaces: [Namespace] = [.user, .pid, .net, .mount, .ipc, .uts]
        /// Syscall profile path relative to the manifest's folder; nil = the host's default profile.
        public var syscallProfile: String?
    }

    public struct ControlMethod: Sendable, Equatable {
        public var name: String
        public var symbol: String
        public var signature: ControlSignature
        /// ABI 1.2 `async = true`: the C function is `ph_status fn(void *user, ph_call call, ARGS…)`
        /// and answers with `control_reply`, now or later, once or several times (a stream).
        public var isAsync: Bool = false
        /// What the method does, for `peerhost audit` and `ctl --help` (optional).
        public var description: String?
    }

    public func controlMethod(named name: String) -> ControlMethod? {
        controls.first { $0.name == name }
    }

    /// Checks `method` and converts `arguments` by its signature: what the host does before a call
    /// is sent to the runner.
    public func prepareControlCall(method: String, arguments: [ControlArgument]) throws(ControlCallError) -> PreparedControlCall {
        guard let control = controlMethod(named: method) else {
            throw .unknownMethod(plugin: name, method: method, known: controls.map(\.name).sorted())
        }
        let values = try control.signature.convert(arguments, method: method)
        return PreparedControlCall(method: control, arguments: values)
    }

    /// Where the library is: the manifest's folder first (an installed plugin ships beside its
    /// manifest), then `productsDirectory`, the folder of the running executable, because SwiftPM
    /// builds libecho-c.so next to `peerhost` in .build/<config>/ (development).
    public func resolveLibrary(productsDirectory: String = ExecutableLocation.directory) throws(LibraryNotFoundError) -> String {
        let candidates = library.hasPrefix("/")
            ? [library]
            : [(directory as NSString).appendingPathComponent(library),
               (productsDirectory as NSString).appendingPathComponent(library)]
        for candidate in candidates where FileManager.default.isReadableFile(atPath: candidate) {
            return (candidate as NSString).standardizingPath
        }
        throw LibraryNotFoundError(plugin: name, manifest: path, tried: candidates)
    }

    /// One line per grant, for `status` and `audit`: "net.listen tcp:127.0.0.1:7001".
    public var grantSummary: [String] {
        var lines: [String] = []
        lines += net.listen.map { "net.listen \($0)" }
        lines += net.connect.map { "net.connect \($0)" }
        lines += net.multicast.map { "net.multicast \($0)" }
        lines += storage.paths.map { "storage \($0.path) \($0.mode.rawValue)" }
        if let kv = storage.kvQuota { lines.append("store kv \(kv) bytes") }
        return lines
    }
}

public struct PreparedControlCall: Sendable, Equatable {
    public var method: PluginManifest.ControlMethod
    public var arguments: [ControlArgumentValue]
}

public struct LibraryNotFoundError: Error, Sendable, Equatable, CustomStringConvertible {
    public var plugin: String
    public var manifest: String
    public var tried: [String]
    public var description: String {
        "plugin \(plugin): library not found (manifest \(manifest)); tried: \(tried.joined(separator: ", "))"
    }
}

/// The running executable's folder (from /proc/self/exe): where SwiftPM puts plugin libraries, and
/// where config discovery starts walking up.
public enum ExecutableLocation {
    public static var path: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]
    }
    public static var directory: String { (path as NSString).deletingLastPathComponent }
}

// MARK: - Loading

extension PluginManifest {
    /// Every key a manifest accepts, by table ("" = top level); docs/manifest.md documents each
    /// (a test checks) and anything else is an "unknown key" error.
    public static let schemaKeys: [String: [String]] = [
        "": ["plugin", "net", "storage", "limits", "sandbox", "control", "status"],
        "plugin": ["name", "version", "library", "sha256", "abi"],
        "net": ["listen", "connect", "multicast"],
        "storage": ["paths", "kv"],
        "storage.paths": ["path", "mode", "quota"],
        "storage.kv": ["quota"],
        "limits": ["memory", "cpu_percent", "open_files", "bandwidth"],
        "limits.bandwidth": ["up", "down"],
        "sandbox": ["namespaces", "syscalls"],
        "control": ["name", "symbol", "signature", "async", "description"],
        "status": ["method", "metric_prefix"],
    ]

    /// The ABI major versions this host can serve.
    public static let supportedABIMajors = [1]

    public init(contentsOf path: String) throws(TOMLFileError) {
        let absolute = path.hasPrefix("/") ? path
            : (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(path)
        let source = try TOMLSource(contentsOf: path)
        try self.init(source: source, absolutePath: (absolute as NSString).standardizingPath)
    }

    public init(source: TOMLSource, absolutePath: String) throws(TOMLFileError) {
        let root = source.rootReader
        try root.allowOnly(Self.schemaKeys[""]!)
        self.path = absolutePath

        guard let plugin = try root.table("plugin") else { throw root.error("plugin", .missingKey) }
        try plugin.allowOnly(Self.schemaKeys["plugin"]!)
        name = try plugin.requiredString("name")
        try Self.checkPluginName(name, reader: plugin, key: "name")
        version = try plugin.requiredString("version")
        if version.isEmpty { throw plugin.error("version", .badValue("version must not be empty")) }
        library = try plugin.requiredString("library")
        if library.isEmpty || library.hasSuffix("/") {
            throw plugin.error("library", .badValue("library must name a shared-object file"))
        }
        sha256 = try plugin.string("sha256")
        if let hash = sha256, hash.count != 64 || !hash.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) {
            throw plugin.error("sha256", .badValue("expected 64 lowercase hex digits"))
        }
        let abiText = try plugin.requiredString("abi")
        guard let major = abiText.split(separator: ".", omittingEmptySubsequences: false).first.flatMap({ Int($0) }),
              abiText.split(separator: ".", omittingEmptySubsequences: false).allSatisfy({ Int($0) != nil }) else {
            throw plugin.error("abi", .badValue("'\(abiText)' is not an ABI version (expected \"1\" or \"1.MINOR\")"))
        }
        guard Self.supportedABIMajors.contains(major) else {
            throw plugin.error("abi", .badValue("ABI major \(major) is not supported by this host (supports \(Self.supportedABIMajors.map(String.init).joined(separator: ", ")))"))
        }
        abiMajor = major
        abi = abiText

        net = NetGrants()
        if let table = try root.table("net") {
            try table.allowOnly(Self.schemaKeys["net"]!)
            net.listen = try Self.netGrants(table, "listen")
            net.connect = try Self.netGrants(table, "connect")
            net.multicast = try Self.netGrants(table, "multicast")
            try Self.checkNoDuplicates(table, "listen", net.listen)
            try Self.checkNoDuplicates(table, "connect", net.connect)
            try Self.checkNoDuplicates(table, "multicast", net.multicast)
            for (index, grant) in net.multicast.enumerated() {
                let key = "net.multicast[\(index)]"
                guard grant.transport == .udp else {
                    throw source.error(at: key, .badValue("multicast grants are udp only, got \(grant)"))
                }
                guard let group = IPAddress(grant.host), group.isMulticast else {
                    throw source.error(at: key, .badValue("'\(grant.host)' is not a multicast group address (224.0.0.0/4 or ff00::/8)"))
                }
                guard grant.ports.count == 1, grant.ports.lowerBound != 0 else {
                    throw source.error(at: key, .badValue("a multicast grant names one port, got \(grant)"))
                }
            }
        }

        storage = StorageGrants()
        if let table = try root.table("storage") {
            try table.allowOnly(Self.schemaKeys["storage"]!)
            for entry in try table.tableArray("paths") ?? [] {
                try entry.allowOnly(Self.schemaKeys["storage.paths"]!)
                let relative = try entry.requiredString("path")
                if relative.isEmpty || relative.hasPrefix("/") || relative.split(separator: "/").contains("..") {
                    throw entry.error("path", .badValue("'\(relative)' must be a relative path without '..' (it lives under <data_dir>/\(name)/)"))
                }
                let modeText = try entry.string("mode") ?? "r"
                guard let mode = StorageGrants.PathGrant.Mode(rawValue: modeText) else {
                    throw entry.error("mode", .badValue("'\(modeText)' is not a mode (expected \"r\" or \"rw\")"))
                }
                let quota = try Self.size(entry, "quota")
                // Two grants for one folder, or one inside another, would make the effective mode
                // and quota of the inner folder ambiguous: refused.
                let components = Self.pathComponents(relative)
                if components.isEmpty {
                    throw entry.error("path", .badValue("'\(relative)' names the plugin's storage root itself; grant a subfolder"))
                }
                for (other, earlier) in storage.paths.enumerated() {
                    let otherComponents = Self.pathComponents(earlier.path)
                    if otherComponents == components {
                        throw entry.error("path", .badValue("'\(relative)' duplicates storage.paths[\(other)] ('\(earlier.path)')"))
                    }
                    let shorter = min(otherComponents.count, components.count)
                    if Array(otherComponents.prefix(shorter)) == Array(components.prefix(shorter)) {
                        throw entry.error("path", .badValue("'\(relative)' overlaps storage.paths[\(other)] ('\(earlier.path)'): one is inside the other"))
                    }
                }
                storage.paths.append(.init(path: relative, mode: mode, quota: quota))
            }
            if let kv = try table.table("kv") {
                try kv.allowOnly(Self.schemaKeys["storage.kv"]!)
                guard let quota = try Self.size(kv, "quota") else { throw kv.error("quota", .missingKey) }
                storage.kvQuota = quota
            }
        }

        limits = ResourceLimits()
        if let table = try root.table("limits") {
            try table.allowOnly(Self.schemaKeys["limits"]!)
            limits.memoryBytes = try Self.size(table, "memory")
            limits.cpuPercent = try table.integer("cpu_percent", in: 1...6400).map { Int($0) }
            limits.openFiles = try table.integer("open_files", in: 1...1_048_576).map { Int($0) }
            if let bandwidth = try table.table("bandwidth") {
                try bandwidth.allowOnly(Self.schemaKeys["limits.bandwidth"]!)
                limits.bandwidthUp = try Self.size(bandwidth, "up", rate: true)
                limits.bandwidthDown = try Self.size(bandwidth, "down", rate: true)
            }
        }

        sandbox = SandboxSettings()
        if let table = try root.table("sandbox") {
            try table.allowOnly(Self.schemaKeys["sandbox"]!)
            if let names = try table.stringArray("namespaces") {
                var namespaces: [SandboxSettings.Namespace] = []
                for (text, keyPath) in names {
                    guard let namespace = SandboxSettings.Namespace(rawValue: text) else {
                        throw source.error(at: keyPath, .badValue("unknown namespace '\(text)' (expected one of: \(SandboxSettings.Namespace.allCases.map(\.rawValue).joined(separator: ", ")))"))
                    }
                    if namespaces.contains(namespace) {
                        throw source.error(at: keyPath, .badValue("duplicate namespace '\(text)'"))
                    }
                    namespaces.append(namespace)
                }
                sandbox.namespaces = namespaces
            }
            sandbox.syscallProfile = try table.string("syscalls")
        }

        controls = []
        for entry in try root.tableArray("control") ?? [] {
            try entry.allowOnly(Self.schemaKeys["control"]!)
            let methodName = try entry.requiredString("name")
            guard Self.isIdentifier(methodName) else {
                throw entry.error("name", .badValue("'\(methodName)' is not a method name (letters, digits, _; not starting with a digit)"))
            }
            if controls.contains(where: { $0.name == methodName }) {
                throw entry.error("name", .badValue("duplicate control method '\(methodName)'"))
            }
            let symbol = try entry.requiredString("symbol")
            guard Self.isIdentifier(symbol) else {
                throw entry.error("symbol", .badValue("'\(symbol)' is not a C symbol name"))
            }
            let signatureText = try entry.requiredString("signature")
            let signature: ControlSignature
            do {
                signature = try ControlSignature(parsing: signatureText)
            } catch {
                throw entry.error("signature", .badValue(error.description))
            }
            let isAsync = try entry.boolean("async") ?? false
            if isAsync, signature.result != .bytes {
                throw entry.error("signature", .badValue("an async method answers with bytes (control_reply): its signature ends in \"-> bytes\", not \"-> \(signature.result.rawValue)\""))
            }
            let description = try entry.string("description")
            if let description, description.isEmpty || description.count > 200 || description.contains(where: \.isNewline) {
                throw entry.error("description", .badValue("a description is one line of 1…200 characters"))
            }
            controls.append(ControlMethod(name: methodName, symbol: symbol, signature: signature,
                                          isAsync: isAsync, description: description))
        }

        status = nil
        if let table = try root.table("status") {
            try table.allowOnly(Self.schemaKeys["status"]!)
            let method = try table.requiredString("method")
            guard let control = controls.first(where: { $0.name == method }) else {
                throw table.error("method", .badValue("'\(method)' is not a declared [[control]] method (declared: \(controls.map(\.name).joined(separator: ", ")))"))
            }
            guard control.signature.description == "() -> bytes" else {
                throw table.error("method", .badValue("'\(method)' has signature \(control.signature.description); a status method takes no arguments and returns bytes: \"() -> bytes\""))
            }
            let prefix = try table.string("metric_prefix")
            if let prefix {
                let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789_")
                guard let first = prefix.first, first.isLetter, prefix.count <= 32, prefix.allSatisfy({ allowed.contains($0) }),
                      !prefix.hasSuffix("_") else {
                    throw table.error("metric_prefix", .badValue("'\(prefix)' is not a metric prefix (lowercase letters, digits and _, starting with a letter, at most 32)"))
                }
                guard !Self.reservedMetricPrefixes.contains(prefix) else {
                    throw table.error("metric_prefix", .badValue("'\(prefix)' is reserved for the host's own metrics (\(Self.reservedMetricPrefixes.sorted().joined(separator: ", ")))"))
                }
            }
            status = StatusSettings(method: method, metricPrefix: prefix)
        }
    }

    static func checkPluginName(_ name: String, reader: TOMLTableReader, key: String) throws(TOMLFileError) {
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789-_")
        guard !name.isEmpty, name.count <= 64, name.allSatisfy({ allowed.contains($0) }), name != "host" else {
            throw reader.error(key, .badValue("'\(name)' is not a plugin name (lowercase letters, digits, - and _; at most 64; 'host' is reserved)"))
        }
    }

    /// A storage path's folders, without empty and "." parts ("a//b/./" → ["a", "b"]).
    static func pathComponents(_ path: String) -> [Substring] {
        path.split(separator: "/").filter { $0 != "." }
    }

    /// The same grant twice in one list is a copy-paste slip; refusing it keeps the signed list
    /// and `peerhost audit`'s output free of noise.
    static func checkNoDuplicates(_ table: TOMLTableReader, _ key: String, _ grants: [NetGrant]) throws(TOMLFileError) {
        for (index, grant) in grants.enumerated() {
            if let first = grants[..<index].firstIndex(of: grant) {
                throw table.source.error(at: "\(table.keyPath(key))[\(index)]",
                                         .badValue("duplicate grant \(grant) (already \(table.keyPath(key))[\(first)])"))
            }
        }
    }

    static func isIdentifier(_ text: String) -> Bool {
        guard let first = text.first, first.isASCII, first.isLetter || first == "_" else { return false }
        return text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
    }

    static func netGrants(_ table: TOMLTableReader, _ key: String) throws(TOMLFileError) -> [NetGrant] {
        var grants: [NetGrant] = []
        for (text, keyPath) in try table.stringArray(key) ?? [] {
            do {
                grants.append(try NetGrant(parsing: text))
            } catch {
                throw table.source.error(at: keyPath, .badValue(error.description))
            }
        }
        return grants
    }

    /// A size given as a string ("512MiB") or a plain integer of bytes.
    static func size(_ table: TOMLTableReader, _ key: String, rate: Bool = false) throws(TOMLFileError) -> UInt64? {
        guard let node = table.entries[key] else { return nil }
        switch node {
        case .integer(let bytes):
            guard bytes >= 0 else { throw table.error(key, .badValue("\(bytes) is negative")) }
            return UInt64(bytes)
        case .string(let text):
            do {
                return try ByteSize.parse(text, rate: rate)
            } catch {
                throw table.error(key, .badValue(error.description))
            }
        default:
            throw table.error(key, .wrongType(expected: rate ? "a rate string like \"10MiB/s\"" : "a size string like \"512MiB\"", found: node.typeName))
        }
    }
}
