import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    /// Bytes arrive whole and in order through the core's stream path, under backpressure: many
    /// connections through both echo plugins, clients that read slowly or in bursts, small socket
    /// buffers so the core's sends come back short. Every byte is compared (EchoStress).
    @Suite(.serialized) struct StreamIntegrityTests {
        static let config = EchoIntegrationTests.config

        /// 1000 connections of up to 64 KiB, then 64 of up to 64 MiB, through echo-c and echo-swift.
        @Test(arguments: [UInt16(7001), 7002])
        func everyByteComesBackInOrderUnderBackpressure(port: UInt16) throws {
            let host = try HostProcess(config: Self.config)
            defer { _ = host.stop() }
            try host.start()
            try waitUntil("the echo plugin on \(port) serves") { echoes(port, "ready") }
            var rng = SystemRandomNumberGenerator()
            let readers = EchoStress.Reader.allCases
            let buffers: [Int32] = [0, 0, 4_096, 16_384]

            let small = (0..<1000).map { i in
                EchoStress.Connection(size: Int.random(in: 1...65_536, using: &rng), reader: readers[i % 3], socketBuffer: buffers[i % 4])
            }
            let (smallFailures, smallBytes) = EchoStress(port: port, concurrency: 250).run(small)
            #expect(smallFailures.isEmpty, "\(smallFailures.count) of 1000 small connections failed: \(smallFailures.prefix(5))")
            #expect(smallBytes == small.reduce(0) { $0 + $1.size })

            // Four of the full 64 MiB (one per kind of reader, bursty twice), the rest spread over
            // 1–8 MiB: about 0.5 GiB each way per plugin.
            let large = (0..<64).map { i in
                EchoStress.Connection(size: i % 16 == 0 ? 64 << 20 : Int.random(in: (1 << 20)...(8 << 20), using: &rng),
                                      reader: i % 16 == 0 ? [.eager, .slow, .bursty, .bursty][i / 16] : readers[i % 3],
                                      socketBuffer: buffers[(i / 3) % 4])
            }
            let (largeFailures, largeBytes) = EchoStress(port: port, concurrency: 64, deadline: .seconds(600)).run(large)
            #expect(largeFailures.isEmpty, "\(largeFailures.count) of 64 large connections failed: \(largeFailures.prefix(5))")
            #expect(largeBytes == large.reduce(0) { $0 + $1.size })
            #expect(try status(host, port == 7001 ? "echo-c" : "echo-swift")["state"] as? String == "running")
        }
    }
}
