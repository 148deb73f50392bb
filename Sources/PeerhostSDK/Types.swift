// PeerhostSDK: a Swift API for plugin authors over the C ABI (protocols/abi/peerhost.h).
// Nothing Swift-typed crosses the dlopen boundary (NOTES-swift-linux.md): the runner sees only the
// C ph_plugin this SDK builds; a Swift plugin links the SDK into its own library.
@_exported import CPeerhostABI

public typealias Connection = ph_conn
public typealias Request = ph_request
public typealias FileID = ph_file
public typealias TimerID = Int64

/// ABI 1.2: one call of an async control method, as the method received it.
public struct ControlCall: Hashable, Sendable {
    public let raw: ph_call
    public init(_ raw: ph_call) { self.raw = raw }
}

/// ABI 1.2: what a `kvScan(prefix:from:limit:)` completion's value says.
public struct KVScanPage: Equatable, Sendable {
    public var count: Int
    /// Matching keys remain past the last record returned.
    public var more: Bool

    public init(value: Int64) {
        count = Int(value & 0xffff_ffff)
        more = value & Int64(PH_KV_MORE) != 0
    }

    /// Where the page after the one that ended with `lastKey` starts: the smallest key after it.
    public static func start(after lastKey: [UInt8]) -> [UInt8] { lastKey + [0] }
}

/// A host call's failure, from ph_status. Compare with the constants (`error == .again`).
public struct PluginError: Error, Equatable, Hashable, CustomStringConvertible, Sendable {
    public let code: Int32

    public init(code: Int32) { self.code = code }
    public init(_ status: ph_status) { self.code = status.rawValue }
    /// nil for PH_OK (and for positive values, which are ids, not errors).
    public init?(checking status: ph_status) {
        guard status.rawValue < 0 else { return nil }
        self.code = status.rawValue
    }

    public var status: ph_status { ph_status(rawValue: code) }

    public static let again = PluginError(PH_EAGAIN)
    public static let denied = PluginError(PH_EDENIED)
    public static let quota = PluginError(PH_EQUOTA)
    public static let notSupported = PluginError(PH_ENOTSUP)
    public static let invalid = PluginError(PH_EINVAL)
    public static let noMemory = PluginError(PH_ENOMEM)
    public static let notConnected = PluginError(PH_ENOTCONN)
    public static let closed = PluginError(PH_ECLOSED)
    public static let io = PluginError(PH_EIO)
    public static let notFound = PluginError(PH_ENOENT)
    public static let timedOut = PluginError(PH_ETIMEDOUT)
    public static let connectionRefused = PluginError(PH_ECONNREFUSED)
    public static let addressInUse = PluginError(PH_EADDRINUSE)
    public static let reset = PluginError(PH_ERESET)
    public static let stopping = PluginError(PH_ESTOPPING)

    /// The C name ("PH_EDENIED"), as the host's logs print it.
    public var name: String {
        let name = String(cString: ph_status_name(Int64(code)))   // the header's one table
        return code <= 0 && name != "PH_E?" ? name : "ph_status(\(code))"
    }
    public var description: String { name }
}

/// PH_FEAT_* bits.
public struct Features: OptionSet, Sendable, Hashable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public static let streams = Features(rawValue: UInt64(PH_FEAT_STREAMS))
    public static let datagrams = Features(rawValue: UInt64(PH_FEAT_DATAGRAMS))
    public static let timers = Features(rawValue: UInt64(PH_FEAT_TIMERS))
    public static let files = Features(rawValue: UInt64(PH_FEAT_FILES))
    public static let kv = Features(rawValue: UInt64(PH_FEAT_KV))
    public static let resolve = Features(rawValue: UInt64(PH_FEAT_RESOLVE))
    public static let control = Features(rawValue: UInt64(PH_FEAT_CONTROL))
    public static let shaping = Features(rawValue: UInt64(PH_FEAT_SHAPING))
    /// PH_FEAT_ALL_V1 (the macro is an expression and does not import).
    public static let allV1 = Features(rawValue: (1 << 8) - 1)
    /// ABI 1.1: conn_set_peer (per-peer accounting).
    public static let peerTags = Features(rawValue: UInt64(PH_FEAT_PEER_TAGS))
    /// PH_FEAT_ALL_V1_1.
    public static let allV1_1 = Features(rawValue: (1 << 9) - 1)
}

public enum LogLevel: Int32, Sendable {
    case debug = 0, info = 1, warn = 2, error = 3
}

/// ABI version numbers (PH_ABI_VERSION is a macro expression and does not import).
public enum ABIVersion {
    public static let current = UInt32(PH_ABI_MAJOR) << 16 | UInt32(PH_ABI_MINOR) << 8 | UInt32(PH_ABI_PATCH)
}

/// A payload buffer: one pool slot and the byte range in it. It belongs to the plugin until it is
/// handed back (send, udpSend, fileWrite) or freed; using it after that is a violation the host
/// punishes, so treat a Buffer as consumed once passed to one of those calls.
public struct Buffer {
    public var raw: ph_buffer

    public init(raw: ph_buffer) { self.raw = raw }

    public var slot: UInt32 { raw.slot }
    public var offset: Int { Int(raw.offset) }
    public var count: Int { Int(raw.length) }
    public var capacity: Int { Int(raw.capacity) }
    public var isEmpty: Bool { raw.length == 0 }

    /// The payload bytes (read-only view; valid while the plugin owns the buffer).
    public var bytes: UnsafeRawBufferPointer {
        guard let d = raw.data else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: d + offset, count: count)
    }

    /// A copy of the payload.
    public var array: [UInt8] { Array(bytes) }

    /// The records of a kv_scan result: (u32 key_len, key, u32 value_len, value), little-endian,
    /// keys ascending. nil when the bytes are not whole records.
    public var kvRecords: [(key: [UInt8], value: [UInt8])]? {
        let b = bytes
        var out: [(key: [UInt8], value: [UInt8])] = []
        var i = 0
        func u32() -> Int? {
            guard i + 4 <= b.count else { return nil }
            defer { i += 4 }
            return Int(b[i]) | Int(b[i + 1]) << 8 | Int(b[i + 2]) << 16 | Int(b[i + 3]) << 24
        }
        while i < b.count {
            guard let kl = u32(), kl <= b.count - i else { return nil }
            let key = Array(b[i..<i + kl]); i += kl
            guard let vl = u32(), vl <= b.count - i else { return nil }
            let value = Array(b[i..<i + vl]); i += vl
            out.append((key, value))
        }
        return out
    }

    public subscript(i: Int) -> UInt8 {
        precondition(i >= 0 && i < count, "Buffer index \(i) out of range 0..<\(count)")
        return bytes[i]
    }

    /// Mutable access to the payload in place.
    public mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        guard let d = raw.data else { return try body(UnsafeMutableRawBufferPointer(start: nil, count: 0)) }
        return try body(UnsafeMutableRawBufferPointer(start: d + offset, count: count))
    }

    /// Replaces the payload with `bytes` at offset 0. Throws .invalid if it does not fit the slot.
    public mutating func set<C: Collection>(_ bytes: C) throws(PluginError) where C.Element == UInt8 {
        guard bytes.count <= capacity, let d = raw.data else { throw .invalid }
        _ = UnsafeMutableBufferPointer(start: d, count: capacity).initialize(from: bytes)
        raw.offset = 0
        raw.length = UInt32(bytes.count)
    }

    /// Appends after the current payload. Throws .invalid if it does not fit the slot.
    public mutating func append<C: Collection>(_ bytes: C) throws(PluginError) where C.Element == UInt8 {
        guard offset + count + bytes.count <= capacity, let d = raw.data else { throw .invalid }
        _ = UnsafeMutableBufferPointer(start: d + offset + count, count: bytes.count).initialize(from: bytes)
        raw.length += UInt32(bytes.count)
    }

    /// Drops `n` bytes from the front (after a partial parse) without copying.
    public mutating func consume(_ n: Int) {
        let k = UInt32(max(0, min(n, count)))
        raw.offset += k
        raw.length -= k
    }
}
