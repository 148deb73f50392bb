import CLiburing   // MSG_NOSIGNAL: on some builds only visible through this module (NOTES-swift-linux.md)
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The core's end of a runner's control socket (fd 4 in the runner): length-prefixed JSON frames.
/// Calls go out from any thread (under a lock, one frame per write); a reader thread takes frames in,
/// resolves pending calls, and reports the hello/fail frame and EOF. Not on the data path.
final class RunnerControlChannel: @unchecked Sendable {
    enum Event: Sendable {
        case hello(name: String, version: String, abi: String, features: UInt64)
        /// `peerhost check`: the runner loaded the plugin, reported it and exits (start never ran).
        case check(PluginCheck.Loaded)
        case fail(step: String, message: String)
        case closed
    }

    let fd: Int32
    private let lock = NSLock()
    private var pending: [UInt64: PendingCall] = [:]
    private var nextCallID: UInt64 = 1
    private var isClosed = false
    static let maxFrame = 64 << 20

    init(fd: Int32) { self.fd = fd }

    /// Starts the reader thread. `onEvent` runs on that thread.
    func start(onEvent: @escaping @Sendable (Event) -> Void) {
        startNamedThread("ph-control-read") { [self] in readLoop(onEvent: onEvent) }
    }

    /// An answer of a streaming call that is not its last; false when its caller has gone (the call
    /// is then cancelled: the plugin's next reply gets PH_ENOTCONN).
    typealias Partial = @Sendable (ControlValue) -> Bool

    /// Sends a call frame and waits for its result frame (or the channel closing, or the timeout).
    /// `written` runs once the frame is in the socket: the runner is told over RX only then, so the
    /// frame it is woken for is there to read (it never polls the socket). `isAsync`: an ABI 1.2
    /// async method (answers come as reply frames; those with `more` go to `partial`, and once one
    /// came the timeout no longer applies). A caller without `partial` gets the first answer.
    func call(plugin: String, method: String, symbol: String, signature: String, args: [ControlArgumentValue],
              isAsync: Bool = false, partial: Partial? = nil,
              timeout: Duration = .seconds(10), written: @escaping @Sendable () -> Void = {}) async throws -> ControlValue {
        let id: UInt64 = lock.withLock {
            defer { nextCallID += 1 }
            return nextCallID
        }
        let body = try JSONEncoder().encode(CallFrame(id: id, symbol: symbol, signature: signature, args: args, async: isAsync ? true : nil))
        return try await withCheckedThrowingContinuation { continuation in
            let accepted: Bool = lock.withLock {
                if isClosed { return false }
                pending[id] = PendingCall(continuation: continuation, plugin: plugin, method: method, partial: partial, isAsync: isAsync)
                return writeFrame(body)
            }
            if !accepted {
                let call = lock.withLock { pending.removeValue(forKey: id) }
                (call?.continuation ?? continuation).resume(throwing: ControlCallError.pluginUnavailable(plugin: plugin, reason: "it exited or is restarting"))
                return
            }
            written()
            Task {
                try? await Task.sleep(for: timeout)
                let expired = self.lock.withLock { self.pending[id].map { !$0.streaming } ?? false }
                guard expired else { return }
                self.cancel(id)
                self.resolve(id) { call in .failure(ControlCallError.callFailed(plugin: call.plugin, method: call.method, message: "no answer within \(timeout)")) }
            }
        }
    }

    /// Tells the runner an async call is over for its caller (no-op for a finished call).
    private func cancel(_ id: UInt64) {
        guard let body = try? JSONEncoder().encode(CancelFrame(id: id)) else { return }
        lock.withLock {
            guard pending[id]?.isAsync == true, !isClosed else { return }
            _ = writeFrame(body)
        }
    }

    private struct PendingCall {
        var continuation: CheckedContinuation<ControlValue, any Error>
        var plugin: String
        var method: String
        var partial: Partial?
        var isAsync: Bool
        /// A partial answer came: the caller is streaming and the timeout is off.
        var streaming = false
    }

    private struct CallFrame: Encodable {
        var type = "call"
        var id: UInt64
        var symbol: String
        var signature: String
        var args: [ControlArgumentValue]
        var async: Bool?
    }

    private struct CancelFrame: Encodable {
        var type = "cancel"
        var id: UInt64
    }

    /// Any frame from the runner: hello, fail or result.
    private struct RunnerFrame: Decodable {
        var type: String
        var id: UInt64?
        var ok: Bool?
        var value: ControlValue?
        var error: String?
        var name: String?
        var version: String?
        var abi: String?
        var features: UInt64?
        var step: String?
        var message: String?
        var more: Bool?
        var callbacks: [String]?
        var missing: [String]?
    }

    private func resolve(_ id: UInt64, _ result: (PendingCall) -> Result<ControlValue, any Error>) {
        guard let call = lock.withLock({ pending.removeValue(forKey: id) }) else { return }
        call.continuation.resume(with: result(call))
    }

    /// Writes one frame; caller holds the lock.
    private func writeFrame(_ body: Data) -> Bool {
        var length = UInt32(body.count).littleEndian
        var frame = Data(bytes: &length, count: 4)
        frame.append(body)
        return frame.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                if n < 0 { if errno == EINTR { continue }; return false }
                offset += n
            }
            return true
        }
    }

    private func readExactly(_ count: Int) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + offset, count - offset) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            offset += n
        }
        return buffer
    }

    private func readLoop(onEvent: @escaping @Sendable (Event) -> Void) {
        while let header = readExactly(4) {
            let length = Int(UInt32(header[0]) | UInt32(header[1]) << 8 | UInt32(header[2]) << 16 | UInt32(header[3]) << 24)
            guard length <= Self.maxFrame, let body = readExactly(length),
                  let frame = try? JSONDecoder().decode(RunnerFrame.self, from: Data(body)) else {
                onEvent(.fail(step: "control", message: "malformed control frame from the runner"))
                break
            }
            switch frame.type {
            case "hello":
                onEvent(.hello(name: frame.name ?? "", version: frame.version ?? "", abi: frame.abi ?? "", features: frame.features ?? 0))
            case "check":
                onEvent(.check(PluginCheck.Loaded(name: frame.name ?? "", version: frame.version ?? "", abi: frame.abi ?? "",
                                                  features: frame.features ?? 0, callbacks: frame.callbacks ?? [],
                                                  missingSymbols: frame.missing ?? [])))
            case "fail":
                onEvent(.fail(step: frame.step ?? "unknown", message: frame.message ?? ""))
            case "result", "reply":
                guard let id = frame.id else { continue }
                if frame.type == "reply", frame.more == true, frame.ok == true, let value = frame.value {
                    partialAnswer(id, value)
                    continue
                }
                resolve(id) { call in
                    if frame.ok == true, let value = frame.value { return .success(value) }
                    return .failure(ControlCallError.callFailed(plugin: call.plugin, method: call.method,
                                                                message: frame.error ?? "malformed result"))
                }
            default:
                continue
            }
        }
        let orphans = lock.withLock {
            isClosed = true
            defer { pending.removeAll() }
            return Array(pending.values)
        }
        for call in orphans {
            call.continuation.resume(throwing: ControlCallError.pluginUnavailable(plugin: call.plugin, reason: "it exited during the call"))
        }
        onEvent(.closed)
    }

    /// A streaming answer: to the caller's `partial`; a caller that cannot stream (no `partial`)
    /// takes it as the answer, and one that has gone cancels the call.
    private func partialAnswer(_ id: UInt64, _ value: ControlValue) {
        let partial: Partial?? = lock.withLock {
            guard pending[id] != nil else { return nil }
            pending[id]!.streaming = true
            return .some(pending[id]!.partial)
        }
        guard let partial else { return }   // answered, timed out or cancelled meanwhile
        if let partial, partial(value) { return }
        cancel(id)
        resolve(id) { call in
            partial == nil ? .success(value)
                : .failure(ControlCallError.callFailed(plugin: call.plugin, method: call.method, message: "the caller went away"))
        }
    }

    func close() {
        _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
    }

    deinit { _ = Glibc.close(fd) }
}

