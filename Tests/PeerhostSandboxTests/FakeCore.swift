// FakeCore: the core's side of Contracts 1–3, by hand, so the runner can be tested as a real
// sandboxed process before PeerhostRing/PeerhostCore exist: a sealed memfd region with both rings,
// a socketpair for control frames, two eventfds, and the spawn through SandboxSpawner.
import CPeerhostABI
import CPeerhostShim
import Foundation
import PeerhostCore
import PeerhostRing
import PeerhostSandbox
#if canImport(Glibc)
import Glibc
#endif

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Where `swift build`/`swift test` put the products: next to the test bundle.
enum Products {
    static var directory: String {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        // On Linux the bundle is .build/<triple>/debug/peerhostPackageTests.xctest (a file).
        if FileManager.default.fileExists(atPath: dir.appendingPathComponent("peerhost-runner").path) { return dir.path }
        dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/debug")
        return dir.path
    }
    static var runner: String { directory + "/peerhost-runner" }
    static func library(_ name: String) -> String { directory + "/lib\(name).so" }
}

final class FakeCore {
    // Small default geometry: 64 entries, 64 slots of 4 KiB, half of them receive slots.
    static let entries: UInt32 = 64
    static let slotSize: UInt32 = 4096
    static let slotCount: UInt32 = 64
    static let recvSlots: UInt32 = 32

    let memfd: Int32
    let base: UnsafeMutableRawPointer
    let header: ph_region_header
    let rx = UnsafeMutablePointer<ph_ring_view>.allocate(capacity: 1)   // core produces
    let tx = UnsafeMutablePointer<ph_ring_view>.allocate(capacity: 1)   // core consumes
    let rxEvent: Int32
    let txEvent: Int32
    let controlFD: Int32
    var childControlFD: Int32
    var process: SpawnedProcess?
    var inbox: [UInt8] = []
    /// Set when the region came from PeerhostRing (the core's own code); it owns fd and mapping.
    var shared: SharedRegion?

    init(entries: UInt32 = FakeCore.entries, slotCount: UInt32 = FakeCore.slotCount,
         recvSlots: UInt32 = FakeCore.recvSlots) throws {
        func align(_ v: UInt64, _ a: UInt64) -> UInt64 { (v + a - 1) / a * a }
        var h = ph_region_header()
        h.magic = PH_REGION_MAGIC
        h.abi_version = UInt32(PH_ABI_MAJOR) << 16 | UInt32(PH_ABI_MINOR) << 8
        h.header_size = UInt32(MemoryLayout<ph_region_header>.size)
        h.ring_entries = entries
        h.desc_size = UInt32(MemoryLayout<ph_desc>.size)
        h.slot_size = FakeCore.slotSize
        h.slot_count = slotCount
        h.recv_slots = recvSlots
        let ringBytes = UInt64(entries) * 64
        h.rx_ctl_offset = 4096
        h.rx_desc_offset = h.rx_ctl_offset + 256
        h.tx_ctl_offset = align(h.rx_desc_offset + ringBytes, 4096)
        h.tx_desc_offset = h.tx_ctl_offset + 256
        h.pool_offset = align(h.tx_desc_offset + ringBytes, 4096)
        h.total_size = h.pool_offset + UInt64(FakeCore.slotSize) * UInt64(slotCount)
        header = h

        memfd = ph_memfd_create("peerhost-test-region")
        guard memfd >= 0 else { throw HarnessError("memfd_create: \(errno)") }
        guard ftruncate(memfd, off_t(h.total_size)) == 0 else { throw HarnessError("ftruncate: \(errno)") }
        guard let p = mmap(nil, Int(h.total_size), PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0), p != MAP_FAILED else {
            throw HarnessError("mmap: \(errno)")
        }
        base = p
        p.storeBytes(of: h, as: ph_region_header.self)
        guard ph_memfd_seal(memfd) == 0 else { throw HarnessError("seal: \(errno)") }
        ph_ring_view_init(rx, p + Int(h.rx_ctl_offset), p + Int(h.rx_desc_offset), h.ring_entries, 1)
        ph_ring_view_init(tx, p + Int(h.tx_ctl_offset), p + Int(h.tx_desc_offset), h.ring_entries, 0)

        rxEvent = ph_eventfd(0, 1)
        txEvent = ph_eventfd(0, 1)
        var sv: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &sv) == 0 else {
            throw HarnessError("socketpair: \(errno)")
        }
        controlFD = sv[0]
        childControlFD = sv[1]
    }

    /// The region made by the core's PeerhostRing.SharedRegion instead of by hand: proves the
    /// runner reads exactly the layout the core writes.
    init(shared region: SharedRegion) throws {
        shared = region
        memfd = region.fd
        base = region.base
        header = region.base.load(as: ph_region_header.self)
        let h = header
        ph_ring_view_init(rx, base + Int(h.rx_ctl_offset), base + Int(h.rx_desc_offset), h.ring_entries, 1)
        ph_ring_view_init(tx, base + Int(h.tx_ctl_offset), base + Int(h.tx_desc_offset), h.ring_entries, 0)
        rxEvent = ph_eventfd(0, 1)
        txEvent = ph_eventfd(0, 1)
        var sv: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &sv) == 0 else {
            throw HarnessError("socketpair: \(errno)")
        }
        controlFD = sv[0]
        childControlFD = sv[1]
    }

    deinit {
        if let p = process {
            _ = p.signal(SIGKILL)
            _ = try? p.wait(timeoutMilliseconds: 2000)
            close(p.pidfd)
        }
        if shared == nil {
            munmap(base, Int(header.total_size))
            close(memfd)
        }
        close(rxEvent); close(txEvent); close(controlFD)
        if childControlFD >= 0 { close(childControlFD) }
    }

    /// Spawns the runner the way the core does: in a private root (tmpfs, read-only binds of the
    /// runner's files, the library's bytes copied from a sealed memfd to /plugin/<file>) unless
    /// `privateRoot` is false. A library path that does not exist is passed through unchanged (the
    /// runner's dlopen failure is what such a test wants to see).
    func spawn(plugin: String, library: String, hostUID: UInt32 = 200_000 + UInt32(getpid() % 1000),
               environment: [String] = ["SWIFT_BACKTRACE=enable=no"], arguments: [String] = [],
               privateRoot: Bool = true) throws -> SpawnedProcess {
        var root: PrivateRoot? = nil
        var libraryArgument = library
        var image: Int32 = -1
        defer { if image >= 0 { close(image) } }
        if privateRoot {
            var copy: PrivateRoot.LibraryCopy? = nil
            var binds = try FakeCore.runnerBinds()
            if FileManager.default.fileExists(atPath: library) {
                let (fd, size) = try FakeCore.sealedImage(of: library)
                image = fd
                libraryArgument = PrivateRoot.pluginDirectory + "/" + (library as NSString).lastPathComponent
                copy = .init(fd: fd, size: size, target: libraryArgument)
                binds += try PrivateRoot.pluginBinds(libraryPath: library, excluding: binds)
            }
            root = PrivateRoot(mountPoint: try FakeCore.mountPoint(), binds: binds, library: copy)
        }
        let spec = SpawnSpec(
            runnerPath: Products.runner,
            // The core always passes the plugin's profile; so does this harness (the built-in
            // default unless the test gives its own --syscalls).
            argv: ["peerhost-runner", "--plugin", plugin, "--library", libraryArgument]
                + (arguments.contains("--syscalls") ? [] : ["--syscalls", SyscallProfile.builtInDefault.encoded]) + arguments,
            environment: environment,
            fds: [memfd, childControlFD, rxEvent, txEvent],
            hostUID: hostUID, hostGID: hostUID, root: root)
        let p = try SandboxSpawner.spawn(spec)
        process = p
        close(childControlFD)   // the child has its own copy; EOF then means the runner is gone
        childControlFD = -1
        return p
    }

    /// The runner's files, resolved once per test process (as the core does once per host).
    nonisolated(unsafe) static var cachedRunnerBinds: [BindMount]?
    static let cacheLock = NSLock()
    static func runnerBinds() throws -> [BindMount] {
        cacheLock.lock()
        defer { cacheLock.unlock() }
        if let b = cachedRunnerBinds { return b }
        let b = try PrivateRoot.runnerBinds(runnerPath: Products.runner)
        cachedRunnerBinds = b
        return b
    }

    static func mountPoint() throws -> String {
        try PrivateRoot.defaultMountPoint(dataDirectory: NSTemporaryDirectory() + "peerhost-sandbox-tests")
    }

    /// The library's bytes in a sealed memfd (what LibraryImage does in the core).
    static func sealedImage(of path: String) throws -> (Int32, Int) {
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let fd = ph_memfd_create("fake-core-lib")
        guard fd >= 0 else { throw HarnessError("memfd_create: \(errno)") }
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress!, $0.count) }
        guard n == bytes.count, ph_memfd_seal_immutable(fd) == 0 else { close(fd); throw HarnessError("memfd write/seal: \(errno)") }
        return (fd, bytes.count)
    }

    func slot(_ s: UInt32) -> UnsafeMutablePointer<UInt8> {
        (base + Int(header.pool_offset) + Int(s) * Int(header.slot_size)).assumingMemoryBound(to: UInt8.self)
    }

    func write(slot s: UInt32, _ bytes: [UInt8]) { UnsafeMutableRawPointer(slot(s)).copyMemory(from: bytes, byteCount: bytes.count) }

    func text(slot s: UInt32, offset: UInt32 = 0, length: UInt32) -> String {
        String(decoding: UnsafeBufferPointer(start: slot(s) + Int(offset), count: Int(length)), as: UTF8.self)
    }

    func push(_ d: ph_desc) throws {
        var d = d
        guard ph_ring_put(rx, &d) != 0 else { throw HarnessError("RX ring full") }
        ph_ring_publish(rx)
        if ph_ring_consumer_wants_wakeup(rx) != 0 { _ = ph_eventfd_signal(rxEvent) }
    }

    /// Next TX descriptor, waiting up to `timeout` seconds.
    func next(timeout: Double = 5) throws -> ph_desc {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let n = ph_ring_ready(tx)
            if n == UInt32.max { throw HarnessError("TX ring corrupt") }
            if n > 0 {
                var d = ph_desc()
                ph_ring_peek_copy(tx, 0, &d)
                ph_ring_consume(tx, 1)
                return d
            }
            usleep(200)
        }
        throw HarnessError("no TX descriptor within \(timeout) s")
    }

    /// TX descriptors until one of `type` arrives (inclusive), in order.
    func collect(until type: ph_msg_type, timeout: Double = 5) throws -> [ph_desc] {
        var out: [ph_desc] = []
        while true {
            let d = try next(timeout: timeout)
            out.append(d)
            if d.type == UInt16(type.rawValue) { return out }
        }
    }

    func sendFrame(_ obj: [String: Any]) throws {
        let body = try JSONSerialization.data(withJSONObject: obj)
        let n = UInt32(body.count)
        var bytes: [UInt8] = [UInt8(n & 0xff), UInt8((n >> 8) & 0xff), UInt8((n >> 16) & 0xff), UInt8(n >> 24)]
        bytes += body
        guard Glibc.send(controlFD, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else { throw HarnessError("send frame: \(errno)") }
    }

    func readFrame(timeout: Double = 5) throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if inbox.count >= 4 {
                let n = Int(inbox[0]) | Int(inbox[1]) << 8 | Int(inbox[2]) << 16 | Int(inbox[3]) << 24
                if inbox.count >= 4 + n {
                    let body = Data(inbox[4..<(4 + n)])
                    inbox.removeFirst(4 + n)
                    guard let o = try JSONSerialization.jsonObject(with: body) as? [String: Any] else { throw HarnessError("frame is not an object") }
                    return o
                }
            }
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { throw HarnessError("no control frame within \(timeout) s") }
            var p = pollfd(fd: controlFD, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, Int32(left * 1000) + 1)
            var chunk = [UInt8](repeating: 0, count: 65536)
            let r = recv(controlFD, &chunk, chunk.count, Int32(MSG_DONTWAIT))
            if r == 0 { throw HarnessError("control socket closed by the runner") }
            if r > 0 { inbox += chunk[0..<r] }
        }
    }

    /// One control call round trip: returns the result frame.
    func call(_ id: Int, _ symbol: String, _ signature: String, _ args: [[String: Any]]) throws -> [String: Any] {
        try sendFrame(["type": "call", "id": id, "symbol": symbol, "signature": signature, "args": args])
        let f = try readFrame()
        guard (f["id"] as? Int) == id else { throw HarnessError("result for id \(String(describing: f["id"])), expected \(id)") }
        return f
    }
}

func desc(_ type: ph_msg_type, id: UInt64 = 0, slot: UInt32 = PH_NO_SLOT, offset: UInt32 = 0, length: UInt32 = 0,
          request: UInt64 = 0, arg: Int64 = 0, status: Int16 = 0) -> ph_desc {
    var d = ph_desc()
    d.type = UInt16(type.rawValue)
    d.id = id
    d.slot = slot
    d.offset = offset
    d.length = length
    d.request = request
    d.arg = arg
    d.status = status
    return d
}

/// utime + stime of a process in clock ticks (/proc/PID/stat fields 14 and 15).
func cpuTicks(_ pid: pid_t) throws -> Int {
    let text = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
    guard let close = text.lastIndex(of: ")") else { throw HarnessError("bad stat") }
    let fields = text[text.index(after: close)...].split(separator: " ")
    // fields[0] is state (field 3), so utime (14) is fields[11] and stime (15) fields[12].
    guard fields.count > 12, let u = Int(fields[11]), let s = Int(fields[12]) else { throw HarnessError("bad stat") }
    return u + s
}
