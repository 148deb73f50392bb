import Testing
@testable import PeerhostRing

@Suite struct SlotOwnershipTests {
    let geometry = RegionGeometry(ringEntries: 8, slotSize: 4096, slotCount: 8, recvSlots: 4)

    @Test func slotsStartWithTheirHomeOwner() {
        let owners = SlotOwnership(geometry: geometry)
        #expect(owners[0] == .core)
        #expect(owners[3] == .core)
        #expect(owners[4] == .plugin)
        #expect(owners.census() == [.core: 4, .plugin: 4])
    }

    @Test func transferChecksTheCurrentOwnerAndTheRange() {
        var owners = SlotOwnership(geometry: geometry)
        let receiveSlot = owners.transfer(0, from: .plugin, to: .inFlight)
        #expect(!receiveSlot, "the plugin does not own a receive slot")
        let first = owners.transfer(5, from: .plugin, to: .inFlight)
        #expect(first)
        let twice = owners.transfer(5, from: .plugin, to: .inFlight)
        #expect(!twice, "a slot cannot be sent twice")
        let outOfRange = owners.transfer(8, from: .plugin, to: .inFlight)
        let wayOut = owners.transfer(.max, from: .plugin, to: .inFlight)
        #expect(!outOfRange && !wayOut)
        let back = owners.transfer(5, from: .inFlight, to: .plugin)
        #expect(back)
    }
}
