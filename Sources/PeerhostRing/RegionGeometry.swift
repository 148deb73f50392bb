import CPeerhostShim

/// The shape of one plugin's shared region: ring sizes and the buffer pool. The core decides it,
/// writes it into the region header, and keeps this private copy: it never reads geometry back from
/// memory the plugin can write.
public struct RegionGeometry: Sendable, Equatable, CustomStringConvertible {
    public var ringEntries: UInt32
    public var slotSize: UInt32
    public var slotCount: UInt32
    /// Slots `[0, recvSlots)` are the core's receive pool; the rest start out owned by the plugin.
    public var recvSlots: UInt32

    public init(ringEntries: UInt32, slotSize: UInt32, slotCount: UInt32, recvSlots: UInt32) {
        self.ringEntries = ringEntries
        self.slotSize = slotSize
        self.slotCount = slotCount
        self.recvSlots = recvSlots
    }

    public var description: String {
        "ring_entries=\(ringEntries) slot_size=\(slotSize) slot_count=\(slotCount) recv_slots=\(recvSlots)"
    }

    static let pageSize = 4096
    static var descSize: Int { MemoryLayout<ph_desc>.stride }
    static var ctlSize: Int { Int(ph_ring_ctl_size()) }

    private static func align(_ value: Int, _ alignment: Int) -> Int {
        (value + alignment - 1) / alignment * alignment
    }

    // Offsets of each part. Rings start on their own pages, the pool on a page boundary so that
    // io_uring can register it and slots never share a page with ring indices.
    public var headerSize: Int { Self.align(MemoryLayout<ph_region_header>.stride, 64) }
    public var rxCtlOffset: Int { Self.pageSize }
    public var rxDescOffset: Int { rxCtlOffset + Self.align(Self.ctlSize, 64) }
    public var txCtlOffset: Int { Self.align(rxDescOffset + Int(ringEntries) * Self.descSize, Self.pageSize) }
    public var txDescOffset: Int { txCtlOffset + Self.align(Self.ctlSize, 64) }
    public var poolOffset: Int { Self.align(txDescOffset + Int(ringEntries) * Self.descSize, Self.pageSize) }
    public var poolSize: Int { Int(slotSize) * Int(slotCount) }
    public var totalSize: Int { Self.align(poolOffset + poolSize, Self.pageSize) }

    /// Checks the limits that keep offsets inside the region and indices meaningful.
    public func validate() throws(RingError) {
        guard ringEntries >= 2, ringEntries <= 1 << 20, ringEntries & (ringEntries - 1) == 0 else {
            throw .badGeometry("ring_entries must be a power of two in 2...1048576, got \(ringEntries)")
        }
        guard slotSize >= 256, slotSize <= 1 << 20, slotSize % 64 == 0 else {
            throw .badGeometry("slot_size must be a multiple of 64 in 256...1048576, got \(slotSize)")
        }
        guard slotCount >= 2, slotCount <= 1 << 16 else {
            throw .badGeometry("slot_count must be in 2...65536, got \(slotCount)")
        }
        guard recvSlots >= 1, recvSlots < slotCount else {
            throw .badGeometry("recv_slots must be in 1..<slot_count (\(slotCount)), got \(recvSlots)")
        }
        guard totalSize <= 1 << 32 else {
            throw .badGeometry("region of \(totalSize) bytes is larger than 4 GiB")
        }
    }
}
