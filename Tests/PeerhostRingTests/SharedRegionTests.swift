import CPeerhostShim
import Glibc
import Testing
@testable import PeerhostRing

@Suite struct SharedRegionTests {
    let geometry = RegionGeometry(ringEntries: 64, slotSize: 4096, slotCount: 32, recvSlots: 16)

    @Test func runnerSeesTheGeometryTheCoreWrote() throws {
        let core = try SharedRegion.create(name: "t", geometry: geometry)
        let runner = try SharedRegion.attach(fd: core.fd)
        #expect(runner.geometry == geometry)
        #expect(runner.size == geometry.totalSize)
        // Both mappings see the same bytes.
        core.slotAddress(7).storeBytes(of: 0xDEAD_BEEF, as: UInt32.self)
        #expect(runner.slotAddress(7).load(as: UInt32.self) == 0xDEAD_BEEF)
    }

    @Test func sealedRegionCannotBeTruncatedOrGrown() throws {
        let core = try SharedRegion.create(name: "t", geometry: geometry)
        #expect(ftruncate(core.fd, 4096) == -1)
        #expect(errno == EPERM)
        #expect(ftruncate(core.fd, off_t(geometry.totalSize * 2)) == -1)
    }

    @Test func attachRefusesAForeignMemfd() throws {
        let fd = ph_memfd_create("junk")
        defer { close(fd) }
        #expect(ftruncate(fd, 65536) == 0)
        #expect(throws: RingError.self) { try SharedRegion.attach(fd: fd) }
    }

    @Test(arguments: [
        RegionGeometry(ringEntries: 100, slotSize: 4096, slotCount: 32, recvSlots: 16),
        RegionGeometry(ringEntries: 64, slotSize: 100, slotCount: 32, recvSlots: 16),
        RegionGeometry(ringEntries: 64, slotSize: 4096, slotCount: 32, recvSlots: 32),
        RegionGeometry(ringEntries: 64, slotSize: 4096, slotCount: 1, recvSlots: 0),
    ])
    func badGeometryIsRefusedWithItsReason(_ bad: RegionGeometry) {
        #expect(throws: RingError.self) { try SharedRegion.create(name: "bad", geometry: bad) }
    }

    @Test func partsDoNotOverlapAndThePoolIsPageAligned() {
        let g = RegionGeometry(ringEntries: 4096, slotSize: 16384, slotCount: 2048, recvSlots: 1024)
        #expect(g.rxDescOffset + Int(g.ringEntries) * 64 <= g.txCtlOffset)
        #expect(g.txDescOffset + Int(g.ringEntries) * 64 <= g.poolOffset)
        #expect(g.poolOffset % 4096 == 0)
        #expect(g.poolOffset + g.poolSize <= g.totalSize)
    }
}
