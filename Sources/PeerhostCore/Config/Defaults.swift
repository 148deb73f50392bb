// Every tunable default of the host, in one place, each with the reason for its value.
// Config keys in `[tuning]` mirror these names in snake_case (see docs/config.md); the shipped
// config/peerhost.toml repeats them so an operator sees what can be changed.

public enum Defaults {
    // ---- [host] ------------------------------------------------------------------------------

    /// Relative to the current directory: in development the repo root, so a checkout's host state
    /// stays inside the checkout (and `.gitignore` holds `.peerhost/`).
    public static let dataDirectory = "./.peerhost"
    /// Loopback only: the HTTP plane is read-only but still must not face the network by default.
    /// 9180 is unassigned by IANA and clear of Prometheus' own 9090/9100 range defaults.
    public static let httpAddress = "127.0.0.1:9180"
    /// Per-plugin host uids are uid_base + plugin index: 200000 sits above the 100000–165535 range
    /// Debian hands out in /etc/subuid, so plugin uids never collide with a user's subordinate ids.
    public static let uidBase: UInt32 = 200_000
    /// `info` prints start-up, readiness and restarts without per-message noise.
    public static let logLevel = "info"

    // ---- [tuning]: rings and buffer pool -------------------------------------------------------

    /// Descriptors per ring (power of two): 4096 × 64-byte descriptors = 256 KiB per direction;
    /// enough to absorb a burst from 1000 connections without the producer seeing a full ring.
    public static let ringEntries = 4096
    /// Bytes per pool slot: 16 KiB holds a full BitTorrent block (the protocol's unit) in one slot,
    /// so the common message needs no reassembly copy.
    public static let slotSize = 16_384
    /// Slots per plugin: 2048 × 16 KiB = 32 MiB of shared pool per plugin, a bounded cost that still
    /// keeps 1000 connections each with a receive and a send in flight.
    public static let slotCount = 2048
    /// Of those, slots the core receives into (io_uring provided buffers): half, so inbound traffic
    /// can never starve the plugin of slots to send from, nor the reverse.
    public static let receiveSlots = 1024

    /// After its last message, each side of a ring keeps polling this long before it sleeps on its
    /// eventfd. 5 µs catches back-to-back messages of a busy connection without stealing the CPU
    /// that the kernel's TCP work and the host's peers need: on these 2-core machines, 50 µs of
    /// spinning cost 10–30% of plugin-path echo throughput, and the network's own latency (hundreds
    /// of µs) dwarfs the ~20 µs a sleeping side takes to wake. Operators with spare cores set 50 for
    /// sub-µs hand-offs above ~20k messages/s. Both sweeps are in bench/BENCHMARKS.md.
    public static let spinMicroseconds = 5

    // ---- [tuning]: supervision --------------------------------------------------------------------

    /// Heartbeat every second: cheap (one ring message) and a hang is noticed within a few seconds.
    public static let heartbeatIntervalMilliseconds = 1000
    /// Five missed beats before the plugin is declared hung: tolerates a stalled VM or a long GC-free
    /// Swift callback under load without killing healthy plugins.
    public static let heartbeatTimeoutMilliseconds = 5000
    /// First restart after 200 ms: long enough not to spin on an immediate crash, short enough that
    /// one crash is barely visible to peers.
    public static let backoffBaseMilliseconds = 200
    /// Backoff doubles up to 30 s: a plugin that keeps crashing costs almost nothing, yet recovers
    /// within half a minute once its cause (e.g. a full disk) is gone.
    public static let backoffCapMilliseconds = 30_000
    /// 0 = no limit: keep restarting with capped backoff. Giving up (state `failed`) needs an operator
    /// decision we have not made yet; the key exists so configs written now stay valid.
    public static let crashLoopLimit = 0

    // ---- usage log (<data_dir>/usage.log) ---------------------------------------------------------

    /// One record per plugin every 60 s: fine enough to bill or audit by the minute, and a host with
    /// ten plugins writes ~15 000 lines (~5 MiB) a day.
    public static let usageLogIntervalSeconds = 60

    // ---- descriptors the core holds for a plugin (PluginSession) -----------------------------------

    /// Sockets (listeners, connections, UDP sockets) and files the core may hold for one plugin at
    /// once, opens and connects in flight included. They all live in the host's one process and
    /// share its RLIMIT_NOFILE with every other plugin and the control plane: without a bound, one
    /// plugin (hostile or leaking) could spend them all and stop everyone else's accepts and opens.
    /// 4096 leaves a BitTorrent session (200 peers, a few thousand open files) room to spare.
    public static let pluginDescriptors = 4096

    // ---- streams (PluginSession, StreamSendQueue) ----------------------------------------------

    /// Bytes of one connection the core holds (sent by the plugin, not yet taken by the kernel)
    /// before the plugin's send answers PH_EAGAIN. 512 KiB is 32 slots: a loopback peer at full
    /// speed never waits for it (the socket buffer behind it holds megabytes), while a peer that
    /// stops reading pins at most 1/32 of the default pool (1024 plugin slots), not all of it.
    public static let sendQueuePerConnection = 512 << 10

    /// A stream the plugin closed may go this long without progress (bytes taken by the peer, its
    /// FIN) before it is reset: long enough for a slow peer to drain what was queued, short enough
    /// that a peer that stopped reading gives the slots back soon.
    public static let closeLingerSeconds = 15

    // ---- timers (PluginSession, PluginTimers) ------------------------------------------------------

    /// Timers one plugin may have pending. They live in the core's memory (about 64 bytes each, so
    /// 4 MiB at the bound) behind one kernel timeout per plugin; a BitTorrent session with 200 peers
    /// keeps a few hundred.
    public static let pluginTimers = 65_536

    // ---- plugin status (manifest [status]; Host+PluginStatus.swift) ------------------------------

    /// The host asks each plugin with a `[status]` method for its details and metrics every 2 s:
    /// fresh enough for `peerhost status` and a 15 s Prometheus scrape, and one control call per
    /// 2 s costs a plugin nothing measurable.
    public static let statusIntervalSeconds = 2
    /// A status answer larger than 1 MiB is refused (the plugin is untrusted; 500 series and a
    /// details section with a few hundred torrents fit in a fraction of it).
    public static let statusMaxBytes = 1 << 20
    /// Metric series per plugin from its status answer: 500 bound the cardinality (a BitTorrent
    /// plugin with ~60 torrents × 8 series); the rest are dropped with a log line.
    public static let statusMaxSeries = 500
    /// Counters per plugin from the ABI's metric_add (peerhost_plugin_<name>_total): names are
    /// chosen in code, not per peer or torrent, so 64 is plenty; later names are ignored.
    public static let metricAddMaxNames = 64
    /// Same sizes as the audit log and for the same reason: 16 MiB (~50 000 records) per file, five
    /// rotated files kept, a bounded 96 MiB of history.
    public static let usageLogMaxBytes: UInt64 = 16 << 20
    public static let usageLogKeep = 5

    // ---- per-peer accounting (ABI 1.1 conn_set_peer; PeerTable.swift) --------------------------

    /// Peers tracked per plugin: 256 × ~100 bytes is nothing, and it keeps enough candidates that a
    /// peer entering the top list arrives with its history rather than from zero.
    public static let peerTableCapacity = 256
    /// Peers per plugin exported as metric series (4 series each): 10 bounds the cardinality at
    /// 40 series per plugin however big the swarm, and still shows who carries the traffic (a
    /// BitTorrent client unchokes 4 + 1 peers at a time; a gossip mesh has D = 6–12 peers).
    public static let peerMetricsTop = 10

    // ---- audit log --------------------------------------------------------------------------

    /// 16 MiB per file holds about 80 000 lines: days of a busy host's grants and restarts, small
    /// enough to open in an editor.
    public static let auditLogMaxBytes: UInt64 = 16 << 20
    /// Five rotated files besides the live one: a bounded 96 MiB, enough history for an incident.
    public static let auditLogKeep = 5
    /// Denials and ring violations are written at most 50 lines/s per plugin (burst 100): a plugin
    /// that probes in a loop cannot fill the disk; counters still count every attempt.
    public static let auditLinesPerSecond = 50.0
}
