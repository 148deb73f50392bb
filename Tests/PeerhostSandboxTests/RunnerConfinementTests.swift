// The runner's own confinement (RunnerMain.startUp): rlimits, no capabilities in any set,
// no_new_privs, the seccomp allowlist before dlopen (the built-in default profile, sandbox/profiles/plugin-default.toml) and the stacked
// after-load filter. Driven by FakeCore; each test forks one sandbox, so the suite is serialized.
import CPeerhostABI
import CPeerhostShim
import Foundation
import PeerhostCore
import PeerhostRing
import PeerhostSandbox
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized)
struct RunnerConfinementTests {
    static let sigsys = ProcessExit(exited: false, code: SIGSYS)

    /// START, a listen completion, one connection and one echoed message.
    func startAndEcho(_ core: FakeCore, _ text: String) throws {
        try core.push(desc(PH_MSG_START))
        let listen = try #require(try core.collect(until: PH_MSG_READY).first { $0.type == UInt16(PH_MSG_LISTEN.rawValue) })
        try core.push(desc(PH_MSG_COMPLETE, slot: listen.slot, request: listen.request, arg: 100))
        try core.push(desc(PH_MSG_ACCEPT, id: 3, arg: 100))
        core.write(slot: 2, Array(text.utf8))
        try core.push(desc(PH_MSG_DATA, id: 3, slot: 2, length: UInt32(text.utf8.count)))
        let send = try core.collect(until: PH_MSG_SEND).last!
        #expect(send.id == 3 && core.text(slot: send.slot, offset: send.offset, length: send.length) == text)
    }

    func limits(_ pid: pid_t) throws -> String { try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8) }

    func limit(_ text: String, _ name: String) -> String? {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name) }) else { return nil }
        return line.dropFirst(name.count).split(separator: " ").first.map(String.init)
    }

    @Test(arguments: ["echo-c", "echo-swift"])
    func filteredRunnerEchoesWithNoCapabilitiesAndSeccompFilter(plugin: String) throws {
        let core = try FakeCore()
        let proc = try core.spawn(plugin: plugin, library: Products.library(plugin))
        #expect(try core.readFrame()["type"] as? String == "hello")
        try startAndEcho(core, "filtered \(plugin)")
        // A control call through libffi under the filter (Foundation JSON on both sides too).
        let fn = plugin.replacingOccurrences(of: "-", with: "_")
        let add = try core.call(1, "\(fn)_add", "(i64, i64) -> i64", [["i64": 40], ["i64": 2]])
        #expect((add["value"] as? [String: Any])?["i64"] as? Int == 42)

        let st = try ProcessStatus.read(proc.pid)
        #expect(st.seccompMode == 2, "Seccomp: 2 (filter)")
        #expect(st.noNewPrivs == 1)
        #expect(st.effectiveCapabilities == 0, "CapEff")
        #expect(st.permittedCapabilities == 0, "CapPrm")
        #expect(st.inheritableCapabilities == 0, "CapInh")
        #expect(st.boundingCapabilities == 0, "CapBnd")
        #expect(st.ambientCapabilities == 0, "CapAmb")
        #expect(st.threads == 1)
        let l = try limits(proc.pid)
        #expect(limit(l, "Max core file size") == "0")
        #expect(limit(l, "Max open files") == "64")
        #expect(limit(l, "Max processes") == "4")
        #expect(limit(l, "Max address space") == "unlimited")

        try core.push(desc(PH_MSG_STOP))
        #expect(try proc.wait(timeoutMilliseconds: 5000) == ProcessExit(exited: true, code: 0))
        core.process = nil
        close(proc.pidfd)
    }

    @Test func rlimitFlagsAreApplied() throws {
        let core = try FakeCore()
        let proc = try core.spawn(plugin: "echo-c", library: Products.library("echo-c"),
                                  arguments: ["--rlimit-nofile", "32", "--rlimit-nproc", "2", "--rlimit-as", "17179869184"])
        #expect(try core.readFrame()["type"] as? String == "hello")
        let l = try limits(proc.pid)
        #expect(limit(l, "Max open files") == "32")
        #expect(limit(l, "Max processes") == "2")
        #expect(limit(l, "Max address space") == "17179869184")
        try startAndEcho(core, "limited")
        try core.push(desc(PH_MSG_STOP))
        #expect(try proc.wait(timeoutMilliseconds: 5000) == ProcessExit(exited: true, code: 0))
        core.process = nil
        close(proc.pidfd)
    }

    @Test func badLimitIsAnArgsFailure() throws {
        let core = try FakeCore()
        let proc = try core.spawn(plugin: "echo-c", library: Products.library("echo-c"), arguments: ["--rlimit-nofile", "lots"])
        let f = try core.readFrame()
        #expect(f["type"] as? String == "fail")
        #expect(f["step"] as? String == "args")
        #expect(f["message"] as? String == "--rlimit-nofile needs a positive number, not lots")
        #expect(try proc.wait(timeoutMilliseconds: 5000) == ProcessExit(exited: true, code: 1))
        core.process = nil
        close(proc.pidfd)
    }

    /// The runner trusts no `--syscalls` value: malformed, unknown or dangerous fails step seccomp.
    @Test(arguments: [("read,,write", "--syscalls: syscall entry '': '' is not a syscall name (lowercase letters, digits, _)"),
                      ("read,nosuchcall", "--syscalls: syscall entry 'nosuchcall': nosuchcall is not an x86_64 system call"),
                      ("read,write@self", "--syscalls: syscall entry 'write@self': condition 'self' applies only to kill, rt_sigqueueinfo, rt_tgsigqueueinfo, tgkill, tkill"),
                      ("read,socket", "the profile allows dangerous syscall socket"),
                      ("read,clone", "the profile allows dangerous syscall clone")])
    func aBadPolicyFailsStepSeccomp(policy: String, message: String) throws {
        let core = try FakeCore()
        let proc = try core.spawn(plugin: "echo-c", library: Products.library("echo-c"), arguments: ["--syscalls", policy])
        let f = try core.readFrame()
        #expect(f["type"] as? String == "fail")
        #expect(f["step"] as? String == "seccomp")
        #expect(f["message"] as? String == message)
        #expect(try proc.wait(timeoutMilliseconds: 5000) == ProcessExit(exited: true, code: 1))
        core.process = nil
        close(proc.pidfd)
    }

    @Test func seccompOffIsADebuggingEscapeHatch() throws {
        let core = try FakeCore()
        let proc = try core.spawn(plugin: "echo-c", library: Products.library("echo-c"), arguments: ["--seccomp", "off"])
        #expect(try core.readFrame()["type"] as? String == "hello")
        let st = try ProcessStatus.read(proc.pid)
        #expect(st.seccompMode == 0)
        #expect(st.boundingCapabilities == 0 && st.effectiveCapabilities == 0, "capabilities are dropped either way")
        try core.push(desc(PH_MSG_STOP))
        #expect(try proc.wait(timeoutMilliseconds: 5000) == ProcessExit(exited: true, code: 0))
        core.process = nil
        close(proc.pidfd)
    }

    /// Each attempt of Tests/Plugins/hostile-syscall kills the runner with SIGSYS inside the call.
    @Test(arguments: ["socket", "execve", "fork", "ptrace", "mount", "unshare", "bpf", "io_uring_setup",
                      "keyctl", "kill_parent"])
    func forbiddenSyscallKillsTheRunnerWithSIGSYS(what: String) throws {
        let core = try FakeCore()
        let proc = try core.spawn(plugin: "hostile-syscall", library: Products.library("hostile-syscall"))
        #expect(try core.readFrame()["type"] as? String == "hello")
        try startAndEcho(core, "before \(what)")
        try core.sendFrame(["type": "call", "id": 1, "symbol": "hostile_syscall_attempt",
                            "signature": "(string) -> i64", "args": [["string": what]]])
        let exit = try proc.wait(timeoutMilliseconds: 5000)
        #expect(exit == Self.sigsys, "\(what): \(exit)")
        core.process = nil
        close(proc.pidfd)
    }

    /// The threads profile allows clone only with CLONE_THREAD: a fork-style clone (SIGCHLD, no
    /// CLONE_THREAD) still kills the runner.
    @Test func theThreadsProfileStillKillsAProcessClone() throws {
        let threads = try SyscallProfile(text: EmbeddedProfiles.pluginThreads, displayName: "threads")
        #expect(threads.rules.contains(SyscallRule(name: "clone", when: .thread)))
        let core = try FakeCore()
        let proc = try core.spawn(plugin: "hostile-syscall", library: Products.library("hostile-syscall"),
                                  arguments: ["--syscalls", threads.encoded])
        #expect(try core.readFrame()["type"] as? String == "hello")
        try startAndEcho(core, "threads profile")
        try core.sendFrame(["type": "call", "id": 1, "symbol": "hostile_syscall_attempt",
                            "signature": "(string) -> i64", "args": [["string": "fork"]]])
        #expect(try proc.wait(timeoutMilliseconds: 5000) == Self.sigsys)
        core.process = nil
        close(proc.pidfd)
    }

    /// Learn mode: everything runs and is recorded (the runner's own ring loop included), except a
    /// dangerous syscall, which still kills.
    @Test func learnModeRecordsWhatRunsAndStillKillsDangerousSyscalls() throws {
        let core = try FakeCore()
        let proc = try core.spawn(plugin: "hostile-syscall", library: Products.library("hostile-syscall"),
                                  arguments: ["--syscalls", "", "--seccomp", "learn"])
        let learner = SeccompLearner()
        learner.attach(pid: proc.pid, pidfd: proc.pidfd)
        #expect(try core.readFrame()["type"] as? String == "hello")
        try startAndEcho(core, "learning")
        let seen = learner.observed
        #expect(seen["openat"].map { $0.beforeLoad > 0 && $0.afterLoad == 0 } == true, "the loader's openat, load phase only: \(seen)")
        #expect(seen["seccomp"]?.beforeLoad == 1, "the stacking of the after-load filter ends the load phase")
        #expect(seen["ppoll"].map { $0.afterLoad > 0 } == true, "the ring loop")
        try core.sendFrame(["type": "call", "id": 1, "symbol": "hostile_syscall_attempt",
                            "signature": "(string) -> i64", "args": [["string": "socket"]]])
        #expect(try proc.wait(timeoutMilliseconds: 5000) == Self.sigsys)
        #expect(learner.observed["socket"] == nil, "killed by the filter, never notified")
        #expect(learner.errors.isEmpty, "\(learner.errors)")
        core.process = nil
        close(proc.pidfd)
    }

    /// openat is the loader's; once the library is in, the stacked filter answers it with EACCES.
    @Test func openingAFileAfterLoadIsRefusedWithEACCES() throws {
        let core = try FakeCore()
        let proc = try core.spawn(plugin: "hostile-syscall", library: Products.library("hostile-syscall"))
        #expect(try core.readFrame()["type"] as? String == "hello")
        let r = try core.call(1, "hostile_syscall_attempt", "(string) -> i64", [["string": "open_etc_passwd"]])
        #expect((r["value"] as? [String: Any])?["i64"] as? Int == -Int(EACCES))
        try startAndEcho(core, "still alive")
        try core.push(desc(PH_MSG_STOP))
        #expect(try proc.wait(timeoutMilliseconds: 5000) == ProcessExit(exited: true, code: 0))
        core.process = nil
        close(proc.pidfd)
    }

    /// A constructor runs inside dlopen: the filter is already there, so no hello ever comes.
    @Test func constructorSocketIsKilledAtLoad() throws {
        let core = try FakeCore()
        let proc = try core.spawn(plugin: "hostile-ctor", library: Products.library("hostile-ctor"))
        #expect(try proc.wait(timeoutMilliseconds: 5000) == Self.sigsys)
        #expect(throws: (any Error).self) { try core.readFrame(timeout: 0.5) }
        core.process = nil
        close(proc.pidfd)
    }
}
