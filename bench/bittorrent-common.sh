# bench/bittorrent-common.sh — sourced by the BitTorrent benches (bittorrent.sh, bittorrent-swarm.sh).
# Needs ROOT and PY.
#
#   free_port                      a free TCP port on 127.0.0.1
#   cpu_seconds_tree PID           user+system seconds of PID and its descendants, from /proc (for a
#                                  long-lived leecher: sample before and after the download)
#
#   write_peerhost_bt_config WORK BIN PORT SETTINGS
# writes WORK/manifest.toml (+ .sig) and WORK/peerhost.toml: data in WORK/data, the plugin on
# 127.0.0.1:PORT with SETTINGS as its config table's body ("lpd = false, …"): a host config whose
# bittorrent plugin may reach loopback (the shipped manifest never does: DESIGN.md), signed with the
# checkout's dev key and trusted by that config.
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

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# CPU seconds (user+system) of a running process and all its descendants, from /proc: for a
# long-lived leecher (a host with runner children) sample it before and after the download.
cpu_seconds_tree() {
  awk -v t="$(cpu_ticks_tree "$1")" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f", t / hz }'
}
cpu_ticks_tree() { # clock ticks of $1 and its descendants
  local total p
  total=$(awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0)
  for p in $(ps -o pid= --ppid "$1" 2>/dev/null); do total=$((total + $(cpu_ticks_tree "$p"))); done
  echo "$total"
}
