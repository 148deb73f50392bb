import CPeerhostABI
import CPeerhostShim
#if canImport(Glibc)
import Glibc
#endif

/// The shared region on fd 3, mapped once. Geometry is read from the header and checked before
/// anything points into the mapping (the core wrote it, but a bad header must not crash us).
struct Region {
    let base: UnsafeMutableRawPointer
    let header: ph_region_header   // private copy

    var slotCount: UInt32 { header.slot_count }
    var recvSlots: UInt32 { header.recv_slots }
    var slotSize: UInt32 { header.slot_size }

    func slotPointer(_ slot: UInt32) -> UnsafeMutablePointer<UInt8> {
        (base + Int(header.pool_offset) + Int(slot) * Int(header.slot_size)).assumingMemoryBound(to: UInt8.self)
    }

    static func map(fd: Int32) throws(StartupError) -> Region {
        var st = stat()
        if fstat(fd, &st) != 0 { throw StartupError(step: "region", message: "fstat fd \(fd): errno \(errno)") }
        let fileSize = UInt64(st.st_size)
        let hsize = UInt64(MemoryLayout<ph_region_header>.size)
        guard fileSize >= hsize else { throw StartupError(step: "region", message: "region is \(fileSize) bytes, smaller than its header") }
        var h = ph_region_header()
        if pread(fd, &h, Int(hsize), 0) != Int(hsize) {
            throw StartupError(step: "region", message: "read header: errno \(errno)")
        }
        guard h.magic == PH_REGION_MAGIC else {
            throw StartupError(step: "region", message: "bad region magic 0x\(String(h.magic, radix: 16))")
        }
        guard h.abi_version >> 16 == UInt32(PH_ABI_MAJOR) else {
            throw StartupError(step: "region", message: "region ABI \(h.abi_version >> 16).x, runner serves \(PH_ABI_MAJOR).x")
        }
        let e = UInt64(h.ring_entries)
        let ringBytes = e * 64
        let poolBytes = UInt64(h.slot_size) * UInt64(h.slot_count)
        func inside(_ off: UInt64, _ len: UInt64) -> Bool { off <= h.total_size && len <= h.total_size - off }
        guard h.desc_size == UInt32(MemoryLayout<ph_desc>.size), e > 0, e & (e - 1) == 0,
              h.slot_size > 0, h.recv_slots <= h.slot_count, h.total_size <= fileSize,
              inside(h.rx_ctl_offset, ABI.ringCtlSize),
              inside(h.tx_ctl_offset, ABI.ringCtlSize),
              inside(h.rx_desc_offset, ringBytes), inside(h.tx_desc_offset, ringBytes),
              inside(h.pool_offset, poolBytes),
              h.rx_ctl_offset % 64 == 0, h.tx_ctl_offset % 64 == 0
        else { throw StartupError(step: "region", message: "inconsistent region geometry") }
        guard let p = mmap(nil, Int(h.total_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw StartupError(step: "region", message: "mmap \(h.total_size) bytes: errno \(errno)")
        }
        return Region(base: p, header: h)
    }
}
