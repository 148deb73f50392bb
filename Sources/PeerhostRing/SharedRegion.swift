import CPeerhostABI
import CPeerhostShim
#if canImport(Glibc)
import Glibc
#endif

/// One plugin's shared memory: header, RX ring (core → plugin), TX ring (plugin → core) and the
/// buffer pool, in a sealed memfd mapped by both processes.
///
/// The core creates it (`create`), the runner maps the fd it inherited (`attach`). On the core's side
/// the mapping is only ever addressed through the private `geometry`, never through the header.
public final class SharedRegion: @unchecked Sendable {
    public let fd: Int32
    public let base: UnsafeMutableRawPointer
    public let size: Int
    public let geometry: RegionGeometry
    private let ownsFD: Bool

    private init(fd: Int32, base: UnsafeMutableRawPointer, size: Int, geometry: RegionGeometry, ownsFD: Bool) {
        self.fd = fd
        self.base = base
        self.size = size
        self.geometry = geometry
        self.ownsFD = ownsFD
    }

    deinit {
        munmap(base, size)
        if ownsFD { close(fd) }
    }

    /// Core side: a fresh memfd of the geometry's size, header written, sealed against shrinking and
    /// growing (a plugin that could truncate it would SIGBUS the core).
    public static func create(name: String, geometry: RegionGeometry) throws(RingError) -> SharedRegion {
        try geometry.validate()
        let fd = ph_memfd_create("peerhost-region-\(name)")
        guard fd >= 0 else { throw .system(call: "memfd_create", errno: errno) }
        guard ftruncate(fd, off_t(geometry.totalSize)) == 0 else {
            let e = errno; close(fd); throw .system(call: "ftruncate", errno: e)
        }
        guard ph_memfd_seal(fd) == 0 else {
            let e = errno; close(fd); throw .system(call: "fcntl(F_ADD_SEALS)", errno: e)
        }
        guard let base = mmap(nil, geometry.totalSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0),
              base != MAP_FAILED else {
            let e = errno; close(fd); throw .system(call: "mmap", errno: e)
        }
        let region = SharedRegion(fd: fd, base: base, size: geometry.totalSize, geometry: geometry, ownsFD: true)
        region.writeHeader()
        return region
    }

    /// Runner side: maps an inherited region fd and reads its geometry from the header. The runner
    /// trusts the core, but still refuses a header that does not fit the mapping.
    public static func attach(fd: Int32) throws(RingError) -> SharedRegion {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .system(call: "fstat(region)", errno: errno) }
        let size = Int(st.st_size)
        guard size >= RegionGeometry.pageSize else { throw .badHeader("region is only \(size) bytes") }
        guard let base = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), base != MAP_FAILED else {
            throw .system(call: "mmap(region)", errno: errno)
        }
        let header = base.load(as: ph_region_header.self)
        func fail(_ why: String) throws(RingError) -> Never {
            munmap(base, size)
            throw .badHeader(why)
        }
        if header.magic != PH_REGION_MAGIC { try fail("magic \(String(header.magic, radix: 16)) is not PHR1") }
        if header.abi_version >> 16 != UInt32(PH_ABI_MAJOR) {
            try fail("region ABI major \(header.abi_version >> 16), runner serves \(PH_ABI_MAJOR)")
        }
        if header.desc_size != UInt32(MemoryLayout<ph_desc>.stride) {
            try fail("descriptor size \(header.desc_size), expected \(MemoryLayout<ph_desc>.stride)")
        }
        let geometry = RegionGeometry(ringEntries: header.ring_entries, slotSize: header.slot_size,
                                      slotCount: header.slot_count, recvSlots: header.recv_slots)
        do { try geometry.validate() } catch { try fail(error.description) }
        if geometry.totalSize != size || Int(header.pool_offset) != geometry.poolOffset
            || Int(header.rx_desc_offset) != geometry.rxDescOffset || Int(header.tx_desc_offset) != geometry.txDescOffset {
            try fail("offsets do not match the geometry (\(geometry)) or the mapping size \(size)")
        }
        return SharedRegion(fd: fd, base: base, size: size, geometry: geometry, ownsFD: false)
    }

    private func writeHeader() {
        let g = geometry
        var header = ph_region_header()
        header.magic = PH_REGION_MAGIC
        header.abi_version = ph_abi_version()
        header.header_size = UInt32(MemoryLayout<ph_region_header>.stride)
        header.ring_entries = g.ringEntries
        header.desc_size = UInt32(MemoryLayout<ph_desc>.stride)
        header.slot_size = g.slotSize
        header.slot_count = g.slotCount
        header.recv_slots = g.recvSlots
        header.rx_ctl_offset = UInt64(g.rxCtlOffset)
        header.rx_desc_offset = UInt64(g.rxDescOffset)
        header.tx_ctl_offset = UInt64(g.txCtlOffset)
        header.tx_desc_offset = UInt64(g.txDescOffset)
        header.pool_offset = UInt64(g.poolOffset)
        header.total_size = UInt64(g.totalSize)
        base.storeBytes(of: header, as: ph_region_header.self)
    }

    // MARK: Addresses (all derived from the private geometry)

    public var poolBase: UnsafeMutableRawPointer { base + geometry.poolOffset }

    /// Start of a slot. The caller has checked `slot < geometry.slotCount`.
    @inline(__always)
    public func slotAddress(_ slot: UInt32) -> UnsafeMutableRawPointer {
        poolBase + Int(slot) * Int(geometry.slotSize)
    }

    public enum Side: Sendable { case core, plugin }

    /// The RX ring (core → plugin): the core produces, the plugin consumes.
    public func rxRing(as side: Side) -> RingView {
        RingView(ctl: base + geometry.rxCtlOffset, descs: base + geometry.rxDescOffset,
                 entries: geometry.ringEntries, producer: side == .core)
    }

    /// The TX ring (plugin → core): the plugin produces, the core consumes.
    public func txRing(as side: Side) -> RingView {
        RingView(ctl: base + geometry.txCtlOffset, descs: base + geometry.txDescOffset,
                 entries: geometry.ringEntries, producer: side == .plugin)
    }
}

extension SharedRegion {
    /// Raw addresses of the ring parts, for tests, benchmarks and diagnostics (e.g. ring depth).
    public var rxControlBlock: UnsafeMutableRawPointer { base + geometry.rxCtlOffset }
    public var rxDescriptors: UnsafeMutableRawPointer { base + geometry.rxDescOffset }
    public var txControlBlock: UnsafeMutableRawPointer { base + geometry.txCtlOffset }
    public var txDescriptors: UnsafeMutableRawPointer { base + geometry.txDescOffset }

    /// Current fill level of a ring as the shared indices say (may be garbage if the plugin wrote
    /// them; only for metrics).
    public func depth(rx: Bool) -> UInt32 {
        let ctl = rx ? rxControlBlock : txControlBlock
        return ph_ring_ctl_tail(ctl) &- ph_ring_ctl_head(ctl)
    }
}
