// Generated from config/peerhost.toml; keep the two identical (a test compares them byte for byte).
// Used when no config file is found, so `peerhost run` works from a bare binary.
// Regenerate: paste config/peerhost.toml between the delimiters (the blank line before the closing
// delimiter keeps the file's final newline).

public enum EmbeddedDefaultConfig {
    public static let text = #"""
# Peerhost default configuration: loopback only, both echo plugins, no setup needed.
# This file is also compiled into the binary (Sources/PeerhostCore/Config/EmbeddedDefaultConfig.swift)
# and used when no config file is found. Keys and rules: docs/config.md.
# Relative paths: manifest = relative to this file's folder; data_dir = relative to the current directory.

[host]
data_dir = "./.peerhost"          # run.json, control.sock, per-plugin storage
http = "127.0.0.1:9180"           # read-only /metrics and /status; port 0 = ephemeral
uid_base = 200000                 # plugin N runs as host uid uid_base + N
log_level = "info"

[tuning]                          # defaults and their reasons: Sources/PeerhostCore/Config/Defaults.swift
ring_entries = 4096
slot_size = 16384
slot_count = 2048
recv_slots = 1024
spin_us = 5                       # µs to poll a ring after its last message before sleeping
heartbeat_interval_ms = 1000
heartbeat_timeout_ms = 5000
backoff_base_ms = 200
backoff_cap_ms = 30000
crash_loop_limit = 0              # 0 = keep restarting with capped backoff
usage_log_interval_s = 60         # per-plugin usage records in <data_dir>/usage.log; 0 = off
status_interval_s = 2             # how often plugins with a [status] method are asked for details and metrics; 0 = never
plugin_descriptors = 4096         # sockets and files the core holds for one plugin at most; past it: PH_EQUOTA

[security]                        # plugin signatures: docs/signing.md
# Development only: trust the key `make build` generates per checkout (.peerhost-dev/, never committed)
# and signs the bundled plugins with. An installed host trusts sandbox/trust/ (or /etc/peerhost/trust)
# and the folders listed here; drop this line in production.
trust = ["../.peerhost-dev"]

[[plugin]]
name = "echo-c"
manifest = "../plugins/echo-c/manifest.toml"
enabled = true
listen = ["tcp:127.0.0.1:7001"]

[[plugin]]
name = "echo-swift"
manifest = "../plugins/echo-swift/manifest.toml"
enabled = true
listen = ["tcp:127.0.0.1:7002"]

"""#
}
