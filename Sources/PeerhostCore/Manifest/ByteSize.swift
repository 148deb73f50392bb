// Sizes and rates as operators write them: "512MiB", "50GiB", "10MiB/s", "0".

public enum ByteSize {
    /// Units accepted after the number. Binary units are what the kernel limits use; decimal ones
    /// are accepted because disk and link vendors speak them.
    static let units: [(suffix: String, factor: UInt64)] = [
        ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10),
        ("TB", 1_000_000_000_000), ("GB", 1_000_000_000), ("MB", 1_000_000), ("KB", 1_000), ("kB", 1_000),
        ("B", 1),
    ]

    /// The largest binary unit that divides `bytes` exactly ("512MiB", "1536B"), for audit output.
    public static func format(_ bytes: UInt64) -> String {
        for (suffix, factor) in units where suffix.hasSuffix("iB") && bytes >= factor && bytes % factor == 0 {
            return "\(bytes / factor)\(suffix)"
        }
        return "\(bytes)B"
    }

    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
    }

    /// Parses "512MiB" / "1.5GiB" / "4096" / "0" into bytes. With `rate`, a trailing "/s" is
    /// required unless the value is 0 (unlimited).
    public static func parse(_ text: String, rate: Bool = false) throws(ParseError) -> UInt64 {
        let expected = rate
            ? "expected a rate like \"10MiB/s\" (units B KiB MiB GiB TiB KB MB GB TB) or \"0\" for unlimited"
            : "expected a size like \"512MiB\" (units B KiB MiB GiB TiB KB MB GB TB)"
        var body = Substring(text.trimmingSpaces)
        if rate {
            if body.hasSuffix("/s") { body = body.dropLast(2) }
            else if body != "0" { throw ParseError(description: "bad rate '\(text)': \(expected)") }
        }
        var factor: UInt64 = 1
        for unit in units where body.hasSuffix(unit.suffix) {
            factor = unit.factor
            body = body.dropLast(unit.suffix.count)
            break
        }
        body = Substring(String(body).trimmingSpaces)
        guard !body.isEmpty, body.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              let number = Double(body), number.isFinite, number >= 0 else {
            throw ParseError(description: "bad \(rate ? "rate" : "size") '\(text)': \(expected)")
        }
        let bytes = number * Double(factor)
        guard bytes < 9.2e18 else { throw ParseError(description: "\(rate ? "rate" : "size") '\(text)' is too large") }
        return UInt64(bytes.rounded())
    }
}

extension String {
    var trimmingSpaces: String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}
