import Foundation
import Testing
@testable import PeerhostCore
import PeerhostSandbox

/// The reference pages document every key the parsers accept.
@Suite("Docs")
struct DocsTests {
    static func mentioned(_ key: String, in text: String) -> Bool { text.contains("`\(key)`") }

    @Test func configPageDocumentsEveryKey() throws {
        let text = try String(contentsOfFile: TestSupport.path("docs/config.md"), encoding: .utf8)
        for (table, keys) in HostConfig.schemaKeys where !table.isEmpty {
            #expect(text.contains(table == "plugin" ? "`[[plugin]]`" : "`[\(table)]`"), "table \(table)")
            for key in keys { #expect(Self.mentioned(key, in: text), "\(table).\(key) is not in docs/config.md") }
        }
    }

    @Test func manifestPageDocumentsEveryKey() throws {
        let text = try String(contentsOfFile: TestSupport.path("docs/manifest.md"), encoding: .utf8)
        for table in PluginManifest.schemaKeys[""]! {
            #expect(text.contains("`[\(table)]`") || text.contains("`[[\(table)]]`"), "table \(table) has no section")
        }
        for (table, keys) in PluginManifest.schemaKeys where !table.isEmpty {
            for key in keys { #expect(Self.mentioned(key, in: text), "\(table.isEmpty ? "" : table + ".")\(key) is not in docs/manifest.md") }
        }
    }

    @Test func syscallProfilePageDocumentsEveryKeyAndEveryDangerousSyscall() throws {
        let text = try String(contentsOfFile: TestSupport.path("docs/syscall-profiles.md"), encoding: .utf8)
        for key in SyscallProfile.schemaKeys.values.flatMap({ $0 }) where key != "syscall" {
            #expect(text.contains("\n\(key) =") || text.contains("`\(key)`"), "\(key) is not in docs/syscall-profiles.md")
        }
        for entry in DangerousSyscalls.entries {
            #expect(text.contains(entry.name), "dangerous syscall \(entry.name) is not in docs/syscall-profiles.md")
        }
    }
}
