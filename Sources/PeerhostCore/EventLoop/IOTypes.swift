// Types shared by the io_uring event loop: operation kinds, handler ids, completions, errors.
//
// Completions are dispatched without a heap allocation per operation: every SQE's user_data encodes
// which registered handler gets the completion, a generation (catches a stale slot), the operation
// kind and a caller-chosen 32-bit tag. See `UserData`.

#if canImport(Glibc)
import Glibc
#endif

/// What a submitted operation was. Part of user_data, handed back in every `IOCompletion`.
public enum OpKind: UInt8, Sendable, CustomStringConvertible {
    case accept = 1        // multishot accept; result = new fd
    case recv              // multishot recv from a BufferGroup (bufferID set) or plain recv into a buffer
    case send              // result = bytes sent (may be short)
    case connect
    case close
    case shutdown
    case timeout           // result = -ETIME when it fired, -ECANCELED when cancelled
    case read              // read at offset (files, eventfds); result = bytes read
    case write             // write at offset; result = bytes written
    case fsync
    case openat            // openat2 beneath a directory; result = new fd
    case recvmsg           // UDP receive into a given buffer; result = bytes
    case sendmsg           // UDP send to an address; result = bytes
    // Internal kinds: their completions are consumed by the loop, never seen by handlers.
    case cancelRequest = 250
    case timeoutRemove = 251
    case loopWake = 252

    public var description: String {
        switch self {
        case .accept: "accept"
        case .recv: "recv"
        case .send: "send"
        case .connect: "connect"
        case .close: "close"
        case .shutdown: "shutdown"
        case .timeout: "timeout"
        case .read: "read"
        case .write: "write"
        case .fsync: "fsync"
        case .openat: "openat2"
        case .recvmsg: "recvmsg"
        case .sendmsg: "sendmsg"
        case .cancelRequest: "cancel"
        case .timeoutRemove: "timeout-remove"
        case .loopWake: "loop-wake"
        }
    }

    /// Kinds whose CQE is not an operation of a handler (not counted as outstanding).
    var isInternal: Bool { rawValue >= 250 }
}

/// A handler registered with the loop: slot index in the loop's slab plus a generation, so a
/// stale id (a handler unregistered and its slot reused) is detected instead of misrouted.
public struct HandlerID: Hashable, Sendable, CustomStringConvertible {
    public let slot: UInt32
    public let generation: UInt8
    public var description: String { "handler#\(slot).\(generation)" }
}

/// user_data layout (64 bits):  slot:20 | generation:4 | op:8 | tag:32
/// 20 bits of slot = 1,048,576 handlers per loop; the generation is a cheap safety net only,
/// because a slot is never reused while it has outstanding operations (see IOUringLoop).
@usableFromInline
struct UserData {
    static let slotBits: UInt64 = 20
    static let maxSlots: UInt32 = 1 << 20
    static let generationMask: UInt8 = 0x0F

    @inline(__always)
    static func encode(slot: UInt32, generation: UInt8, op: OpKind, tag: UInt32) -> UInt64 {
        (UInt64(slot) << 44) | (UInt64(generation & generationMask) << 40) | (UInt64(op.rawValue) << 32) | UInt64(tag)
    }
    @inline(__always) static func slot(_ v: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: v >> 44) }
    @inline(__always) static func generation(_ v: UInt64) -> UInt8 { UInt8(truncatingIfNeeded: (v >> 40) & 0x0F) }
    @inline(__always) static func op(_ v: UInt64) -> UInt8 { UInt8(truncatingIfNeeded: v >> 32) }
    @inline(__always) static func tag(_ v: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: v) }
}

/// One completion as a handler sees it. A value type on the stack: no allocation.
public struct IOCompletion: Sendable {
    public var op: OpKind
    /// The CQE result: >= 0 on success (bytes, fd, …), -errno on failure.
    public var result: Int32
    /// Raw CQE flags. For a multishot operation the loop keeps armed (recv re-armed after the
    /// kernel ended it, accept re-armed), `IORING_CQE_F_MORE` is set even when the kernel's CQE
    /// did not carry it: "no more" always means "this operation is finished for good".
    public var flags: UInt32
    public var tag: UInt32

    /// Buffer id chosen by the kernel from a `BufferGroup` (recv), if any. The buffer now belongs
    /// to the handler until it is given back with `BufferGroup.add` + `commit`.
    public var bufferID: UInt16? {
        (flags & IOUringFlags.cqeBuffer) != 0 ? UInt16(truncatingIfNeeded: flags >> IOUringFlags.cqeBufferShift) : nil
    }
    /// True while the operation stays armed and will produce more completions.
    public var hasMore: Bool { (flags & IOUringFlags.cqeMore) != 0 }
    /// `-result` as an errno when the result is negative.
    public var errno: Int32? { result < 0 ? -result : nil }
}

/// An object that receives completions. Handlers are registered once (per connection, per plugin,
/// per listener — the caller's choice) and addressed by `HandlerID`; no closure per operation.
/// Called on the loop thread only.
public protocol IOHandler: AnyObject {
    func complete(_ completion: IOCompletion)
}

/// io_uring flag values used from Swift (the C macros are simple, but keeping them here documents
/// which ones the loop relies on).
public enum IOUringFlags {
    public static let cqeBuffer: UInt32 = 1 << 0      // IORING_CQE_F_BUFFER
    public static let cqeMore: UInt32 = 1 << 1        // IORING_CQE_F_MORE
    public static let cqeNotif: UInt32 = 1 << 3       // IORING_CQE_F_NOTIF
    public static let cqeBufferShift: UInt32 = 16     // IORING_CQE_BUFFER_SHIFT
}

/// Errors of the loop, each with the step that failed and the errno, printable as one line.
public enum EventLoopError: Error, CustomStringConvertible, Equatable {
    /// io_uring_setup failed: the kernel or a container (seccomp, kernel.io_uring_disabled) refuses it.
    case ioUringUnavailable(errno: Int32)
    /// A kernel feature the loop depends on is missing.
    case missingFeature(String)
    case syscall(step: String, errno: Int32)
    case bufferGroup(String)
    case invalidAddress(String)
    case resolveFailed(host: String, message: String)
    case invalidArgument(String)
    case exhausted(String)

    public var description: String {
        switch self {
        case .ioUringUnavailable(let e):
            let hint: String
            switch e {
            case EPERM: hint = " (kernel.io_uring_disabled, or a seccomp filter of the container?)"
            case ENOSYS: hint = " (kernel built without io_uring)"
            case ENOMEM: hint = " (RLIMIT_MEMLOCK too low?)"
            default: hint = ""
            }
            return "io_uring is not available: io_uring_setup returned \(errnoName(e))\(hint)"
        case .missingFeature(let f): return "io_uring is missing a required feature: \(f)"
        case .syscall(let step, let e): return "\(step) failed: \(errnoName(e)) (\(String(cString: strerror(e))))"
        case .bufferGroup(let m): return "buffer group: \(m)"
        case .invalidAddress(let m): return "invalid address: \(m)"
        case .resolveFailed(let host, let m): return "cannot resolve \(host): \(m)"
        case .invalidArgument(let m): return "invalid argument: \(m)"
        case .exhausted(let m): return "out of \(m)"
        }
    }
}

/// Symbolic errno name for messages ("EPERM" rather than "1").
public func errnoName(_ e: Int32) -> String {
    switch e {
    case EPERM: "EPERM"
    case ENOENT: "ENOENT"
    case EINTR: "EINTR"
    case EBADF: "EBADF"
    case EAGAIN: "EAGAIN"
    case ENOMEM: "ENOMEM"
    case EACCES: "EACCES"
    case EBUSY: "EBUSY"
    case EEXIST: "EEXIST"
    case EXDEV: "EXDEV"
    case EINVAL: "EINVAL"
    case ENOSYS: "ENOSYS"
    case ELOOP: "ELOOP"
    case ENOBUFS: "ENOBUFS"
    case ECANCELED: "ECANCELED"
    case ECONNREFUSED: "ECONNREFUSED"
    case ECONNRESET: "ECONNRESET"
    case ETIME: "ETIME"
    case EADDRINUSE: "EADDRINUSE"
    case EPIPE: "EPIPE"
    case ENOTCONN: "ENOTCONN"
    default: "errno \(e)"
    }
}
