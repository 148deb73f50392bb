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

    /// Sends a call frame and waits for its result frame (or the channel closing, or the timeout).
    func call(plugin: String, method: String, symbol: String, signature: String, args: [ControlArgumentValue],
              timeout: Duration = .seconds(10)) async throws -> ControlValue {
        let id: UInt64 = lock.withLock {
            defer { nextCallID += 1 }
            return nextCallID
        }
        let body = try JSONEncoder().encode(CallFrame(id: id, symbol: symbol, signature: signature, args: args))
        return try await withCheckedThrowingContinuation { continuation in
            let accepted: Bool = lock.withLock {
                if isClosed { return false }
                pending[id] = PendingCall(continuation: continuation, plugin: plugin, method: method)
                return writeFrame(body)
            }
            if !accepted {
                let call = lock.withLock { pending.removeValue(forKey: id) }
                (call?.continuation ?? continuation).resume(throwing: ControlCallError.pluginUnavailable(plugin: plugin, reason: "it exited or is restarting"))
                return
            }
            Task {
                try? await Task.sleep(for: timeout)
                self.resolve(id) { call in .failure(ControlCallError.callFailed(plugin: call.plugin, method: call.method, message: "no answer within \(timeout)")) }
            }
        }
    }

    private struct PendingCall {
        var continuation: CheckedContinuation<ControlValue, any Error>
        var plugin: String
        var method: String
    }

    private struct CallFrame: Encodable {
        var type = "call"
        var id: UInt64
        var symbol: String
        var signature: String
        var args: [ControlArgumentValue]
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
            case "fail":
                onEvent(.fail(step: frame.step ?? "unknown", message: frame.message ?? ""))
            case "result":
                guard let id = frame.id else { continue }
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

    func close() {
        _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
    }

    deinit { _ = Glibc.close(fd) }
}

