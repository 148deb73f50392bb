import CPeerhostABI
import CPeerhostShim
import PeerhostRing

/// A request from a plugin, decoded from one TX descriptor and validated. Everything in it lives
/// in the core's private memory: text was copied out of the slot before it was checked.
public enum PluginRequest: Equatable, Sendable {
    case ready(status: Int16, features: UInt64)
    case heartbeatAck(sequence: UInt64)
    case log(level: Int64, text: String, slot: UInt32)
    case metric(name: String, value: Double, slot: UInt32)
    case free(slot: UInt32)
    case listen(request: UInt64, address: String, slot: UInt32)
    case connect(request: UInt64, address: String, slot: UInt32)
    case send(conn: UInt64, slot: UInt32, offset: UInt32, length: UInt32)
    case close(conn: UInt64)
    /// ABI 1.2: an abortive close (RST).
    case reset(conn: UInt64)
    case udpBind(request: UInt64, address: String, slot: UInt32)
    case udpSend(socket: UInt64, slot: UInt32, offset: UInt32, length: UInt32, to: String)
    case resolve(request: UInt64, name: String, slot: UInt32)
    case timerSet(timer: UInt64, delayNanoseconds: UInt64)
    case timerCancel(timer: UInt64)
    case fileOpen(request: UInt64, path: String, flags: UInt32, slot: UInt32)
    case fileRead(request: UInt64, file: UInt64, fileOffset: UInt64, slot: UInt32, offset: UInt32)
    case fileWrite(request: UInt64, file: UInt64, fileOffset: UInt64, slot: UInt32, offset: UInt32, length: UInt32)
    case fileSync(request: UInt64, file: UInt64)
    case fileClose(file: UInt64)
    /// keyLength: kv_put's key length, kv_scan's limit. scanPrefixLength: ABI 1.2's kv_scan_from
    /// (the slot holds prefix then start key; its answer says whether more keys remain), nil for kv_scan.
    case kv(request: UInt64, kind: ph_msg_type, slot: UInt32, offset: UInt32, length: UInt32, keyLength: Int64,
            scanPrefixLength: Int? = nil)
    case connRate(conn: UInt64, up: UInt64, down: UInt64)
    case connWeight(conn: UInt64, weight: UInt32)
    case controlDone(request: UInt64)
    /// ABI 1.1: the plugin tags a connection with its remote peer's id (1...PH_PEER_ID_MAX bytes).
    case connPeer(conn: UInt64, peer: [UInt8])
    /// ABI 1.2: the runner refused a udp_send to this destination ("udp:1.2.3.4:5") by the grants
    /// START gave it; nothing was sent, the core audits it.
    case udpRefused(socket: UInt64, to: String)
}

/// Why a descriptor was refused. Each is a violation: counted (label `kind`), logged, and the
/// plugin is killed. The raw values are the metric label values.
public enum ViolationKind: String, Sendable, CaseIterable {
    case badType = "bad_type"
    case slotOutOfRange = "slot_out_of_range"
    case slotNotOwned = "slot_not_owned"
    case rangeOutsideSlot = "range_outside_slot"
    case connectionNotOwned = "connection_not_owned"
    /// A FILE_* descriptor naming a file id this session did not open (another plugin's, closed,
    /// or made up).
    case fileNotOwned = "file_not_owned"
    case badText = "bad_text"
    case badArgument = "bad_argument"
    case ringIndex = "ring_index"
    case ringOverflow = "ring_overflow"
    case protocolOrder = "protocol_order"
}

public struct Violation: Error, Equatable, CustomStringConvertible {
    public let kind: ViolationKind
    public let detail: String
    public init(_ kind: ViolationKind, _ detail: String) {
        self.kind = kind
        self.detail = detail
    }
    public var description: String { "\(kind.rawValue): \(detail)" }
}

/// Decodes TX descriptors against the plugin's slot ownership. Pure: no I/O, so every hostile case
/// is unit-tested without processes. Ownership changes for slots handed to the core happen here
/// (plugin → core / in flight), so a descriptor naming the same slot twice is caught.
public struct RequestDecoder {
    public let region: SharedRegion
    public var owners: SlotOwnership
    /// Longest text argument (address, path, log line, metric name) the core copies out.
    public static let maxText = 4096

    public init(region: SharedRegion) {
        self.region = region
        self.owners = SlotOwnership(geometry: region.geometry)
    }

    private var slotSize: UInt32 { region.geometry.slotSize }

    /// Checks slot/offset/length of a descriptor and that the plugin owns the slot.
    private func checkSlot(_ d: ph_desc) throws(Violation) {
        guard d.slot < region.geometry.slotCount else {
            throw Violation(.slotOutOfRange, "slot \(d.slot) of \(region.geometry.slotCount)")
        }
        guard owners[d.slot] == .plugin else {
            throw Violation(.slotNotOwned, "slot \(d.slot) is owned by \(owners[d.slot]), not the plugin")
        }
        // 64-bit arithmetic: offset + length cannot overflow.
        guard UInt64(d.offset) + UInt64(d.length) <= UInt64(slotSize) else {
            throw Violation(.rangeOutsideSlot, "offset \(d.offset) + length \(d.length) > slot size \(slotSize)")
        }
    }

    /// Copies `length` bytes at slot+offset into a private String, checking UTF-8 and the bound.
    private func copyText(slot: UInt32, offset: UInt32, length: UInt32, what: String) throws(Violation) -> String {
        guard length > 0, length <= UInt32(Self.maxText) else {
            throw Violation(.badText, "\(what) of \(length) bytes (1...\(Self.maxText))")
        }
        let start = region.slotAddress(slot) + Int(offset)
        let bytes = [UInt8](UnsafeRawBufferPointer(start: start, count: Int(length)))   // the one read
        guard let text = String(validating: bytes, as: UTF8.self), !text.utf8.contains(0) else {
            throw Violation(.badText, "\(what) is not UTF-8 text")
        }
        return text
    }

    /// Takes a slot that carries a request argument: checked, text copied, ownership → core until
    /// the request's completion hands it back.
    private mutating func takeText(_ d: ph_desc, what: String) throws(Violation) -> String {
        try checkSlot(d)
        let text = try copyText(slot: d.slot, offset: d.offset, length: d.length, what: what)
        _ = owners.transfer(d.slot, from: .plugin, to: .core)
        return text
    }

    /// Takes a slot whose payload an I/O operation will use: checked, ownership → in flight.
    private mutating func takePayload(_ d: ph_desc, allowEmpty: Bool = false) throws(Violation) {
        try checkSlot(d)
        guard allowEmpty || d.length > 0 else { throw Violation(.badArgument, "empty payload") }
        _ = owners.transfer(d.slot, from: .plugin, to: .inFlight)
    }

    /// Decodes one descriptor copy. `owns(conn)` says whether a connection/socket id belongs to
    /// this plugin (the connection table lives in the host); `ownsFile(file)` the same for open
    /// files. Both are checked before any slot changes hands.
    public mutating func decode(_ d: ph_desc, owns: (UInt64) -> Bool,
                                ownsFile: (UInt64) -> Bool = { _ in false }) throws(Violation) -> PluginRequest {
        let type = ph_msg_type(rawValue: UInt32(d.type))
        func ownedConn() throws(Violation) -> UInt64 {
            guard d.id != 0, owns(d.id) else { throw Violation(.connectionNotOwned, "id \(d.id)") }
            return d.id
        }
        func ownedFile() throws(Violation) -> UInt64 {
            guard d.id != 0, ownsFile(d.id) else { throw Violation(.fileNotOwned, "file id \(d.id)") }
            return d.id
        }
        switch type {
        case PH_MSG_READY:
            return .ready(status: d.status, features: UInt64(bitPattern: d.arg))
        case PH_MSG_HEARTBEAT_ACK:
            return .heartbeatAck(sequence: d.request)
        case PH_MSG_LOG:
            try checkSlot(d)
            let text = try copyText(slot: d.slot, offset: d.offset, length: d.length, what: "log line")
            _ = owners.transfer(d.slot, from: .plugin, to: .core)
            return .log(level: d.arg, text: text, slot: d.slot)
        case PH_MSG_METRIC:
            let name = try takeText(d, what: "metric name")
            guard name.count <= 48, name.utf8.allSatisfy({ ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 95 }) else {
                throw Violation(.badArgument, "metric name '\(name)' is not [a-z0-9_]{1,48}")
            }
            return .metric(name: name, value: Double(bitPattern: UInt64(bitPattern: d.arg)), slot: d.slot)
        case PH_MSG_FREE:
            guard d.slot < region.geometry.slotCount else {
                throw Violation(.slotOutOfRange, "slot \(d.slot) of \(region.geometry.slotCount)")
            }
            guard owners.isReceiveSlot(d.slot) else {
                throw Violation(.badArgument, "FREE of slot \(d.slot), which is not a receive slot")
            }
            guard owners.transfer(d.slot, from: .plugin, to: .core) else {
                throw Violation(.slotNotOwned, "FREE of slot \(d.slot) owned by \(owners[d.slot])")
            }
            return .free(slot: d.slot)
        case PH_MSG_LISTEN:
            return .listen(request: d.request, address: try takeText(d, what: "listen address"), slot: d.slot)
        case PH_MSG_CONNECT:
            return .connect(request: d.request, address: try takeText(d, what: "connect address"), slot: d.slot)
        case PH_MSG_UDP_BIND:
            return .udpBind(request: d.request, address: try takeText(d, what: "bind address"), slot: d.slot)
        case PH_MSG_RESOLVE:
            return .resolve(request: d.request, name: try takeText(d, what: "host name"), slot: d.slot)
        case PH_MSG_SEND:
            let conn = try ownedConn()
            try takePayload(d)
            return .send(conn: conn, slot: d.slot, offset: d.offset, length: d.length)
        case PH_MSG_CLOSE:
            return .close(conn: try ownedConn())
        case PH_MSG_RESET:
            return .reset(conn: try ownedConn())
        case PH_MSG_UDP_SEND:
            let socket = try ownedConn()
            try checkSlot(d)
            // The destination address sits at the end of the slot: [capacity - arg, capacity).
            guard d.arg > 0, d.arg <= 256, UInt64(d.offset) + UInt64(d.length) + UInt64(d.arg) <= UInt64(slotSize) else {
                throw Violation(.badArgument, "udp_send address length \(d.arg) does not fit after the payload")
            }
            let to = try copyText(slot: d.slot, offset: slotSize - UInt32(d.arg), length: UInt32(d.arg), what: "udp destination")
            try takePayload(d)
            return .udpSend(socket: socket, slot: d.slot, offset: d.offset, length: d.length, to: to)
        case PH_MSG_UDP_REFUSED:
            let socket = try ownedConn()
            var copy = d
            let to = withUnsafeTemporaryAllocation(of: CChar.self, capacity: Int(PH_PEER_TEXT_MAX)) { out -> String in
                let n = withUnsafeBytes(of: &copy.reserved) {
                    ph_peer_format($0.baseAddress!.assumingMemoryBound(to: UInt8.self), copy.arg2, "udp", out.baseAddress!, out.count)
                }
                return n > 0 ? String(cString: out.baseAddress!) : ""
            }
            guard !to.isEmpty else { throw Violation(.badArgument, "udp refusal without a destination address") }
            return .udpRefused(socket: socket, to: to)
        case PH_MSG_TIMER_SET:
            guard d.arg >= 0 else { throw Violation(.badArgument, "negative timer delay \(d.arg)") }
            return .timerSet(timer: d.id, delayNanoseconds: UInt64(d.arg))
        case PH_MSG_TIMER_CANCEL:
            return .timerCancel(timer: d.id)
        case PH_MSG_FILE_OPEN:
            let path = try takeText(d, what: "path")
            return .fileOpen(request: d.request, path: path, flags: UInt32(truncatingIfNeeded: d.arg), slot: d.slot)
        case PH_MSG_FILE_READ:
            let file = try ownedFile()
            guard d.arg >= 0 else { throw Violation(.badArgument, "negative file offset") }
            try takePayload(d, allowEmpty: true)
            return .fileRead(request: d.request, file: file, fileOffset: UInt64(d.arg), slot: d.slot, offset: d.offset)
        case PH_MSG_FILE_WRITE:
            let file = try ownedFile()
            guard d.arg >= 0 else { throw Violation(.badArgument, "negative file offset") }
            try takePayload(d)
            return .fileWrite(request: d.request, file: file, fileOffset: UInt64(d.arg), slot: d.slot,
                              offset: d.offset, length: d.length)
        case PH_MSG_FILE_SYNC:
            return .fileSync(request: d.request, file: try ownedFile())
        case PH_MSG_FILE_CLOSE:
            return .fileClose(file: try ownedFile())
        case PH_MSG_KV_GET, PH_MSG_KV_PUT, PH_MSG_KV_DELETE, PH_MSG_KV_SCAN:
            try checkSlot(d)
            if type == PH_MSG_KV_PUT, d.arg < 1 || d.arg > Int64(d.length) {
                throw Violation(.badArgument, "kv_put key length \(d.arg) outside 1...\(d.length)")
            }
            var scanPrefixLength: Int?
            if type == PH_MSG_KV_SCAN, d.arg2 != 0 {   // ABI 1.2: arg2 = prefix length + 1
                guard d.arg2 - 1 <= UInt64(d.length) else {
                    throw Violation(.badArgument, "kv_scan_from prefix length \(d.arg2 - 1) beyond \(d.length) bytes")
                }
                scanPrefixLength = Int(d.arg2 - 1)
            }
            _ = owners.transfer(d.slot, from: .plugin, to: .core)
            return .kv(request: d.request, kind: type, slot: d.slot, offset: d.offset, length: d.length, keyLength: d.arg,
                       scanPrefixLength: scanPrefixLength)
        case PH_MSG_CONN_RATE:
            return .connRate(conn: try ownedConn(), up: UInt64(bitPattern: d.arg), down: d.arg2)
        case PH_MSG_CONN_WEIGHT:
            let conn = try ownedConn()
            guard d.arg >= 1, d.arg <= 1000 else { throw Violation(.badArgument, "weight \(d.arg) outside 1...1000") }
            return .connWeight(conn: conn, weight: UInt32(d.arg))
        case PH_MSG_CONTROL_DONE:
            return .controlDone(request: d.request)
        case PH_MSG_CONN_PEER:
            let conn = try ownedConn()
            guard d.length >= 1, d.length <= UInt32(PH_PEER_ID_MAX) else {
                throw Violation(.badArgument, "peer id of \(d.length) bytes outside 1...\(PH_PEER_ID_MAX)")
            }
            // From the private copy `d`, never from the ring: the id starts at `request`.
            let peer = withUnsafeBytes(of: d) { raw in
                Array(raw[MemoryLayout<ph_desc>.offset(of: \ph_desc.request)!...].prefix(Int(d.length)))
            }
            return .connPeer(conn: conn, peer: peer)
        default:
            throw Violation(.badType, "descriptor type \(d.type) is not a plugin request")
        }
    }
}
