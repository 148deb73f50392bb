import Foundation
import Testing

extension Integration {
    /// The committed fuzz corpus (fuzz/corpus/<target>/) replayed through peerhost-fuzz as built for
    /// the tests (no libFuzzer: every file once). An input that once crashed a parser stays here, so
    /// the bug cannot come back unnoticed; `make fuzz` is where new inputs are searched for.
    @Suite(.serialized) struct FuzzCorpusTests {
        static let targets = ["manifest", "config", "descriptor", "bencode", "metainfo", "magnet", "wire", "extension"]

        func run(_ arguments: [String]) throws -> (Int32, String) {
            try runProgram(Products.buildDirectory.appendingPathComponent("peerhost-fuzz").path, arguments)
        }

        @Test(arguments: targets) func corpusReplaysWithoutACrash(target: String) throws {
            let corpus = Products.repoRoot.appendingPathComponent("fuzz/corpus/\(target)").path
            let files = try FileManager.default.contentsOfDirectory(atPath: corpus).filter { !$0.hasPrefix(".") }
            #expect(!files.isEmpty, "fuzz/corpus/\(target) has seeds")
            let (status, output) = try run([target, corpus])
            #expect(status == 0, "\(output)")
            #expect(output.contains("replayed \(files.count) inputs"), "every seed was run: \(output)")
        }

        @Test func aMissingInputOrUnknownTargetFails() throws {
            #expect(try run(["manifest", "/nonexistent/input"]).0 != 0)
            let (status, output) = try run(["no-such-target"])
            #expect(status == 2)
            #expect(output.contains("usage: peerhost-fuzz"))
        }
    }
}
