// A real runner in real namespaces, driven by FakeCore: START/READY, data echoed zero-copy (the
// SEND names the very slot DATA delivered), control calls of every type through libffi, the sandbox
// visible from outside in /proc, and STOP → exit 0. Serialized: each test forks a sandbox.
import CPeerhostABI
import CPeerhostShim
import Foundation
import PeerhostRing
import PeerhostSandbox
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized)
struct RunnerProcessTests {
    @Test(arguments: ["echo-c", "echo-swift"])
    func echoPluginRunsSandboxedAndEchoesZeroCopy(plugin: String) throws {
        let core = try FakeCore()
        let proc = try core.spawn(plugin: plugin, library: Products.library(plugin))
        let fn = plugin.replacingOccurrences(of: "-", with: "_")   // echo_c_stats, echo_swift_stats

        // Contract 3: hello first.
        let hello = try core.readFrame()
        #expect(hello["type"] as? String == "hello")
        #expect(hello["name"] as? String == plugin)
        #expect(hello["abi"] as? String == "1.2.0")
        #expect((hello["features"] as? Int).map { $0 & Int(PH_FEAT_STREAMS) != 0 } == true)

        // START with the config in receive slot 0.
        let config = Array(#"{"listen": "tcp:127.0.0.1:7999"}"#.utf8)
        core.write(slot: 0, config)
        try core.push(desc(PH_MSG_START, slot: 0, length: UInt32(config.count)))
        let startTX = try core.collect(until: PH_MSG_READY)
        let ready = startTX.last!
        #expect(ready.status == 0)
        #expect(UInt64(bitPattern: ready.arg) & UInt64(PH_FEAT_STREAMS) != 0)
        let listen = try #require(startTX.first { $0.type == UInt16(PH_MSG_LISTEN.rawValue) })
        #expect(listen.slot >= FakeCore.recvSlots && listen.slot < FakeCore.slotCount)
        #expect(core.text(slot: listen.slot, length: listen.length) == "tcp:127.0.0.1:7999")
        #expect(startTX.contains { $0.type == UInt16(PH_MSG_FREE.rawValue) && $0.slot == 0 }, "config slot returned")

        // The listen completes; a connection arrives with a greeting unset; data is echoed.
        try core.push(desc(PH_MSG_COMPLETE, slot: listen.slot, request: listen.request, arg: 100))
        let peer = Array("tcp:10.0.0.1:5555".utf8)
        core.write(slot: 1, peer)
        try core.push(desc(PH_MSG_ACCEPT, id: 7, slot: 1, length: UInt32(peer.count), arg: 100))
        let payload = Array("hello, sandbox".utf8)
        core.write(slot: 2, [0, 0] + payload)
        try core.push(desc(PH_MSG_DATA, id: 7, slot: 2, offset: 2, length: UInt32(payload.count)))
        let afterData = try core.collect(until: PH_MSG_SEND)
        #expect(afterData.contains { $0.type == UInt16(PH_MSG_FREE.rawValue) && $0.slot == 1 }, "peer-address slot returned")
        let send = afterData.last!
        #expect(send.id == 7)
        #expect(send.slot == 2 && send.offset == 2 && send.length == UInt32(payload.count), "zero-copy: same slot back")

        // Heartbeat.
        try core.push(desc(PH_MSG_HEARTBEAT, request: 42))
        let ack = try core.collect(until: PH_MSG_HEARTBEAT_ACK).last!
        #expect(ack.request == 42)

        // Control calls of every type (Contract 3).
        let stats = try core.call(1, "\(fn)_stats", "() -> bytes", [])
        #expect(stats["ok"] as? Bool == true)
        let statsJSON = try #require(Data(base64Encoded: (stats["value"] as? [String: Any])?["bytes"] as? String ?? ""))
        let s = try #require(try JSONSerialization.jsonObject(with: statsJSON) as? [String: Any])
        #expect(s["connections"] as? Int == 1)
        #expect(s["bytes"] as? Int == payload.count)
        let add = try core.call(2, "\(fn)_add", "(i64, i64) -> i64", [["i64": 40], ["i64": 2]])
        #expect((add["value"] as? [String: Any])?["i64"] as? Int == 42)
        let scale = try core.call(3, "\(fn)_scale", "(f64, f64) -> f64", [["f64": 1.5], ["f64": 3]])
        #expect((scale["value"] as? [String: Any])?["f64"] as? Double == 4.5)
        let toggle = try core.call(4, "\(fn)_toggle", "(bool) -> i64", [["bool": true]])
        #expect((toggle["value"] as? [String: Any])?["i64"] as? Int == 1)
        let greet = try core.call(5, "\(fn)_set_greeting", "(string) -> i64", [["string": "hi!"]])
        #expect((greet["value"] as? [String: Any])?["i64"] as? Int == 3)
        let blob: [UInt8] = [1, 0, 2, 0, 250]
        let sum = try core.call(6, "\(fn)_checksum", "(bytes) -> i64", [["bytes": Data(blob).base64EncodedString()]])
        #expect((sum["value"] as? [String: Any])?["i64"] as? Int == 253)
        let eb = try core.call(7, "\(fn)_echo_bytes", "(bytes, string) -> bytes",
                               [["bytes": Data(blob).base64EncodedString()], ["string": "ok"]])
        #expect(Data(base64Encoded: (eb["value"] as? [String: Any])?["bytes"] as? String ?? "") == Data(blob + Array("ok".utf8)))
        // Errors: unknown symbol, wrong type, wrong count — each a clear error, the runner alive.
        let nope = try core.call(8, "\(fn)_nope", "() -> i64", [])
        #expect(nope["ok"] as? Bool == false)
        #expect((nope["error"] as? String)?.contains("symbol \(fn)_nope not found in lib\(plugin).so") == true)
        let wrongType = try core.call(9, "\(fn)_add", "(i64, i64) -> i64", [["i64": 1], ["string": "x"]])
        #expect((wrongType["error"] as? String)?.contains("argument 2 of \(fn)_add: expected i64, got string") == true,
                "\(wrongType)")
        let wrongCount = try core.call(10, "\(fn)_add", "(i64, i64) -> i64", [["i64": 1]])
        #expect((wrongCount["error"] as? String)?.contains("takes 2 argument(s), got 1") == true)

        // The greeting now goes to a new connection from a plugin-home slot.
        try core.push(desc(PH_MSG_ACCEPT, id: 8, arg: 100))
        let greeting = try core.collect(until: PH_MSG_SEND).last!
        #expect(greeting.id == 8 && greeting.slot >= FakeCore.recvSlots)
        #expect(core.text(slot: greeting.slot, offset: greeting.offset, length: greeting.length) == "hi!")
        try core.push(desc(PH_MSG_SEND_DONE, id: 8, slot: greeting.slot))

        // The sandbox as the host sees it.
        let st = try ProcessStatus.read(proc.pid)
        let me = try ProcessStatus.read(getpid())
        #expect(st.uids.first.map { $0 != 0 } == true, "runner runs as an unprivileged host uid: \(st.uids)")
        #expect(st.uids.allSatisfy { $0 == st.uids[0] })
        #expect(st.gids.first.map { $0 != 0 } == true)
        #expect(st.noNewPrivs == 1)
        #expect(st.groups.isEmpty, "the core's supplementary groups were dropped: \(st.groups)")
        #expect(st.threads == 1, "the runner stays single-threaded")
        #expect(st.nsPids.count == 2 && st.nsPids.last == 1, "pid 1 in its own pid namespace: \(st.nsPids)")
        for ns in ["user", "pid", "net", "mnt", "ipc", "uts"] {
            #expect(st.namespaces[ns] != nil && st.namespaces[ns] != me.namespaces[ns], "\(ns) namespace differs")
        }

        // STOP → exit 0.
        try core.push(desc(PH_MSG_STOP))
        let exit = try proc.wait(timeoutMilliseconds: 5000)
        #expect(exit == ProcessExit(exited: true, code: 0))
        core.process = nil
        close(proc.pidfd)
    }

    @Test func runnerRefusesAMissingLibraryWithAFailFrame() throws {
        let core = try FakeCore()
        let proc = try core.spawn(plugin: "echo-c", library: "/nonexistent/libnope.so")
        let f = try core.readFrame()
        #expect(f["type"] as? String == "fail")
        #expect(f["step"] as? String == "dlopen")
        #expect((f["message"] as? String)?.contains("libnope.so") == true)
        #expect(try proc.wait(timeoutMilliseconds: 5000) == ProcessExit(exited: true, code: 1))
        core.process = nil
        close(proc.pidfd)
    }

    @Test func runnerRefusesAWrongPluginName() throws {
        let core = try FakeCore()
        let proc = try core.spawn(plugin: "echo-x", library: Products.library("echo-c"))
        let f = try core.readFrame()
        #expect(f["type"] as? String == "fail")
        #expect(f["step"] as? String == "entry")
        #expect((f["message"] as? String)?.contains("\"echo-c\", expected \"echo-x\"") == true)
        #expect(try proc.wait(timeoutMilliseconds: 5000) == ProcessExit(exited: true, code: 1))
        core.process = nil
        close(proc.pidfd)
    }

    @Test func spawnFailureNamesTheStep() throws {
        let core = try FakeCore()
        do {
            let spec = SpawnSpec(runnerPath: "/nonexistent/peerhost-runner", argv: ["peerhost-runner"],
                                 fds: [core.memfd], hostUID: 200_999, hostGID: 200_999)
            _ = try SandboxSpawner.spawn(spec)
            Issue.record("spawn of a missing binary succeeded")
        } catch {
            #expect(error.step == .execve)
            #expect(error.errno == ENOENT)
            #expect(error.description.hasPrefix("spawn step execve: ENOENT"))
        }
    }

    @Test func fdsLandAtFixedNumbersEvenWhenSwapped() throws {
        // fds {b, a} where a < b: the child must see b at 3 and a at 4; nothing else open above 4.
        var p1: [Int32] = [-1, -1]
        var p2: [Int32] = [-1, -1]
        #expect(pipe(&p1) == 0 && pipe(&p2) == 0)
        defer { for fd in p1 + p2 { close(fd) } }
        // ls reports the open fds through the pipe placed at fd 3; the shell's own saved copies are
        // gone after exec, so only 0-2, 3, 4 and ls's directory fd may show.
        let script = "echo x >&4; exec ls /proc/self/fd >&3"
        let spec = SpawnSpec(runnerPath: "/bin/sh", argv: ["sh", "-c", script],
                             environment: ["PATH=/usr/bin:/bin"], fds: [p1[1], p2[1]],
                             hostUID: 200_998, hostGID: 200_998)
        let proc = try SandboxSpawner.spawn(spec)
        close(p1[1]); close(p2[1]); p1[1] = -1; p2[1] = -1
        let exit = try proc.wait(timeoutMilliseconds: 5000)
        close(proc.pidfd)
        #expect(exit == ProcessExit(exited: true, code: 0))
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = read(p1[0], &buf, buf.count)
        let fds = String(decoding: buf[0..<max(n, 0)], as: UTF8.self).split(separator: "\n").compactMap { Int($0) }
        #expect(Set(fds).isSubset(of: [0, 1, 2, 3, 4, 5]), "open fds in the child: \(fds)")
        let m = read(p2[0], &buf, buf.count)
        #expect(m == 2 && buf[0] == UInt8(ascii: "x"))
    }
}

/// Plugins the runner must refuse, compiled at test time with the toolchain's clang (the fixture is
/// a few lines of C against peerhost.h; a separate product would widen Package.swift for tests).
@Suite(.serialized)
struct RunnerRefusesBadPluginsTests {
    static func compile(_ name: String, abi: String, features: String) throws -> String {
        let dir = NSTemporaryDirectory() + "peerhost-fixture-\(getpid())-\(name)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod(dir, 0o755)   // the runner runs as an unprivileged host uid and must read the library
        let src = """
        #include "peerhost.h"
        static ph_status start(const ph_host *h, const char *c, size_t n, void **u) { return PH_OK; }
        static const ph_plugin p = { .size = sizeof(ph_plugin), .abi_version = \(abi), .name = "\(name)",
            .version = "0.0.1", .features = \(features), .start = start };
        const ph_plugin *peerhost_plugin_v1(void) { return &p; }
        """
        try src.write(toFile: dir + "/fixture.c", atomically: true, encoding: .utf8)
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let out = dir + "/lib\(name).so"
        let cc = FileManager.default.isExecutableFile(atPath: "/opt/swift/usr/bin/clang") ? "/opt/swift/usr/bin/clang" : "/usr/bin/cc"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: cc)
        p.arguments = ["-shared", "-fPIC", "-I", repo.path + "/protocols/abi", dir + "/fixture.c", "-o", out]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw HarnessError("compiling the \(name) fixture failed") }
        chmod(out, 0o755)
        return out
    }

    func expectRefusal(_ name: String, abi: String, features: String, step: String, message: String) throws {
        let lib = try Self.compile(name, abi: abi, features: features)
        let core = try FakeCore()
        let proc = try core.spawn(plugin: name, library: lib)
        let f = try core.readFrame()
        #expect(f["type"] as? String == "fail")
        #expect(f["step"] as? String == step)
        #expect(f["message"] as? String == message)
        #expect(try proc.wait(timeoutMilliseconds: 5000) == ProcessExit(exited: true, code: 1))
        core.process = nil
        close(proc.pidfd)
    }

    @Test func abiMajorMismatchIsRefusedClearly() throws {
        try expectRefusal("abi2", abi: "(2 << 16)", features: "PH_FEAT_STREAMS", step: "abi",
                          message: "plugin abi2 was built against ABI 2.0; this host serves ABI 1.x")
    }

    @Test func unknownFeatureBitsAreRefused() throws {
        try expectRefusal("future", abi: "PH_ABI_VERSION", features: "(1ull << 12) | PH_FEAT_STREAMS", step: "features",
                          message: "plugin future declares unknown feature bits 0x1000 (ABI 1.x knows 0x1ff)")
    }
}

/// Many messages through a 64-entry ring: wrap-around, TX back-pressure (the runner answers
/// PH_EAGAIN, echo-c queues and retries on on_writable), nothing lost, order kept per connection.
@Suite(.serialized)
struct RunnerFloodTests {
    @Test(arguments: ["echo-c", "echo-swift"])
    func floodIsEchoedInOrderThroughFullRings(plugin: String) throws {
        // 16-entry rings but 96 receive slots: more sends in flight than TX can hold, so the
        // runner must answer PH_EAGAIN and the plugin retry on on_writable.
        let core = try FakeCore(entries: 16, slotCount: 128, recvSlots: 96)
        let proc = try core.spawn(plugin: plugin, library: Products.library(plugin))
        _ = try core.readFrame()
        try core.push(desc(PH_MSG_START))
        let listen = try #require(try core.collect(until: PH_MSG_READY).first { $0.type == UInt16(PH_MSG_LISTEN.rawValue) })
        try core.push(desc(PH_MSG_COMPLETE, slot: listen.slot, request: listen.request, arg: 100))
        for c in 1...4 { try core.push(desc(PH_MSG_ACCEPT, id: UInt64(c), arg: 100)) }

        let total = 20_000
        var freeSlots = Array(0..<UInt32(96))
        var sawFullTX = 0
        var sent = 0
        var nextExpected = [UInt64: UInt32](), nextSeq = [UInt64: UInt32]()
        var received = 0
        let deadline = Date().addingTimeInterval(60)
        // Don't let the test's own descriptor pushes trip over a full RX ring: we are the producer.
        while received < total {
            guard Date() < deadline else { Issue.record("flood stalled at \(received)/\(total)"); break }
            var progressed = false
            while sent < total, !freeSlots.isEmpty, ph_ring_space(core.rx) > 0 {
                let slot = freeSlots.removeLast()
                let conn = UInt64(sent % 4 + 1)
                let seq = nextSeq[conn, default: 0]
                nextSeq[conn] = seq + 1
                withUnsafeBytes(of: seq.littleEndian) { core.write(slot: slot, Array($0)) }
                var d = desc(PH_MSG_DATA, id: conn, slot: slot, length: 4)
                _ = ph_ring_put(core.rx, &d)
                sent += 1
                progressed = true
            }
            ph_ring_publish(core.rx)
            if ph_ring_consumer_wants_wakeup(core.rx) != 0 { _ = ph_eventfd_signal(core.rxEvent) }
            var n = ph_ring_ready(core.tx)
            if sent % 5000 < 64 && sent < total && n < 16 {
                // Every 5000 messages, stop consuming until the runner has filled TX (or 200 ms
                // pass): back-pressure is exercised deterministically, not by scheduling luck.
                let until = Date().addingTimeInterval(0.2)
                while n < 16 && Date() < until { usleep(200); n = ph_ring_ready(core.tx) }
            }
            if n == 16 { sawFullTX += 1; usleep(50) }   // linger so the runner meets the full ring
            var d = ph_desc()
            for i in 0..<n {
                ph_ring_peek_copy(core.tx, i, &d)
                guard d.type == UInt16(PH_MSG_SEND.rawValue) else { continue }
                let seq = UnsafeRawPointer(core.slot(d.slot) + Int(d.offset)).loadUnaligned(as: UInt32.self)
                let want = nextExpected[d.id, default: 0]
                if seq != want { Issue.record("conn \(d.id): got seq \(seq), expected \(want)"); return }
                nextExpected[d.id] = want + 1
                freeSlots.append(d.slot)   // a receive slot: back to our pool once "sent"
                received += 1
            }
            if n > 0 { ph_ring_consume(core.tx, n); progressed = true }
            if !progressed { sched_yield() }
        }
        #expect(received == total)
        #expect(sawFullTX > 0, "TX back-pressure was exercised")
        let stats = try core.call(1, plugin.replacingOccurrences(of: "-", with: "_") + "_stats", "() -> bytes", [])
        let json = try #require(Data(base64Encoded: (stats["value"] as? [String: Any])?["bytes"] as? String ?? ""))
        let s = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        #expect(s["bytes"] as? Int == total * 4)
        try core.push(desc(PH_MSG_STOP))
        #expect(try proc.wait(timeoutMilliseconds: 5000) == ProcessExit(exited: true, code: 0))
        core.process = nil
        close(proc.pidfd)
    }
}

/// The runner on a region created by the core's own PeerhostRing code, default geometry.
@Suite(.serialized)
struct RunnerOnCoreRegionTests {
    @Test func echoCRunsOnARegionFromPeerhostRing() throws {
        let g = RegionGeometry(ringEntries: 4096, slotSize: 16384, slotCount: 2048, recvSlots: 1024)
        let core = try FakeCore(shared: try SharedRegion.create(name: "runner-test", geometry: g))
        let proc = try core.spawn(plugin: "echo-c", library: Products.library("echo-c"))
        let hello = try core.readFrame()
        #expect(hello["type"] as? String == "hello")
        try core.push(desc(PH_MSG_START))
        let ready = try core.collect(until: PH_MSG_READY)
        let listen = try #require(ready.first { $0.type == UInt16(PH_MSG_LISTEN.rawValue) })
        #expect(listen.slot >= 1024 && listen.slot < 2048)
        #expect(core.text(slot: listen.slot, length: listen.length) == "tcp:127.0.0.1:7001")
        core.write(slot: 1023, Array("last receive slot".utf8))
        try core.push(desc(PH_MSG_ACCEPT, id: 5, arg: 100))   // the runner sends only on connections it was given
        try core.push(desc(PH_MSG_DATA, id: 5, slot: 1023, length: 17))
        let send = try core.collect(until: PH_MSG_SEND).last!
        #expect(send.id == 5 && send.slot == 1023 && send.length == 17)
        try core.push(desc(PH_MSG_STOP))
        #expect(try proc.wait(timeoutMilliseconds: 5000) == ProcessExit(exited: true, code: 0))
        core.process = nil
        close(proc.pidfd)
    }
}

/// The adaptive wait: an idle runner sleeps (no CPU), and a descriptor pushed while it sleeps wakes
/// it through the RX eventfd, with the spin budget off (0) and at its default (50 µs).
@Suite(.serialized)
struct RunnerIdleTests {
    @Test(arguments: ["0", "50"])
    func idleRunnerSleepsAndWakesOnEventfd(spinMicroseconds: String) throws {
        let core = try FakeCore()
        let proc = try core.spawn(plugin: "echo-c", library: Products.library("echo-c"),
                                  environment: ["SWIFT_BACKTRACE=enable=no", "PEERHOST_SPIN_US=\(spinMicroseconds)"])
        _ = try core.readFrame()
        try core.push(desc(PH_MSG_START))
        _ = try core.collect(until: PH_MSG_READY)
        usleep(200_000)
        let before = try cpuTicks(proc.pid)
        usleep(1_000_000)
        let used = try cpuTicks(proc.pid) - before
        #expect(used <= 2, "an idle runner used \(used) ticks in 1 s (100 ticks = a busy core)")
        try core.push(desc(PH_MSG_ACCEPT, id: 9, arg: 100))
        for i in 0..<5 {   // each push finds the runner asleep (need_wakeup set) and must wake it
            core.write(slot: 3, [UInt8(i)])
            try core.push(desc(PH_MSG_DATA, id: 9, slot: 3, length: 1))
            let send = try core.collect(until: PH_MSG_SEND, timeout: 2).last!
            #expect(send.slot == 3)
            usleep(20_000)
        }
        try core.push(desc(PH_MSG_STOP))
        #expect(try proc.wait(timeoutMilliseconds: 5000) == ProcessExit(exited: true, code: 0))
        core.process = nil
        close(proc.pidfd)
    }

    @Test func runnerExitsWhenTheCoreGoesAway() throws {
        let core = try FakeCore()
        let proc = try core.spawn(plugin: "echo-c", library: Products.library("echo-c"))
        _ = try core.readFrame()
        try core.push(desc(PH_MSG_START))
        _ = try core.collect(until: PH_MSG_READY)
        shutdown(core.controlFD, Int32(SHUT_RDWR))   // EOF on fd 4: nobody left to serve
        #expect(try proc.wait(timeoutMilliseconds: 5000) == ProcessExit(exited: true, code: 1))
        core.process = nil
        close(proc.pidfd)
    }
}
