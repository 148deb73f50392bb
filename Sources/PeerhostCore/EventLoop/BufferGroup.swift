// BufferGroup: a provided-buffer ring (IORING_REGISTER_PBUF_RING) for multishot receives.
//
// Security split (DESIGN.md "Memory safety against a hostile plugin"): the io_uring_buf_ring that
// the kernel reads buffer ADDRESSES from is allocated here, in core-private anonymous memory, never
// in a plugin's region; a plugin that could write an address there could make the kernel write into
// the core. The BUFFERS themselves are caller-supplied addresses (the host passes slots of a plugin's
// shared pool), added one by one with `add` and published with `commit`.
//
// Ownership: a buffer handed to the kernel comes back in exactly one recv completion
// (`IOCompletion.bufferID`); it is then the handler's until it is added again.

import CLiburing
#if canImport(Glibc)
import Glibc
#endif

public final class BufferGroup {
    public let groupID: UInt16
    /// Ring entries (a power of two); at most this many buffers can be with the kernel at once.
    public let entries: UInt32
    private let ringMemory: UnsafeMutableRawPointer
    private let ringBytes: Int
    private let mask: Int32
    private var staged: Int32 = 0
    private unowned let loop: IOUringLoop
    private var released = false

    /// Buffers added since the last commit (not yet visible to the kernel).
    public var stagedCount: Int { Int(staged) }

    // Receives that ended with ENOBUFS, waiting for buffers (loop thread only).
    struct Parked { var userData: UInt64; var fd: Int32 }
    private var parked: [Parked] = []
    var lastCommitIteration: UInt64 = 0
    var parkedCount: Int { parked.count }
    /// Receives parked so far: each is a connection whose receive paused because every buffer was
    /// taken (the plugin holds its receive slots); peerhost_plugin_receive_pauses_total.
    public private(set) var parksTotal: UInt64 = 0

    init(loop: IOUringLoop, groupID: UInt16, entries: UInt32) throws {
        guard entries > 0, entries <= 32768, entries & (entries - 1) == 0 else {
            throw EventLoopError.bufferGroup("entries must be a power of two in 1...32768, got \(entries)")
        }
        self.loop = loop
        self.groupID = groupID
        self.entries = entries
        self.mask = ph_uring_buf_ring_mask(entries)
        // Page-aligned private mapping: the kernel requires page alignment for the ring.
        let bytes = (ph_buf_ring_bytes(entries) + 4095) & ~4095
        guard let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              p != MAP_FAILED else {
            throw EventLoopError.syscall(step: "mmap of buffer ring for group \(groupID)", errno: errno)
        }
        ringMemory = p
        ringBytes = bytes
        ph_buf_ring_init(p)
        let r = ph_register_buf_ring(loop.ring, p, entries, groupID)
        if r < 0 {
            munmap(p, bytes)
            throw EventLoopError.syscall(step: "io_uring_register_buf_ring(group \(groupID))", errno: -r)
        }
    }

    /// Stages one buffer for the kernel. `address` must stay valid (and not be used by anyone
    /// else) until it comes back in a completion or the group is destroyed.
    public func add(bufferID: UInt16, address: UnsafeMutableRawPointer, length: UInt32) {
        precondition(!released, "buffer group \(groupID) was removed")
        ph_buf_ring_add(ringMemory, address, length, bufferID, mask, staged)
        staged += 1
        precondition(staged <= Int32(entries), "more than \(entries) buffers staged in group \(groupID)")
    }

    /// Publishes the staged buffers to the kernel (one release store) and lets the loop re-arm
    /// receives that stopped on ENOBUFS.
    public func commit() {
        guard staged > 0 else { return }
        ph_buf_ring_advance(ringMemory, staged)
        staged = 0
        loop.bufferGroupCommitted(self)
    }

    func park(userData: UInt64, fd: Int32, iteration: UInt64) {
        parked.append(Parked(userData: userData, fd: fd))
        parksTotal &+= 1
    }

    func takeParked() -> [Parked] {
        let p = parked
        parked.removeAll(keepingCapacity: true)
        return p
    }

    /// Removes parked receives matching `predicate` (cancel paths), returning them.
    func removeParked(where predicate: (Parked) -> Bool) -> [Parked] {
        var out: [Parked] = []
        parked.removeAll { p in
            if predicate(p) { out.append(p); return true }
            return false
        }
        return out
    }

    func releaseMemory() {
        guard !released else { return }
        released = true
        munmap(ringMemory, ringBytes)
    }
}
