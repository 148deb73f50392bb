import CPeerhostABI
import CPeerhostShim
import Foundation
import PeerhostRing
import Testing
@testable import PeerhostCore
#if canImport(Glibc)
import Glibc
#endif

/// The pure decisions behind CONNECT, UDP_SEND and FILE_OPEN: grant matching with the loopback
/// rule, storage path splitting, open flags, and the file-id check of the decoder.
@Suite struct PluginAccessTests {
    func policy(_ grants: String...) throws -> ConnectPolicy {
        ConnectPolicy(grants: try grants.map { try NetGrant(parsing: $0) })
    }

    func allows(_ p: ConnectPolicy, _ host: String, _ ip: String, _ port: UInt16, transport: NetGrant.Transport = .tcp,
                local: Set<IPAddress> = []) -> Bool {
        p.allows(transport: transport, requestedHost: host, address: IPAddress(ip)!, port: port, local: local)
    }

    @Test func addressesNormaliseAcrossFamilies() {
        #expect(IPAddress("127.0.0.1") == IPAddress("::ffff:127.0.0.1"))
        #expect(IPAddress("127.1.2.3")!.isLoopback)
        #expect(IPAddress("::1")!.isLoopback)
        #expect(!IPAddress("128.0.0.1")!.isLoopback)
        #expect(IPAddress("0.0.0.0")!.isUnspecified && IPAddress("::")!.isUnspecified && IPAddress("0.1.2.3")!.isUnspecified)
        #expect(IPAddress("not an address") == nil && IPAddress("example.org") == nil)
        #expect(IPAddress("10.1.2.3")!.description == "10.1.2.3")
        #expect(IPAddress("2001:db8::7")!.description == "2001:db8::7")
        #expect(IPAddress(try! SocketAddress(ip: "::1", port: 9)) == IPAddress("::1"))
        #expect(IPAddress(try! SocketAddress(ip: "192.0.2.4", port: 9)) == IPAddress("192.0.2.4"))
    }

    @Test func wildcardGrantsNeverReachLoopbackOrTheHostsOwnAddresses() throws {
        let p = try policy("tcp:*:1-65535")
        let own: Set<IPAddress> = [IPAddress("192.0.2.10")!]
        #expect(allows(p, "203.0.113.5", "203.0.113.5", 80, local: own))
        #expect(!allows(p, "127.0.0.1", "127.0.0.1", 80))
        #expect(!allows(p, "127.9.9.9", "127.9.9.9", 80))
        #expect(!allows(p, "::1", "::1", 80))
        #expect(!allows(p, "::ffff:127.0.0.1", "::ffff:127.0.0.1", 80))
        #expect(!allows(p, "0.0.0.0", "0.0.0.0", 80))
        #expect(!allows(p, "192.0.2.10", "192.0.2.10", 80, local: own), "the host's own LAN address")
        #expect(!allows(p, "localhost", "127.0.0.1", 80), "a name that resolves to loopback")
        #expect(!allows(p, "x", "203.0.113.5", 80, transport: .udp), "tcp grants do not cover udp")
        // 0.0.0.0 and :: in a grant are wildcards too, with the same rule.
        #expect(!allows(try policy("tcp:0.0.0.0:1-65535"), "127.0.0.1", "127.0.0.1", 80))
        #expect(allows(try policy("tcp:0.0.0.0:1-65535"), "203.0.113.5", "203.0.113.5", 80))
    }

    /// Issue 15: the IPv4-compatible spelling (::a.b.c.d) of loopback and of the host's own
    /// addresses, and the link-local ranges (cloud metadata at 169.254.169.254) under a wildcard.
    @Test func wildcardGrantsReachNeitherOtherSpellingsOfLocalNorTheLink() throws {
        let p = try policy("tcp:*:1-65535")
        let own: Set<IPAddress> = [IPAddress("192.0.2.10")!]
        #expect(!allows(p, "::127.0.0.1", "::127.0.0.1", 80), "IPv4-compatible loopback")
        #expect(!allows(p, "::192.0.2.10", "::192.0.2.10", 80, local: own), "IPv4-compatible form of the host's own address")
        #expect(!allows(p, "169.254.169.254", "169.254.169.254", 80), "cloud metadata")
        #expect(!allows(p, "::ffff:169.254.1.1", "::ffff:169.254.1.1", 80))
        #expect(!allows(p, "::169.254.1.1", "::169.254.1.1", 80))
        #expect(!allows(p, "fe80::1", "fe80::1", 80))
        #expect(!allows(p, "febf::1", "febf::1", 80))
        #expect(allows(p, "fec0::1", "fec0::1", 80), "fe80::/10 ends at febf")
        #expect(allows(p, "::203.0.113.5", "::203.0.113.5", 80), "a compatible public address is judged as its IPv4")
        #expect(allows(p, "2001:db8::1", "2001:db8::1", 80))
        // An explicit grant still names the link, in either spelling.
        #expect(allows(try policy("tcp:169.254.169.254:80"), "169.254.169.254", "169.254.169.254", 80))
        #expect(allows(try policy("tcp:169.254.169.254:80"), "::169.254.169.254", "::169.254.169.254", 80))
        #expect(IPAddress("::127.0.0.1")!.embeddedIPv4OrSelf == IPAddress("127.0.0.1")!)
        #expect(IPAddress("::1")!.embeddedIPv4OrSelf == IPAddress("::1")!, "::1 is IPv6 loopback, not 0.0.0.1")
    }

    @Test func multicastGroupsAreNeverConnectDestinations() throws {
        #expect(IPAddress("239.192.152.143")!.isMulticast && IPAddress("224.0.0.1")!.isMulticast)
        #expect(IPAddress("ff15::efc0:988f")!.isMulticast && IPAddress("ff02::1")!.isMulticast)
        #expect(!IPAddress("240.0.0.1")!.isMulticast && !IPAddress("223.255.255.255")!.isMulticast)
        #expect(!IPAddress("fe80::1")!.isMulticast && !IPAddress("10.0.0.1")!.isMulticast)
        // A wildcard udp grant would otherwise let a plugin spray the link past the multicast rate limit.
        #expect(!allows(try policy("udp:*:1-65535"), "239.192.152.143", "239.192.152.143", 6771, transport: .udp))
        #expect(!allows(try policy("udp:239.192.152.143:6771"), "239.192.152.143", "239.192.152.143", 6771, transport: .udp),
                "not even an explicit connect grant: multicast has its own grant")
        #expect(!allows(try policy("udp:*:1-65535"), "ff02::1", "ff02::1", 6771, transport: .udp))
    }

    @Test func multicastGrantsCoverTheirGroupAndPortOnly() throws {
        let access = PluginAccess(listen: [], connect: [try NetGrant(parsing: "udp:*:1-65535")],
                                  multicast: [try NetGrant(parsing: "udp:239.192.152.143:6771")],
                                  storage: StorageLayout(grants: []), storageRoot: "/nonexistent")
        #expect(access.mayJoin(try NetGrant(parsing: "udp:239.192.152.143:6771")))
        #expect(!access.mayJoin(try NetGrant(parsing: "udp:239.192.152.143:6772")), "another port")
        #expect(!access.mayJoin(try NetGrant(parsing: "udp:239.192.152.144:6771")), "another group")
        #expect(!access.mayJoin(try NetGrant(parsing: "tcp:239.192.152.143:6771")), "tcp")
        #expect(!access.mayJoin(try NetGrant(parsing: "udp:10.0.0.1:6771")), "not a group")
        #expect(!access.mayBind(try NetGrant(parsing: "udp:239.192.152.143:6771")), "no listen grant names the group")
    }

    @Test func explicitGrantsCoverExactlyWhatTheyName() throws {
        let p = try policy("tcp:127.0.0.1:7000", "udp:[::1]:53")
        #expect(allows(p, "127.0.0.1", "127.0.0.1", 7000))
        #expect(allows(p, "localhost", "127.0.0.1", 7000), "a name resolving to the granted address")
        #expect(!allows(p, "127.0.0.1", "127.0.0.1", 7001), "another port")
        #expect(!allows(p, "127.0.0.2", "127.0.0.2", 7000), "another loopback address")
        #expect(allows(p, "::1", "::1", 53, transport: .udp))
        #expect(!allows(p, "::1", "::1", 53, transport: .tcp))
    }

    @Test func nameGrantsCoverTheNameButNotARebindToLocal() throws {
        let p = try policy("tcp:tracker.example:80", "tcp:localhost:9000")
        #expect(allows(p, "tracker.example", "203.0.113.9", 80))
        #expect(allows(p, "TRACKER.example", "203.0.113.9", 80))
        #expect(!allows(p, "tracker.example", "127.0.0.1", 80), "DNS rebinding to loopback")
        #expect(!allows(p, "other.example", "203.0.113.9", 80))
        #expect(allows(p, "localhost", "127.0.0.1", 9000), "localhost named explicitly")
        #expect(allows(p, "localhost", "::1", 9000))
    }

    @Test func theCheapPreCheckRefusesWithoutResolving() throws {
        let p = try policy("tcp:127.0.0.1:7000", "tcp:tracker.example:80")
        #expect(p.mayCover(transport: .tcp, host: "127.0.0.1", port: 7000))
        #expect(!p.mayCover(transport: .tcp, host: "127.0.0.1", port: 7001))
        #expect(p.mayCover(transport: .tcp, host: "localhost", port: 7000), "a name might resolve to 127.0.0.1")
        #expect(p.mayCover(transport: .tcp, host: "tracker.example", port: 80))
        #expect(!p.mayCover(transport: .tcp, host: "10.0.0.1", port: 80), "a literal is not the named host")
        #expect(!p.mayCover(transport: .udp, host: "127.0.0.1", port: 7000))
        #expect(try policy().mayCover(transport: .tcp, host: "x", port: 1) == false)
    }

    @Test func localAddressesIncludeLoopback() {
        let local = LocalAddresses().current()
        #expect(local.contains(IPAddress("127.0.0.1")!))
    }

    // MARK: Storage

    let layout = StorageLayout(grants: [.init(path: "downloads", writable: true), .init(path: "seeds", writable: false),
                                        .init(path: "seeds/incoming", writable: true)])

    @Test func pathsSplitIntoAGrantAndTheRest() {
        #expect(layout.resolve(path: "downloads/a.bin", write: true) == .beneath(grant: 0, remainder: "a.bin"))
        #expect(layout.resolve(path: "downloads//sub/./a.bin", write: false) == .beneath(grant: 0, remainder: "sub/./a.bin"))
        #expect(layout.resolve(path: "seeds/x", write: false) == .beneath(grant: 1, remainder: "x"))
        #expect(layout.resolve(path: "seeds/incoming/x", write: true) == .beneath(grant: 2, remainder: "x"),
                "the longest granted prefix wins")
        // ".." after the grant is left to openat2(RESOLVE_BENEATH), which refuses a way out.
        #expect(layout.resolve(path: "downloads/../seeds/x", write: false) == .beneath(grant: 0, remainder: "../seeds/x"))
    }

    @Test func pathsOutsideTheGrantsAreDenied() {
        func denied(_ path: String, write: Bool = false) -> Bool {
            if case .denied = layout.resolve(path: path, write: write) { return true }
            return false
        }
        #expect(denied("/etc/passwd"))
        #expect(denied("../escape"))
        #expect(denied("./downloads/a"))
        #expect(denied("other/a"))
        #expect(denied("downloads"), "the granted directory itself is not a file")
        #expect(denied("downloads/"))
        #expect(denied(""))
        #expect(denied("downloadsX/a"))
        #expect(denied("seeds/x", write: true), "read-only grant")
        #expect(!denied("seeds/x", write: false))
    }

    @Test func openFlagsMapAndRejectNonsense() {
        let r = UInt32(PH_FILE_READ), w = UInt32(PH_FILE_WRITE), c = UInt32(PH_FILE_CREATE), t = UInt32(PH_FILE_TRUNC)
        let base = O_NOCTTY | O_NONBLOCK
        #expect(StorageLayout.openFlags(r) == base | O_RDONLY)
        #expect(StorageLayout.openFlags(w) == base | O_WRONLY)
        #expect(StorageLayout.openFlags(r | w | c | t) == base | O_RDWR | O_CREAT | O_TRUNC)
        #expect(StorageLayout.openFlags(0) == nil)
        #expect(StorageLayout.openFlags(r | c) == nil, "create without write")
        #expect(StorageLayout.openFlags(r | 0x100) == nil, "unknown bit")
        #expect(StorageLayout.writes(r) == false)
        #expect(StorageLayout.writes(r | t) && StorageLayout.writes(w) && StorageLayout.writes(c | w))
        let m = UInt32(PH_FILE_MKDIRS)
        #expect(StorageLayout.openFlags(r | w | c | m) == base | O_RDWR | O_CREAT)
        #expect(StorageLayout.openFlags(r | w | m) == nil, "mkdirs without create")
        #expect(StorageLayout.writes(m))
    }

    @Test func makeParentsStaysBeneathTheGrant() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("ph-mkdirs-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: base + "/grant", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        let dir = open(base + "/grant", O_DIRECTORY | O_RDONLY)
        defer { close(dir) }
        #expect(StorageLayout.makeParents(beneath: dir, path: "Torrent/sub dir/deeper/file.bin") == 0)
        var isDir: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: base + "/grant/Torrent/sub dir/deeper", isDirectory: &isDir) && isDir.boolValue)
        #expect(!FileManager.default.fileExists(atPath: base + "/grant/Torrent/sub dir/deeper/file.bin"), "only parents")
        #expect(StorageLayout.makeParents(beneath: dir, path: "x/../../escape/f") == -EXDEV)
        // A symlink planted in the tree does not lead the mkdir out.
        try FileManager.default.createDirectory(atPath: base + "/outside", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: base + "/grant/link", withDestinationPath: base + "/outside")
        #expect(StorageLayout.makeParents(beneath: dir, path: "link/made/f") != 0)
        #expect(!FileManager.default.fileExists(atPath: base + "/outside/made"))
        #expect(StorageLayout.makeParents(beneath: dir, path: "file-at-top") == 0)
    }

    @Test func storageIsPreparedPrivateAndWithoutFollowingSymlinks() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("ph-storage-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        let fds = try prepareStorage(root: base + "/p", layout: StorageLayout(grants: [.init(path: "a/b", writable: true)]))
        defer { fds.forEach { _ = close($0) } }
        #expect(fds.count == 1)
        var st = stat()
        #expect(stat(base + "/p", &st) == 0 && st.st_mode & 0o777 == 0o700)
        #expect(FileManager.default.fileExists(atPath: base + "/p/a/b"))
        // The data directory itself may not exist yet when the first plugin starts.
        let deep = try prepareStorage(root: base + "/new/data/p", layout: StorageLayout(grants: []))
        #expect(deep.isEmpty && FileManager.default.fileExists(atPath: base + "/new/data/p"))
        // A granted path that is a symlink (planted to lead out) is refused, not followed.
        try FileManager.default.createSymbolicLink(atPath: base + "/q", withDestinationPath: "/tmp")
        #expect(throws: StorageSetupError.self) {
            _ = try prepareStorage(root: base + "/q", layout: StorageLayout(grants: []))
        }
        try FileManager.default.createDirectory(atPath: base + "/r", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: base + "/r/dl", withDestinationPath: "/tmp")
        #expect(throws: StorageSetupError.self) {
            _ = try prepareStorage(root: base + "/r", layout: StorageLayout(grants: [.init(path: "dl", writable: true)]))
        }
    }

    // MARK: Decoder: file ids

    @Test func fileDescriptorsNamingAFileNotOwnedAreViolations() throws {
        let geometry = RegionGeometry(ringEntries: 8, slotSize: 4096, slotCount: 8, recvSlots: 4)
        var dec = RequestDecoder(region: try SharedRegion.create(name: "t", geometry: geometry))
        let mine: UInt64 = 77
        for type in [PH_MSG_FILE_READ, PH_MSG_FILE_WRITE, PH_MSG_FILE_SYNC, PH_MSG_FILE_CLOSE] {
            let d = ph_desc(type: type, id: 78, request: 1, slot: 5, length: 10)
            #expect(throws: Violation(.fileNotOwned, "file id 78")) {
                _ = try dec.decode(d, owns: { _ in true }, ownsFile: { $0 == mine })
            }
            #expect(dec.owners[5] == .plugin, "the slot did not change hands")
        }
        let write = try dec.decode(ph_desc(type: PH_MSG_FILE_WRITE, id: mine, request: 2, arg: 4096, slot: 5, length: 10),
                                   owns: { _ in false }, ownsFile: { $0 == mine })
        #expect(write == .fileWrite(request: 2, file: mine, fileOffset: 4096, slot: 5, offset: 0, length: 10))
        #expect(dec.owners[5] == .inFlight)
    }
}
