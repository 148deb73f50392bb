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
    let txWake = try Wakeup.make(nonBlocking: false)
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

/// Open-loop: requests at a fixed rate; latency from the scheduled send time to the answer.
func adaptive(rate: Int, seconds: Double, spinMicroseconds: UInt64) throws {
    let region = try SharedRegion.create(name: "bench", geometry: geometry)
    let rxWake = try Wakeup.make(nonBlocking: false)
    let txWake = try Wakeup.make(nonBlocking: false)
    let count = Int(Double(rate) * seconds)
    let spinNs = spinMicroseconds * 1000
    var config = peerConfig(region, receive: UInt64(count), rxWake: rxWake.fd, txWake: txWake.fd, echo: true,
                            spinNs: max(spinNs, 1))
    let pid = ph_test_fork_ring_peer(&config)
    pin(0)
    var rx = region.rxRing(as: .core)
    var tx = region.txRing(as: .core)
    let interval = UInt64(1_000_000_000 / rate)
    var samples = [UInt64]()
    samples.reserveCapacity(count)
    var scheduled = [UInt64](repeating: 0, count: count)
    let cpu0 = cpuSeconds(RUSAGE_SELF)
    let start = ph_test_now_ns()
    var next = 0
    var received = 0
    var lastWork = start
    while received < count {
        let now = ph_test_now_ns()
        if next < count, now >= start + UInt64(next) * interval {
            scheduled[next] = start + UInt64(next) * interval
            rx.put(ph_desc(type: PH_MSG_DATA, id: UInt64(next), arg: ph_test_check(UInt64(next), 0)))
            rx.publish()
            if rx.consumerWantsWakeup() { rxWake.signal() }
            next += 1
            lastWork = now
        }
        if let n = tx.ready(), n > 0 {
            let t = ph_test_now_ns()
            for i in 0..<n { samples.append(t - scheduled[Int(tx.copy(at: i).id)]) }
            tx.consume(n)
            received += Int(n)
            lastWork = t
            continue
        }
        if now - lastWork < spinNs { ph_cpu_relax(); continue }
        // Sleep until the next send is due or the peer rings.
        if let n = tx.prepareSleep(), n > 0 { tx.awake(); continue }
        let due = next < count ? Int64(start + UInt64(next) * interval) - Int64(ph_test_now_ns()) : -1
        if due != 0 { _ = ph_poll2(txWake.fd, -1, due < 0 && next < count ? 0 : due) }
        _ = txWake.drain()
        tx.awake()
    }
    let wall = Double(ph_test_now_ns() - start) / 1e9
    let selfCPU = cpuSeconds(RUSAGE_SELF) - cpu0
    let status = ph_test_wait(pid)
    let peerCPU = cpuSeconds(RUSAGE_CHILDREN)
    samples.sort()
    print("mode=adaptive rate=\(rate) spin_us=\(spinMicroseconds) p50_us=\(percentile(samples, 0.5)) p99_us=\(percentile(samples, 0.99)) cpu_percent=\(Int((selfCPU + peerCPU) / wall * 100)) peer_exit=\(status)")
}

let args = CommandLine.arguments
func usage() -> Never {
    print("usage: peerhost-ringbench tput SECONDS | rtt busy|efd COUNT | rtt adaptive RATE SECONDS SPIN_US")
    exit(2)
}
do {
    switch (args.count > 1 ? args[1] : "", args.count > 2 ? args[2] : "") {
    case ("tput", let s): try throughput(seconds: Double(s) ?? 1)
    case ("rtt", "busy"), ("rtt", "efd"): try roundTrips(mode: args[2], count: args.count > 3 ? Int(args[3]) ?? 100_000 : 100_000)
    case ("rtt", "adaptive"):
        guard args.count > 5, let rate = Int(args[3]), let secs = Double(args[4]), let spin = UInt64(args[5]) else { usage() }
        try adaptive(rate: rate, seconds: secs, spinMicroseconds: spin)
    default: usage()
    }
} catch {
    print("error: \(error)")
    exit(1)
}
