// The BitTorrent plugin (placeholder until the engine lands): exports the entry point so the
// product links.
import PeerhostSDK
import BitTorrentProtocol

public final class BitTorrentPlugin: Plugin {
    public let host: Host
    public init(host: Host) { self.host = host }
}

@_cdecl("peerhost_plugin_v1")
public func peerhostPluginV1() -> UnsafeRawPointer {
    PluginExport.entry(for: BitTorrentPlugin.self, name: "bittorrent", version: "0.1.0", features: [.streams])
}
