import Foundation
import Logging
import PeerhostSandbox
#if canImport(Glibc)
import Glibc
#endif

/// A runner's fds 0–2 (issue 15): the write end of a pipe, never the core's own terminal or
/// journal, where a plugin's `printf` would read as the host's own lines. A reader thread per runner
/// logs each line labelled with the plugin, escaped to one line (PluginSession.oneLine), at most
/// `linesPerSecond` a second: past that, lines are counted and the count is logged instead. The
/// thread ends at EOF, when the runner and every copy of the write end are gone.
enum RunnerOutput {
    static let linesPerSecond = 20
    static let longestLine = 1024

    /// A pipe for one spawn: (read end for the core, write end for the child's 0–2), both CLOEXEC.
    static func pipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        // pipe2 does not import into Swift; runners are spawned from the loop thread only, so no
        // other spawn can inherit the ends between pipe and fcntl.
        guard Glibc.pipe(&fds) == 0 else { throw SpawnError(step: .pipe, errno: errno) }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return (fds[0], fds[1])
    }

    static func startReader(fd: Int32, plugin: String, logger: Logger) {
        startNamedThread("ph-runner-out") {
            defer { Glibc.close(fd) }
            var pending: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            var windowStart = ContinuousClock.now
            var linesInWindow = 0
            var dropped = 0
            func reportDropped() {
                guard dropped > 0 else { return }
                logger.warning("plugin output dropped", metadata: ["plugin": "\(plugin)", "lines": "\(dropped)",
                                                                  "why": "more than \(linesPerSecond) lines a second"])
            }
            func emit(_ bytes: ArraySlice<UInt8>) {
                let now = ContinuousClock.now
                if now - windowStart >= .seconds(1) {
                    reportDropped()
                    windowStart = now
                    linesInWindow = 0
                    dropped = 0
                }
                guard linesInWindow < linesPerSecond else { dropped += 1; return }
                linesInWindow += 1
                let text = PluginSession.oneLine(String(decoding: bytes.prefix(longestLine), as: UTF8.self))
                logger.warning("plugin output", metadata: ["plugin": "\(plugin)", "line": "\(text)"])
            }
            while true {
                let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0, errno == EINTR { continue }
                if n <= 0 { break }
                pending += chunk[..<n]
                while let newline = pending.firstIndex(of: 0x0a) {
                    emit(pending[..<newline])
                    pending.removeSubrange(...newline)
                }
                if pending.count > longestLine { emit(pending[...]); pending.removeAll() }
            }
            if !pending.isEmpty { emit(pending[...]) }
            reportDropped()
        }
    }
}
