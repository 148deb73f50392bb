// A UDP socket that is a member of one multicast group, for a plugin's `net.multicast` grant
// (BEP 14 local peer discovery: "udp:239.192.152.143:6771"). Set-up only (plain syscalls, once per
// udp_bind); datagrams then go through the loop like any UDP socket's.
//
// ip(7) and ipv6(7): the socket is bound to the group address itself, so the kernel hands it only
// datagrams sent to that group (a socket bound to 0.0.0.0:6771 would also get unicast to the port);
// SO_REUSEADDR lets other programs on this host (another BitTorrent client) share the group and
// port. Membership is per interface: the socket joins on every interface that is up, can do
// multicast and is not loopback (the host's own other programs still hear us through
// IP_MULTICAST_LOOP, on by default). Sends leave through one interface, the first joined (sorted by
// index), with a TTL / hop limit of 1: local discovery must not leave the link.

import CLiburing  // <sys/socket.h> socket type constants
#if canImport(Glibc)
import Glibc
#endif

public struct MulticastMembership: Sendable {
    public var fd: Int32
    /// The interfaces joined, by name, in index order; sends leave through the first.
    public var interfaces: [String]
}

extension Sockets {
    /// A non-blocking UDP socket bound to `group` (a multicast address and port) and joined to it on
    /// every eligible interface. Throws when the address is not multicast, when no interface can
    /// join (say, an empty network namespace), or on a failed syscall, naming the step.
    public static func multicastSocket(group: SocketAddress) throws -> MulticastMembership {
        guard IPAddress(group).isMulticast else {
            throw EventLoopError.invalidAddress("\(group) is not a multicast group")
        }
        let ipv6 = group.family == AF_INET6
        let candidates = multicastInterfaces(ipv6: ipv6)
        let fd = socket(group.family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw EventLoopError.syscall(step: "socket(UDP) for multicast \(group)", errno: errno) }
        func fail(_ step: String) -> EventLoopError {
            let e = errno
            close(fd)
            return .syscall(step: "\(step) for multicast \(group)", errno: e)
        }
        /// setsockopt with the option's own type and size; `step` names it in the error.
        func set<Value: BitwiseCopyable>(_ level: Int32, _ option: Int32, _ value: Value, _ step: String) throws {
            let r = withUnsafeBytes(of: value) { setsockopt(fd, level, option, $0.baseAddress, socklen_t($0.count)) }
            guard r == 0 else { throw fail(step) }
        }
        try set(SOL_SOCKET, SO_REUSEADDR, Int32(1), "setsockopt(SO_REUSEADDR)")
        var bindAddress = group.storage
        let bound = withUnsafeBytes(of: &bindAddress) { raw in
            Glibc.bind(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), group.length)
        }
        guard bound == 0 else { throw fail("bind") }

        var joined: [MulticastInterface] = []
        for candidate in candidates {
            let r: Int32
            if ipv6 {
                var request = ipv6_mreq()
                request.ipv6mr_multiaddr = group.in6Address
                request.ipv6mr_interface = candidate.index
                r = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_JOIN_GROUP, &request, socklen_t(MemoryLayout<ipv6_mreq>.size))
            } else {
                var request = ip_mreq()
                request.imr_multiaddr = group.in4Address
                request.imr_interface = candidate.ipv4
                r = setsockopt(fd, Int32(IPPROTO_IP), IP_ADD_MEMBERSHIP, &request, socklen_t(MemoryLayout<ip_mreq>.size))
            }
            // One interface refusing (EADDRINUSE: joined twice through two addresses; ENODEV: gone
            // since getifaddrs) does not stop the others.
            if r == 0 { joined.append(candidate) }
        }
        guard let first = joined.first else {
            close(fd)
            throw EventLoopError.invalidAddress(
                "no interface can join multicast \(group): none is up, multicast-capable and not loopback")
        }
        if ipv6 {
            try set(Int32(IPPROTO_IPV6), IPV6_MULTICAST_IF, first.index, "setsockopt(IPV6_MULTICAST_IF \(first.name))")
            try set(Int32(IPPROTO_IPV6), IPV6_MULTICAST_HOPS, Int32(1), "setsockopt(IPV6_MULTICAST_HOPS)")
        } else {
            try set(Int32(IPPROTO_IP), IP_MULTICAST_IF, first.ipv4, "setsockopt(IP_MULTICAST_IF \(first.name))")
            try set(Int32(IPPROTO_IP), IP_MULTICAST_TTL, UInt8(1), "setsockopt(IP_MULTICAST_TTL)")
        }
        return MulticastMembership(fd: fd, interfaces: joined.map(\.name))
    }

    struct MulticastInterface {
        var name: String
        var index: UInt32
        /// IPv4 groups are joined and sent through by the interface's address.
        var ipv4: in_addr
    }

    /// Interfaces that are up, multicast-capable and not loopback, with an address of the wanted
    /// family; one entry per interface, in index order.
    static func multicastInterfaces(ipv6: Bool) -> [MulticastInterface] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return [] }
        defer { freeifaddrs(list) }
        var found: [String: MulticastInterface] = [:]
        var p = list
        while let ifa = p {
            p = ifa.pointee.ifa_next
            let flags = ifa.pointee.ifa_flags
            guard flags & UInt32(IFF_UP) != 0, flags & UInt32(IFF_MULTICAST) != 0,
                  flags & UInt32(IFF_LOOPBACK) == 0,
                  let sa = ifa.pointee.ifa_addr, Int32(sa.pointee.sa_family) == (ipv6 ? AF_INET6 : AF_INET),
                  let namePointer = ifa.pointee.ifa_name else { continue }
            let name = String(cString: namePointer)
            guard found[name] == nil else { continue }
            let index = if_nametoindex(namePointer)
            guard index != 0 else { continue }
            var v4 = in_addr()
            if !ipv6 { v4 = UnsafeRawPointer(sa).loadUnaligned(fromByteOffset: 4, as: in_addr.self) }
            found[name] = MulticastInterface(name: name, index: index, ipv4: v4)
        }
        return found.values.sorted { $0.index < $1.index }
    }
}

extension SocketAddress {
    fileprivate var in4Address: in_addr {
        var s = storage
        return withUnsafeBytes(of: &s) { $0.loadUnaligned(fromByteOffset: 4, as: in_addr.self) }
    }

    fileprivate var in6Address: in6_addr {
        var s = storage
        return withUnsafeBytes(of: &s) { $0.loadUnaligned(fromByteOffset: 8, as: in6_addr.self) }
    }
}
