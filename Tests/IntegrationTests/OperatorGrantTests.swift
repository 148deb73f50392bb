import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension Integration.PluginIOTests {
    /// `peerhost ctl host grant/revoke` (docs/grants.md) through io-probe's file scenarios: a
    /// directory granted at run time is usable by absolute path at once, without a plugin restart;
    /// a path outside it is denied and audited; the grant survives a host restart (it is in the
    /// store); a revoke denies again.
    @Test func operatorGrantsApplyLiveSurviveRestartsAndRevoke() throws {
        let granted = FileManager.default.temporaryDirectory.appendingPathComponent("peerhost-grant-\(UUID().uuidString)").path
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("peerhost-grant-data-\(UUID().uuidString)").path
        for dir in [granted, data] { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        defer { for dir in [granted, data] { try? FileManager.default.removeItem(atPath: dir) } }
        chmod(granted, 0o755)
        func host() throws -> HostProcess {
            let host = try HostProcess(config: Self.config)
            try FileManager.default.createSymbolicLink(atPath: host.dataDirectory, withDestinationPath: data)
            try? FileManager.default.removeItem(atPath: data + "/run.json")
            try host.start()
            return host
        }

        do {
            let host = try host()
            defer { _ = host.stop() }
            let before = try scenario(host, "file_rw \(granted)/a.txt early")
            #expect(before["open_status"] as? Int == -2, "PH_EDENIED before the grant: \(before)")

            let (code, out) = try host.cli(["ctl", "host", "grant", "io-probe", granted])
            #expect(code == 0 && out.contains("granted io-probe: \(granted) rw"), "\(out)")
            let written = try scenario(host, "file_rw \(granted)/a.txt through-the-grant")
            #expect(written["open_status"] as? Int == 0, "\(written)")
            #expect(written["data"] as? String == "through-the-grant", "\(written)")
            #expect(try String(contentsOfFile: granted + "/a.txt", encoding: .utf8) == "through-the-grant")

            // Outside the granted directory: denied (by the broker, and by openat2 for "..").
            let outside = try scenario(host, "file_rw \(granted)/../escape.txt x")
            #expect(outside["open_status"] as? Int == -2, "\(outside)")
            #expect(!FileManager.default.fileExists(atPath: (granted as NSString).deletingLastPathComponent + "/escape.txt"))
            #expect(try scenario(host, "file_rw /etc/peerhost-nope x")["open_status"] as? Int == -2)
            let denials = try host.audit("io-probe", action: "file_open", decision: "denied")
            #expect(denials.contains { ($0["reason"] as? String ?? "").contains("leaves its granted directory") }, "\(denials)")

            let grants = try host.audit("io-probe", action: "grant", decision: "allowed")
            #expect(grants.count == 1 && grants[0]["object"] as? String == granted && (grants[0]["reason"] as? String ?? "").hasPrefix("operator"), "\(grants)")
            #expect((try status(host, "io-probe")["grants"] as? [String] ?? []).contains("storage \(granted) rw (operator)"))

            // Refusals say why and change nothing.
            let (missingCode, missing) = try host.cli(["ctl", "host", "grant", "io-probe", granted + "/missing"])
            #expect(missingCode != 0 && missing.contains("No such file"), "\(missing)")
            let open = granted + "-open"
            try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: open) }
            chmod(open, 0o777)
            let (openCode, openOut) = try host.cli(["ctl", "host", "grant", "io-probe", open])
            #expect(openCode != 0 && openOut.contains("world-writable"), "\(openOut)")
            let (unknownCode, unknown) = try host.cli(["ctl", "host", "grant", "nobody", granted])
            #expect(unknownCode != 0 && unknown.contains("nobody"), "\(unknown)")
        }

        // A new host on the same data dir: the grant is back without any command.
        let host = try host()
        defer { _ = host.stop() }
        let again = try scenario(host, "file_rw \(granted)/b.txt after-restart")
        #expect(again["open_status"] as? Int == 0, "\(again)")
        let (auditCode, auditJSON) = try host.cli(["audit", "io-probe", "--json"])
        _ = auditCode   // rw grants are warnings; the listing is what matters here
        #expect(auditJSON.contains(granted) && auditJSON.contains("\"granted_by\" : \"operator\""), "\(auditJSON)")

        // Read-only, then revoked.
        #expect(try host.cli(["ctl", "host", "grant", "io-probe", granted, "--mode", "ro"]).0 == 0)
        #expect(try scenario(host, "file_rw \(granted)/c.txt ro")["open_status"] as? Int == -2, "a ro grant refuses writes")
        #expect(try scenario(host, "file_open \(granted)/a.txt 1")["open_status"] as? Int == 0, "and allows reads")
        let (revokeCode, revoked) = try host.cli(["ctl", "host", "revoke", "io-probe", granted])
        #expect(revokeCode == 0, "\(revoked)")
        #expect(try scenario(host, "file_open \(granted)/a.txt 1")["open_status"] as? Int == -2, "revoked")
        #expect(try host.audit("io-probe", action: "revoke", decision: "allowed").first?["object"] as? String == granted)
        #expect(!(try status(host, "io-probe")["grants"] as? [String] ?? []).contains { $0.contains(granted) })
        let (againCode, againOut) = try host.cli(["ctl", "host", "revoke", "io-probe", granted])
        #expect(againCode != 0 && againOut.contains("no operator grant"), "\(againOut)")
    }
}
