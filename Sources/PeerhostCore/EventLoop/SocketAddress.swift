// Socket addresses and the few socket set-up calls that need no io_uring (socket/bind/listen are
// one-off, not data path).

import CLiburing  // <sys/socket.h> socket type constants
#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 socket address held by value (a private copy: the loop never points the kernel
/// at a caller's or plugin's memory for an address).
public struct SocketAddress: Sendable, Equatable, CustomStringConvertible {
    public private(set) var storage: sockaddr_storage
    public private(set) var length: socklen_t

    /// Parses a numeric IPv4 ("127.0.0.1") or IPv6 ("::1") address.
    public init(ip: String, port: UInt16) throws {
        storage = sockaddr_storage()
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, ip, &v4) == 1 {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            sin.sin_addr = v4
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
            withUnsafeMutableBytes(of: &storage) { dst in
                withUnsafeBytes(of: &sin) { dst.copyMemory(from: $0) }
            }
        } else if inet_pton(AF_INET6, ip, &v6) == 1 {
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            sin6.sin6_addr = v6
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
            withUnsafeMutableBytes(of: &storage) { dst in
                withUnsafeBytes(of: &sin6) { dst.copyMemory(from: $0) }
            }
        } else {
            throw EventLoopError.invalidAddress("\"\(ip)\" is not a numeric IPv4 or IPv6 address")
        }
    }

    /// Copies a kernel-filled sockaddr (from getaddrinfo, recvmsg, accept).
    public init(copying address: UnsafeRawPointer, length: socklen_t) throws {
        guard length >= socklen_t(MemoryLayout<sa_family_t>.size),
              length <= socklen_t(MemoryLayout<sockaddr_storage>.size) else {
            throw EventLoopError.invalidAddress("sockaddr length \(length)")
        }
        storage = sockaddr_storage()
        self.length = length
        withUnsafeMutableBytes(of: &storage) { dst in
            dst.copyMemory(from: UnsafeRawBufferPointer(start: address, count: Int(length)))
        }
        let fam = Int32(storage.ss_family)
        guard fam == AF_INET || fam == AF_INET6 else {
            throw EventLoopError.invalidAddress("address family \(fam) is not IPv4/IPv6")
        }
    }

    public var family: Int32 { Int32(storage.ss_family) }

    public var port: UInt16 {
        var s = storage
        return withUnsafeBytes(of: &s) { raw in
            // sin_port and sin6_port sit at the same offset (2)
            UInt16(bigEndian: raw.load(fromByteOffset: 2, as: UInt16.self))
        }
    }

    public var ip: String {
        var s = storage
        var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        return withUnsafeBytes(of: &s) { raw -> String in
            if family == AF_INET {
                _ = inet_ntop(AF_INET, raw.baseAddress! + 4, &buf, socklen_t(buf.count))
            } else {
                _ = inet_ntop(AF_INET6, raw.baseAddress! + 8, &buf, socklen_t(buf.count))
            }
            return String(cString: buf)
        }
    }

    public var description: String { family == AF_INET6 ? "[\(ip)]:\(port)" : "\(ip):\(port)" }

    public static func == (a: SocketAddress, b: SocketAddress) -> Bool {
        guard a.length == b.length else { return false }
        var x = a.storage, y = b.storage
        return withUnsafeBytes(of: &x) { rx in
            withUnsafeBytes(of: &y) { ry in memcmp(rx.baseAddress!, ry.baseAddress!, Int(a.length)) == 0 }
        }
    }

    /// Copies the address into `dst` (which must hold `length` bytes).
    func write(to dst: UnsafeMutableRawPointer) {
        var s = storage
        withUnsafeBytes(of: &s) { dst.copyMemory(from: $0.baseAddress!, byteCount: Int(length)) }
    }
}

/// Socket set-up helpers (plain syscalls; everything after set-up goes through the loop).
public enum Sockets {
    /// A TCP listening socket with SO_REUSEADDR, non-blocking and close-on-exec.
    /// A connected AF_UNIX stream pair, close-on-exec (the core ↔ runner control socket).
    public static func streamPair() throws -> (Int32, Int32) {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw EventLoopError.syscall(step: "socketpair(AF_UNIX)", errno: errno)
        }
        return (pair[0], pair[1])
    }

    public static func tcpListener(_ address: SocketAddress, backlog: Int32 = 4096) throws -> Int32 {
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw EventLoopError.syscall(step: "socket(TCP) for \(address)", errno: errno) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        try bind(fd, address, what: "TCP")
        if listen(fd, backlog) != 0 {
            let e = errno; close(fd)
            throw EventLoopError.syscall(step: "listen on \(address)", errno: e)
        }
        return fd
    }

    /// A UDP socket bound to `address` (port 0 = any).
    public static func udpSocket(bound address: SocketAddress) throws -> Int32 {
        let fd = socket(address.family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw EventLoopError.syscall(step: "socket(UDP) for \(address)", errno: errno) }
        try bind(fd, address, what: "UDP")
        return fd
    }

    /// A non-blocking TCP socket for `IOUringLoop.connect`.
    public static func tcpSocket(family: Int32 = AF_INET) throws -> Int32 {
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw EventLoopError.syscall(step: "socket(TCP)", errno: errno) }
        return fd
    }

    public static func setNoDelay(_ fd: Int32) {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    /// The bound local address (tests bind port 0 and ask which port they got).
    public static func localAddress(_ fd: Int32) throws -> SocketAddress {
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r = withUnsafeMutablePointer(to: &ss) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        guard r == 0 else { throw EventLoopError.syscall(step: "getsockname", errno: errno) }
        return try withUnsafeBytes(of: &ss) { try SocketAddress(copying: $0.baseAddress!, length: len) }
    }

    private static func bind(_ fd: Int32, _ address: SocketAddress, what: String) throws {
        var a = address
        let r = withUnsafeBytes(of: &a.storageForBind) { raw in
            Glibc.bind(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), address.length)
        }
        if r != 0 {
            let e = errno; close(fd)
            throw EventLoopError.syscall(step: "bind \(what) \(address)", errno: e)
        }
    }
}

extension SocketAddress {
    fileprivate var storageForBind: sockaddr_storage {
        get { storage }
        set { storage = newValue }
    }
}
