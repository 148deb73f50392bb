// peerhost-fuzz: fuzz targets for the parsers that read untrusted bytes (issue 4: "a fuzz target
// for the manifest and descriptor parsers"). `make fuzz` builds this with libFuzzer and coverage
// and runs each target for a bounded time; the ordinary build replays the committed corpus
// (fuzz/corpus/<target>/) so `make test` keeps every input that once found a bug.
//
//   peerhost-fuzz TARGET [libFuzzer flags] [CORPUS_DIR|FILE]…
//
// A target must never crash, trap or hang on any input: errors are the expected outcome of bad
// bytes. Invariants that must hold for every input are checked with `precondition`, so a broken
// invariant is a crash libFuzzer saves as a reproducer.
import CFuzzDriver
#if canImport(Glibc)
@preconcurrency import Glibc
#endif

@main
struct FuzzMain {
    static let targets: [String: ph_fuzz_callback] = [
        "manifest": { data, size in ManifestTarget.run(UnsafeRawBufferPointer(start: data, count: size)); return 0 },
        "config": { data, size in ConfigTarget.run(UnsafeRawBufferPointer(start: data, count: size)); return 0 },
        "descriptor": { data, size in DescriptorTarget.run(UnsafeRawBufferPointer(start: data, count: size)); return 0 },
        "bencode": { data, size in BencodeTarget.run(UnsafeRawBufferPointer(start: data, count: size)); return 0 },
        "metainfo": { data, size in MetainfoTarget.run(UnsafeRawBufferPointer(start: data, count: size)); return 0 },
        "magnet": { data, size in MagnetTarget.run(UnsafeRawBufferPointer(start: data, count: size)); return 0 },
        "extension": { data, size in ExtensionTarget.run(UnsafeRawBufferPointer(start: data, count: size)); return 0 },
        "wire": { data, size in WireTarget.run(UnsafeRawBufferPointer(start: data, count: size)); return 0 },
    ]

    static func main() {
        var args = CommandLine.arguments
        guard args.count >= 2, let callback = targets[args[1]] else {
            let names = targets.keys.sorted().joined(separator: "|")
            fputs("usage: peerhost-fuzz \(names) [libFuzzer flags] [CORPUS_DIR|FILE]…\n", stderr)
            exit(2)
        }
        // libFuzzer sees argv without the target name.
        args.remove(at: 1)
        var cStrings = args.map { strdup($0) }
        var argc = Int32(cStrings.count)
        let rc = cStrings.withUnsafeMutableBufferPointer { buffer -> Int32 in
            var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = buffer.baseAddress
            return LLVMFuzzerRunDriver(&argc, &argv, callback)
        }
        for p in cStrings { free(p) }
        exit(rc)
    }
}
