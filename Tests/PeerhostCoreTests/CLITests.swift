import Foundation
import Testing
@testable import PeerhostCore

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
}
