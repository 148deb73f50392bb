import CPeerhostShim
import PeerhostCore
import PeerhostRing
import BitTorrentProtocol

/// Manifest bytes → PluginManifest. Any input may be refused; none may crash. A manifest that parses
/// must satisfy what the broker relies on without re-checking.
enum ManifestTarget {
    static func run(_ bytes: UnsafeRawBufferPointer) {
        guard let text = String(validating: bytes, as: UTF8.self),
              let source = try? TOMLSource(text: text, displayName: "fuzz/manifest.toml"),
              let manifest = try? PluginManifest(source: source, absolutePath: "/fuzz/manifest.toml") else { return }
        for grant in manifest.storage.paths {
            precondition(!grant.path.hasPrefix("/") && !grant.path.split(separator: "/").contains(".."),
                         "storage path escapes the plugin's root: \(grant.path)")
        }
        for grant in manifest.net.listen + manifest.net.connect + manifest.net.multicast {
            precondition(!grant.ports.isEmpty, "a grant without ports: \(grant)")
        }
        precondition(PluginManifest.supportedABIMajors.contains(manifest.abiMajor))
        _ = manifest.grantSummary
    }
}

/// Config bytes → HostConfig (manifest paths in the input are read from disk, read-only; most do
/// not exist and are refused with a file:line:key error).
enum ConfigTarget {
    static func run(_ bytes: UnsafeRawBufferPointer) {
        guard let text = String(validating: bytes, as: UTF8.self),
              let source = try? TOMLSource(text: text, displayName: "fuzz/peerhost.toml") else { return }
        _ = try? HostConfig(source: source, origin: .commandLine(path: "/fuzz/peerhost.toml"),
                            baseDirectory: "/nonexistent-fuzz", currentDirectory: "/nonexistent-fuzz")
    }
}

/// Bytes → slot contents + a run of 64-byte TX descriptors, decoded as a hostile plugin's ring would
/// be. Invariants: decoding never crashes; a descriptor that handed a slot to the core cannot hand
/// the same slot over again (the double-send a plugin could try by rewriting a published entry).
enum DescriptorTarget {
    static let geometry = RegionGeometry(ringEntries: 8, slotSize: 256, slotCount: 8, recvSlots: 4)
    static let region: SharedRegion = {
        do { return try SharedRegion.create(name: "fuzz", geometry: geometry) } catch { fatalError("region: \(error)") }
    }()

    static func run(_ bytes: UnsafeRawBufferPointer) {
        guard let first = bytes.first else { return }
        // First byte: how many bytes after it fill the slots (text arguments live there).
        let slotBytes = min(Int(first) * 8, bytes.count - 1, Int(geometry.slotSize * geometry.slotCount))
        let slotArea = region.slotAddress(0)
        slotArea.initializeMemory(as: UInt8.self, repeating: 0, count: Int(geometry.slotSize * geometry.slotCount))
        if slotBytes > 0 { slotArea.copyMemory(from: bytes.baseAddress! + 1, byteCount: slotBytes) }

        var decoder = RequestDecoder(region: region)
        var offset = 1 + slotBytes
        let size = MemoryLayout<ph_desc>.size
        while offset < bytes.count {
            var d = ph_desc()
            withUnsafeMutableBytes(of: &d) { raw in
                let n = min(size, bytes.count - offset)
                raw.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + n]))
            }
            offset += size
            let ownerBefore = d.slot < geometry.slotCount ? decoder.owners[d.slot] : nil
            let owns: (UInt64) -> Bool = { $0 & 1 == 1 && $0 < 64 }
            let ownsFile: (UInt64) -> Bool = { $0 > 0 && $0 < 8 }
            guard (try? decoder.decode(d, owns: owns, ownsFile: ownsFile)) != nil else { continue }
            if ownerBefore == .plugin, decoder.owners[d.slot] != .plugin {
                var again = decoder
                precondition((try? again.decode(d, owns: owns, ownsFile: ownsFile)) == nil,
                             "slot \(d.slot) was handed to the core twice by the same descriptor")
            }
        }
    }
}

/// Bytes → BitTorrent extension messages (BEP 10 handshake, BEP 9 ut_metadata, BEP 11 ut_pex), all
/// three decoders on every input: a peer controls these bytes. Whatever decodes must re-encode to
/// something that decodes to the same value (the engine re-sends what it parsed, e.g. PEX).
enum ExtensionTarget {
    static func run(_ bytes: UnsafeRawBufferPointer) {
        let payload = Array(bytes)
        if let h = try? ExtensionHandshake.decode(payload) {
            precondition((try? ExtensionHandshake.decode(h.encoded())) == h, "extension handshake does not round-trip")
        }
        if let m = try? MetadataMessage.decode(payload) {
            precondition((try? MetadataMessage.decode(m.encoded())) == m, "ut_metadata message does not round-trip")
            if case .data(let piece, let total, let data) = m, total <= 4 * MetadataMessage.pieceSize,
               var assembler = try? MetadataAssembler(infoHash: [UInt8](repeating: 0, count: 20), totalSize: total) {
                _ = try? assembler.add(piece: piece, data: data, totalSize: total)
            }
        }
        if let p = try? PexMessage.decode(payload) {
            precondition((try? PexMessage.decode(p.encoded())) == p, "ut_pex message does not round-trip")
            var state = PexState()
            for peer in p.added { state.peerConnected(peer.address, flags: peer.flags) }
            _ = state.message(for: 1, recipientAddress: p.dropped.first)
        }
    }
}
