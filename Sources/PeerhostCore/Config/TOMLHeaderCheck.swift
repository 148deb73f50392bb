// A guard in front of TOMLKit: table headers whose first character cannot start a key.
//
// TOMLKit 0.6.0 bundles toml++ v3, whose parser *asserts* (abort(), no exception) on a table header
// like `[#`, `[=`, `[.` or a lone `[` at the end of a line: parse_key() expects its caller to have
// checked the first character. SwiftPM builds C++ dependencies without NDEBUG even in release, so
// the assert is live and one bad character in a manifest would abort the host, `peerhost audit`
// or the fuzzer (found by `make fuzz` within seconds; reproducer in fuzz/corpus/manifest/).
// Until the dependency is fixed, this scan finds headers at the top level of the document (not
// inside a string, a comment or a multi-line array) and refuses the bad ones with the line number,
// as any other syntax error. It accepts everything TOML accepts; it only refuses what toml++
// would have aborted on (TOML refuses all of it too).

enum TOMLHeaderCheck {
    struct BadHeader: Error {
        let line: Int
        let found: String
    }

    static func check(_ text: String) throws(BadHeader) {
        let bytes = Array(text.utf8)
        var i = 0
        var line = 1
        var depth = 0            // open [ and { of values (multi-line arrays)
        var atLineStart = true   // only whitespace since the last newline
        var afterEquals = false  // on a key = value line, past the '='

        func at(_ k: Int) -> UInt8 { k < bytes.count ? bytes[k] : 0 }
        func isKeyStart(_ c: UInt8) -> Bool {
            (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39)
                || c == 0x5F || c == 0x2D || c == 0x22 || c == 0x27   // A-Z a-z 0-9 _ - " '
        }
        /// Skips a string starting at i (quote at i); returns the index after it, counting newlines.
        func skipString(_ start: Int) -> Int {
            let quote = bytes[start]
            let triple = at(start + 1) == quote && at(start + 2) == quote
            var k = start + (triple ? 3 : 1)
            while k < bytes.count {
                let c = bytes[k]
                if c == 0x0A {
                    line += 1
                    if !triple { return k }   // unterminated: let TOMLKit report it
                }
                if c == 0x5C && quote == 0x22 { k += 2; continue }   // escape in a basic string
                if c == quote {
                    if !triple { return k + 1 }
                    if at(k + 1) == quote && at(k + 2) == quote {
                        var end = k + 3
                        while at(end) == quote && end < k + 5 { end += 1 }   // up to two more quotes belong to the content
                        return end
                    }
                }
                k += 1
            }
            return k
        }

        while i < bytes.count {
            let c = bytes[i]
            switch c {
            case 0x0A:
                line += 1
                atLineStart = true
                afterEquals = false
                i += 1
            case 0x20, 0x09, 0x0D:
                i += 1
            case 0x23:   // comment to end of line
                while i < bytes.count && bytes[i] != 0x0A { i += 1 }
            case 0x22, 0x27:
                i = skipString(i)
                atLineStart = false
            case 0x5B where atLineStart && depth == 0:   // a table header: [key] or [[key]]
                var k = i + 1
                if at(k) == 0x5B { k += 1 }
                while at(k) == 0x20 || at(k) == 0x09 { k += 1 }
                let first = at(k)
                if !isKeyStart(first) && first != 0x5D {
                    let shown = first == 0 ? "end of file" : first == 0x0A ? "end of line"
                        : String(decoding: [first], as: UTF8.self)
                    throw BadHeader(line: line, found: shown)
                }
                // Skip the rest of the header (quoted keys may hold '#' or ']').
                i = k
                while i < bytes.count && bytes[i] != 0x0A && bytes[i] != 0x23 {
                    if bytes[i] == 0x22 || bytes[i] == 0x27 { i = skipString(i) } else { i += 1 }
                }
                atLineStart = false
            case 0x3D:
                afterEquals = true
                atLineStart = false
                i += 1
            case 0x5B, 0x7B:
                if afterEquals || depth > 0 { depth += 1 }
                atLineStart = false
                i += 1
            case 0x5D, 0x7D:
                if depth > 0 { depth -= 1 }
                atLineStart = false
                i += 1
            default:
                atLineStart = false
                i += 1
            }
        }
    }
}
