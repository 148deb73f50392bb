// DNS resolution for the loop. getaddrinfo blocks (it reads files, talks to nscd, sends UDP), and
// io_uring has no resolver, so it runs on one helper thread and the answer comes back to the loop
// through `execute`. This is off the data path: a plugin's RESOLVE request is rare compared with
// its sends and receives, and the loop thread never blocks on it.

import Dispatch
import CLiburing  // <sys/socket.h> constants
#if canImport(Glibc)
import Glibc
#endif

public final class Resolver: Sendable {
    private let queue = DispatchQueue(label: "peerhost.resolver")   // one serial helper thread
    private let loop: IOUringLoop

    public init(loop: IOUringLoop) { self.loop = loop }

    /// Resolves `host` (a name or a numeric address) for TCP (`datagram` false) or UDP, and calls
    /// `completion` on the loop thread with the addresses in getaddrinfo's order.
    public func resolve(host: String, port: UInt16, datagram: Bool = false,
                        completion: @escaping @Sendable (Result<[SocketAddress], EventLoopError>) -> Void) {
        let loop = self.loop
        queue.async {
            let result = Resolver.resolveBlocking(host: host, port: port, datagram: datagram)
            loop.execute { completion(result) }
        }
    }

    /// The blocking call itself (also usable from a test or a tool).
    public static func resolveBlocking(host: String, port: UInt16, datagram: Bool) -> Result<[SocketAddress], EventLoopError> {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = datagram ? Int32(SOCK_DGRAM.rawValue) : Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &res)
        guard rc == 0 else {
            return .failure(.resolveFailed(host: host, message: String(cString: gai_strerror(rc))))
        }
        defer { freeaddrinfo(res) }
        var out: [SocketAddress] = []
        var p = res
        while let ai = p {
            if let a = ai.pointee.ai_addr, let sa = try? SocketAddress(copying: a, length: ai.pointee.ai_addrlen),
               !out.contains(sa) {
                out.append(sa)
            }
            p = ai.pointee.ai_next
        }
        if out.isEmpty { return .failure(.resolveFailed(host: host, message: "no IPv4/IPv6 address")) }
        return .success(out)
    }
}
