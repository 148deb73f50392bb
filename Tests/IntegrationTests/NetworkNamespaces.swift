import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Two named network namespaces joined by a veth pair: a small link of two hosts for tests that
/// need a real interface (multicast does not work on loopback). Nothing touches the namespace the
/// tests run in. Addresses: `addressA`/`addressB` in 10.231.<subnet>.0/24; both interfaces and both
/// loopbacks are up; no default route (multicast needs none: the core picks the interface).
/// `ip netns exec NAME …` runs a program on either side; `remove()` deletes both namespaces (the
/// veth pair goes with them).
struct NamespaceLink {
    let a: String
    let b: String
    let addressA: String
    let addressB: String

    /// `tag` names the namespaces ("ph-TAG-a", "ph-TAG-b") and the subnet keeps two links apart.
    static func make(tag: String, subnet: Int) throws -> NamespaceLink {
        let pid = getpid()
        let link = NamespaceLink(a: "ph-\(tag)-\(pid)-a", b: "ph-\(tag)-\(pid)-b",
                                 addressA: "10.231.\(subnet).1", addressB: "10.231.\(subnet).2")
        link.remove()   // a namespace left by a killed run
        do {
            try ip(["netns", "add", link.a])
            try ip(["netns", "add", link.b])
            try ip(["link", "add", "pha", "netns", link.a, "type", "veth", "peer", "name", "phb", "netns", link.b])
            for (ns, dev, address) in [(link.a, "pha", link.addressA), (link.b, "phb", link.addressB)] {
                try ip(["-n", ns, "addr", "add", address + "/24", "dev", dev])
                try ip(["-n", ns, "link", "set", dev, "up"])
                try ip(["-n", ns, "link", "set", "lo", "up"])
            }
        } catch {
            link.remove()
            throw error
        }
        return link
    }

    func remove() {
        for ns in [a, b] { _ = try? runProgram("/usr/bin/ip", ["netns", "delete", ns]) }
    }

    private static func ip(_ arguments: [String]) throws {
        let (status, out) = try runProgram("/usr/bin/ip", arguments)
        guard status == 0 else { throw TestFailure("ip \(arguments.joined(separator: " ")): exit \(status): \(out)") }
    }
}
