// peerhost-ringbench — measures PeerhostRing between two processes: this Swift process (the core's
// side, using RingView) and a forked C peer (the plugin's side, using the same ph_ring.h).
//
//   peerhost-ringbench tput SECONDS              one-way 64-byte descriptors/s, Swift → peer
//   peerhost-ringbench rtt busy|efd COUNT        closed-loop round trips, busy-polling or eventfd-woken
//   peerhost-ringbench rtt adaptive RATE SECONDS SPIN_US
//                                                open-loop at RATE requests/s, both sides spinning up
//                                                to SPIN_US after their last message, then sleeping
//
// Output: one line of key=value pairs (parsed by bench/run.sh).
import CPeerhostShim
import CPeerhostTestSupport
import Foundation
import Glibc
import PeerhostRing

let geometry = RegionGeometry(ringEntries: 4096, slotSize: 4096, slotCount: 4, recvSlots: 2)

func cpuSeconds(_ who: __rusage_who) -> Double {
    var usage = rusage()
    getrusage(who.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
        + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
}

func pin(_ cpu: Int32) { _ = ph_test_pin_cpu(cpu) }

func peerConfig(_ region: SharedRegion, receive: UInt64, rxWake: Int32 = -1, txWake: Int32 = -1,
                echo: Bool, spinNs: UInt64 = 0) -> ph_peer_config {
    var c = ph_peer_config()
    c.rx_ctl = region.rxControlBlock
    c.rx_descs = region.rxDescriptors
    c.tx_ctl = region.txControlBlock
    c.tx_descs = region.txDescriptors
    c.entries = region.geometry.ringEntries
    c.receive_count = receive
    c.send_count = echo ? receive : 0
    c.rx_wakeup_fd = rxWake
    c.tx_wakeup_fd = txWake
    c.seed = 1
    c.batch = 64
    c.echo = echo ? 1 : 0
    c.spin_ns = spinNs
    c.pin_cpu = 2   // the peer on CPU 1, this process on CPU 0
    return c
}

func percentile(_ sorted: [UInt64], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    return Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) / 1000.0
}

/// One-way throughput: publish in batches of 64, as the core does per loop iteration.
func throughput(seconds: Double) throws {
    let region = try SharedRegion.create(name: "bench", geometry: geometry)
    // The peer must know the count up front: run for a fixed count sized from a short probe.
    let count: UInt64 = UInt64(seconds * 20_000_000)
    var config = peerConfig(region, receive: count, echo: false)
    let pid = ph_test_fork_ring_peer(&config)
    pin(0)
    var rx = region.rxRing(as: .core)
    let start = ph_test_now_ns()
    var sent: UInt64 = 0
    var desc = ph_desc(type: PH_MSG_DATA, length: 64)
    while sent < count {
        var batch = 0
        while batch < 64 && sent < count {
            desc.id = sent
            desc.arg = ph_test_check(sent, 64)
            if !rx.put(desc) { break }
            sent += 1
            batch += 1
        }
        if batch > 0 { rx.publish() } else { ph_cpu_relax() }
    }
    let status = ph_test_wait(pid)
    let elapsed = Double(ph_test_now_ns() - start) / 1e9
    print("mode=tput messages=\(count) seconds=\(elapsed) msgs_per_s=\(Int(Double(count) / elapsed)) peer_exit=\(status)")
}

/// Closed-loop round trips.
func roundTrips(mode: String, count: Int) throws {
    let region = try SharedRegion.create(name: "bench", geometry: geometry)
    let sleeping = mode == "efd"
    let rxWake = try Wakeup.make(nonBlocking: false)
    let txWake = try Wakeup.make(nonBlocking: true)
    var config = peerConfig(region, receive: UInt64(count), rxWake: sleeping ? rxWake.fd : -1,
                            txWake: sleeping ? txWake.fd : -1, echo: true)
    let pid = ph_test_fork_ring_peer(&config)
    pin(0)
    var rx = region.rxRing(as: .core)
    var tx = region.txRing(as: .core)
    var samples = [UInt64]()
    samples.reserveCapacity(count)
    let cpu0 = cpuSeconds(RUSAGE_SELF)
    let start = ph_test_now_ns()
    for i in 0..<count {
        let t0 = ph_test_now_ns()
        rx.put(ph_desc(type: PH_MSG_DATA, id: UInt64(i), arg: ph_test_check(UInt64(i), 0)))
        rx.publish()
        if sleeping && rx.consumerWantsWakeup() { rxWake.signal() }
        while true {
            if let n = tx.ready(), n > 0 { tx.consume(n); break }
            if sleeping {
                if let n = tx.prepareSleep(), n > 0 { tx.awake(); continue }
                _ = ph_poll2(txWake.fd, -1, -1)
                _ = txWake.drain()
                tx.awake()
            } else {
                ph_cpu_relax()
            }
        }
        samples.append(ph_test_now_ns() - t0)
    }
    let wall = Double(ph_test_now_ns() - start) / 1e9
    let selfCPU = cpuSeconds(RUSAGE_SELF) - cpu0
    let status = ph_test_wait(pid)
    let peerCPU = cpuSeconds(RUSAGE_CHILDREN)
    samples.sort()
    print("mode=rtt-\(mode) count=\(count) p50_us=\(percentile(samples, 0.5)) p99_us=\(percentile(samples, 0.99)) cpu_percent=\(Int((selfCPU + peerCPU) / wall * 100)) peer_exit=\(status)")
}

/// Open-loop: requests at a fixed rate. Latency is measured from the moment a request is published
/// (the round trip through the ring and the peer); `sched_p50_us` adds how late the sender itself
/// woke for its scheduled send time.
func adaptive(rate: Int, seconds: Double, spinMicroseconds: UInt64) throws {
    let region = try SharedRegion.create(name: "bench", geometry: geometry)
    let rxWake = try Wakeup.make(nonBlocking: false)
    let txWake = try Wakeup.make(nonBlocking: true)
    let count = Int(Double(rate) * seconds)
    let spinNs = spinMicroseconds * 1000
    var config = peerConfig(region, receive: UInt64(count), rxWake: rxWake.fd, txWake: txWake.fd, echo: true,
                            spinNs: max(spinNs, 1))
    let pid = ph_test_fork_ring_peer(&config)
    pin(0)
    _ = ph_test_set_timerslack_ns(1)
    var rx = region.rxRing(as: .core)
    var tx = region.txRing(as: .core)
    let interval = UInt64(1_000_000_000 / rate)
    var samples = [UInt64](), late = [UInt64]()
    samples.reserveCapacity(count)
    late.reserveCapacity(count)
    var sentAt = [UInt64](repeating: 0, count: count)
    let cpu0 = cpuSeconds(RUSAGE_SELF)
    let start = ph_test_now_ns()
    var next = 0
    var received = 0
    var lastWork = start
    while received < count {
        let now = ph_test_now_ns()
        let due = start + UInt64(next) * interval
        if next < count, now >= due {
            sentAt[next] = now
            late.append(now - due)
            rx.put(ph_desc(type: PH_MSG_DATA, id: UInt64(next), arg: ph_test_check(UInt64(next), 0)))
            rx.publish()
            if rx.consumerWantsWakeup() { rxWake.signal() }
            next += 1
            lastWork = now
        }
        if let n = tx.ready(), n > 0 {
            let t = ph_test_now_ns()
            for i in 0..<n { samples.append(t - sentAt[Int(tx.copy(at: i).id)]) }
            tx.consume(n)
            received += Int(n)
            lastWork = t
            continue
        }
        if now &- lastWork < spinNs { ph_cpu_relax(); continue }
        // Sleep until the next send is due or the peer rings.
        if let n = tx.prepareSleep(), n > 0 { tx.awake(); continue }
        let wait: Int64 = next < count ? max(0, Int64(start + UInt64(next) * interval) - Int64(ph_test_now_ns())) : -1
        if wait != 0 { _ = ph_poll2(txWake.fd, -1, wait) }
        _ = txWake.drain()
        tx.awake()
    }
    let wall = Double(ph_test_now_ns() - start) / 1e9
    let selfCPU = cpuSeconds(RUSAGE_SELF) - cpu0
    let peerCPU = ph_test_process_cpu_seconds(pid)
    let status = ph_test_wait(pid)
    samples.sort()
    late.sort()
    print("mode=adaptive rate=\(rate) spin_us=\(spinMicroseconds) p50_us=\(percentile(samples, 0.5)) p99_us=\(percentile(samples, 0.99)) sched_p50_us=\(percentile(late, 0.5)) cpu_percent=\(Int((selfCPU + peerCPU) / wall * 100)) peer_exit=\(status)")
}

/// The same open loop over a socketpair (both sides block in the kernel): the baseline the adaptive
/// ring is compared with at low rates.
func socketpairOpenLoop(rate: Int, seconds: Double) throws {
    var fds: [Int32] = [-1, -1]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else { throw RingError.system(call: "socketpair", errno: errno) }
    let pid = ph_test_fork_socket_echo(fds[1], fds[0], 2)
    close(fds[1])
    pin(0)
    _ = ph_test_set_timerslack_ns(1)
    let count = Int(Double(rate) * seconds)
    let interval = UInt64(1_000_000_000 / rate)
    var samples = [UInt64]()
    samples.reserveCapacity(count)
    let cpu0 = cpuSeconds(RUSAGE_SELF)
    let start = ph_test_now_ns()
    for i in 0..<count {
        let due = start + UInt64(i) * interval
        while ph_test_now_ns() < due { _ = ph_poll2(-1, -1, max(1, Int64(due) - Int64(ph_test_now_ns()))) }
        var v = UInt64(i)
        let t0 = ph_test_now_ns()
        _ = write(fds[0], &v, 8)
        _ = read(fds[0], &v, 8)
        samples.append(ph_test_now_ns() - t0)
    }
    let wall = Double(ph_test_now_ns() - start) / 1e9
    let used = cpuSeconds(RUSAGE_SELF) - cpu0 + ph_test_process_cpu_seconds(pid)
    close(fds[0])
    let status = ph_test_wait(pid)
    samples.sort()
    print("mode=socketpair-open-loop rate=\(rate) p50_us=\(percentile(samples, 0.5)) p99_us=\(percentile(samples, 0.99)) cpu_percent=\(Int(used / wall * 100)) peer_exit=\(status)")
}

/// CPU both sides burn while the ring is idle (after one message), with a given spin budget.
func idle(seconds: Double, spinMicroseconds: UInt64) throws {
    let region = try SharedRegion.create(name: "bench", geometry: geometry)
    let rxWake = try Wakeup.make(nonBlocking: false)
    let txWake = try Wakeup.make(nonBlocking: true)
    var config = peerConfig(region, receive: 2, rxWake: rxWake.fd, txWake: txWake.fd, echo: true,
                            spinNs: max(spinMicroseconds * 1000, 1))
    let pid = ph_test_fork_ring_peer(&config)
    var rx = region.rxRing(as: .core)
    func send(_ id: UInt64) {
        rx.put(ph_desc(type: PH_MSG_DATA, id: id, arg: ph_test_check(id, 0)))
        rx.publish()
        if rx.consumerWantsWakeup() { rxWake.signal() }
    }
    send(0)
    usleep(200_000)   // the peer answers, spins its budget, and goes to sleep
    let cpu0 = cpuSeconds(RUSAGE_SELF), peer0 = ph_test_process_cpu_seconds(pid)
    let t0 = ph_test_now_ns()
    usleep(UInt32(seconds * 1e6))
    let wall = Double(ph_test_now_ns() - t0) / 1e9
    let used = cpuSeconds(RUSAGE_SELF) - cpu0 + ph_test_process_cpu_seconds(pid) - peer0
    send(1)
    let status = ph_test_wait(pid)
    print("mode=idle spin_us=\(spinMicroseconds) seconds=\(seconds) cpu_percent=\(String(format: "%.2f", used / wall * 100)) peer_exit=\(status)")
}

let args = CommandLine.arguments
func usage() -> Never {
    print("usage: peerhost-ringbench tput SECONDS | rtt busy|efd COUNT | rtt adaptive RATE SECONDS SPIN_US | rtt socketpair RATE SECONDS | idle SECONDS SPIN_US")
    exit(2)
}
do {
    switch (args.count > 1 ? args[1] : "", args.count > 2 ? args[2] : "") {
    case ("tput", let s): try throughput(seconds: Double(s) ?? 1)
    case ("rtt", "busy"), ("rtt", "efd"): try roundTrips(mode: args[2], count: args.count > 3 ? Int(args[3]) ?? 100_000 : 100_000)
    case ("idle", let secs): try idle(seconds: Double(secs) ?? 2, spinMicroseconds: args.count > 3 ? UInt64(args[3]) ?? 5 : 5)
    case ("rtt", "socketpair"):
        guard args.count > 4, let rate = Int(args[3]), let secs = Double(args[4]) else { usage() }
        try socketpairOpenLoop(rate: rate, seconds: secs)
    case ("rtt", "adaptive"):
        guard args.count > 5, let rate = Int(args[3]), let secs = Double(args[4]), let spin = UInt64(args[5]) else { usage() }
        try adaptive(rate: rate, seconds: secs, spinMicroseconds: spin)
    default: usage()
    }
} catch {
    print("error: \(error)")
    exit(1)
}
