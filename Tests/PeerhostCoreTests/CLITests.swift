import Foundation
import Testing
@testable import PeerhostCore
#if canImport(Glibc)
import Glibc
#endif

/// Drives the real `peerhost` binary (built next to the test bundle by `swift build`/`swift test`)
/// against a control plane served by a fake host.
@Suite("CLI", .serialized)
struct CLITests {
    static let binary = ExecutableLocation.directory + "/peerhost"

    struct Outcome: Sendable { var status: Int32; var stdout: String; var stderr: String }

    static func peerhost(_ arguments: [String]) async throws -> Outcome {
        try await offPool {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = arguments
            let out = Pipe(), err = Pipe()
            process.standardOutput = out
            process.standardError = err
            try process.run()
            let stdout = out.fileHandleForReading.readDataToEndOfFile()
            let stderr = err.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return Outcome(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                           stderr: String(decoding: stderr, as: UTF8.self))
        }
    }

    @Test func statusAndCtlAgainstARunningControlPlane() async throws {
        #expect(FileManager.default.isExecutableFile(atPath: Self.binary), "build the peerhost product first (swift build)")
        let directory = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(directory) }
        let configPath = directory + "/peerhost.toml"
        try TestSupport.write("[host]\ndata_dir = \"\(directory)/data\"\nhttp = \"127.0.0.1:0\"\n", to: configPath)
        try TestSupport.write("abc", to: directory + "/input.bin")

        // Before a host runs: the clear error and a non-zero exit.
        let none = try await Self.peerhost(["status", "--config", configPath])
        #expect(none.status != 0)
        #expect(none.stderr.contains("no running host found: \(directory)/data/run.json does not exist (start one with `peerhost run`)"))

        let config = try HostConfig.load(origin: .commandLine(path: configPath))
        let plane = try await ControlPlane.start(settings: config.host, control: try ControlPlaneTests.fakeHost(), metrics: HostMetrics())
        try plane.writeRunFile()
        let serving = Task { try await plane.run() }

        let table = try await Self.peerhost(["status", "--config", configPath])
        #expect(table.status == 0, "\(table.stderr)")
        #expect(table.stdout.contains("echo-c      running  4300"))

        let json = try await Self.peerhost(["status", "--json", "--config", configPath])
        #expect(json.status == 0)
        #expect(try StatusDocument.decode(Array(json.stdout.utf8)) == StatusTests.sample)

        let add = try await Self.peerhost(["ctl", "--config", configPath, "echo-c", "add", "--", "-5", "12"])
        #expect(add.status == 0, "\(add.stderr)")
        #expect(add.stdout == "7\n")
        // Negative numbers need no `--`, and --config may come after the arguments.
        let negative = try await Self.peerhost(["ctl", "echo-c", "add", "-5", "-12", "--config", configPath])
        #expect(negative.stdout == "-17\n", "\(negative.stderr)")
        // After `--` even an option-like word is an argument.
        let literal = try await Self.peerhost(["ctl", "--config", configPath, "echo-c", "set_greeting", "--", "--config"])
        #expect(literal.stdout == "8\n", "\(literal.stderr)")

        let checksum = try await Self.peerhost(["ctl", "--config", configPath, "echo-c", "checksum", "@\(directory)/input.bin"])
        #expect(checksum.stdout == "294\n", "\(checksum.stderr)")

        let stats = try await Self.peerhost(["ctl", "--config", configPath, "echo-c", "stats"])
        #expect(stats.stdout == #"{"connections":0}"# + "\n")

        let bad = try await Self.peerhost(["ctl", "--config", configPath, "echo-c", "add", "x", "1"])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("argument 1 of add: 'x' is not an i64"))

        let count = try await Self.peerhost(["ctl", "--config", configPath, "echo-c", "set_greeting", "a", "b"])
        #expect(count.status != 0)
        #expect(count.stderr.contains("set_greeting takes 1 argument (string), got 2"))

        let second = try await Self.peerhost(["run", "--config", configPath])
        #expect(second.status != 0)
        #expect(second.stderr.contains("a host is already running"))

        plane.shutdown()
        try await serving.value
    }

    @Test func badConfigExitsNonZeroNamingFileLineAndKey() async throws {
        let directory = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(directory) }
        let configPath = directory + "/bad.toml"
        try TestSupport.write("[host]\nhttp = \"127.0.0.1:9180\"\nlog_levle = \"info\"\n", to: configPath)
        for command in ["run", "status"] {
            let outcome = try await Self.peerhost([command, "--config", configPath])
            #expect(outcome.status != 0)
            #expect(outcome.stderr.contains("\(configPath):3: key 'host.log_levle': unknown key"), "\(outcome.stderr)")
        }
    }

    /// SO_PEERCRED: even with the file modes opened up, a different uid gets a refusal.
    @Test func controlSocketRefusesOtherUsers() async throws {
        #expect(getuid() == 0, "this test runs as root (it switches to uid 65534 with setpriv)")
        let directory = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(directory) }
        let configPath = directory + "/peerhost.toml"
        try TestSupport.write("[host]\ndata_dir = \"\(directory)/data\"\nhttp = \"127.0.0.1:0\"\n", to: configPath)
        let config = try HostConfig.load(origin: .commandLine(path: configPath))
        let plane = try await ControlPlane.start(settings: config.host, control: try ControlPlaneTests.fakeHost(), metrics: HostMetrics())
        try plane.writeRunFile()
        let serving = Task { try await plane.run() }
        // Open what the modes would normally keep closed, so only the peer check stands in the way.
        #expect(chmod(directory, 0o755) == 0 && chmod(directory + "/data", 0o755) == 0 && chmod(configPath, 0o644) == 0)
        #expect(chmod(plane.socket.path, 0o666) == 0 && chmod(directory + "/data/run.json", 0o644) == 0)

        let outcome = try await Self.peerhostAsNobody(["status", "--config", configPath])
        #expect(outcome.status != 0)
        #expect(outcome.stderr.contains("permission denied: uid 65534 may not use this control socket (only root and uid 0)"), "\(outcome.stderr)")

        plane.shutdown()
        try await serving.value
    }

    static func peerhostAsNobody(_ arguments: [String]) async throws -> Outcome {
        try await offPool {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", binary] + arguments
            let err = Pipe()
            process.standardError = err
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            let stderr = err.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return Outcome(status: process.terminationStatus, stdout: "", stderr: String(decoding: stderr, as: UTF8.self))
        }
    }
}
