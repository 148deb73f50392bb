import Foundation
@testable import PeerhostCore
import PeerhostSandbox
import Testing

/// Syscall profiles (docs/syscall-profiles.md): the shipped files, the strict parser, the lint,
/// the compact `--syscalls` encoding the runner receives, and the kernel-log parser.
struct SyscallProfileTests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static func shipped(_ name: String) -> String { repo.appendingPathComponent("sandbox/profiles/\(name)").path }

    static let header = "arch = \"x86_64\"\ndefault = \"kill\"\n"

    func parse(_ body: String) throws(TOMLFileError) -> SyscallProfile {
        try SyscallProfile(text: Self.header + body, displayName: "p.toml")
    }

    @Test func shippedProfilesParseLintCleanAndMatchTheEmbeddedCopies() throws {
        for (file, embedded) in [("plugin-default.toml", EmbeddedProfiles.pluginDefault),
                                 ("plugin-threads.toml", EmbeddedProfiles.pluginThreads)] {
            let text = try String(contentsOfFile: Self.shipped(file), encoding: .utf8)
            #expect(text == embedded, "Sources/PeerhostCore/Sandbox/EmbeddedProfiles.swift is out of date for \(file)")
            let profile = try SyscallProfile(contentsOf: Self.shipped(file))
            #expect(profile.lint().isEmpty, "\(file): \(profile.lint())")
            #expect(profile.entries.allSatisfy { !$0.reason.isEmpty })
            // io_uring operations bypass seccomp: never in any profile, in any form.
            #expect(profile.names.isDisjoint(with: ["io_uring_setup", "io_uring_enter", "io_uring_register"]))
            // Round trip through the runner's encoding.
            #expect(try SyscallPolicy.decode(profile.encoded) == profile.rules)
        }
        let threads = try SyscallProfile(contentsOf: Self.shipped("plugin-threads.toml"))
        let defaults = SyscallProfile.builtInDefault
        #expect(defaults.names.isSubset(of: threads.names), "the threads profile extends the default one")
        #expect(threads.rules.contains(SyscallRule(name: "clone", when: .thread)))
        #expect(threads.rules.contains(SyscallRule(name: "clone3", action: .errno(38))))
        #expect(!defaults.names.contains("clone") && !defaults.names.contains("clone3"))
        #expect(defaults.rules.contains(SyscallRule(name: "openat", loadOnly: true)))
        #expect(defaults.rules.contains(SyscallRule(name: "tgkill", when: .selfOnly)))
    }

    @Test func everyProfileOfTheRepositoryIsLintClean() throws {
        for path in [Self.shipped("plugin-default.toml"), Self.shipped("plugin-threads.toml"),
                     Self.repo.appendingPathComponent("Tests/Plugins/hostile-ring/syscalls.toml").path] {
            let (allowlist, findings) = try auditSyscallProfile(path: path)
            #expect(!allowlist.isEmpty)
            #expect(findings.isEmpty, "\(path): \(findings)")
        }
    }

    @Test func parserIsStrictAndNamesFileLineAndKey() throws {
        func message(_ body: String) -> String {
            do { _ = try parse(body); return "no error" } catch { return error.description }
        }
        #expect(message("\n[[syscall]]\nname = \"read\"\nreasn = \"typo\"\n")
                    == "p.toml:6: key 'syscall[0].reasn': unknown key (expected one of: name, action, errno, when, phase, reason, rare)")
        #expect(message("\n[[syscall]]\nname = \"read\"\n") == "p.toml:4: key 'syscall[0].reason': required key is missing")
        #expect(message("\n[[syscall]]\nname = \"nosuchcall\"\nreason = \"x\"\n")
                    .contains("key 'syscall[0].name': nosuchcall is not an x86_64 system call"))
        #expect(message("\n[[syscall]]\nname = \"read\"\nwhen = \"thread\"\nreason = \"x\"\n")
                    .contains("p.toml:6: key 'syscall[0].when': condition 'thread' applies only to clone"))
        #expect(message("\n[[syscall]]\nname = \"read\"\naction = \"errno\"\nreason = \"x\"\n")
                    .contains("key 'syscall[0].errno': required key is missing"))
        #expect(message("\n[[syscall]]\nname = \"read\"\nreason = \"a\"\n[[syscall]]\nname = \"read\"\nreason = \"b\"\n")
                    .contains("key 'syscall[1].name': read is listed twice"))
        #expect(message("\n[[syscall]]\nname = \"read\"\nphase = \"start\"\nreason = \"x\"\n").contains("is not a phase"))
        #expect(throws: TOMLFileError.self) { try SyscallProfile(text: "arch = \"aarch64\"\ndefault = \"kill\"\n", displayName: "p") }
        #expect(throws: TOMLFileError.self) { try SyscallProfile(text: "arch = \"x86_64\"\ndefault = \"allow\"\n", displayName: "p") }
    }

    @Test func lintFlagsDangerousAllowsButNotTheirSafeForms() throws {
        let profile = try parse("""

            [[syscall]]
            name = "socket"
            reason = "x"

            [[syscall]]
            name = "clone"
            reason = "x"

            [[syscall]]
            name = "kill"
            reason = "x"

            [[syscall]]
            name = "io_uring_enter"
            reason = "x"

            [[syscall]]
            name = "tgkill"
            when = "self"
            reason = "fine"

            [[syscall]]
            name = "execve"
            action = "errno"
            errno = 1
            reason = "answered EPERM: fine"

            [[syscall]]
            name = "read"
            reason = "fine"
            """)
        let findings = profile.lint()
        #expect(findings.map(\.syscall) == ["socket", "clone", "kill", "io_uring_enter"])
        #expect(findings[0].description.hasPrefix("p.toml:5: socket is dangerous: network access is the core's"))
        let threaded = try parse("\n[[syscall]]\nname = \"clone\"\nwhen = \"thread\"\nreason = \"x\"\n")
        #expect(threaded.lint().isEmpty)
        // Every lint entry names a real syscall (a typo there would never match anything).
        for entry in DangerousSyscalls.entries {
            #expect(SyscallNames.number(of: entry.name) != nil, "\(entry.name)")
        }
    }

    @Test func compactEncodingIsStrict() throws {
        let rules = try SyscallPolicy.decode("read,tgkill@self,clone@thread,openat@load,clone3=e38,ioctl=kill")
        #expect(rules == [SyscallRule(name: "read"), SyscallRule(name: "tgkill", when: .selfOnly),
                          SyscallRule(name: "clone", when: .thread), SyscallRule(name: "openat", loadOnly: true),
                          SyscallRule(name: "clone3", action: .errno(38)), SyscallRule(name: "ioctl", action: .kill)])
        #expect(SyscallPolicy.encode(rules) == "read,tgkill@self,clone@thread,openat@load,clone3=e38,ioctl=kill")
        #expect(try SyscallPolicy.decode("") == [])
        for bad in ["read,,write", "nosuch", "read@self", "read=e0", "read=e4096", "read@load=e5", "read,read",
                    "Read", "read@later", "read=x", "clone@thread@self", "read=e1=e2"] {
            #expect(throws: SyscallPolicyError.self, "\(bad)") { try SyscallPolicy.decode(bad) }
        }
    }

    @Test func kernelLogRecordsOfSeccompKillsAreParsed() {
        let record = "5,1234,9787457409,-;audit: type=1326 audit(1795624192.203:463): auid=4294967295 uid=200162 gid=200162 ses=4294967295 pid=20455 comm=\"peerhost-runner\" exe=\"/x/peerhost-runner\" sig=31 arch=c000003e syscall=41 compat=0 ip=0x7f0af7346829 code=0x80000000\n SUBSYSTEM=x"
        #expect(KernelLog.parseSeccompKill(record)! == (pid: 20455, syscall: 41))
        #expect(KernelLog.parseSeccompKill(record.replacingOccurrences(of: "sig=31", with: "sig=0")) == nil, "a logged, not killed, call")
        #expect(KernelLog.parseSeccompKill("6,1,2,-;eth0: link up") == nil)
        #expect(SyscallNames.name(of: 41) == "socket")
        #expect(SyscallNames.number(of: "newfstatat") == 262)
    }

    @Test func anUnreadableKernelLogSaysSo() {
        let log = KernelLog(path: "/nonexistent/kmsg")
        #expect(log.unavailable == "kernel log unreadable")
        #expect(log.seccompKill(pid: 1).object == "unknown (kernel log unreadable)")
    }

    @Test func aLearnDraftIsAValidLintCleanProfile() throws {
        let draft = SyscallProfile.draft(plugin: "p", observed: [
            LearnedSyscall(name: "openat", callsBeforeLoad: 3, callsAfterLoad: 0),
            LearnedSyscall(name: "read", callsBeforeLoad: 1, callsAfterLoad: 40),
            LearnedSyscall(name: "clone", callsBeforeLoad: 0, callsAfterLoad: 1),
            LearnedSyscall(name: "tgkill", callsBeforeLoad: 0, callsAfterLoad: 1),
        ], seconds: 5)
        let profile = try SyscallProfile(text: draft, displayName: "draft")
        #expect(profile.lint().isEmpty)
        #expect(profile.rules == [SyscallRule(name: "clone", when: .thread), SyscallRule(name: "openat", loadOnly: true),
                                  SyscallRule(name: "read"), SyscallRule(name: "tgkill", when: .selfOnly),
                                  SyscallRule(name: "clone3", action: .errno(38))])
    }
}
