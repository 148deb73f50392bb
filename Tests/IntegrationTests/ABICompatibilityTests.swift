import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    /// Issue 14 (1): ABI 1.2 without surprises. One host serves abi-probe built against today's
    /// header and the same source built against the frozen 1.0 header; each refusal comes back to
    /// the caller as the header promises (PH_ENOTSUP for an undeclared feature from 1.2 on,
    /// PH_ENOTCONN for an id the plugin does not hold, instead of a kill); and on_writable comes
    /// from the core after PH_ENOMEM and after a full TX ring, to a plugin that has no timer.
    @Suite(.serialized) struct ABICompatibilityTests {
        static func config(tuning: String = "") -> String {
            """
            [host]
            data_dir = "@DATA@"
            http = "127.0.0.1:0"
            \(tuning.isEmpty ? "" : "\n[tuning]\n\(tuning)\n")
            [[plugin]]
            name = "abi-probe"
            manifest = "@REPO@/Tests/Plugins/abi-probe/manifest.toml"

            [[plugin]]
            name = "abi-probe-v1-0"
            manifest = "@REPO@/Tests/Plugins/abi-probe-v1-0/manifest.toml"
            """
        }

        func call(_ host: HostProcess, _ plugin: String, _ method: String) throws -> [String: Any] {
            let (status, out) = try host.cli(["ctl", plugin, method])
            guard status == 0, let doc = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any] else {
                throw TestFailure("ctl \(plugin) \(method): \(out)")
            }
            return doc
        }

        func waitServing(_ host: HostProcess) throws {
            try waitUntil("both probes echo", timeout: .seconds(20)) { echoes(7006, "new\n") && echoes(7007, "old\n") }
        }

        @Test func oneHostServesABI10AndABI12Plugins() throws {
            let host = try HostProcess(config: Self.config())
            defer { _ = host.stop() }
            try host.start()
            try waitServing(host)

            let new = try call(host, "abi-probe", "refusals")
            #expect(new["abi"] as? Int == 0x010200, "\(new)")
            #expect(new["timer"] as? Int == -4 && new["kv_get"] as? Int == -4, "undeclared features answer PH_ENOTSUP: \(new)")
            #expect(new["send"] as? Int == -7 && new["close"] as? Int == -7 && new["set_rate"] as? Int == -7,
                    "an id the plugin does not hold answers PH_ENOTCONN: \(new)")
            #expect(new["close_name"] as? String == "PH_ENOTCONN", "ph_status_name: \(new)")

            let old = try call(host, "abi-probe-v1-0", "refusals")
            #expect(old["abi"] as? Int == 0x010000, "\(old)")
            #expect((old["timer"] as? Int ?? 0) > 0 && (old["kv_get"] as? Int ?? 0) > 0,
                    "a 1.0 plugin keeps 1.0's behaviour: its calls are taken whatever its bits: \(old)")
            #expect(old["send"] as? Int == -7 && old["close"] as? Int == -7 && old["set_rate"] as? Int == -7, "\(old)")

            // A second round: the refusal is logged once per feature, and nobody was killed for it.
            _ = try call(host, "abi-probe", "refusals")
            try waitServing(host)
            for plugin in ["abi-probe", "abi-probe-v1-0"] {
                let s = try status(host, plugin)
                #expect(s["state"] as? String == "running" && s["restarts"] as? Int == 0, "\(plugin): \(s)")
            }
            let log = host.drainOutput()
            let lines = log.split(separator: "\n").filter { $0.contains("timer refused with PH_ENOTSUP") }
            #expect(lines.count == 1 && lines.first?.contains("PH_FEAT_TIMERS") == true, "logged once, naming the bit:\n\(log)")
        }

        @Test func ordinaryCThatReallocsBigBlocksRunsUnderTheDefaultProfile() throws {
            let host = try HostProcess(config: Self.config())
            defer { _ = host.stop() }
            try host.start()
            try waitServing(host)
            let (code, out) = try host.cli(["ctl", "abi-probe", "grow"])
            #expect(code == 0 && out.trimmingCharacters(in: .whitespacesAndNewlines) == "\(8 << 20)", "\(out)")
            let s = try status(host, "abi-probe")
            #expect(s["state"] as? String == "running" && s["restarts"] as? Int == 0, "\(s)")
        }

        /// ABI 1.2 async control methods: they get start()'s user pointer, may answer from inside
        /// the call or later (from a callback, from another method), and may stream; a caller that
        /// leaves ends the stream (the plugin's next reply answers PH_ENOTCONN).
        @Test func asyncControlMethodsReachStateAnswerLaterAndStream() throws {
            let host = try HostProcess(config: Self.config())
            defer { _ = host.stop() }
            try host.start()
            try waitServing(host)
            let (whoCode, who) = try host.cli(["ctl", "abi-probe", "whoami"])
            #expect(whoCode == 0 && who.contains("start's"), "\(who)")
            let (refuseCode, refused) = try host.cli(["ctl", "abi-probe", "refuse"])
            #expect(refuseCode != 0 && refused.contains("PH_EDENIED"), "\(refused)")

            // A stream: each chunk the plugin receives is one answer, printed as it comes.
            let watch = try StreamingCLI(["ctl", "abi-probe", "watch", "--config", host.configPath])
            try waitUntil("the stream opened") { watch.output().contains("watching") }
            for chunk in ["abc", "defgh"] { #expect(echoes(7006, chunk)) }
            try waitUntil("two answers streamed") { watch.output().contains("got 3") && watch.output().contains("got 5") }
            let (_, unwatch) = try host.cli(["ctl", "abi-probe", "unwatch"])
            #expect(unwatch.trimmingCharacters(in: .whitespacesAndNewlines) == "1", "\(unwatch)")
            #expect(watch.wait() == 0)
            #expect(watch.output().hasSuffix("bye\n"), "the last answer ends the stream: \(watch.output())")

            // A watcher that goes away: the plugin learns it from its next reply.
            let leaving = try StreamingCLI(["ctl", "abi-probe", "watch", "--config", host.configPath])
            try waitUntil("the second stream opened") { leaving.output().contains("watching") }
            leaving.kill()
            try waitUntil("a reply to the gone watcher answered PH_ENOTCONN", timeout: .seconds(20)) {
                _ = echoes(7006, "ping")
                let (_, out) = try host.cli(["ctl", "abi-probe", "replies"])
                return out.contains(#""refused":1"#)
            }
            let s = try status(host, "abi-probe")
            #expect(s["restarts"] as? Int == 0, "\(s)")
        }

        /// Issue 15 (5): what a plugin writes to fds 1–2 reaches the host's log labelled with the
        /// plugin and escaped, never as a raw line of the host's own output.
        @Test func aPluginsOutputIsLabelledNotRaw() throws {
            let host = try HostProcess(config: Self.config())
            defer { _ = host.stop() }
            try host.start()
            try waitServing(host)
            // Read the host's output without blocking: it may have nothing more to say.
            let fd = host.output.fileHandleForReading.fileDescriptor
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            func available() -> String {
                var bytes: [UInt8] = []
                var chunk = [UInt8](repeating: 0, count: 65536)
                while true {
                    let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    if n <= 0 { break }
                    bytes += chunk[..<n]
                }
                return String(decoding: bytes, as: UTF8.self)
            }
            _ = available()
            let forged = "peerhost ready: forged by a plugin"
            let (code, out) = try host.cli(["ctl", "abi-probe", "say", forged])
            #expect(code == 0, "\(out)")
            var log = ""
            try waitUntil("the line in the host's log") {
                log += available()
                return log.contains("plugin output")
            }
            let lines = log.split(separator: "\n")
            #expect(lines.contains { $0.contains("plugin output") && $0.contains("plugin=abi-probe") && $0.contains(forged) }, "\(log)")
            #expect(!lines.contains { $0.hasPrefix(forged) }, "never a raw line: \(log)")
        }

        /// Issue 15 (6): a plugin that writes start-up frames into its control socket after start
        /// changes nothing: its status reason stays, it is not restarted, and each is audited.
        @Test func forgedControlFramesAreIgnoredAndAudited() throws {
            let host = try HostProcess(config: Self.config())
            defer { _ = host.stop() }
            try host.start()
            try waitServing(host)
            let (code, out) = try host.cli(["ctl", "abi-probe", "forge"])
            #expect(code == 0 && out.trimmingCharacters(in: .whitespacesAndNewlines) == "2", "\(out)")
            try waitUntil("both forged frames audited") {
                try host.audit("abi-probe", action: "control", decision: "denied").count == 2
            }
            let s = try status(host, "abi-probe")
            #expect(s["state"] as? String == "running" && s["restarts"] as? Int == 0, "\(s)")
            #expect(!(s["reason"] as? String ?? "").contains("attacker text"), "\(s)")
            #expect(echoes(7006, "still here\n"))
        }

        @Test func onWritableFollowsENOMEMWithoutATimer() throws {
            // 32 plugin-home slots: metric_add takes one each, and none comes back while the call runs.
            let host = try HostProcess(config: Self.config(tuning: "slot_count = 64\nrecv_slots = 32"))
            defer { _ = host.stop() }
            try host.start()
            try waitServing(host)
            let before = try call(host, "abi-probe", "writable")["zero"] as? Int ?? -1
            let exhaust = try call(host, "abi-probe", "exhaust")
            #expect(exhaust["refusal"] as? Int == -6 && (exhaust["taken"] as? Int ?? 0) > 0, "PH_ENOMEM: \(exhaust)")
            try waitUntil("on_writable(0) after the slots came back", timeout: .seconds(10)) {
                (try call(host, "abi-probe", "writable")["zero"] as? Int ?? 0) > before
            }
        }

        @Test func onWritableFollowsAFullTXRingWithoutATimer() throws {
            // A 16-entry TX ring fills long before the core can drain a tight loop of calls.
            let host = try HostProcess(config: Self.config(tuning: "ring_entries = 16"))
            defer { _ = host.stop() }
            try host.start()
            try waitServing(host)
            let client = try TCPClient(port: 7006, timeoutSeconds: 5)
            defer { client.close() }
            try client.send(Array("hold\n".utf8))
            _ = try client.receive(exactly: 5)
            let flood = try call(host, "abi-probe", "flood")
            #expect((flood["conn"] as? Int ?? 0) > 0 && flood["refusal"] as? Int == -1, "PH_EAGAIN: \(flood)")
            try waitUntil("on_writable(conn) once the core drained the ring", timeout: .seconds(10)) {
                (try call(host, "abi-probe", "writable")["conn"] as? Int ?? 0) >= 1
            }
            // The connection still works: the plugin was not stalled by the wait.
            try client.send(Array("after\n".utf8))
            #expect(try client.receive(exactly: 6) == Array("after\n".utf8))
        }
    }
}

/// A CLI process whose output is read as it comes (a streaming `peerhost ctl`).
final class StreamingCLI {
    let process = Process()
    let pipe = Pipe()
    private var collected: [UInt8] = []

    init(_ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: Products.peerhost)
        process.arguments = arguments
        process.standardOutput = pipe
        process.standardError = pipe
        let fd = pipe.fileHandleForReading.fileDescriptor
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        try process.run()
    }

    /// Everything written so far.
    func output() -> String {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(pipe.fileHandleForReading.fileDescriptor, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            collected += chunk[..<n]
        }
        return String(decoding: collected, as: UTF8.self)
    }

    func wait(timeout: Duration = .seconds(10)) -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { usleep(20_000) }
        if process.isRunning { kill(); return -1 }
        return process.terminationStatus
    }

    func kill() {
        if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}
