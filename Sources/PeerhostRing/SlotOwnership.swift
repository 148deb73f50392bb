/// Who owns each buffer slot, kept in the core's private memory. Every descriptor that names a slot
/// is checked against this table; a plugin naming a slot it does not own is a violation.
public struct SlotOwnership: Sendable {
    public enum Owner: UInt8, Sendable {
        case core = 0       // in the core's receive pool (or holding a request's slot)
        case plugin = 1     // the plugin may read, write, send or free it
        case inFlight = 2   // an io_uring operation is using it
        case kernel = 3     // handed to the kernel's provided-buffer ring, waiting for data
    }

    private var owners: [Owner]
    public let recvSlots: UInt32

    public init(geometry: RegionGeometry) {
        recvSlots = geometry.recvSlots
        owners = (0..<geometry.slotCount).map { $0 < geometry.recvSlots ? .core : .plugin }
    }

    public var count: UInt32 { UInt32(owners.count) }

    @inlinable public func isReceiveSlot(_ slot: UInt32) -> Bool { slot < recvSlots }

    public subscript(slot: UInt32) -> Owner {
        owners[Int(slot)]
    }

    /// Moves `slot` from `from` to `to`; false (and no change) if the slot is out of range or not
    /// owned by `from`.
    @inline(__always)
    public mutating func transfer(_ slot: UInt32, from: Owner, to: Owner) -> Bool {
        guard slot < UInt32(owners.count), owners[Int(slot)] == from else { return false }
        owners[Int(slot)] = to
        return true
    }

    /// Counts slots per owner (for status and tests).
    public func census() -> [Owner: Int] {
        var result: [Owner: Int] = [:]
        for o in owners { result[o, default: 0] += 1 }
        return result
    }
}
