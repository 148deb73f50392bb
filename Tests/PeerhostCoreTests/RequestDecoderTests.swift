import CPeerhostShim
import PeerhostRing
import Testing
@testable import PeerhostCore
#if canImport(Glibc)
import Glibc
#endif

/// Hostile descriptors, decoded without any process: each must be refused with its kind.
@Suite struct RequestDecoderTests {
    let geometry = RegionGeometry(ringEntries: 8, slotSize: 4096, slotCount: 8, recvSlots: 4)
    let pluginSlot: UInt32 = 5
    let myConn: UInt64 = 42

    func decoder() throws -> RequestDecoder { RequestDecoder(region: try SharedRegion.create(name: "t", geometry: geometry)) }

    func write(_ text: String, to slot: UInt32, in decoder: RequestDecoder, at offset: Int = 0) {
        let bytes = Array(text.utf8)
        bytes.withUnsafeBytes { decoder.region.slotAddress(slot).advanced(by: offset).copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
    }

    func kind(_ d: ph_desc, _ dec: inout RequestDecoder) -> ViolationKind? {
        do {
            _ = try dec.decode(d, owns: { $0 == myConn })
            return nil
        } catch {
            return error.kind
        }
    }

    @Test func aValidSendMovesTheSlotInFlight() throws {
        var dec = try decoder()
        let r = try dec.decode(ph_desc(type: PH_MSG_SEND, id: myConn, slot: pluginSlot, offset: 10, length: 100), owns: { $0 == myConn })
        #expect(r == .send(conn: myConn, slot: pluginSlot, offset: 10, length: 100))
        #expect(dec.owners[pluginSlot] == .inFlight)
        // Sending the same slot again (the plugin rewrote a descriptor after sending it) is refused.
        #expect(kind(ph_desc(type: PH_MSG_SEND, id: myConn, slot: pluginSlot, length: 1), &dec) == .slotNotOwned)
    }

    @Test func slotOutOfRange() throws {
        var dec = try decoder()
        #expect(kind(ph_desc(type: PH_MSG_SEND, id: myConn, slot: 8, length: 1), &dec) == .slotOutOfRange)
        #expect(kind(ph_desc(type: PH_MSG_SEND, id: myConn, slot: .max - 1, length: 1), &dec) == .slotOutOfRange)
        #expect(kind(ph_desc(type: PH_MSG_FREE, slot: 1_000_000), &dec) == .slotOutOfRange)
    }

    @Test func offsetPlusLengthPastTheSlot() throws {
        var dec = try decoder()
        #expect(kind(ph_desc(type: PH_MSG_SEND, id: myConn, slot: pluginSlot, offset: 4000, length: 97), &dec) == .rangeOutsideSlot)
        #expect(kind(ph_desc(type: PH_MSG_SEND, id: myConn, slot: pluginSlot, offset: .max, length: .max), &dec) == .rangeOutsideSlot)
        #expect(dec.owners[pluginSlot] == .plugin, "a refused descriptor changes no ownership")
    }

    @Test func aSlotThePluginDoesNotOwn() throws {
        var dec = try decoder()
        // Receive slots start with the core.
        #expect(kind(ph_desc(type: PH_MSG_SEND, id: myConn, slot: 1, length: 1), &dec) == .slotNotOwned)
        #expect(kind(ph_desc(type: PH_MSG_FREE, slot: 1), &dec) == .slotNotOwned)
        #expect(kind(ph_desc(type: PH_MSG_FREE, slot: pluginSlot), &dec) == .badArgument, "plugin slots are freed locally")
    }

    @Test func aConnectionItDoesNotOwn() throws {
        var dec = try decoder()
        #expect(kind(ph_desc(type: PH_MSG_SEND, id: 7, slot: pluginSlot, length: 1), &dec) == .connectionNotOwned)
        #expect(kind(ph_desc(type: PH_MSG_CLOSE, id: 0), &dec) == .connectionNotOwned)
        #expect(kind(ph_desc(type: PH_MSG_RESET, id: 0), &dec) == .connectionNotOwned)
        #expect(kind(ph_desc(type: PH_MSG_CONN_WEIGHT, id: 99, arg: 5), &dec) == .connectionNotOwned)
    }

    /// ABI 1.2: the runner's report of a udp_send it refused carries the destination in the
    /// descriptor, in the same encoding as ACCEPT's peer; the core turns it into text to audit.
    @Test func aUDPRefusalCarriesItsDestination() throws {
        var dec = try decoder()
        var d = ph_desc(type: PH_MSG_UDP_REFUSED, id: myConn)
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = UInt16(7109).bigEndian
        sin.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        d.arg2 = withUnsafeMutableBytes(of: &d.reserved) { ph_peer_encode(&sin, $0.baseAddress!.assumingMemoryBound(to: UInt8.self)) }
        #expect(try dec.decode(d, owns: { $0 == myConn }) == .udpRefused(socket: myConn, to: "udp:127.0.0.1:7109"))
        #expect(kind(ph_desc(type: PH_MSG_UDP_REFUSED, id: myConn), &dec) == .badArgument, "no destination")
        d.id = 7
        #expect(kind(d, &dec) == .connectionNotOwned)
    }

    @Test(arguments: [UInt16(0), 1, 5, 12, 31, 61, 200, .max])   // 58 = CONN_PEER (ABI 1.1), 59 = RESET, 60 = UDP_REFUSED (1.2)
    func garbageTypes(_ type: UInt16) throws {
        var dec = try decoder()
        var d = ph_desc()
        d.type = type
        #expect(kind(d, &dec) == .badType)
    }

    @Test func textArgumentsAreCopiedAndChecked() throws {
        var dec = try decoder()
        write("tcp:127.0.0.1:7001", to: pluginSlot, in: dec)
        let r = try dec.decode(ph_desc(type: PH_MSG_LISTEN, request: 3, slot: pluginSlot, length: 18), owns: { _ in false })
        #expect(r == .listen(request: 3, address: "tcp:127.0.0.1:7001", slot: pluginSlot))
        #expect(dec.owners[pluginSlot] == .core, "held until the completion returns it")

        var dec2 = try decoder()
        dec2.region.slotAddress(6).storeBytes(of: 0xFF, as: UInt8.self)
        #expect(kind(ph_desc(type: PH_MSG_CONNECT, request: 1, slot: 6, length: 1), &dec2) == .badText)
        #expect(kind(ph_desc(type: PH_MSG_CONNECT, request: 1, slot: 7, length: 0), &dec2) == .badText)
        write("a\0b", to: 7, in: dec2)
        #expect(kind(ph_desc(type: PH_MSG_CONNECT, request: 1, slot: 7, length: 3), &dec2) == .badText)
    }

    @Test func udpDestinationMustFitAfterThePayload() throws {
        var dec = try decoder()
        let to = "udp:127.0.0.1:9"
        write(to, to: pluginSlot, in: dec, at: 4096 - to.utf8.count)
        let ok = try dec.decode(ph_desc(type: PH_MSG_UDP_SEND, id: myConn, arg: Int64(to.utf8.count), slot: pluginSlot, length: 10), owns: { $0 == myConn })
        #expect(ok == .udpSend(socket: myConn, slot: pluginSlot, offset: 0, length: 10, to: to))
        var dec2 = try decoder()
        #expect(kind(ph_desc(type: PH_MSG_UDP_SEND, id: myConn, arg: 100, slot: pluginSlot, offset: 0, length: 4000), &dec2) == .badArgument)
        #expect(kind(ph_desc(type: PH_MSG_UDP_SEND, id: myConn, arg: -1, slot: pluginSlot, length: 1), &dec2) == .badArgument)
    }

    @Test func metricNamesAreRestricted() throws {
        var dec = try decoder()
        write("Bad-Name", to: pluginSlot, in: dec)
        #expect(kind(ph_desc(type: PH_MSG_METRIC, slot: pluginSlot, length: 8), &dec) == .badArgument)
    }
}
