import Foundation
import Testing
@testable import PeerhostCore

@Suite("Manifest")
struct ManifestTests {
    private func parse(_ text: String) -> Result<PluginManifest, TOMLFileError> {
        Result { () throws(TOMLFileError) -> PluginManifest in
            let source = try TOMLSource(text: text, displayName: "m.toml")
            return try PluginManifest(source: source, absolutePath: "/x/m.toml")
        }
    }

    private func expectError(_ text: String, line: Int?, key: String, contains fragment: String,
                             sourceLocation: SourceLocation = #_sourceLocation) {
        guard case .failure(let error) = parse(text) else {
            Issue.record("expected an error for \(key)", sourceLocation: sourceLocation)
            return
        }
        #expect(error.description.hasPrefix("m.toml\(line.map { ":\($0)" } ?? ""): key '\(key)': "), "\(error)", sourceLocation: sourceLocation)
        #expect(error.description.contains(fragment), "\(error)", sourceLocation: sourceLocation)
    }

    private let header = """
        [plugin]
        name = "bt"
        version = "1.0.0"
        library = "libbt.so"
        abi = "1"
        """

    @Test func echoManifestsParse() throws {
        for variant in ["c", "swift"] {
            let manifest = try PluginManifest(contentsOf: TestSupport.path("plugins/echo-\(variant)/manifest.toml"))
            #expect(manifest.name == "echo-\(variant)")
            #expect(manifest.library == "libecho-\(variant).so")
            #expect(manifest.abiMajor == 1)
            #expect(manifest.net.listen.map(\.description) == [variant == "c" ? "tcp:127.0.0.1:7001" : "tcp:127.0.0.1:7002"])
            #expect(manifest.controls.map(\.name) == ["stats", "set_greeting", "add", "scale", "toggle", "checksum", "echo_bytes"])
            let prefix = variant == "c" ? "echo_c_" : "echo_swift_"
            #expect(manifest.controls.allSatisfy { $0.symbol == prefix + $0.name })
            #expect(manifest.controlMethod(named: "echo_bytes")?.signature.description == "(bytes, string) -> bytes")
            #expect(manifest.limits.memoryBytes == 256 << 20)
        }
    }

    @Test func fullSchema() throws {
        let manifest = try parse("""
            \(header)
            sha256 = "\(String(repeating: "ab", count: 32))"
            [net]
            listen  = ["tcp:0.0.0.0:6881", "udp:[::]:6881"]
            connect = ["tcp:*:1-65535"]
            multicast = ["udp:239.192.152.143:6771"]
            [storage]
            paths = [{ path = "downloads", mode = "rw", quota = "50GiB" }, { path = "seed" }]
            kv = { quota = "64MiB" }
            [limits]
            memory = "512MiB"
            cpu_percent = 100
            open_files = 256
            bandwidth = { up = "10MiB/s", down = "0" }
            [sandbox]
            namespaces = ["user", "net"]
            syscalls = "profiles/default.toml"
            [[control]]
            name = "add_torrent"
            symbol = "bt_add_torrent"
            signature = "(string, string) -> i64"
            """).get()
        #expect(manifest.net.listen[1].host == "::")
        #expect(manifest.net.connect[0].ports == 1...65535)
        #expect(manifest.storage.paths == [.init(path: "downloads", mode: .readWrite, quota: 50 << 30), .init(path: "seed", mode: .read, quota: nil)])
        #expect(manifest.storage.kvQuota == 64 << 20)
        #expect(manifest.limits == .init(memoryBytes: 512 << 20, cpuPercent: 100, openFiles: 256, bandwidthUp: 10 << 20, bandwidthDown: 0))
        #expect(manifest.sandbox.namespaces == [.user, .net])
        #expect(manifest.grantSummary.contains("net.connect tcp:*:1-65535"))
        #expect(manifest.directory == "/x")
    }

    @Test func unknownKey() {
        expectError("\(header)\nlibary = \"x\"\n", line: 6, key: "plugin.libary", contains: "unknown key")
        expectError("\(header)\n[limits]\nmemroy = \"1MiB\"\n", line: 7, key: "limits.memroy", contains: "unknown key")
    }

    @Test func badPort() {
        expectError("\(header)\n[net]\nlisten = [\"tcp:127.0.0.1:65536\"]\n", line: 7, key: "net.listen[0]", contains: "bad port '65536'")
        expectError("\(header)\n[net]\nconnect = [\"tcp:*:9-1\"]\n", line: 7, key: "net.connect[0]", contains: "low end above high end")
        expectError("\(header)\n[net]\nlisten = [\"sctp:1.2.3.4:5\"]\n", line: 7, key: "net.listen[0]", contains: "unknown transport 'sctp'")
        expectError("\(header)\n[net]\nmulticast = [\"tcp:239.1.1.1:5\"]\n", line: 7, key: "net.multicast[0]", contains: "udp only")
        expectError("\(header)\n[net]\nmulticast = [\"udp:10.0.0.1:6771\"]\n", line: 7, key: "net.multicast[0]",
                    contains: "'10.0.0.1' is not a multicast group address")
        expectError("\(header)\n[net]\nmulticast = [\"udp:*:6771\"]\n", line: 7, key: "net.multicast[0]", contains: "not a multicast group")
        expectError("\(header)\n[net]\nmulticast = [\"udp:239.1.1.1:1-9\"]\n", line: 7, key: "net.multicast[0]", contains: "names one port")
    }

    @Test func badSizes() {
        expectError("\(header)\n[limits]\nmemory = \"512 megs\"\n", line: 7, key: "limits.memory", contains: "bad size '512 megs'")
        expectError("\(header)\n[limits]\nbandwidth = { up = \"10MiB\" }\n", line: 7, key: "limits.bandwidth.up", contains: "bad rate '10MiB'")
        expectError("\(header)\n[storage]\npaths = [{ path = \"d\", quota = true }]\n", line: 7, key: "storage.paths[0].quota", contains: "expected a size string")
        expectError("\(header)\n[storage]\npaths = [{ path = \"../etc\" }]\n", line: 7, key: "storage.paths[0].path", contains: "without '..'")
        expectError("\(header)\n[storage]\npaths = [{ path = \"d\", mode = \"w\" }]\n", line: 7, key: "storage.paths[0].mode", contains: "not a mode")
    }

    @Test func badSignatureAndDuplicates() {
        let control = "\n[[control]]\nname = \"a\"\nsymbol = \"x_a\"\n"
        expectError("\(header)\(control)signature = \"(int) -> i64\"\n", line: 9, key: "control[0].signature", contains: "unknown argument type 'int'")
        expectError("\(header)\(control)signature = \"() -> bool\"\n", line: 9, key: "control[0].signature", contains: "unknown result type 'bool'")
        expectError("\(header)\(control)signature = \"() -> i64\"\(control)signature = \"() -> i64\"\n", line: 11,
                    key: "control[1].name", contains: "duplicate control method 'a'")
        expectError("\(header)\n[[control]]\nname = \"a\"\nsymbol = \"x-a\"\nsignature = \"() -> i64\"\n", line: 8,
                    key: "control[0].symbol", contains: "not a C symbol name")
    }

    @Test func overlappingOrDuplicateStoragePaths() {
        expectError("\(header)\n[storage]\npaths = [{ path = \"d\" }, { path = \"d/\" }]\n", line: 7,
                    key: "storage.paths[1].path", contains: "'d/' duplicates storage.paths[0] ('d')")
        expectError("\(header)\n[storage]\npaths = [{ path = \"data\", mode = \"r\" }, { path = \"./data/cache\", mode = \"rw\" }]\n", line: 7,
                    key: "storage.paths[1].path", contains: "overlaps storage.paths[0] ('data'): one is inside the other")
        expectError("\(header)\n[storage]\npaths = [{ path = \"a/b\" }, { path = \"a\" }]\n", line: 7,
                    key: "storage.paths[1].path", contains: "overlaps storage.paths[0]")
        expectError("\(header)\n[storage]\npaths = [{ path = \".\" }]\n", line: 7,
                    key: "storage.paths[0].path", contains: "storage root itself")
        // Siblings with a common name prefix do not overlap.
        #expect((try? parse("\(header)\n[storage]\npaths = [{ path = \"data\" }, { path = \"data2\" }]\n").get()) != nil)
    }

    @Test func duplicateNetGrants() {
        expectError("\(header)\n[net]\nlisten = [\"tcp:127.0.0.1:7001\", \"tcp:127.0.0.1:7001\"]\n", line: 7,
                    key: "net.listen[1]", contains: "duplicate grant tcp:127.0.0.1:7001 (already net.listen[0])")
        expectError("\(header)\n[net]\nconnect = [\"tcp:*:1-9\", \"udp:*:1-9\", \"tcp:*:1-9\"]\n", line: 7,
                    key: "net.connect[2]", contains: "duplicate grant tcp:*:1-9")
        expectError("\(header)\n[net]\nmulticast = [\"udp:[ff02::1]:5\", \"udp:[ff02::1]:5\"]\n", line: 7,
                    key: "net.multicast[1]", contains: "duplicate grant")
    }

    @Test func badValuesInEveryTable() {
        expectError("\(header)\n[net]\nlisten = \"tcp:127.0.0.1:7001\"\n", line: 7, key: "net.listen", contains: "expected an array of strings")
        expectError("\(header)\n[net]\nlisten = [\"tcp:127.0.0.1\"]\n", line: 7, key: "net.listen[0]", contains: "is not a network address")
        expectError("\(header)\n[storage]\npaths = [{ mode = \"rw\" }]\n", line: 7, key: "storage.paths[0].path", contains: "required key is missing")
        expectError("\(header)\n[storage]\npaths = [{ path = \"/etc\" }]\n", line: 7, key: "storage.paths[0].path", contains: "relative path")
        expectError("\(header)\n[storage]\nkv = {}\n", line: 7, key: "storage.kv.quota", contains: "required key is missing")
        expectError("\(header)\n[limits]\ncpu_percent = 0\n", line: 7, key: "limits.cpu_percent", contains: "out of range")
        expectError("\(header)\n[sandbox]\nnamespaces = [\"user\", \"time\"]\n", line: 7, key: "sandbox.namespaces[1]", contains: "unknown namespace 'time'")
        expectError("\(header)\n[sandbox]\nnamespaces = [\"user\", \"net\", \"user\"]\n", line: 7, key: "sandbox.namespaces[2]", contains: "duplicate namespace 'user'")
        expectError("\(header)\nsha256 = \"ABC\"\n", line: 6, key: "plugin.sha256", contains: "64 lowercase hex digits")
        expectError(header.replacingOccurrences(of: "name = \"bt\"", with: "name = \"host\""), line: 2, key: "plugin.name", contains: "'host' is reserved")
        expectError("\(header)\n[[control]]\nname = \"a\"\nsymbol = \"x\"\n", line: 6, key: "control[0].signature", contains: "required key is missing")
    }

    @Test func abiAndMissingKeys() {
        expectError(header.replacingOccurrences(of: "abi = \"1\"", with: "abi = \"2\""), line: 5, key: "plugin.abi",
                    contains: "ABI major 2 is not supported")
        expectError(header.replacingOccurrences(of: "version = \"1.0.0\"\n", with: ""), line: 1, key: "plugin.version",
                    contains: "required key is missing")
        expectError("[net]\n", line: nil, key: "plugin", contains: "required key is missing")
    }

    @Test func libraryResolution() throws {
        let directory = try TestSupport.makeTemporaryDirectory()
        defer { TestSupport.removeDirectory(directory) }
        try TestSupport.write(TestSupport.manifest(name: "demo"), to: directory + "/plugin/manifest.toml")
        try TestSupport.write("", to: directory + "/products/libdemo.so")
        let manifest = try PluginManifest(contentsOf: directory + "/plugin/manifest.toml")
        #expect(try manifest.resolveLibrary(productsDirectory: directory + "/products") == directory + "/products/libdemo.so")
        try TestSupport.write("", to: directory + "/plugin/libdemo.so")
        #expect(try manifest.resolveLibrary(productsDirectory: directory + "/products") == directory + "/plugin/libdemo.so")
        try FileManager.default.removeItem(atPath: directory + "/plugin/libdemo.so")
        #expect(throws: LibraryNotFoundError.self) { try manifest.resolveLibrary(productsDirectory: directory + "/none") }
    }
}

@Suite("Control signatures")
struct ControlSignatureTests {
    @Test func parsesEveryType() throws {
        let signature = try ControlSignature(parsing: " ( i64,f64, bool , string,bytes )->bytes")
        #expect(signature.arguments == [.i64, .f64, .bool, .string, .bytes])
        #expect(signature.result == .bytes)
        #expect(signature.description == "(i64, f64, bool, string, bytes) -> bytes")
        #expect(try ControlSignature(parsing: "() -> f64").arguments.isEmpty)
    }

    @Test func rejectsBadSignatures() {
        for text in ["i64 -> i64", "(i64) i64", "(i64,) -> i64", "(i64) -> string", "(u8) -> i64", "() -> ", ""] {
            #expect(throws: ControlSignature.ParseError.self, "\(text)") { try ControlSignature(parsing: text) }
        }
    }

    @Test func convertsArguments() throws {
        let signature = try ControlSignature(parsing: "(i64, f64, bool, string, bytes) -> i64")
        let values = try signature.convert(["-12", "1.5", "true", "hi", "raw"], method: "m")
        #expect(values == [.i64(-12), .f64(1.5), .bool(true), .string("hi"), .bytes(Array("raw".utf8))])
    }

    @Test func fileArgumentsFeedBytesOnly() throws {
        let signature = try ControlSignature(parsing: "(bytes, string) -> bytes")
        let values = try signature.convert([.file(literal: "@f", contents: [0, 1, 2]), .file(literal: "@home", contents: [9])], method: "echo_bytes")
        #expect(values == [.bytes([0, 1, 2]), .string("@home")])
        #expect(throws: ControlCallError.unreadableArgumentFile(method: "echo_bytes", position: 1, literal: "@nope", reason: "no such file")) {
            try signature.convert([.unreadableFile(literal: "@nope", reason: "no such file"), "x"], method: "echo_bytes")
        }
    }

    @Test func clearErrors() throws {
        let greeting = try ControlSignature(parsing: "(string) -> i64")
        #expect(throws: ControlCallError.self) { try greeting.convert(["a", "b"], method: "set_greeting") }
        do {
            _ = try greeting.convert(["a", "b"], method: "set_greeting")
        } catch {
            #expect(error.description == "set_greeting takes 1 argument (string), got 2")
        }
        let add = try ControlSignature(parsing: "(i64, i64) -> i64")
        do {
            _ = try add.convert(["x", "2"], method: "add")
        } catch {
            #expect(error.description == "argument 1 of add: 'x' is not an i64")
        }
        do {
            _ = try add.convert(["1"], method: "add")
        } catch {
            #expect(error.description == "add takes 2 arguments (i64, i64), got 1")
        }
        let toggle = try ControlSignature(parsing: "(bool) -> i64")
        do {
            _ = try toggle.convert(["yes"], method: "toggle")
        } catch {
            #expect(error.description == "argument 1 of toggle: 'yes' is not a bool (use true or false)")
        }
        let stats = try ControlSignature(parsing: "() -> bytes")
        do {
            _ = try stats.convert(["1"], method: "stats")
        } catch {
            #expect(error.description == "stats takes no arguments, got 1")
        }
    }

    @Test func manifestPreparesCalls() throws {
        let manifest = try PluginManifest(contentsOf: TestSupport.path("plugins/echo-c/manifest.toml"))
        let call = try manifest.prepareControlCall(method: "add", arguments: ["2", "40"])
        #expect(call.method.symbol == "echo_c_add")
        #expect(call.arguments == [.i64(2), .i64(40)])
        #expect(throws: ControlCallError.self) { try manifest.prepareControlCall(method: "nope", arguments: []) }
        do {
            _ = try manifest.prepareControlCall(method: "nope", arguments: [])
        } catch {
            #expect(error.description == "echo-c has no control method 'nope' (methods: add, checksum, echo_bytes, scale, set_greeting, stats, toggle)")
        }
    }

    @Test func wireEncodingsMatchContract3() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        func json(_ value: some Encodable) throws -> String { String(decoding: try encoder.encode(value), as: UTF8.self) }
        #expect(try json(ControlArgumentValue.i64(5)) == #"{"i64":5}"#)
        #expect(try json(ControlArgumentValue.bytes([104, 105])) == #"{"bytes":"aGk="}"#)
        #expect(try json(ControlValue.f64(2.5)) == #"{"f64":2.5}"#)
        let decoded = try JSONDecoder().decode([ControlValue].self, from: Data(#"[{"i64":1},{"f64":2.5},{"bytes":"aGk="}]"#.utf8))
        #expect(decoded == [.i64(1), .f64(2.5), .bytes([104, 105])])
        let arguments: [ControlArgument] = ["x", .file(literal: "@p", contents: [1]), .unreadableFile(literal: "@q", reason: "no such file")]
        #expect(try JSONDecoder().decode([ControlArgument].self, from: encoder.encode(arguments)) == arguments)
    }

    @Test func printsResults() {
        #expect(ControlValue.i64(-3).description == "-3")
        #expect(ControlValue.f64(0.5).description == "0.5")
        #expect(ControlValue.bytes(Array(#"{"a":1}"#.utf8)).description == #"{"a":1}"#)
        #expect(ControlValue.bytes([0xff, 0x00, 0x10]).description == "ff0010")
    }

    @Test func sizes() throws {
        #expect(try ByteSize.parse("512MiB") == 512 << 20)
        #expect(try ByteSize.parse("1.5GiB") == 3 << 29)
        #expect(try ByteSize.parse("4096") == 4096)
        #expect(try ByteSize.parse("2KB") == 2000)
        #expect(try ByteSize.parse("10MiB/s", rate: true) == 10 << 20)
        #expect(try ByteSize.parse("0", rate: true) == 0)
        for bad in ["", "MiB", "-1MiB", "1XB", "1 2"] {
            #expect(throws: ByteSize.ParseError.self, "\(bad)") { try ByteSize.parse(bad) }
        }
    }
}
