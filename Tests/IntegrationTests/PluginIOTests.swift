import Foundation
import Testing
@testable import PeerhostCore
#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    /// The host calls the core performs for a plugin (connect, UDP, resolve, files), driven through the
    /// io-probe test plugin (Tests/Plugins/io-probe) in a real `peerhost run`. Ports 7101–7107 only.
    @Suite(.serialized) struct PluginIOTests {
        static let config = """
        [host]
        data_dir = "@DATA@"
        http = "127.0.0.1:0"

        [[plugin]]
        name = "io-probe"
        manifest = "@REPO@/Tests/Plugins/io-probe/manifest.toml"
        """

        /// Starts one scenario (retrying while the plugin is still starting) and polls its report
        /// until the plugin says it is done.
        func scenario(_ host: HostProcess, _ text: String, within: Duration = .seconds(20)) throws -> [String: Any] {
            let deadline = ContinuousClock.now + within
            var started = false
            var last = ""
            while ContinuousClock.now < deadline {
                if !started {
                    let (status, out) = try host.cli(["ctl", "io-probe", "run", text])
                    last = out
                    if status == 0, out.trimmingCharacters(in: .whitespacesAndNewlines) == "0" {
                        started = true
                    } else {
                        usleep(100_000)
                        continue
                    }
                }
                let (status, out) = try host.cli(["ctl", "io-probe", "report"])
                last = out
                if status == 0, let doc = try? JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any],
                   doc["done"] as? Bool == true {
                    return doc
                }
                usleep(50_000)
            }
            throw TestFailure("scenario '\(text)' did not finish (started: \(started)); last output: \(last)\n\(host.drainOutput())")
        }

        func metrics(_ host: HostProcess) throws -> String { try httpGet(host.httpAddress, "/metrics").1 }

        func deniedCount(_ metrics: String, action: String) -> Int {
            for line in metrics.split(separator: "\n") where line.hasPrefix("peerhost_plugin_denials_total")
                && line.contains("action=\"\(action)\"") && line.contains("plugin=\"io-probe\"") {
                return Int(Double(line.split(separator: " ").last ?? "") ?? 0)
            }
            return 0
        }

        @Test func tcpConnectEchoesRefusesAndDenies() throws {
            let server = try TCPEchoServer(port: 7101)
            defer { server.stop() }
            let host = try HostProcess(config: Self.config)
            try host.start()
            defer { _ = host.stop() }

            let echo = try scenario(host, "tcp_echo tcp:127.0.0.1:7101 hello-through-the-core")
            #expect(echo["connect_status"] as? Int == 0, "\(echo)")
            #expect(echo["echoed"] as? String == "hello-through-the-core", "\(echo)")

            // A name is resolved by the core; only its granted address (127.0.0.1) may be used.
            let byName = try scenario(host, "tcp_echo tcp:localhost:7101 by-name")
            #expect(byName["connect_status"] as? Int == 0, "\(byName)")
            #expect(byName["echoed"] as? String == "by-name", "\(byName)")
            #expect(server.connections.value >= 2)

            // tcp:*:1-65535 is granted, but a wildcard never reaches loopback: only explicit grants do.
            let denied = try scenario(host, "connect tcp:127.0.0.1:7103")
            #expect(denied["connect_status"] as? Int == -2, "PH_EDENIED: \(denied)")
            let deniedV6 = try scenario(host, "connect tcp:[::1]:7101")
            #expect(deniedV6["connect_status"] as? Int == -2, "PH_EDENIED: \(deniedV6)")
            // Granted, but nothing listens there.
            let refused = try scenario(host, "connect tcp:127.0.0.1:7102")
            #expect(refused["connect_status"] as? Int == -12, "PH_ECONNREFUSED: \(refused)")

            #expect(deniedCount(try metrics(host), action: "connect") >= 2)
            let lines = try host.audit("io-probe", action: "connect", decision: "denied")
            #expect(lines.contains { $0["object"] as? String == "tcp:127.0.0.1:7103" && ($0["pid"] as? Int ?? 0) > 0 },
                    "an audit line names the refused address and the runner: \(lines)")
        }

        /// A listener that never accepts, with its accept queue full: the kernel drops further SYNs,
        /// so the core's connect deadline (10 s) ends the attempt with PH_ETIMEDOUT.
        @Test func aConnectThatHangsTimesOut() throws {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = UInt16(7104).bigEndian
            inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
            let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            try #require(rc == 0 && listen(fd, 0) == 0)
            // Fill the accept queue (backlog 0 holds one); non-blocking connects so none of them waits.
            var fillers: [Int32] = []
            defer { fillers.forEach { close($0) } }
            for _ in 0..<4 {
                let c = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
                _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(c, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
                fillers.append(c)
            }
            usleep(200_000)
            let host = try HostProcess(config: Self.config)
            try host.start()
            defer { _ = host.stop() }
            let started = ContinuousClock.now
            let r = try scenario(host, "connect tcp:127.0.0.1:7104", within: .seconds(30))
            #expect(r["connect_status"] as? Int == -11, "PH_ETIMEDOUT: \(r)")
            #expect(ContinuousClock.now - started >= .seconds(9), "after the core's 10 s deadline")
        }

        @Test func udpBindSendReceiveAndResolve() throws {
            let peer = try UDPEchoSocket(port: 7106)
            defer { peer.stop() }
            let host = try HostProcess(config: Self.config)
            try host.start()
            defer { _ = host.stop() }

            let udp = try scenario(host, "udp udp:127.0.0.1:7105 udp:127.0.0.1:7106 ping-over-udp")
            #expect(udp["bind_status"] as? Int == 0, "\(udp)")
            #expect(udp["datagram"] as? String == "pong:ping-over-udp", "\(udp)")
            #expect(udp["from"] as? String == "udp:127.0.0.1:7106", "\(udp)")
            #expect(peer.received.value == ["127.0.0.1:7105 ping-over-udp"], "the plugin's datagram left from its bound socket")

            // ABI 1.2: a send no grant covers is refused to the plugin itself (the wildcard grant
            // does not reach loopback), and audited; a destination that is no numeric address is
            // PH_EINVAL, not a silent drop.
            let refused = try scenario(host, "udp udp:127.0.0.1:7105 udp:127.0.0.1:7109 x")
            #expect(refused["send_status"] as? Int == -2, "PH_EDENIED: \(refused)")
            #expect(try host.audit("io-probe", action: "udp_send", decision: "denied")
                .contains { $0["object"] as? String == "udp:127.0.0.1:7109"
                    && ($0["reason"] as? String ?? "").contains("answered PH_EDENIED by the runner") })
            let named = try scenario(host, "udp udp:127.0.0.1:7105 udp:localhost:7106 x")
            #expect(named["send_status"] as? Int == -5, "PH_EINVAL: \(named)")

            let notGranted = try scenario(host, "udp udp:127.0.0.1:7107 udp:127.0.0.1:7106 x")
            #expect(notGranted["bind_status"] as? Int == -2, "\(notGranted)")
            #expect(deniedCount(try metrics(host), action: "udp_bind") >= 1)

            let resolved = try scenario(host, "resolve localhost")
            #expect(resolved["resolve_status"] as? Int == 0, "\(resolved)")
            let lines = (resolved["addresses"] as? String ?? "").split(separator: "\n").map(String.init)
            #expect(lines.contains("127.0.0.1") || lines.contains("::1"), "\(resolved)")
            #expect(resolved["count"] as? Int == lines.count)
            let missing = try scenario(host, "resolve no-such-host.invalid")
            #expect(missing["resolve_status"] as? Int == -10, "PH_ENOENT: \(missing)")
        }

        /// `net.multicast`: the core joins the granted group on the link's interface, the plugin's
        /// datagrams to it reach another member, at most MulticastSendBudget's burst at once; a group
        /// the manifest does not name cannot be joined, and the group is no connect destination.
        /// The host runs in a namespace of its own with a veth link (multicast needs an interface).
        @Test func multicastReachesTheLinkWithinItsGrantAndBudget() throws {
            let link = try NamespaceLink.make(tag: "mc", subnet: 71)
            defer { link.remove() }
            // Another member of 239.255.77.1 on the far side of the link prints what arrives.
            let member = try PeerProcess(name: "multicast member", executable: "/usr/bin/ip", arguments: [
                "netns", "exec", link.b, BitTorrentPeers.python, "-c", """
                import socket, sys
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("239.255.77.1", 7108))
                s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton("239.255.77.1") + socket.inet_aton("\(link.addressB)"))
                s.settimeout(30)
                print("ready", flush=True)
                while True:
                    data, sender = s.recvfrom(2048)
                    print("got", sender[0], data.decode(), flush=True)
                """])
            defer { _ = member.stop() }
            try member.waitForLine("ready", timeout: .seconds(10)) { $0 == "ready" }

            let host = try HostProcess(config: Self.config, netns: link.a)
            try host.start()
            defer { _ = host.stop() }
            let sent = 3 * MulticastSendBudget.burst / 2
            let burst = try scenario(host, "udp_burst udp:239.255.77.1:7108 udp:239.255.77.1:7108 \(sent)")
            #expect(burst["bind_status"] as? Int == 0, "\(burst)")
            #expect(burst["sent"] as? Int == sent, "the runner queued every datagram: \(burst)")
            let expected = (0..<MulticastSendBudget.burst).map { "got \(link.addressA) burst-\($0)" }
            try waitUntil("the first \(MulticastSendBudget.burst) datagrams at the member", timeout: .seconds(10)) {
                member.lines.filter { $0.hasPrefix("got ") }.count >= MulticastSendBudget.burst
            }
            usleep(500_000)   // anything past the budget would have arrived by now
            #expect(member.lines.filter { $0.hasPrefix("got ") } == expected, "\(member.tail())")
            let capped = try host.audit("io-probe", action: "udp_send", decision: "denied")
                .filter { ($0["reason"] as? String ?? "").contains("multicast rate limit") }
            #expect(capped.count == sent - MulticastSendBudget.burst, "\(capped)")

            let otherGroup = try scenario(host, "udp udp:239.255.77.2:7108 udp:239.255.77.2:7108 x")
            #expect(otherGroup["bind_status"] as? Int == -2, "PH_EDENIED: \(otherGroup)")
            #expect(try host.audit("io-probe", action: "udp_bind", decision: "denied")
                .contains { ($0["reason"] as? String ?? "").contains("no net.multicast grant names this group") })

            // The wildcard udp connect grant does not make the group a destination of a plain socket.
            let plain = try scenario(host, "udp_burst udp:127.0.0.1:7105 udp:239.255.77.1:7108 1")
            #expect(plain["bind_status"] as? Int == 0, "\(plain)")
            try waitUntil("the denial of the plain socket's send") {
                try host.audit("io-probe", action: "udp_send", decision: "denied")
                    .contains { ($0["reason"] as? String ?? "").contains("multicast goes only through a socket bound to a net.multicast group") }
            }
            #expect(member.lines.filter { $0.hasPrefix("got ") }.count == MulticastSendBudget.burst, "\(member.tail())")
        }

        @Test func filesStayBeneathTheGrantedDirectory() throws {
            let host = try HostProcess(config: Self.config)
            try host.start()
            defer { _ = host.stop() }
            let root = host.dataDirectory + "/io-probe"

            let rw = try scenario(host, "file_rw downloads/a.bin hello-disk")
            #expect(rw["open_status"] as? Int == 0, "\(rw)")
            #expect(rw["write_status"] as? Int == 0 && rw["written"] as? Int == 10, "\(rw)")
            #expect(rw["sync_status"] as? Int == 0, "\(rw)")
            #expect(rw["read_status"] as? Int == 0 && rw["read"] as? Int == 10, "\(rw)")
            #expect(rw["data"] as? String == "hello-disk", "\(rw)")
            #expect(rw["close_status"] as? Int == 0, "\(rw)")
            #expect(FileManager.default.contents(atPath: root + "/downloads/a.bin") == Data("hello-disk".utf8))
            var st = stat()
            #expect(stat(root, &st) == 0 && st.st_mode & 0o777 == 0o700, "the storage root is private")

            // Ways out, each refused: planted symlinks first (the root exists once the plugin started).
            try FileManager.default.createSymbolicLink(atPath: root + "/downloads/etc", withDestinationPath: "/etc")
            try FileManager.default.createSymbolicLink(atPath: root + "/downloads/passwd", withDestinationPath: "/etc/passwd")
            try FileManager.default.createSymbolicLink(atPath: root + "/downloads/up", withDestinationPath: "../..")
            let attempts: [(String, Int)] = [
                ("../escape", 6),                  // WRITE|CREATE outside every grant
                ("/etc/passwd", 1),                // absolute
                ("downloads/../../escape", 6),     // ".." beneath the grant
                ("downloads/etc/passwd", 1),       // symlink to a directory outside
                ("downloads/passwd", 1),           // symlink to a file outside
                ("downloads/up/escape", 6),        // relative symlink leading out
                ("seeds/new.bin", 6),              // read-only grant
            ]
            for (path, flags) in attempts {
                let r = try scenario(host, "file_open \(path) \(flags)")
                #expect(r["open_status"] as? Int == -2, "PH_EDENIED for \(path): \(r)")
            }
            let missing = try scenario(host, "file_open downloads/none.bin 1")
            #expect(missing["open_status"] as? Int == -10, "PH_ENOENT: \(missing)")

            #expect(!FileManager.default.fileExists(atPath: host.dataDirectory + "/escape"))
            #expect(!FileManager.default.fileExists(atPath: root + "/escape"))
            #expect(!FileManager.default.fileExists(atPath: host.directory.path + "/escape"))
            #expect(!FileManager.default.fileExists(atPath: root + "/seeds/new.bin"))
            #expect(try FileManager.default.contentsOfDirectory(atPath: root).sorted() == ["downloads", "seeds"])
            #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/downloads").sorted() == ["a.bin", "etc", "passwd", "up"])
            #expect(deniedCount(try metrics(host), action: "file_open") >= attempts.count)
            let objects = try host.audit("io-probe", action: "file_open", decision: "denied").compactMap { $0["object"] as? String }
            for (path, _) in attempts {
                #expect(objects.contains { $0.contains(path) }, "an audit line for \(path): \(objects)")
            }
        }

        /// Writes that continue each other in one file, issued in one callback, reach the disk as one
        /// pwritev (peerhost_plugin_file_writes_gathered_total), and every request still gets its own
        /// answer. On a file system that fills up part-way, the gathered write comes back short: each
        /// request is answered by what reached the disk (the written ones PH_OK, the rest PH_EIO with
        /// the bytes they did write), and nothing is answered twice or not at all.
        @Test func adjacentWritesAreGatheredAndAShortOneIsAnsweredPerRequest() throws {
            let host = try HostProcess(config: Self.config)
            try host.start()
            defer { _ = host.stop() }
            let root = host.dataDirectory + "/io-probe"
            func length(_ i: Int) -> Int { 10_000 + 7 * i }   // io_probe.c run_length
            func expected(_ count: Int) -> Data {
                var data = Data()
                for i in 0..<count { data.append(Data(repeating: UInt8(ascii: "A") + UInt8(i % 26), count: length(i))) }
                return data
            }
            /// "i:status:value …" → [i: (status, value)], each index once.
            func answers(_ report: [String: Any]) throws -> [Int: (status: Int, value: Int)] {
                var byIndex: [Int: (status: Int, value: Int)] = [:]
                for part in (report["results"] as? String ?? "").split(separator: " ") {
                    let fields = part.split(separator: ":").compactMap { Int($0) }
                    guard fields.count == 3, byIndex[fields[0]] == nil else { throw TestFailure("bad or repeated answer \(part): \(report)") }
                    byIndex[fields[0]] = (fields[1], fields[2])
                }
                return byIndex
            }

            let count = 40
            let report = try scenario(host, "file_runs downloads/runs.bin \(count)")
            #expect(report["open_status"] as? Int == 0 && report["close_status"] as? Int == 0, "\(report)")
            let all = try answers(report)
            #expect(all.count == count, "\(report)")
            for i in 0..<count { #expect(all[i]?.status == 0 && all[i]?.value == length(i), "write \(i): \(report)") }
            #expect(FileManager.default.contents(atPath: root + "/downloads/runs.bin") == expected(count))
            #expect(try host.metrics()["peerhost_plugin_file_writes_gathered_total{plugin=\"io-probe\"}"] == Double(count),
                    "all \(count) writes went out in one pwritev")

            // A file_sync sent right after the writes covers them: it is answered after every one.
            let synced = try scenario(host, "file_runs_sync downloads/synced.bin \(count)")
            let order = (synced["results"] as? String ?? "").split(separator: " ").compactMap { Int($0.split(separator: ":").first ?? "") }
            #expect(order.count == count + 1 && order.last == count, "the sync (\(count)) answers last: \(synced)")
            #expect(try answers(synced)[count]?.status == 0, "\(synced)")
            #expect(FileManager.default.contents(atPath: root + "/downloads/synced.bin") == expected(count))

            // A 64 KiB tmpfs under the granted directory: ten writes (100 kB) do not fit.
            let full = root + "/downloads/full"
            try FileManager.default.createDirectory(atPath: full, withIntermediateDirectories: true)
            let (mounted, why) = try runProgram("/bin/mount", ["-t", "tmpfs", "-o", "size=64k", "peerhost-test-full", full])
            try #require(mounted == 0, "mount tmpfs (the tests run as root): \(why)")
            defer { _ = try? runProgram("/bin/umount", [full]) }
            let short = try scenario(host, "file_runs downloads/full/runs.bin 10")
            let got = try answers(short)
            #expect(got.count == 10, "every request answered once: \(short)")
            let onDisk = FileManager.default.contents(atPath: full + "/runs.bin") ?? Data()
            #expect(onDisk.count > 0 && onDisk.count <= 65_536, "\(onDisk.count) bytes")
            #expect(onDisk == expected(10).prefix(onDisk.count), "what reached the disk is the requests' bytes, in order")
            var offset = 0, failed = 0
            for i in 0..<10 {
                guard let a = got[i] else { continue }
                if offset + length(i) <= onDisk.count {
                    #expect(a.status == 0 && a.value == length(i), "write \(i) fits: \(short)")
                } else {
                    #expect(a.status == -9 && a.value == max(0, onDisk.count - offset), "write \(i) hits the full disk: PH_EIO with what it wrote: \(short)")
                    failed += 1
                }
                offset += length(i)
            }
            #expect(failed >= 4, "\(short)")
            // The core carries on: the next run on the roomy directory succeeds.
            let again = try scenario(host, "file_runs downloads/again.bin 3")
            #expect(try answers(again).values.allSatisfy { $0.status == 0 }, "\(again)")
        }

        /// A plugin that dies holding an open file and a bound UDP socket (with a recvmsg armed into a
        /// receive slot): the core cancels and closes both before the region goes, and the restarted
        /// plugin starts clean.
        @Test func aDeadPluginsSocketsAndFilesAreClosed() throws {
            let host = try HostProcess(config: Self.config)
            try host.start()
            defer { _ = host.stop() }
            let file = try scenario(host, "hold_file downloads/held.bin")
            #expect(file["status"] as? Int == 0, "\(file)")
            let udp = try scenario(host, "hold_udp udp:127.0.0.1:7105")
            #expect(udp["status"] as? Int == 0, "\(udp)")
            let held = host.dataDirectory + "/io-probe/downloads/held.bin"
            #expect(try openFiles(of: host.process.processIdentifier).contains(held), "the core holds the file open")
            #expect(!udpPortIsFree(7105), "the plugin's socket is bound")

            let (_, statusText) = try host.cli(["status", "--json"])
            let doc = try #require(try JSONSerialization.jsonObject(with: Data(statusText.utf8)) as? [String: Any])
            let plugin = try #require((doc["plugins"] as? [[String: Any]])?.first { $0["name"] as? String == "io-probe" })
            let pid = try #require(plugin["pid"] as? Int)
            kill(Int32(pid), SIGKILL)

            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline, (try openFiles(of: host.process.processIdentifier).contains(held) || !udpPortIsFree(7105)) {
                usleep(50_000)
            }
            #expect(try !openFiles(of: host.process.processIdentifier).contains(held), "the file was closed")
            #expect(udpPortIsFree(7105), "the UDP socket was closed")
            // The restarted incarnation gets a fresh start: it can bind the same port again.
            let again = try scenario(host, "hold_udp udp:127.0.0.1:7105")
            #expect(again["status"] as? Int == 0, "\(again)")
        }

        func openFiles(of pid: Int32) throws -> Set<String> {
            let dir = "/proc/\(pid)/fd"
            var result: Set<String> = []
            for entry in try FileManager.default.contentsOfDirectory(atPath: dir) {
                if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: dir + "/" + entry) { result.insert(target) }
            }
            return result
        }

        func udpPortIsFree(_ port: UInt16) -> Bool {
            guard let probe = try? UDPEchoSocket(port: port, serve: false) else { return false }
            probe.stop()
            return true
        }
    }
}

/// A TCP echo server on 127.0.0.1:port, one thread per connection.
final class TCPEchoServer: @unchecked Sendable {
    let fd: Int32
    let connections = Locked(0)

    init(port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0, listen(fd, 16) == 0 else { let e = errno; close(fd); throw TestFailure("echo server on \(port): errno \(e)") }
        Thread.detachNewThread { [self] in
            while true {
                let c = accept(fd, nil, nil)
                if c < 0 { return }
                connections.withLock { $0 += 1 }
                Thread.detachNewThread {
                    var buf = [UInt8](repeating: 0, count: 4096)
                    while true {
                        let n = buf.withUnsafeMutableBytes { recv(c, $0.baseAddress!, 4096, 0) }
                        if n <= 0 { break }
                        _ = buf.withUnsafeBytes { send(c, $0.baseAddress!, n, Int32(MSG_NOSIGNAL)) }
                    }
                    close(c)
                }
            }
        }
    }

    func stop() { shutdown(fd, Int32(SHUT_RDWR)); close(fd) }
}

/// A UDP socket on 127.0.0.1:port that answers each datagram with "pong:" + payload and records
/// "senderIP:port payload".
final class UDPEchoSocket: @unchecked Sendable {
    let fd: Int32
    let received = Locked<[String]>([])

    init(port: UInt16, serve: Bool = true) throws {
        fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { let e = errno; close(fd); throw TestFailure("udp socket on \(port): errno \(e)") }
        guard serve else { return }
        Thread.detachNewThread { [self] in
            var buf = [UInt8](repeating: 0, count: 2048)
            while true {
                var from = sockaddr_in()
                var len = socklen_t(MemoryLayout<sockaddr_in>.size)
                let n = buf.withUnsafeMutableBytes { b in
                    withUnsafeMutablePointer(to: &from) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, b.baseAddress!, 2048, 0, $0, &len) } }
                }
                if n <= 0 { return }
                var ip = [CChar](repeating: 0, count: 32)
                inet_ntop(AF_INET, &from.sin_addr, &ip, 32)
                let payload = String(decoding: buf[0..<n], as: UTF8.self)
                received.withLock { $0.append("\(String(cString: ip)):\(UInt16(bigEndian: from.sin_port)) \(payload)") }
                let reply = Array("pong:\(payload)".utf8)
                _ = reply.withUnsafeBytes { r in
                    withUnsafePointer(to: &from) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, r.baseAddress!, r.count, 0, $0, len) } }
                }
            }
        }
    }

    func stop() { shutdown(fd, Int32(SHUT_RDWR)); close(fd) }
}
