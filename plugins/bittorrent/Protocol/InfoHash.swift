// The v1 infohash (BEP 3): SHA-1 of the bencoded `info` dictionary, 20 bytes. Written as 40 hex
// digits in logs, the control surface and magnet links; magnets may also carry it as 32 base32
// characters (BEP 9, "btih" in base32 as older clients wrote it).

/// A v1 infohash: 20 bytes.
public struct InfoHash: Hashable, Sendable, CustomStringConvertible, Comparable {
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 20 else { return nil }
        self.bytes = bytes
    }

    /// 40 hex digits, either case.
    public init?(hex: String) {
        guard let b = Hex.decode(hex), b.count == 20 else { return nil }
        self.bytes = b
    }

    /// 32 characters of RFC 4648 base32 (A–Z, 2–7), either case, no padding.
    public init?(base32: String) {
        guard let b = Base32.decode(base32), b.count == 20 else { return nil }
        self.bytes = b
    }

    /// Lowercase hex, 40 characters.
    public var hex: String { Hex.encode(bytes) }
    /// Uppercase base32, 32 characters.
    public var base32: String { Base32.encode(bytes) }
    public var description: String { hex }

    public static func < (a: InfoHash, b: InfoHash) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
}

/// Hex without Foundation.
public enum Hex {
    static let digits = Array("0123456789abcdef".utf8)

    public static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// nil unless every character is a hex digit and the count is even.
    public static func decode(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count / 2)
        var i = 0
        while i < chars.count {
            guard let hi = value(chars[i]), let lo = value(chars[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    static func value(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// RFC 4648 base32 (the magnet form of a btih), no padding.
enum Base32 {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        var buffer: UInt32 = 0
        var bits = 0
        for b in bytes {
            buffer = buffer << 8 | UInt32(b)
            bits += 8
            while bits >= 5 {
                out.append(alphabet[Int((buffer >> UInt32(bits - 5)) & 31)])
                bits -= 5
            }
        }
        if bits > 0 { out.append(alphabet[Int((buffer << UInt32(5 - bits)) & 31)]) }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ text: String) -> [UInt8]? {
        var out: [UInt8] = []
        var buffer: UInt32 = 0
        var bits = 0
        for c in text.utf8 {
            let v: UInt8
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = c - UInt8(ascii: "A")
            case UInt8(ascii: "a")...UInt8(ascii: "z"): v = c - UInt8(ascii: "a")
            case UInt8(ascii: "2")...UInt8(ascii: "7"): v = c - UInt8(ascii: "2") + 26
            default: return nil
            }
            buffer = buffer << 5 | UInt32(v)
            bits += 5
            if bits >= 8 {
                out.append(UInt8((buffer >> UInt32(bits - 8)) & 0xff))
                bits -= 8
            }
        }
        // Leftover bits must be zero padding (a canonical encoding), else the text is not base32 of bytes.
        guard bits < 5, buffer & ((1 << UInt32(bits)) - 1) == 0 else { return nil }
        return out
    }
}
