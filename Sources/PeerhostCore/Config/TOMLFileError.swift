// Errors found while reading a TOML file (the host config or a plugin manifest).
//
// Operators fix these by hand, so every error names the file, the line and the dotted key path
// (e.g. `plugin[1].listen`), in the compiler-like form `FILE:LINE: key 'K': problem`.

/// What is wrong, independent of where it is.
public enum TOMLProblem: Sendable, Equatable {
    /// The file could not be read (errno text).
    case unreadable(String)
    /// TOMLKit refused the text; the message is its own.
    case syntax(String)
    /// A key this schema does not know; `known` lists what is accepted at that level.
    case unknownKey(known: [String])
    /// A required key is absent.
    case missingKey
    /// The key is there but holds the wrong TOML type.
    case wrongType(expected: String, found: String)
    /// The type is right but the value is not acceptable; `reason` says why.
    case badValue(String)
    /// A file the key refers to (e.g. a manifest) does not exist.
    case missingFile(path: String)
}

/// An error in a TOML file, located by file, line and key.
public struct TOMLFileError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file as the operator named it (or `<embedded default config>`).
    public var file: String
    /// 1-based line, when known.
    public var line: Int?
    /// Dotted key path such as `host.http` or `plugin[0].manifest`; nil for whole-file errors.
    public var key: String?
    public var problem: TOMLProblem

    public init(file: String, line: Int?, key: String?, problem: TOMLProblem) {
        self.file = file
        self.line = line
        self.key = key
        self.problem = problem
    }

    public var description: String {
        var location = file
        if let line { location += ":\(line)" }
        let subject = key.map { "key '\($0)': " } ?? ""
        return "\(location): \(subject)\(problemText)"
    }

    private var problemText: String {
        switch problem {
        case .unreadable(let reason): return "cannot read file: \(reason)"
        case .syntax(let message): return "TOML syntax error: \(message)"
        case .unknownKey(let known):
            return known.isEmpty
                ? "unknown key (this table takes no keys)"
                : "unknown key (expected one of: \(known.joined(separator: ", ")))"
        case .missingKey: return "required key is missing"
        case .wrongType(let expected, let found): return "expected \(expected), found \(found)"
        case .badValue(let reason): return reason
        case .missingFile(let path): return "file not found: \(path)"
        }
    }
}
