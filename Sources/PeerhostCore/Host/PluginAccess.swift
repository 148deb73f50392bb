// What one plugin may reach, and the pure decisions over it: which outbound addresses its connect
// grants cover (with DESIGN.md's loopback rule), how a FILE_OPEN path splits into a granted
// directory and the rest, and which open(2) flags a PH_FILE_* set becomes. No I/O here except
// `LocalAddresses.current()`, so every rule is unit-tested without a host.

import CPeerhostABI
import CPeerhostShim
#if canImport(Glibc)
import Glibc
#endif

/// Everything a session needs to know about its plugin's grants (DESIGN.md "Capabilities and
/// manifests"): effective listen grants (TCP listen and UDP bind), connect grants (TCP connect and
/// UDP destinations), storage grants and where the plugin's storage root lives.
public struct PluginAccess: Sendable {
    public var listen: [NetGrant]
    public var connect: ConnectPolicy
    /// `net.multicast`: the groups (address and port) the plugin may join and send to.
    public var multicast: [NetGrant]
    public var storage: StorageLayout
    /// `<data_dir>/<plugin>`: created 0700 by the session; storage grants live under it.
    public var storageRoot: String

    public init(listen: [NetGrant], connect: [NetGrant], multicast: [NetGrant] = [], storage: StorageLayout,
                storageRoot: String) {
        self.listen = listen
        self.connect = ConnectPolicy(grants: connect)
        self.multicast = multicast
        self.storage = storage
        self.storageRoot = storageRoot
    }

    /// The effective grants of a configured plugin: the config narrows listen; connect and
    /// storage come from the manifest as they are; `operatorGrants` (absolute directories the
    /// operator granted at run time) follow the manifest's storage grants.
    public init(config: HostConfig.PluginConfig, operatorGrants: [StorageLayout.Grant] = []) {
        self.init(listen: config.effectiveListen, connect: config.manifest.net.connect,
                  multicast: config.manifest.net.multicast,
                  storage: StorageLayout(grants: config.manifest.storage.paths.map {
                      .init(path: $0.path, writable: $0.mode == .readWrite)
                  } + operatorGrants),
                  storageRoot: config.dataDirectory + "/" + config.name)
    }

    /// True when some listen grant covers binding exactly `address` (one port, this transport).
    public func mayBind(_ address: NetGrant) -> Bool {
        address.ports.count == 1 && address.host != "*" && listen.contains { $0.covers(address) }
    }

    /// True when `address` is a multicast group and port some `net.multicast` grant names: the
    /// plugin may bind it (the core joins the group) and send to it from that socket.
    public func mayJoin(_ address: NetGrant) -> Bool {
        guard address.transport == .udp, address.ports.count == 1, let group = IPAddress(address.host),
              group.isMulticast else { return false }
        return multicast.contains { g in
            g.transport == .udp && IPAddress(g.host) == group && g.ports.contains(address.ports.lowerBound)
        }
    }
}

// MARK: - Addresses

/// An IPv4 or IPv6 address normalised to 16 bytes (IPv4 as ::ffff:a.b.c.d), so v4, v6 and
/// v4-mapped forms of the same address compare equal.
public struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    public let high: UInt64
    public let low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Parses a numeric address ("127.0.0.1", "::1", "::ffff:10.0.0.1"); nil for anything else.
    public init?(_ text: String) {
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            self.init(ipv4: UInt32(bigEndian: v4.s_addr))
        } else if inet_pton(AF_INET6, text, &v6) == 1 {
            self.init(in6: v6)
        } else {
            return nil
        }
    }

    public init(ipv4: UInt32) {
        high = 0
        low = 0xffff_0000_0000 | UInt64(ipv4)
    }

    init(in6: in6_addr) {
        var a = in6
        let bytes = withUnsafeBytes(of: &a) { Array($0) }
        var h: UInt64 = 0, l: UInt64 = 0
        for i in 0..<8 { h = h << 8 | UInt64(bytes[i]) }
        for i in 8..<16 { l = l << 8 | UInt64(bytes[i]) }
        high = h
        low = l
    }

    /// The address of a kernel-filled or parsed socket address.
    public init(_ address: SocketAddress) {
        var s = address.storage
        if address.family == AF_INET {
            let v4 = withUnsafeBytes(of: &s) { $0.loadUnaligned(fromByteOffset: 4, as: UInt32.self) }
            self.init(ipv4: UInt32(bigEndian: v4))
        } else {
            let v6 = withUnsafeBytes(of: &s) { $0.loadUnaligned(fromByteOffset: 8, as: in6_addr.self) }
            self.init(in6: v6)
        }
    }

    public var isIPv4: Bool { high == 0 && low >> 32 == 0xffff }
    private var ipv4: UInt32 { UInt32(truncatingIfNeeded: low) }

    /// 127.0.0.0/8 and ::1.
    public var isLoopback: Bool {
        isIPv4 ? ipv4 >> 24 == 127 : (high == 0 && low == 1)
    }

    /// 224.0.0.0/4 and ff00::/8. A datagram to a group reaches every member on the link, so only
    /// a `net.multicast` grant covers one (through a socket that joined it, rate-limited).
    public var isMulticast: Bool {
        isIPv4 ? ipv4 >> 28 == 0xe : high >> 56 == 0xff
    }

    /// 169.254.0.0/16 and fe80::/10: the link itself (and, on clouds, the instance-metadata
    /// service at 169.254.169.254), never a peer a wildcard grant is meant to reach.
    public var isLinkLocal: Bool {
        isIPv4 ? ipv4 >> 16 == 0xa9fe : high >> 54 == 0x3fa
    }

    /// The IPv4 address inside an IPv4-compatible IPv6 address (::a.b.c.d, deprecated by RFC 4291
    /// but still parsed and routed), else the address itself: "::127.0.0.1" must be judged as
    /// 127.0.0.1. (IPv4-mapped ::ffff:a.b.c.d is already normalised to the IPv4 form.)
    public var embeddedIPv4OrSelf: IPAddress {
        high == 0 && low >> 32 == 0 && low > 1 ? IPAddress(ipv4: UInt32(truncatingIfNeeded: low)) : self
    }

    /// 0.0.0.0/8 and ::: connecting to them reaches this host, so they count as local.
    public var isUnspecified: Bool {
        isIPv4 ? ipv4 >> 24 == 0 : (high == 0 && low == 0)
    }

    public var description: String {
        if isIPv4 { return "\(ipv4 >> 24).\(ipv4 >> 16 & 0xff).\(ipv4 >> 8 & 0xff).\(ipv4 & 0xff)" }
        var a = in6_addr()
        withUnsafeMutableBytes(of: &a) { raw in
            for i in 0..<8 { raw[i] = UInt8(truncatingIfNeeded: high >> (56 - 8 * UInt64(i))) }
            for i in 0..<8 { raw[8 + i] = UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64(i))) }
        }
        var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        _ = inet_ntop(AF_INET6, &a, &buf, socklen_t(buf.count))
        return String(cString: buf)
    }
}

/// The host's own interface addresses. Connect grants with a wildcard host must not reach them
/// (a plugin could otherwise talk to services bound only on the host's LAN address, including the
/// control plane). Cached: getifaddrs is a netlink dump, too slow to run per UDP datagram.
public final class LocalAddresses: @unchecked Sendable {
    private var cached: Set<IPAddress> = []
    private var fetchedAt: UInt64 = 0
    private var fetched = false
    /// How long a snapshot is trusted; addresses change rarely (DHCP, new interface).
    public static let refreshNanoseconds: UInt64 = 2_000_000_000

    public init() {}

    /// Loop thread only.
    public func current() -> Set<IPAddress> {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let now = UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
        if !fetched || now &- fetchedAt > Self.refreshNanoseconds {
            cached = Self.read()
            fetchedAt = now
            fetched = true
        }
        return cached
    }

    static func read() -> Set<IPAddress> {
        var out: Set<IPAddress> = []
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return out }
        defer { freeifaddrs(list) }
        var p = list
        while let ifa = p {
            if let sa = ifa.pointee.ifa_addr {
                let family = Int32(sa.pointee.sa_family)
                let len = family == AF_INET ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size
                if family == AF_INET || family == AF_INET6,
                   let address = try? SocketAddress(copying: sa, length: socklen_t(len)) {
                    out.insert(IPAddress(address))
                }
            }
            p = ifa.pointee.ifa_next
        }
        return out
    }
}

// MARK: - Connect grants

/// Outbound grants (`net.connect`) and DESIGN.md's rule: a grant never reaches loopback, the
/// unspecified address or the host's own addresses unless it names them explicitly. So
/// `tcp:*:1-65535` does not cover 127.0.0.1, ::1 or the host's LAN address; `tcp:127.0.0.1:7000`
/// covers exactly that; a name grant (`tcp:tracker.example:80`) covers what the name resolves to
/// except local addresses (DNS rebinding), unless the name is `localhost`.
public struct ConnectPolicy: Sendable {
    public var grants: [NetGrant]

    public init(grants: [NetGrant]) { self.grants = grants }

    private static func isWildcard(_ host: String) -> Bool { host == "*" || host == "0.0.0.0" || host == "::" }

    private static func namesLocalhost(_ host: String) -> Bool {
        let h = host.lowercased()
        return h == "localhost" || h.hasSuffix(".localhost")
    }

    /// Before resolving: could any grant cover `host:port`? Lets the core refuse without a DNS
    /// query (the plugin must not use the core to probe names it may not reach).
    public func mayCover(transport: NetGrant.Transport, host: String, port: UInt16) -> Bool {
        let literal = IPAddress(host)
        return grants.contains { g in
            guard g.transport == transport, g.ports.contains(port) else { return false }
            if Self.isWildcard(g.host) { return true }
            if let gip = IPAddress(g.host) { return literal == nil || literal == gip }
            return literal == nil && g.host.lowercased() == host.lowercased()
        }
    }

    /// The decision for one resolved address. `requestedHost` is what the plugin wrote (a name
    /// or a literal); `local` the host's own addresses. A multicast group is never a connect
    /// destination, not even by an explicit grant: it reaches every host on the link, so only the
    /// socket of a `net.multicast` grant sends there, under the core's rate limit.
    public func allows(transport: NetGrant.Transport, requestedHost: String, address: IPAddress, port: UInt16,
                       local: Set<IPAddress>) -> Bool {
        let judged = address.embeddedIPv4OrSelf
        if judged.isMulticast { return false }
        // Loopback, this host's own addresses and the link (169.254/16, fe80::/10: cloud metadata
        // lives there) in any spelling: only an explicit grant or a grant by name reaches them.
        let isLocal = judged.isLoopback || judged.isUnspecified || judged.isLinkLocal || local.contains(judged)
        for g in grants where g.transport == transport && g.ports.contains(port) {
            if Self.isWildcard(g.host) {
                if !isLocal { return true }
            } else if let gip = IPAddress(g.host) {
                // An explicit address grant names its address, loopback included.
                if gip == address || gip.embeddedIPv4OrSelf == judged { return true }
            } else if g.host.lowercased() == requestedHost.lowercased() {
                if !isLocal || Self.namesLocalhost(g.host) { return true }
            }
        }
        return false
    }
}

// MARK: - Storage paths

/// The plugin's storage grants and how a FILE_OPEN path maps onto them. Two kinds:
/// - manifest grants (`storage.paths`): relative, under `<data_dir>/<plugin>/`; the plugin names a
///   file by a relative path ("downloads/a.bin");
/// - operator grants (`peerhost ctl host grant PLUGIN DIR`, OperatorGrants.swift): an absolute
///   directory; the plugin names a file by its absolute path ("/srv/torrents/x/a.bin").
/// A relative path only ever matches a relative grant, an absolute path only an absolute one.
public struct StorageLayout: Sendable, Equatable {
    public struct Grant: Sendable, Equatable {
        public var path: String
        public var writable: Bool
        public var components: [Substring] { path.split(separator: "/") }
        /// An operator grant (absolute directory) rather than a manifest grant.
        public var isAbsolute: Bool { path.hasPrefix("/") }
        public init(path: String, writable: Bool) {
            self.path = path
            self.writable = writable
        }
    }

    public var grants: [Grant]

    public init(grants: [Grant]) { self.grants = grants }

    public enum Decision: Equatable, Sendable {
        /// Open `remainder` beneath the directory of `grants[grant]`.
        case beneath(grant: Int, remainder: String)
        case denied(reason: String)
    }

    /// Splits `path` ("downloads/a.bin", or "/srv/t/a.bin" under an operator grant) into the granted
    /// directory its leading components name (the longest grant of the same kind that is a prefix)
    /// and the rest. The rest may still contain ".." or a symlink: openat2(RESOLVE_BENEATH) under
    /// the granted directory refuses those, so this function need not (and cannot, for symlinks)
    /// judge them. `write` = the open would create, truncate or write, which needs a rw grant.
    public func resolve(path: String, write: Bool) -> Decision {
        let absolute = path.hasPrefix("/")
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        var best: Int?
        for (i, g) in grants.enumerated() where g.isAbsolute == absolute {
            let gc = g.components
            guard !gc.isEmpty, parts.count > gc.count, Array(parts.prefix(gc.count)) == gc else { continue }
            if best == nil || grants[best!].components.count < gc.count { best = i }
        }
        guard let grant = best else {
            return .denied(reason: absolute ? "no operator grant covers the absolute path '\(path)'"
                                            : "no storage grant covers the first component of '\(path)'")
        }
        if write && !grants[grant].writable {
            return .denied(reason: "storage path '\(grants[grant].path)' is granted read-only")
        }
        let remainder = parts.dropFirst(grants[grant].components.count).joined(separator: "/")
        return .beneath(grant: grant, remainder: remainder)
    }

    /// open(2) flags for PH_FILE_* flags, or nil for a combination that means nothing (no READ
    /// nor WRITE, unknown bits, CREATE/TRUNC without WRITE).
    public static func openFlags(_ flags: UInt32) -> Int32? {
        let known = UInt32(PH_FILE_READ | PH_FILE_WRITE | PH_FILE_CREATE | PH_FILE_TRUNC | PH_FILE_MKDIRS)
        guard flags & ~known == 0 else { return nil }
        if flags & UInt32(PH_FILE_MKDIRS) != 0 && flags & UInt32(PH_FILE_CREATE) == 0 { return nil }
        let read = flags & UInt32(PH_FILE_READ) != 0
        let write = flags & UInt32(PH_FILE_WRITE) != 0
        guard read || write else { return nil }
        if !write && flags & UInt32(PH_FILE_CREATE | PH_FILE_TRUNC) != 0 { return nil }
        // O_NOCTTY|O_NONBLOCK: a FIFO or device an operator left in the tree must not block the
        // loop thread's openat or become our terminal.
        var result: Int32 = O_NOCTTY | O_NONBLOCK
        result |= read && write ? O_RDWR : (write ? O_WRONLY : O_RDONLY)
        if flags & UInt32(PH_FILE_CREATE) != 0 { result |= O_CREAT }
        if flags & UInt32(PH_FILE_TRUNC) != 0 { result |= O_TRUNC }
        return result
    }

    /// Whether PH_FILE_* flags modify the file system (need a rw grant).
    public static func writes(_ flags: UInt32) -> Bool {
        flags & UInt32(PH_FILE_WRITE | PH_FILE_CREATE | PH_FILE_TRUNC | PH_FILE_MKDIRS) != 0
    }

    /// PH_FILE_MKDIRS: creates the parent directories of `path` beneath `directory`, one component
    /// at a time, each opened with openat2(RESOLVE_BENEATH) before the next is made inside it, so
    /// a "..", an absolute path or a symlink planted in the tree cannot lead the mkdir out of the
    /// grant. Returns 0 or a negative errno. Synchronous on the loop thread: a few metadata
    /// syscalls, once per new file of a torrent, not per block.
    public static func makeParents(beneath directory: Int32, path: String) -> Int32 {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true).dropLast()
        guard !parts.isEmpty else { return 0 }
        var current = Glibc.dup(directory)
        guard current >= 0 else { return -errno }
        defer { Glibc.close(current) }
        for part in parts {
            let name = String(part)
            guard name != "..", name != "." else { return -EXDEV }
            if mkdirat(current, name, 0o700) != 0 && errno != EEXIST { return -errno }
            let next = ph_openat_beneath(current, name, O_DIRECTORY | O_RDONLY | O_NOFOLLOW, 0)
            guard next >= 0 else { return -errno }
            Glibc.close(current)
            current = next
        }
        return 0
    }
}

/// Why a plugin's storage root or a granted directory could not be prepared.
public struct StorageSetupError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var step: String
    public var errno: Int32
    public var description: String {
        "storage \(path): \(step) failed: \(errnoName(errno)) (\(String(cString: strerror(errno))))"
    }
}

/// Creates `<data_dir>/<plugin>/` (0700) and each granted directory under it, without following
/// symlinks, and returns an O_PATH|O_DIRECTORY descriptor per grant (in grant order) for openat2.
/// Runs once per session start (control path; plain syscalls).
/// O_PATH from <fcntl.h>: Glibc's Swift module hides it (it needs _GNU_SOURCE). Same value on
/// every Linux architecture Swift supports.
private let O_PATH_: Int32 = 0o10000000

func prepareStorage(root: String, layout: StorageLayout) throws(StorageSetupError) -> [Int32] {
    if mkdir(root, 0o700) != 0 {
        guard errno == ENOENT else {
            if errno == EEXIST { return try openGrantedDirectories(root: root, layout: layout) }
            throw StorageSetupError(path: root, step: "mkdir", errno: errno)
        }
        // data_dir itself may not exist yet: plugins start before the host writes run.json there.
        var path = ""
        for component in root.split(separator: "/") {
            path += "/" + component
            if mkdir(path, 0o700) != 0 && errno != EEXIST {
                throw StorageSetupError(path: path, step: "mkdir", errno: errno)
            }
        }
    }
    return try openGrantedDirectories(root: root, layout: layout)
}

private func openGrantedDirectories(root: String, layout: StorageLayout) throws(StorageSetupError) -> [Int32] {
    let rootFD = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
    guard rootFD >= 0 else { throw StorageSetupError(path: root, step: "open", errno: errno) }
    defer { close(rootFD) }
    // 0700 even if it existed: other local users must not read a plugin's files.
    if fchmod(rootFD, 0o700) != 0 { throw StorageSetupError(path: root, step: "chmod 0700", errno: errno) }
    var fds: [Int32] = []
    do throws(StorageSetupError) {
        for grant in layout.grants {
            if grant.isAbsolute {
                // An operator grant: the operator's own directory, opened as it is (never created
                // here). One that is gone gets -1: opens under it are denied, the plugin still runs.
                fds.append(openOperatorDirectory(grant.path))
                continue
            }
            let dir = try openManifestGrant(rootFD: rootFD, root: root, grant)
            fds.append(dir)
        }
    } catch {
        for fd in fds { close(fd) }
        throw error
    }
    return fds
}

/// Walks (creating what is missing, 0700) to a manifest grant's directory beneath the plugin's
/// storage root, never through a symlink, and returns an O_PATH descriptor for it.
private func openManifestGrant(rootFD: Int32, root: String, _ grant: StorageLayout.Grant) throws(StorageSetupError) -> Int32 {
    var dir = dup(rootFD)
    guard dir >= 0 else { throw StorageSetupError(path: root, step: "dup", errno: errno) }
    var walked = root
    for component in grant.components {
        let name = String(component)
        walked += "/" + name
        if mkdirat(dir, name, 0o700) != 0 && errno != EEXIST {
            let e = errno; close(dir)
            throw StorageSetupError(path: walked, step: "mkdir", errno: e)
        }
        let next = openat(dir, name, O_PATH_ | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        let e = errno
        close(dir)
        guard next >= 0 else { throw StorageSetupError(path: walked, step: "open (no symlinks)", errno: e) }
        dir = next
    }
    return dir
}

/// True when `fd` (a granted directory's O_PATH descriptor, -1 if it could not be opened) no longer
/// is what the grant's path names: it was never opened, was deleted (no links left), or — for an
/// operator grant, whose path is the operator's — the path now leads to another directory (deleted
/// and made again, or renamed away). Then file opens must reopen it, never use the stale handle.
func grantedDirectoryIsStale(_ fd: Int32, _ grant: StorageLayout.Grant) -> Bool {
    guard fd >= 0 else { return true }
    var held = stat()
    guard fstat(fd, &held) == 0, held.st_nlink > 0 else { return true }
    guard grant.isAbsolute else { return false }
    var now = stat()
    guard stat(grant.path, &now) == 0 else { return true }
    return now.st_dev != held.st_dev || now.st_ino != held.st_ino
}

/// Opens a granted directory again by the same rules as at session start: an operator grant as the
/// path is now, a manifest grant walked and made again beneath the storage root without symlinks.
/// Returns -1 when that fails (opens under it are then denied, as for a grant that never opened).
func reopenGrantedDirectory(root: String, _ grant: StorageLayout.Grant) -> Int32 {
    if grant.isAbsolute { return openOperatorDirectory(grant.path) }
    let rootFD = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
    guard rootFD >= 0 else { return -1 }
    defer { close(rootFD) }
    return (try? openManifestGrant(rootFD: rootFD, root: root, grant)) ?? -1
}

/// An O_PATH descriptor for an operator-granted directory, or -1 when it cannot be opened.
func openOperatorDirectory(_ path: String) -> Int32 {
    open(path, O_PATH_ | O_DIRECTORY | O_CLOEXEC)
}
