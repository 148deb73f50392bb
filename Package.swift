// swift-tools-version:6.1
// Peerhost: one package for the core, the runner, the SDK, the bundled plugins and their tests.
// Dependency versions are pinned to what the offline mirror serves (see DESIGN.md, "Dependencies").
import PackageDescription

let package = Package(
    name: "peerhost",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "peerhost", targets: ["peerhost"]),
        .executable(name: "peerhost-runner", targets: ["peerhost-runner"]),
        .library(name: "PeerhostSDK", targets: ["PeerhostSDK"]),
        .library(name: "PeerhostTesting", targets: ["PeerhostTesting"]),
        // Bundled plugins, loaded by the runner with dlopen.
        .library(name: "echo-c", type: .dynamic, targets: ["EchoCPlugin"]),
        .library(name: "echo-swift", type: .dynamic, targets: ["EchoSwiftPlugin"]),
        .library(name: "bittorrent", type: .dynamic, targets: ["BitTorrentEntry"]),
        // Test plugins: hostile behaviour the core must contain.
        .library(name: "hostile-ring", type: .dynamic, targets: ["HostileRingPlugin"]),
        .library(name: "io-probe", type: .dynamic, targets: ["IOProbePlugin"]),
        .library(name: "flood", type: .dynamic, targets: ["FloodPlugin"]),
        .library(name: "flood-b", type: .dynamic, targets: ["FloodBPlugin"]),
        .library(name: "hostile-syscall", type: .dynamic, targets: ["HostileSyscallPlugin"]),
        .library(name: "hostile-ctor", type: .dynamic, targets: ["HostileCtorPlugin"]),
        .library(name: "memory-hog", type: .dynamic, targets: ["MemoryHogPlugin"]),
        .library(name: "threaded", type: .dynamic, targets: ["ThreadedPlugin"]),
        .library(name: "kv-probe", type: .dynamic, targets: ["KVProbePlugin"]),
        .library(name: "stream-probe", type: .dynamic, targets: ["StreamProbePlugin"]),
        .library(name: "hoard-probe", type: .dynamic, targets: ["HoardProbePlugin"]),
        .library(name: "abi-probe", type: .dynamic, targets: ["ABIProbePlugin"]),
        .library(name: "abi-probe-v1-0", type: .dynamic, targets: ["ABIProbe10Plugin"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", exact: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", exact: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", exact: "2.13.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", exact: "0.6.0"),
        .package(url: "https://github.com/apple/swift-nio", exact: "2.101.3"),
        .package(url: "https://github.com/apple/swift-crypto", exact: "4.5.2"),
        .package(url: "https://github.com/groue/GRDB.swift", exact: "7.10.0"),
    ],
    targets: [
        // ---- C: the ABI header, Linux shims, system libraries --------------------------------
        .target(name: "CPeerhostABI", path: "Sources/CPeerhostABI"),
        .target(name: "CPeerhostShim", dependencies: ["CPeerhostABI"], path: "Sources/CPeerhostShim"),
        .target(name: "CPeerhostTestSupport", dependencies: ["CPeerhostShim"], path: "Sources/CPeerhostTestSupport"),
        .systemLibrary(name: "CLiburing", path: "Sources/CLiburing", pkgConfig: "liburing",
                       providers: [.apt(["liburing-dev"])]),
        .systemLibrary(name: "CSeccomp", path: "Sources/CSeccomp", pkgConfig: "libseccomp",
                       providers: [.apt(["libseccomp-dev"])]),
        .systemLibrary(name: "CCap", path: "Sources/CCap", pkgConfig: "libcap",
                       providers: [.apt(["libcap-dev"])]),
        .systemLibrary(name: "CFFI", path: "Sources/CFFI", pkgConfig: "libffi",
                       providers: [.apt(["libffi-dev"])]),

        // ---- Swift modules ----------------------------------------------------------------
        .target(name: "PeerhostRing", dependencies: ["CPeerhostShim", "CPeerhostABI"]),
        .target(name: "PeerhostSandbox", dependencies: ["CPeerhostShim", "CSeccomp", "CCap"]),
        .target(name: "PeerhostCore", dependencies: [
            "PeerhostRing", "PeerhostSandbox", "CLiburing", "CPeerhostShim", "CPeerhostABI",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "TOMLKit", package: "TOMLKit"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "GRDB", package: "GRDB.swift"),
        ]),
        .target(name: "PeerhostSDK", dependencies: ["CPeerhostABI"]),
        .target(name: "PeerhostTesting", dependencies: ["PeerhostSDK", "CPeerhostABI"]),
        .executableTarget(name: "peerhost", dependencies: [
            "PeerhostCore",
            "BitTorrentProtocol",   // `peerhost ctl bittorrent create|add`: reads and writes .torrent files client-side
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "peerhost-bench", dependencies: [
            "PeerhostCore", "PeerhostRing",
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        .executableTarget(name: "peerhost-runner", dependencies: [
            "PeerhostRing", "PeerhostSandbox", "CPeerhostABI", "CPeerhostShim", "CFFI", "CSeccomp", "CCap",
        ]),

        // Fuzz targets (make fuzz links libFuzzer; other builds replay fuzz/corpus through CFuzzDriver).
        .target(name: "CFuzzDriver", path: "Sources/CFuzzDriver"),
        .executableTarget(name: "peerhost-fuzz", dependencies: ["PeerhostCore", "PeerhostRing", "CPeerhostShim", "CFuzzDriver",
                                                        "BitTorrentProtocol", .product(name: "Crypto", package: "swift-crypto")]),

        .executableTarget(name: "peerhost-ringbench", dependencies: ["PeerhostRing", "CPeerhostShim", "CPeerhostTestSupport"]),

        // ---- Bundled plugins ----------------------------------------------------------------
        .target(name: "EchoCPlugin", dependencies: ["CPeerhostABI"], path: "plugins/echo-c",
                exclude: ["manifest.toml"], sources: ["echo.c"], publicHeadersPath: "."),
        .target(name: "EchoSwiftPlugin", dependencies: ["PeerhostSDK"], path: "plugins/echo-swift",
                exclude: ["manifest.toml"], sources: ["EchoSwift.swift"]),
        // BitTorrent: the protocol (bencode, metainfo, wire, picker, trackers, DHT) as a library of
        // pure logic the plugin and the CLI share, and the plugin itself on PeerhostSDK.
        .target(name: "BitTorrentProtocol", dependencies: [.product(name: "Crypto", package: "swift-crypto")],
                path: "plugins/bittorrent/Protocol"),
        .target(name: "BitTorrentPlugin", dependencies: ["PeerhostSDK", "BitTorrentProtocol"],
                path: "plugins/bittorrent/Plugin"),
        .target(name: "BitTorrentEntry", dependencies: ["BitTorrentPlugin", "PeerhostSDK"], path: "plugins/bittorrent/Entry"),

        .target(name: "HostileRingPlugin", dependencies: ["CPeerhostABI", "CPeerhostShim"],
                path: "Tests/Plugins/hostile-ring", exclude: ["manifest.toml", "syscalls.toml"], sources: ["hostile.c"],
                publicHeadersPath: "."),
        .target(name: "HostileSyscallPlugin", dependencies: ["CPeerhostABI"],
                path: "Tests/Plugins/hostile-syscall", exclude: ["manifest.toml"], sources: ["hostile_syscall.c"],
                publicHeadersPath: "."),
        .target(name: "HostileCtorPlugin", dependencies: ["CPeerhostABI"],
                path: "Tests/Plugins/hostile-ctor", exclude: ["manifest.toml"], sources: ["hostile_ctor.c"],
                publicHeadersPath: "."),
        .target(name: "MemoryHogPlugin", dependencies: ["CPeerhostABI"],
                path: "Tests/Plugins/memory-hog", exclude: ["manifest.toml"], sources: ["memory_hog.c"],
                publicHeadersPath: "."),
        .target(name: "ThreadedPlugin", dependencies: ["CPeerhostABI"],
                path: "Tests/Plugins/threaded", exclude: ["manifest.toml"], sources: ["threaded.c"],
                publicHeadersPath: "."),
        .target(name: "IOProbePlugin", dependencies: ["CPeerhostABI"],
                path: "Tests/Plugins/io-probe", exclude: ["manifest.toml"], sources: ["io_probe.c"],
                publicHeadersPath: "."),
        .target(name: "FloodPlugin", dependencies: ["CPeerhostABI"],
                path: "Tests/Plugins/flood", exclude: ["manifest.toml"], sources: ["flood.c"],
                publicHeadersPath: "."),
        .target(name: "FloodBPlugin", dependencies: ["CPeerhostABI"],
                path: "Tests/Plugins/flood-b", exclude: ["manifest.toml"], sources: ["flood_b.c"],
                publicHeadersPath: "."),
        .target(name: "StreamProbePlugin", dependencies: ["CPeerhostABI"],
                path: "Tests/Plugins/stream-probe", exclude: ["manifest.toml"], sources: ["stream_probe.c"],
                publicHeadersPath: "."),
        .target(name: "KVProbePlugin", dependencies: ["CPeerhostABI"],
                path: "Tests/Plugins/kv-probe", exclude: ["manifest.toml"], sources: ["kv_probe.c"],
                publicHeadersPath: "."),
        .target(name: "HoardProbePlugin", dependencies: ["CPeerhostABI"],
                path: "Tests/Plugins/hoard-probe", exclude: ["manifest.toml"], sources: ["hoard_probe.c"],
                publicHeadersPath: "."),
        .target(name: "ABIProbePlugin", dependencies: ["CPeerhostABI"],
                path: "Tests/Plugins/abi-probe", exclude: ["manifest.toml"], sources: ["abi_probe.c"],
                publicHeadersPath: "."),
        // The same source against the frozen ABI 1.0 header (abi-1.0/peerhost.h), without
        // CPeerhostABI: a plugin built years ago must keep running on this host.
        .target(name: "ABIProbe10Plugin",
                path: "Tests/Plugins/abi-probe-v1-0", exclude: ["manifest.toml"], sources: ["abi_probe.c"],
                publicHeadersPath: "abi-1.0",
                cSettings: [.headerSearchPath("abi-1.0"), .define("ABI_PROBE_NAME", to: "\"abi-probe-v1-0\"")]),

        // ---- Tests (Swift Testing) ----------------------------------------------------------
        .testTarget(name: "PeerhostRingTests", dependencies: ["PeerhostRing", "CPeerhostShim", "CPeerhostTestSupport"]),
        .testTarget(name: "PeerhostCoreTests", dependencies: ["PeerhostCore", .product(name: "GRDB", package: "GRDB.swift")]),
        .testTarget(name: "PeerhostSDKTests", dependencies: ["PeerhostSDK", "PeerhostTesting", "EchoSwiftPlugin"]),
        .testTarget(name: "IntegrationTests", dependencies: ["PeerhostCore", "BitTorrentProtocol"]),
        .testTarget(name: "BitTorrentProtocolTests", dependencies: ["BitTorrentProtocol"]),
        .testTarget(name: "BitTorrentPluginTests", dependencies: ["BitTorrentPlugin", "BitTorrentProtocol"]),
        .testTarget(name: "PeerhostSandboxTests", dependencies: [
            "PeerhostSandbox", "PeerhostRing", "CPeerhostShim", "CPeerhostABI",
            "PeerhostCore",   // SyscallProfile: the runner tests pass the real profiles
        ]),
    ]
)
