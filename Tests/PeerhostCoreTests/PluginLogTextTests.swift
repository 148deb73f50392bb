import Testing
@testable import PeerhostCore

/// A plugin's log() text reaches the host's log as one line (issue 15: a newline forged host lines).
@Suite struct PluginLogTextTests {
    @Test func lineBreaksAndControlCharactersBecomeVisibleEscapes() {
        let forged = "ok\n2026-12-04T19:00:00+0000 info peerhost: [PeerhostCore] plugin running"
        let line = PluginSession.oneLine(forged)
        #expect(!line.contains("\n"))
        #expect(line == "ok\\n2026-12-04T19:00:00+0000 info peerhost: [PeerhostCore] plugin running")
        #expect(PluginSession.oneLine("a\rb\u{1b}[2Jc\u{7f}d\u{85}e\u{2028}f") == "a\\rb\\u{1b}[2Jc\\u{7f}d\\u{85}e\\u{2028}f")
        #expect(PluginSession.oneLine("tabs\tand ünïcode stay") == "tabs\tand ünïcode stay")
    }
}
