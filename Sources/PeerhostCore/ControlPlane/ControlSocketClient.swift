// The CLI's side of the control socket: blocking POSIX calls (a CLI makes one request and exits;
// an event loop would only add threads).

import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum ControlClientError: Error, Sendable, Equatable, CustomStringConvertible {
    case connect(path: String, reason: String)
    case io(path: String, reason: String)
    case badReply(String)
    /// The host answered {"ok":false}: its text is for the operator.
    case host(String)

    public var description: String {
        switch self {
        case .connect(let path, let reason): return "cannot connect to the host's control socket \(path): \(reason)"
        case .io(let path, let reason): return "control socket \(path): \(reason)"
        case .badReply(let reason): return "the host sent an unreadable reply: \(reason)"
        case .host(let message): return message
        }
    }
}

public struct ControlSocketClient: Sendable {
    public var path: String
    /// Generous: a control call runs plugin code between its callbacks.
    public var timeoutSeconds: Int

    public init(path: String, timeoutSeconds: Int = 30) {
        self.path = path
        self.timeoutSeconds = timeoutSeconds
    }

    public func status() throws(ControlClientError) -> StatusDocument {
        try send(.status, expecting: StatusDocument.self)
    }

    public func call(plugin: String, method: String, args: [ControlArgument]) throws(ControlClientError) -> ControlValue {
        try send(.ctl(plugin: plugin, method: method, args: args), expecting: ControlValue.self)
    }

    /// A call that may stream (an async method answering several times, ABI 1.2): `partial` gets
    /// each answer that is not the last, as it comes, and the last is returned. Once a first
    /// answer came there is no timeout: a stream lasts until the plugin ends it or we go away.
    public func call(plugin: String, method: String, args: [ControlArgument],
                     partial: @escaping (ControlValue) -> Void) throws(ControlClientError) -> ControlValue {
        try send(.ctl(plugin: plugin, method: method, args: args), expecting: ControlValue.self) { line in
            guard let reply = try? JSONDecoder().decode(ControlReply<ControlValue>.self, from: Data(line)),
                  reply.more == true, let value = reply.result else { return false }
            partial(value)
            return true
        }
    }

    /// Grants `plugin` the directory `directory` at run time (`peerhost ctl host grant`): the host
    /// checks it, keeps it in its store, audits it and applies it to the running plugin at once,
    /// which then opens files under it by absolute path ("/srv/t/x/a.bin"). `directory` is made
    /// absolute here (against this process's working directory). Returns the host's one-line
    /// confirmation; throws `.host(reason)` when refused (missing, not a directory, world-writable,
    /// overlapping the data dir, unknown plugin). Granting the same directory again changes its mode.
    @discardableResult
    public func grant(plugin: String, directory: String, mode: String = "rw") throws(ControlClientError) -> String {
        let value = try call(plugin: "host", method: "grant",
                             args: [.text(plugin), .text(Self.absolutePath(directory)), .text(mode)])
        return value.description
    }

    /// Removes an operator grant (`peerhost ctl host revoke`); new opens under it are denied.
    @discardableResult
    public func revoke(plugin: String, directory: String) throws(ControlClientError) -> String {
        try call(plugin: "host", method: "revoke", args: [.text(plugin), .text(Self.absolutePath(directory))]).description
    }

    /// `path` against the current directory, with "." and ".." resolved lexically and no trailing "/".
    public static func absolutePath(_ path: String) -> String {
        let joined = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        var parts: [Substring] = []
        for part in joined.split(separator: "/") {
            if part == "." { continue }
            if part == ".." { _ = parts.popLast(); continue }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }

    /// Sends one request and decodes the reply's result as `Result`.
    /// `partialLine`: called with each reply line first; true means it was a partial answer
    /// (consumed; keep reading), false that it is the reply.
    public func send<Result: Codable & Sendable>(_ request: ControlRequest, expecting: Result.Type,
                                                 partialLine: (([UInt8]) -> Bool)? = nil) throws(ControlClientError) -> Result {
        let line = try exchange(request, partialLine: partialLine)
        let reply: ControlReply<Result>
        do {
            reply = try JSONDecoder().decode(ControlReply<Result>.self, from: Data(line))
        } catch {
            // An error reply carries no result of the expected type; read it generically.
            if let failure = try? JSONDecoder().decode(ControlReply<JSONValue>.self, from: Data(line)), !failure.ok {
                throw .host(failure.error ?? "the host reported an error without text")
            }
            throw .badReply("\(error)")
        }
        guard reply.ok else { throw .host(reply.error ?? "the host reported an error without text") }
        guard let result = reply.result else { throw .badReply("ok reply without a result") }
        return result
    }

    /// The raw reply line (without its newline) for `request`; lines `partialLine` takes are skipped.
    public func exchange(_ request: ControlRequest, partialLine: (([UInt8]) -> Bool)? = nil) throws(ControlClientError) -> [UInt8] {
        let requestBytes: [UInt8]
        do { requestBytes = try request.line() } catch { throw .badReply("request could not be encoded: \(error)") }

        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw .connect(path: path, reason: Self.errnoText()) }
        defer { Glibc.close(descriptor) }

        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count < capacity else { throw .connect(path: path, reason: "path longer than \(capacity - 1) bytes") }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: pathBytes)
            buffer[pathBytes.count] = 0
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else {
            let reason = errno == ENOENT ? "no such socket (is the host running?)"
                : errno == ECONNREFUSED ? "connection refused (the host is not listening; stale socket?)"
                : Self.errnoText()
            throw .connect(path: path, reason: reason)
        }

        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

        var written = 0
        var sendFailure: String?
        while written < requestBytes.count {
            let result = requestBytes[written...].withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if result < 0 {
                if errno == EINTR { continue }
                // The host may refuse a peer (SO_PEERCRED) and close before our request is out: its
                // refusal is already in our receive queue, so read it before reporting the send error.
                if errno == EPIPE || errno == ECONNRESET { sendFailure = Self.errnoText(); break }
                throw .io(path: path, reason: "sending the request: \(Self.errnoText())")
            }
            written += result
        }

        var reply: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR { continue }
                if errno == ECONNRESET && sendFailure != nil { break }
                let reason = errno == EAGAIN || errno == EWOULDBLOCK
                    ? "no reply within \(timeoutSeconds) s" : Self.errnoText()
                throw .io(path: path, reason: "reading the reply: \(reason)")
            }
            if count == 0 { break }
            reply.append(contentsOf: chunk[..<count])
            while let newline = reply.firstIndex(of: 0x0a) {
                let line = Array(reply[..<newline])
                guard let partialLine, partialLine(line) else { return line }
                reply.removeSubrange(...newline)
                // Streaming now: the next answer may be far off.
                var none = timeval(tv_sec: 0, tv_usec: 0)
                setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &none, socklen_t(MemoryLayout<timeval>.size))
            }
        }
        guard !reply.isEmpty else {
            if let sendFailure { throw .io(path: path, reason: "sending the request: \(sendFailure)") }
            throw .io(path: path, reason: "the host closed the connection without a reply")
        }
        return reply
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }
}
