import Testing
@testable import BitTorrentPlugin

@Suite struct PeerConnectionTests {
    @Test func addressesSplitIntoIPAndBanKey() {
        #expect(PeerConnection.ip(of: "tcp:192.0.2.7:6881") == "192.0.2.7")
        #expect(PeerConnection.ip(of: "tcp:[2001:db8::1]:6881") == "2001:db8::1")
        #expect(PeerConnection.banKey(of: "tcp:192.0.2.7:6881") == "192.0.2.7")
        // On loopback every local peer shares the IP: the port tells them apart.
        #expect(PeerConnection.banKey(of: "tcp:127.0.0.1:7001") == "tcp:127.0.0.1:7001")
        #expect(PeerConnection.banKey(of: "tcp:[::1]:7001") == "tcp:[::1]:7001")
    }

    @Test func peerWordsBecomeConnectAddresses() {
        #expect(BitTorrentPlugin.peerAddress("127.0.0.1:6881") == "tcp:127.0.0.1:6881")
        #expect(BitTorrentPlugin.peerAddress("[::1]:6881") == "tcp:[::1]:6881")
        #expect(BitTorrentPlugin.peerAddress("tcp:host.example:1") == "tcp:host.example:1")
        #expect(BitTorrentPlugin.peerAddress("nohostport") == nil)
        #expect(BitTorrentPlugin.peerAddress(":6881") == nil)
        #expect(BitTorrentPlugin.peerAddress("h:0") == nil)
    }

    @Test func rateMeterAveragesWholeSeconds() {
        var m = RateMeter()
        m.add(5_000, now: 100.2)
        m.add(5_000, now: 100.8)
        #expect(m.rate(now: 101.1) == 2_000)   // 10,000 bytes in one of the five one-second buckets
        #expect(m.rate(now: 107.0) == 0)
    }
}
