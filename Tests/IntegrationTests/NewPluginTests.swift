import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    /// Issue 14 (4): `peerhost new-plugin NAME` writes a plugin that builds, passes `check`, signs
    /// with a fresh key, runs in a host and answers its own test, as written.
    @Suite(.serialized) struct NewPluginTests {
        @Test func theCSkeletonBuildsChecksSignsRunsAndPassesItsTest() throws {
            let folder = try BitTorrentPeers.temporaryDirectory("new-plugin") + "/tally"
            let (code, out) = try runCLI(["new-plugin", "tally", "--dir", folder, "--port", "7409"])
            #expect(code == 0 && out.contains("wrote \(folder)/"), "\(out)")
            for file in ["tally.c", "include/peerhost.h", "manifest.toml", "dev.toml", "Makefile", "test.sh"] {
                #expect(FileManager.default.fileExists(atPath: folder + "/" + file), "\(file)")
            }
            let make = ["-C", folder, "PEERHOST=\(Products.peerhost)"]
            let (checked, checkText) = try runProgram("/usr/bin/make", make + ["check"])
            #expect(checked == 0 && checkText.contains("verdict: ok"), "\(checkText)")
            let (tested, testText) = try runProgram("/usr/bin/make", make + ["test"])
            #expect(tested == 0 && testText.contains("ok: tally answered and counted"), "\(testText)")

            let (again, againText) = try runCLI(["new-plugin", "tally", "--dir", folder])
            #expect(again != 0 && againText.contains("exists and is not empty"), "\(againText)")
            let (badName, badText) = try runCLI(["new-plugin", "Tally!", "--dir", folder + "-2"])
            #expect(badName != 0 && badText.contains("'Tally!' is not a plugin name"), "\(badText)")
            let (badLang, langText) = try runCLI(["new-plugin", "tally", "--lang", "cobol", "--dir", folder + "-3"])
            #expect(badLang != 0 && langText.contains("--lang cobol"), "\(langText)")
        }
    }
}
