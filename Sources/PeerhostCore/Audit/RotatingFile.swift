// An append-only file rotated by size, shared by the audit log and the usage log:
// `path` → `path.1` → … → `path.<keep>`, the oldest dropped. Each append is one write(2) with
// O_APPEND, so a line is either wholly in the file or not there at all.

import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public final class RotatingFile: Sendable {
    public let path: String
    /// Rotate when the file would grow past this many bytes.
    public let maxBytes: UInt64
    /// Rotated files kept besides the live one (0: the live file is just started again).
    public let keep: Int

    private struct State {
        var fd: Int32 = -1
        var size: UInt64 = 0
        var lastError: String?
    }
    private let state = Mutex(State())

    public init(path: String, maxBytes: UInt64, keep: Int) {
        self.path = path
        self.maxBytes = maxBytes
        self.keep = keep
    }

    deinit {
        state.withLock { if $0.fd >= 0 { close($0.fd) } }
    }

    /// Appends `bytes` (one or more whole lines), rotating first if they would not fit. Never
    /// throws: a failure is kept for `takeError` and the caller keeps running.
    public func append(_ bytes: [UInt8]) {
        state.withLock { s in
            if s.fd < 0 || s.size + UInt64(bytes.count) > maxBytes {
                reopen(&s, rotate: s.fd >= 0 || fileSize() + UInt64(bytes.count) > maxBytes)
            }
            guard s.fd >= 0 else { return }
            let written = bytes.withUnsafeBytes { write(s.fd, $0.baseAddress, $0.count) }
            if written == bytes.count { s.size += UInt64(written) } else { s.lastError = "write \(path): \(String(cString: strerror(errno)))" }
        }
    }

    /// The first write error since the last call, if any.
    public func takeError() -> String? {
        state.withLock { s in defer { s.lastError = nil }; return s.lastError }
    }

    private func fileSize() -> UInt64 {
        var st = stat()
        return stat(path, &st) == 0 ? UInt64(st.st_size) : 0
    }

    private func reopen(_ s: inout State, rotate: Bool) {
        if s.fd >= 0 { close(s.fd); s.fd = -1 }
        if rotate && keep > 0 {
            for i in stride(from: keep - 1, through: 1, by: -1) { rename("\(path).\(i)", "\(path).\(i + 1)") }
            rename(path, "\(path).1")
        } else if rotate {
            unlink(path)
        }
        s.fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        if s.fd < 0 {
            s.lastError = "open \(path): \(String(cString: strerror(errno)))"
            return
        }
        s.size = fileSize()
    }
}
