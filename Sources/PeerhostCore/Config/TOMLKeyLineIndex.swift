// A key path → line number index for a TOML text.
//
// Why: TOMLKit reports positions only for syntax errors, but an operator needs "file, line and key"
// for a bad value too. This scanner runs over text TOMLKit has already accepted, so it only has to
// follow valid TOML well enough to find where each key is written: table headers (`[a.b]`,
// `[[a]]`), `key = value` lines, dotted keys, inline tables and arrays (array elements get `[n]`).
// It never traps and always advances, so odd input gives fewer entries, never a crash.

/// Maps dotted key paths (`host.http`, `plugin[1].config.greeting`, `storage.paths[0].mode`) to
/// the 1-based line where each is written.
public struct TOMLKeyLineIndex: Sendable {
    private var lines: [String: Int] = [:]

    public init(text: String) {
        var scanner = Scanner(characters: Array(text.unicodeScalars))
        scanner.scanDocument()
        lines = scanner.lines
    }

    /// The line of `path`, or of its nearest ancestor that has one (a value inside a multi-line
    /// array falls back to the array's key), or nil.
    public func line(for path: String) -> Int? {
        var candidate = path
        while true {
            if let line = lines[candidate] { return line }
            guard let cut = candidate.lastIndex(where: { $0 == "." || $0 == "[" }) else { return nil }
            candidate = String(candidate[..<cut])
        }
    }

    private struct Scanner {
        let characters: [Unicode.Scalar]
        var position = 0
        var line = 1
        var lines: [String: Int] = [:]
        /// Count of `[[x]]` headers seen per path, so `[[plugin]]` number n becomes `plugin[n]`.
        var arrayTableCounts: [String: Int] = [:]

        init(characters: [Unicode.Scalar]) { self.characters = characters }

        var current: Unicode.Scalar? { position < characters.count ? characters[position] : nil }

        mutating func advance() {
            if current == "\n" { line += 1 }
            position += 1
        }

        mutating func skipSpaces() {
            while let c = current, c == " " || c == "\t" || c == "\r" { advance() }
        }

        /// Skips spaces, newlines and comments.
        mutating func skipBlank() {
            while let c = current {
                if c == " " || c == "\t" || c == "\r" || c == "\n" { advance() }
                else if c == "#" { skipToEndOfLine() }
                else { break }
            }
        }

        mutating func skipToEndOfLine() {
            while let c = current, c != "\n" { advance() }
        }

        mutating func record(_ path: String, line: Int) {
            if lines[path] == nil { lines[path] = line }
        }

        mutating func scanDocument() {
            var tablePath = ""
            while current != nil {
                skipBlank()
                guard let c = current else { break }
                if c == "[" {
                    tablePath = scanHeader()
                } else {
                    scanKeyValue(base: tablePath)
                }
                skipSpaces()
                if current == "#" { skipToEndOfLine() }
                // Anything else left on the line is not ours to understand: move on.
                if let c = current, c != "\n" { skipToEndOfLine() }
            }
        }

        /// `[a.b]` or `[[a.b]]`; returns the resolved table path.
        mutating func scanHeader() -> String {
            let headerLine = line
            advance()
            var isArrayTable = false
            if current == "[" { isArrayTable = true; advance() }
            let parts = scanKeyParts()
            while let c = current, c != "\n" {
                advance()
                if c == "]" && (!isArrayTable || current == "]") {
                    if isArrayTable { advance() }
                    break
                }
            }
            // Resolve each prefix through the arrays of tables seen so far: `[plugin.x]` after
            // `[[plugin]]` number 2 means `plugin[2].x`.
            var resolved = ""
            var plain = ""
            for (index, part) in parts.enumerated() {
                plain = plain.isEmpty ? part : plain + "." + part
                resolved = resolved.isEmpty ? part : resolved + "." + part
                let isLast = index == parts.count - 1
                if isLast && isArrayTable {
                    let count = arrayTableCounts[plain, default: 0]
                    arrayTableCounts[plain] = count + 1
                    record(resolved, line: headerLine)
                    resolved += "[\(count)]"
                } else if let count = arrayTableCounts[plain] {
                    resolved += "[\(count - 1)]"
                }
                record(resolved, line: headerLine)
            }
            return resolved
        }

        /// A possibly dotted, possibly quoted key; stops before `=`, `]` or end of line.
        mutating func scanKeyParts() -> [String] {
            var parts: [String] = []
            while true {
                skipSpaces()
                guard let c = current else { return parts }
                if c == "\"" || c == "'" {
                    parts.append(scanQuotedKey(quote: c))
                } else {
                    var bare = ""
                    while let c = current, c.properties.isAlphabetic || ("0"..."9").contains(c) || c == "_" || c == "-" {
                        bare.unicodeScalars.append(c)
                        advance()
                    }
                    if bare.isEmpty { return parts }
                    parts.append(bare)
                }
                skipSpaces()
                if current == "." { advance() } else { return parts }
            }
        }

        mutating func scanQuotedKey(quote: Unicode.Scalar) -> String {
            advance()
            var key = ""
            while let c = current, c != quote, c != "\n" {
                if c == "\\" && quote == "\"" { advance() }
                if let escaped = current { key.unicodeScalars.append(escaped) }
                advance()
            }
            if current == quote { advance() }
            return key
        }

        mutating func scanKeyValue(base: String) {
            let keyLine = line
            let parts = scanKeyParts()
            guard !parts.isEmpty else { advance(); return }
            var path = base
            for part in parts {
                path = path.isEmpty ? part : path + "." + part
                record(path, line: keyLine)
            }
            skipSpaces()
            guard current == "=" else { return }
            advance()
            skipSpaces()
            scanValue(path: path)
        }

        mutating func scanValue(path: String) {
            guard let c = current else { return }
            switch c {
            case "\"", "'":
                skipString(quote: c)
            case "{":
                advance()
                while true {
                    skipBlank()
                    guard let c = current else { return }
                    if c == "}" { advance(); return }
                    if c == "," { advance(); continue }
                    let before = position
                    scanKeyValue(base: path)
                    if position == before { advance() }
                }
            case "[":
                advance()
                var index = 0
                while true {
                    skipBlank()
                    guard let c = current else { return }
                    if c == "]" { advance(); return }
                    if c == "," { advance(); continue }
                    let element = "\(path)[\(index)]"
                    record(element, line: line)
                    let before = position
                    scanValue(path: element)
                    if position == before { advance() }
                    index += 1
                }
            default:
                while let c = current, c != ",", c != "]", c != "}", c != "\n", c != "#" { advance() }
            }
        }

        mutating func skipString(quote: Unicode.Scalar) {
            // Triple-quoted strings may span lines; count them so later keys keep the right line.
            let isTriple = position + 2 < characters.count
                && characters[position + 1] == quote && characters[position + 2] == quote
            if isTriple {
                advance(); advance(); advance()
                while current != nil {
                    if current == "\\" && quote == "\"" { advance(); advance(); continue }
                    if current == quote, position + 2 < characters.count,
                       characters[position + 1] == quote, characters[position + 2] == quote {
                        advance(); advance(); advance()
                        // TOML allows up to two extra quotes closing a multi-line string.
                        while current == quote { advance() }
                        return
                    }
                    advance()
                }
                return
            }
            advance()
            while let c = current, c != quote, c != "\n" {
                if c == "\\" && quote == "\"" { advance() }
                advance()
            }
            if current == quote { advance() }
        }
    }
}
