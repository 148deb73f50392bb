import Testing
import BitTorrentProtocol
@testable import BitTorrentPlugin

@Suite struct ResumeDataTests {
    let hash = InfoHash(hex: "0a1a2801ec3c02159cc1a7e4d20480fdfb56d8ea")!

    @Test func roundTripsAndFitsOneSlotWithItsKey() throws {
        let r = ResumeData(infoHash: hash, infoLength: 40_000, trackers: [["http://t.example/announce"], ["udp://u.example:80"]],
                           name: "multi", saveRoot: "/srv/torrents", paused: true, have: [UInt8](repeating: 0xff, count: 512),
                           uploaded: 123, downloaded: 456, peers: ["tcp:192.0.2.1:6881"], rateUp: 1000, rateDown: 0)
        let bytes = r.encoded()
        #expect(try ResumeData.decode(bytes) == r)
        #expect(bytes.count + ResumeData.key(hash).count < 16_384)
        #expect(String(decoding: ResumeData.infoKey(hash, 2), as: UTF8.self) == "i/0a1a2801ec3c02159cc1a7e4d20480fdfb56d8ea/2")
    }

    @Test func refusesDamagedRecordsWithAReason() {
        #expect(throws: ResumeData.DecodeError.self) { try ResumeData.decode(Array("d1:vi2ee".utf8)) }
        #expect(throws: ResumeData.DecodeError.self) { try ResumeData.decode(Array("not bencode".utf8)) }
        do { _ = try ResumeData.decode(Array("d1:vi1ee".utf8)); Issue.record("accepted a record without an infohash") } catch {
            #expect(error.description.hasPrefix("resume data: "))
        }
    }
}
