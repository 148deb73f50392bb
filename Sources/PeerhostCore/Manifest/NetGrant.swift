// Network grants as written in manifests and configs: "tcp:HOST:PORT", "udp:HOST:LOW-HIGH".

/// One network grant or address, e.g. `tcp:127.0.0.1:7001`, `tcp:*:1-65535`, `udp:[::1]:6881`.
public struct NetGrant: Sendable, Hashable, CustomStringConvertible {
    public enum Transport: String, Sendable, Hashable { case tcp, udp }

    public var transport: Transport
    /// IPv4/IPv6 literal (IPv6 without brackets), a host name, or `*` for any host.
    public var host: String
    /// A single port is `p...p`; port 0 (listen on an ephemeral port) is allowed.
    public var ports: ClosedRange<UInt16>

    public init(transport: Transport, host: String, ports: ClosedRange<UInt16>) {
        self.transport = transport
        self.host = host
        self.ports = ports
    }

    /// Why a grant string was refused; the text is shown after the key path.
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
    }

    public init(parsing text: String) throws(ParseError) {
        let format = "expected \"tcp:HOST:PORT\" or \"udp:HOST:PORT\" (PORT may be LOW-HIGH)"
        guard let firstColon = text.firstIndex(of: ":"), let lastColon = text.lastIndex(of: ":"),
              firstColon != lastColon else {
            throw ParseError(description: "'\(text)' is not a network address: \(format)")
        }
        let transportText = String(text[..<firstColon])
        guard let transport = Transport(rawValue: transportText) else {
            throw ParseError(description: "unknown transport '\(transportText)' in '\(text)': \(format)")
        }
        var host = String(text[text.index(after: firstColon)..<lastColon])
        if host.hasPrefix("[") {
            guard host.hasSuffix("]"), host.count > 2 else {
                throw ParseError(description: "bad IPv6 host '\(host)' in '\(text)': write it as [ADDRESS]")
            }
            host = String(host.dropFirst().dropLast())
        } else if host.contains(":") {
            throw ParseError(description: "IPv6 host in '\(text)' must be in brackets: \(transportText):[ADDRESS]:PORT")
        }
        guard !host.isEmpty else { throw ParseError(description: "empty host in '\(text)': \(format)") }
        let allowedHostCharacters = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:*%")
        guard host.allSatisfy({ allowedHostCharacters.contains($0) }), host == "*" || !host.contains("*") else {
            throw ParseError(description: "bad host '\(host)' in '\(text)'")
        }
        let portText = text[text.index(after: lastColon)...]
        let bounds = portText.split(separator: "-", omittingEmptySubsequences: false)
        guard bounds.count == 1 || bounds.count == 2 else {
            throw ParseError(description: "bad port '\(portText)' in '\(text)': expected PORT or LOW-HIGH")
        }
        var parsed: [UInt16] = []
        for bound in bounds {
            guard !bound.isEmpty, bound.allSatisfy(\.isASCII), let value = Int(bound), (0...65535).contains(value) else {
                throw ParseError(description: "bad port '\(bound)' in '\(text)': ports are 0–65535")
            }
            parsed.append(UInt16(value))
        }
        let low = parsed[0], high = parsed.last!
        guard low <= high else {
            throw ParseError(description: "bad port range '\(portText)' in '\(text)': low end above high end")
        }
        self.init(transport: transport, host: host, ports: low...high)
    }

    public var description: String {
        let hostText = host.contains(":") ? "[\(host)]" : host
        let portText = ports.lowerBound == ports.upperBound
            ? "\(ports.lowerBound)" : "\(ports.lowerBound)-\(ports.upperBound)"
        return "\(transport.rawValue):\(hostText):\(portText)"
    }

    /// True when `other` asks for nothing this grant does not allow: same transport, host equal or
    /// this host a wildcard (`*`, `0.0.0.0`, `::`), ports inside. Config overrides must be covered
    /// by the manifest: the config narrows a manifest, never widens it.
    public func covers(_ other: NetGrant) -> Bool {
        guard transport == other.transport else { return false }
        let wildcard = host == "*" || host == "0.0.0.0" || host == "::"
        guard wildcard || host == other.host else { return false }
        return ports.contains(other.ports.lowerBound) && ports.contains(other.ports.upperBound)
    }
}
