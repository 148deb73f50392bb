// The plugin's entry point, in a target of its own: the tests link the engine (BitTorrentPlugin)
// into one test bundle with other Swift plugins, and two `peerhost_plugin_v1` symbols would clash.
import BitTorrentPlugin
import PeerhostSDK

@_cdecl("peerhost_plugin_v1")
public func peerhostPluginV1() -> UnsafeRawPointer {
    PluginExport.entry(for: BitTorrentPlugin.self, name: "bittorrent", version: "0.1.0",
                       features: [.streams, .datagrams, .timers, .files, .kv, .control, .shaping, .peerTags])
}
