import CPeerhostShim
#if canImport(Glibc)
import Glibc
#endif

/// The runner's early answer to udp_send (ABI 1.2), from the plugin's udp connect grants that
/// START carried ("udp:*:1-65535", "udp:10.0.0.7:6881", "udp:[::1]:4000", one per line).
///
/// It is the part of the core's ConnectPolicy (Sources/PeerhostCore/Host/PluginAccess.swift) that
/// needs no host state: a destination is covered by a grant naming its address, or by a wildcard
/// grant unless it is loopback, unspecified or link-local. It only lets a refusal reach the plugin
/// as PH_EDENIED; the core still decides every send that passes here (it also knows the host's own
/// addresses and the multicast groups, so a multicast destination is always left to it). A name
/// grant never covers a numeric destination, as in the core.
struct UDPSendRules {
    struct Rule {
        var wildcard: Bool
        var address: [UInt8]          // 16 bytes, IPv4 as v4-mapped; unused for a wildcard
        var ports: ClosedRange<UInt16>
    }

    /// A destination as the plugin wrote it, parsed: 16 address bytes and ph_peer_encode's arg2.
    struct Destination {
        var address: [UInt8]
        var port: UInt16
        var family: UInt64            // 4 or 6
        var encodedArg2: UInt64 { UInt64(port) | family << 16 }
    }

    enum Verdict { case allowed, denied(Destination), malformed }

    private(set) var rules: [Rule] = []

    init(grants: String) {
        for line in grants.split(separator: "\n") {
            guard line.hasPrefix("udp:"), let colon = line.lastIndex(of: ":") else { continue }
            let host = String(line[line.index(line.startIndex, offsetBy: 4)..<colon])
            let portText = line[line.index(after: colon)...]
            let bounds = portText.split(separator: "-", maxSplits: 1).compactMap { UInt16($0) }
            guard bounds.count == (portText.contains("-") ? 2 : 1), bounds[0] <= bounds.last! else { continue }
            let ports = bounds[0]...bounds.last!
            if host == "*" || host == "0.0.0.0" || host == "[::]" {
                rules.append(Rule(wildcard: true, address: [], ports: ports))
            } else if let (address, _) = Self.parseAddress(host) {
                rules.append(Rule(wildcard: false, address: address, ports: ports))
            }
        }
    }

    /// "udp:1.2.3.4:5555" or "udp:[2001:db8::1]:5555", port 1…65535; nil for anything else (a name
    /// included: the core sends only to numeric destinations).
    static func parseDestination(_ text: String) -> Destination? {
        guard text.hasPrefix("udp:"), let colon = text.lastIndex(of: ":") else { return nil }
        let host = String(text[text.index(text.startIndex, offsetBy: 4)..<colon])
        guard let port = UInt16(text[text.index(after: colon)...]), port != 0,
              let (address, family) = parseAddress(host) else { return nil }
        return Destination(address: address, port: port, family: family)
    }

    /// A literal IPv4 address or a bracketed IPv6 one, as 16 bytes (IPv4 v4-mapped) and its family.
    static func parseAddress(_ host: String) -> ([UInt8], UInt64)? {
        var bytes = [UInt8](repeating: 0, count: 16)
        if host.hasPrefix("["), host.hasSuffix("]") {
            let inner = String(host.dropFirst().dropLast())
            let ok = bytes.withUnsafeMutableBytes { inet_pton(AF_INET6, inner, $0.baseAddress) == 1 }
            return ok ? (bytes, 6) : nil
        }
        var v4 = [UInt8](repeating: 0, count: 4)
        guard v4.withUnsafeMutableBytes({ inet_pton(AF_INET, host, $0.baseAddress) == 1 }) else { return nil }
        bytes[10] = 0xff
        bytes[11] = 0xff
        bytes.replaceSubrange(12..<16, with: v4)
        return (bytes, 4)
    }

    func judge(_ text: String) -> Verdict {
        guard let dest = Self.parseDestination(text) else { return .malformed }
        let a = Self.embeddedIPv4(dest.address)
        if Self.isMulticast(a) { return .allowed }   // the core's to decide: only a group's own socket sends there
        let local = Self.isLoopbackOrLink(a)
        for rule in rules where rule.ports.contains(dest.port) {
            if rule.wildcard ? !local : Self.embeddedIPv4(rule.address) == a { return .allowed }
        }
        return .denied(dest)
    }

    /// An IPv4-compatible (::a.b.c.d) address judged as the IPv4 one it embeds, like the core.
    static func embeddedIPv4(_ a: [UInt8]) -> [UInt8] {
        if a[0..<12].allSatisfy({ $0 == 0 }), a[12..<16] != [0, 0, 0, 0], a[12..<16] != [0, 0, 0, 1] {
            return [UInt8](repeating: 0, count: 10) + [0xff, 0xff] + a[12..<16]
        }
        return a
    }

    static func isV4(_ a: [UInt8]) -> Bool { a[0..<10].allSatisfy { $0 == 0 } && a[10] == 0xff && a[11] == 0xff }

    static func isMulticast(_ a: [UInt8]) -> Bool { isV4(a) ? a[12] & 0xf0 == 0xe0 : a[0] == 0xff }

    /// Loopback, unspecified and link-local in either family: only an explicit grant reaches them.
    static func isLoopbackOrLink(_ a: [UInt8]) -> Bool {
        if isV4(a) { return a[12] == 127 || a[12...15].allSatisfy { $0 == 0 } || a[12] == 0 || (a[12] == 169 && a[13] == 254) }
        let zeroPrefix = a[0..<15].allSatisfy { $0 == 0 }
        return (zeroPrefix && (a[15] == 1 || a[15] == 0)) || (a[0] == 0xfe && a[1] & 0xc0 == 0x80)
    }
}
