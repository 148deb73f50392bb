// BEP 10 extension handshake: the bencoded dictionary in extended message 0. Every item is optional
// and unknown items are ignored (BEP 10), but a known item of the wrong type or out of range is an
// error naming the key: the engine drops a peer whose handshake it cannot trust.

public enum ExtensionHandshakeError: Error, Equatable, Sendable, CustomStringConvertible {
    case bencode(BencodeError)
    case notADictionary
    case wrongType(key: String, expected: String)
    case outOfRange(key: String, value: Int64, allowed: String)
    case badAddressLength(key: String, bytes: Int)
    case duplicateMessageID(id: Int, names: [String])

    public var description: String {
        let what: String
        switch self {
        case .bencode(let e): what = e.description
        case .notADictionary: what = "payload is not a dictionary"
        case .wrongType(let key, let expected): what = "\"\(key)\" is not \(expected)"
        case .outOfRange(let key, let value, let allowed): what = "\"\(key)\" is \(value), allowed \(allowed)"
        case .badAddressLength(let key, let bytes): what = "\"\(key)\" has \(bytes) bytes, expected 4 or 16"
        case .duplicateMessageID(let id, let names): what = "message id \(id) is used by \(names.joined(separator: " and "))"
        }
        return "extension handshake: \(what)"
    }
}

public struct ExtensionHandshake: Equatable, Sendable {
    public static let utMetadata = "ut_metadata"
    public static let utPex = "ut_pex"

    /// "m": extension name → the id the sender wants to receive it as; 0 = disabled.
    public var messages: [String: Int]
    /// "p": the sender's TCP listen port.
    public var listenPort: UInt16?
    /// "v": client name and version.
    public var client: String?
    /// "metadata_size" (BEP 9): bytes of the info dictionary.
    public var metadataSize: Int?
    /// "reqq": how many outstanding requests the sender accepts.
    public var requestQueueSize: Int?
    /// "yourip": the receiver's address as the sender sees it (4 or 16 bytes).
    public var yourIP: [UInt8]?
    /// "ipv4" / "ipv6": the sender's own addresses (4 / 16 bytes).
    public var ipv4: [UInt8]?
    public var ipv6: [UInt8]?
    /// "upload_only" (libtorrent, BEP 21): the sender only seeds.
    public var uploadOnly: Bool?

    public init(messages: [String: Int] = [:], listenPort: UInt16? = nil, client: String? = nil,
                metadataSize: Int? = nil, requestQueueSize: Int? = nil, yourIP: [UInt8]? = nil,
                ipv4: [UInt8]? = nil, ipv6: [UInt8]? = nil, uploadOnly: Bool? = nil) {
        self.messages = messages; self.listenPort = listenPort; self.client = client
        self.metadataSize = metadataSize; self.requestQueueSize = requestQueueSize; self.yourIP = yourIP
        self.ipv4 = ipv4; self.ipv6 = ipv6; self.uploadOnly = uploadOnly
    }

    /// The id to send extension `name` to this peer with; nil when it does not support it.
    public func id(for name: String) -> UInt8? {
        guard let id = messages[name], id > 0, id <= 255 else { return nil }
        return UInt8(id)
    }

    public static func decode(_ payload: [UInt8]) throws(ExtensionHandshakeError) -> ExtensionHandshake {
        let value: Bencode
        do { value = try Bencode.decode(payload, limits: .message) } catch { throw .bencode(error) }
        guard let dict = value.dictionary else { throw .notADictionary }
        var h = ExtensionHandshake()

        func integer(_ key: String) throws(ExtensionHandshakeError) -> Int64? {
            guard let v = dict[Array(key.utf8)] else { return nil }
            guard let i = v.integer else { throw .wrongType(key: key, expected: "an integer") }
            return i
        }
        func bytes(_ key: String) throws(ExtensionHandshakeError) -> [UInt8]? {
            guard let v = dict[Array(key.utf8)] else { return nil }
            guard let b = v.bytes else { throw .wrongType(key: key, expected: "a string") }
            return b
        }
        func address(_ key: String, lengths: Set<Int>) throws(ExtensionHandshakeError) -> [UInt8]? {
            guard let b = try bytes(key) else { return nil }
            guard lengths.contains(b.count) else { throw .badAddressLength(key: key, bytes: b.count) }
            return b
        }

        if let m = dict[Array("m".utf8)] {
            guard let md = m.dictionary else { throw .wrongType(key: "m", expected: "a dictionary") }
            var byID: [Int: [String]] = [:]
            for (rawName, v) in md {
                let name = String(decoding: rawName, as: UTF8.self)
                guard let id = v.integer else { throw .wrongType(key: "m." + name, expected: "an integer") }
                guard id >= 0 && id <= 255 else { throw .outOfRange(key: "m." + name, value: id, allowed: "0...255") }
                h.messages[name] = Int(id)
                if id > 0 { byID[Int(id), default: []].append(name) }
            }
            if let (id, names) = byID.filter({ $0.value.count > 1 }).min(by: { $0.key < $1.key }) {
                throw .duplicateMessageID(id: id, names: names.sorted())
            }
        }
        if let p = try integer("p") {
            guard p >= 0 && p <= 65535 else { throw .outOfRange(key: "p", value: p, allowed: "0...65535") }
            h.listenPort = p == 0 ? nil : UInt16(p)   // 0: not listening
        }
        if let v = try bytes("v") { h.client = String(decoding: v, as: UTF8.self) }
        if let s = try integer("metadata_size") {
            guard s >= 0 && s <= Int64(Int32.max) else { throw .outOfRange(key: "metadata_size", value: s, allowed: "0...\(Int32.max)") }
            h.metadataSize = Int(s)
        }
        if let q = try integer("reqq") {
            guard q >= 0 && q <= Int64(Int32.max) else { throw .outOfRange(key: "reqq", value: q, allowed: "0...\(Int32.max)") }
            h.requestQueueSize = Int(q)
        }
        h.yourIP = try address("yourip", lengths: [4, 16])
        h.ipv4 = try address("ipv4", lengths: [4])
        h.ipv6 = try address("ipv6", lengths: [16])
        if let u = try integer("upload_only") { h.uploadOnly = u != 0 }
        return h
    }

    public func encoded() -> [UInt8] {
        var d: [[UInt8]: Bencode] = [:]
        var m: [[UInt8]: Bencode] = [:]
        for (name, id) in messages { m[Array(name.utf8)] = .integer(Int64(id)) }
        d[Array("m".utf8)] = .dictionary(m)
        if let p = listenPort { d[Array("p".utf8)] = .integer(Int64(p)) }
        if let v = client { d[Array("v".utf8)] = .string(v) }
        if let s = metadataSize { d[Array("metadata_size".utf8)] = .integer(Int64(s)) }
        if let q = requestQueueSize { d[Array("reqq".utf8)] = .integer(Int64(q)) }
        if let y = yourIP { d[Array("yourip".utf8)] = .bytes(y) }
        if let a = ipv4 { d[Array("ipv4".utf8)] = .bytes(a) }
        if let a = ipv6 { d[Array("ipv6".utf8)] = .bytes(a) }
        if let u = uploadOnly { d[Array("upload_only".utf8)] = .integer(u ? 1 : 0) }
        return Bencode.dictionary(d).encoded()
    }
}
