# bench/peerhost-bt-config.sh — sourced by the BitTorrent benches: a Peerhost host config whose
# bittorrent plugin may reach loopback (the shipped manifest never does: DESIGN.md), signed with
# the checkout's dev key and trusted by that config.
#
#   write_peerhost_bt_config WORK BIN PORT SETTINGS
# writes WORK/manifest.toml (+ .sig) and WORK/peerhost.toml: data in WORK/data, the plugin on
# 127.0.0.1:PORT with SETTINGS as its config table's body ("lpd = false, …"). Needs ROOT.
write_peerhost_bt_config() {
  local work=$1 bin=$2 port=$3 settings=$4
  sed -e 's|^connect = \[|connect = ["tcp:127.0.0.1:1-65535", |' -e "s|0.0.0.0:6881|127.0.0.1:$port|" \
    "$ROOT/plugins/bittorrent/manifest.toml" >"$work/manifest.toml"
  "$bin" sign --key "$ROOT/.peerhost-dev/dev.key" "$work/manifest.toml" --out "$work/manifest.sig" >/dev/null
  cat >"$work/peerhost.toml" <<EOF2
[host]
data_dir = "$work/data"
http = "127.0.0.1:0"
log_level = "warning"
[security]
trust = ["$ROOT/.peerhost-dev"]
[[plugin]]
name = "bittorrent"
manifest = "$work/manifest.toml"
listen = ["tcp:127.0.0.1:$port"]
config = { $settings }
EOF2
}
