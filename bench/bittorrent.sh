#!/usr/bin/env bash
# bench/bittorrent.sh — one BitTorrent download over TCP on loopback, per leecher, from the same
# libtorrent seeder in the same run: MB/s and the leecher's CPU seconds per GiB.
#
#   bench/bittorrent.sh                    # standalone: prints a table (and BT_REPORT gets Markdown)
#   SECTIONS=bittorrent bench/run.sh       # as the `bittorrent` section of `make bench`
#
# Steps: a BT_SIZE file of deterministic bytes (Tests/peers/make_content.py) and its v1 torrent
# (BT_PIECE pieces) in BT_DIR; a libtorrent seeder (Tests/peers/lt_peer.py --seed: it checks the
# file first, so the file is in the page cache for every leecher); then each leecher in LEECHERS
# downloads into a fresh folder, connecting to the seeder by address (no tracker, no DHT, no uTP),
# and the result is compared with the source byte for byte (a wrong byte fails the bench).
#
# Figures: MB/s = BT_SIZE / download seconds (decimal MB: 10^6 bytes). Download seconds are what
# the leecher reports from adding the torrent to having every piece verified when it reports
# that (lt_peer.py's, the plugin's `info`), else the wall time of its command. CPU = user + system
# seconds of the leecher's process tree (wait4 rusage, threads and waited-for children included),
# scaled to seconds per GiB. Seeder on CPU SEEDER_CPU, leecher on LEECHER_CPU (BT_PIN=0: no pinning),
# as bench/run.sh pins server and client.
#
# Environment:
#   BT_SIZE     file size (default 1GiB; K/M/G suffixes)      BT_PIECE  piece length (default 1MiB)
#   BT_DIR      work folder (default a new one in /var/tmp: on disk, ~2×BT_SIZE free needed)
#   LEECHERS    leechers to run, in order (default "libtorrent peerhost")
#   BT_REPORT   append a Markdown section to this file (bench/run.sh passes its report)
#   BT_TIMEOUT  seconds a leecher may take (default 300)
#
# Adding a leecher (the hook for Peerhost): define leecher_<name> below. It is called with
#   $1 torrent file   $2 seeder "127.0.0.1:PORT"   $3 empty output folder   $4 a file to write
# and must download the torrent into $3 (a single-file torrent lands at $3/<name>) and exit 0 once
# every piece is verified, non-zero on failure. It runs under measure(), so its CPU is counted if
# every process it starts is its descendant and waited for (a background host counts only if it
# is stopped and reaped inside the function; otherwise write "cpu_seconds=<s>" into $4, e.g. from
# the host's cgroup or cpu_seconds_tree, and it is used instead). It may also write
# "download_seconds=<s>" into $4 to report the download time without its start-up.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/bittorrent-common.sh
. "$ROOT/bench/bittorrent-common.sh"
PY=/usr/bin/python3   # Debian's python3-libtorrent is for the system interpreter, not pyenv's
PEERS=$ROOT/Tests/peers
SIZE=${BT_SIZE:-1GiB}
PIECE=${BT_PIECE:-1MiB}
LEECHERS=${LEECHERS:-"libtorrent peerhost"}
TIMEOUT=${BT_TIMEOUT:-300}
SEEDER_CPU=${SEEDER_CPU:-0}
LEECHER_CPU=${LEECHER_CPU:-1}
PIN=${BT_PIN:-1}
OWN_DIR=""
if [[ -z "${BT_DIR:-}" ]]; then BT_DIR=$(mktemp -d /var/tmp/peerhost-bt-bench.XXXXXX); OWN_DIR=$BT_DIR; fi
mkdir -p "$BT_DIR"
SEEDER_PID=""
cleanup() {
  if [[ -n "$SEEDER_PID" ]]; then kill "$SEEDER_PID" 2>/dev/null || true; wait "$SEEDER_PID" 2>/dev/null || true; fi
  if [[ -n "$OWN_DIR" ]]; then rm -rf "$OWN_DIR"; fi
}
trap cleanup EXIT

pin() { # $1 cpu, rest: command
  local cpu=$1; shift
  if [[ "$PIN" == 1 ]] && command -v taskset >/dev/null; then taskset -c "$cpu" "$@"; else "$@"; fi
}


# measure OUT CMD...: runs CMD, writes wall= user= sys= exit= to OUT (rusage of the waited tree).
measure() {
  local out=$1; shift
  "$PY" - "$out" "$@" <<'EOF'
import os, resource, subprocess, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
t0 = time.monotonic()
before = resource.getrusage(resource.RUSAGE_CHILDREN)
code = subprocess.call(cmd)
after = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(out, "a") as f:
    f.write(f"wall={time.monotonic() - t0:.3f}\nuser={after.ru_utime - before.ru_utime:.3f}\n"
            f"sys={after.ru_stime - before.ru_stime:.3f}\nexit={code}\n")
sys.exit(code)
EOF
}

# ---- leechers ------------------------------------------------------------------------------
leecher_libtorrent() { # torrent seeder outdir resultfile
  local log=$4.log
  pin "$LEECHER_CPU" "$PY" "$PEERS/lt_peer.py" --torrent "$1" --save "$3" --peer "$2" \
    --exit-when-complete --timeout "$TIMEOUT" --interval 5 >"$log" 2>&1 || { tail -5 "$log" >&2; return 1; }
  "$PY" -c 'import json,sys
done=[json.loads(l) for l in open(sys.argv[1]) if l.startswith("{") and "\"done\"" in l][-1]
print("download_seconds=%s" % done["download_seconds"])' "$log" >>"$4"
}

# The Peerhost leecher: `peerhost run` (release build) with the bittorrent plugin on a temporary
# config, pinned to $LEECHER_CPU (its runner inherits the pinning), the manifest copied with a
# loopback connect grant and signed with the checkout's dev key; then
# `peerhost ctl bittorrent add TORRENT --dir OUT --peer SEEDER --wait`. CPU = host + runner (the
# process tree sampled before the add and after completion), download seconds = the plugin's own
# (`ctl bittorrent info`: from the add to the last piece written), as libtorrent's are its own:
# the CLI's start-up and its 0.2 s polling are not the download.
leecher_peerhost() { # torrent seeder outdir resultfile
  local bin=${PEERHOST_BIN:-$ROOT/.build/release/peerhost}
  local work; work=$(mktemp -d /tmp/peerhost-bt-leech.XXXXXX)
  local port; port=$(free_port)
  # No LPD: a benchmark must not multicast announces onto this machine's LAN.
  write_peerhost_bt_config "$work" "$bin" "$port" "lpd = false"
  # Started directly (not through the pin function, whose subshell would be $!): the TERM below
  # must reach the host itself, or it outlives the bench.
  if [[ "$PIN" == 1 ]] && command -v taskset >/dev/null; then
    taskset -c "$LEECHER_CPU" "$bin" run --config "$work/peerhost.toml" >"$4.log" 2>&1 &
  else
    "$bin" run --config "$work/peerhost.toml" >"$4.log" 2>&1 &
  fi
  local host=$!
  for _ in $(seq 1 300); do [[ -f $work/data/run.json ]] && break; sleep 0.1; done
  sleep 1   # the plugin's start
  local cpu0 t0 t1 cpu1 rc=0
  cpu0=$(cpu_seconds_tree "$host"); t0=$(date +%s.%N)
  "$bin" ctl bittorrent add "$1" --dir "$3" --peer "$2" --wait --timeout "$TIMEOUT" --config "$work/peerhost.toml" >>"$4.log" 2>&1 || rc=$?
  t1=$(date +%s.%N); cpu1=$(cpu_seconds_tree "$host")
  local id info=""
  id=$(awk '$1 == "added" { print $2; exit }' "$4.log")
  [[ $rc == 0 && -n $id ]] && info=$("$bin" ctl bittorrent info "$id" --config "$work/peerhost.toml" 2>>"$4.log")
  kill -TERM "$host"; wait "$host" || true
  rm -rf "$work"
  [[ $rc == 0 ]] || { tail -5 "$4.log" >&2; return 1; }
  echo "$info" | "$PY" -c 'import json, sys; print("download_seconds=%.3f" % json.load(sys.stdin)["download_seconds"])' >>"$4" ||
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "download_seconds=%.3f\n", b - a }' >>"$4"
  awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "cpu_seconds=%.3f\n", b - a }' >>"$4"
}

# ---- run -----------------------------------------------------------------------------------
echo "== bittorrent: $SIZE file, $PIECE pieces, in $BT_DIR" >&2
"$PY" -c 'import libtorrent' 2>/dev/null || { echo "python3-libtorrent missing: make test-deps" >&2; exit 1; }
SRC=$BT_DIR/seed
mkdir -p "$SRC"
t0=$(date +%s.%N)
WANT=$(cd "$PEERS" && "$PY" -c 'import sys, make_content; print(make_content.parse_size(sys.argv[1]))' "$SIZE")
# A BT_DIR kept from an earlier run keeps its file (same size, same deterministic bytes).
if [[ ! -f "$SRC/bench.bin" || $(stat -c %s "$SRC/bench.bin") != "$WANT" ]]; then
  "$PY" "$PEERS/make_content.py" file "$SRC/bench.bin" --size "$SIZE" >/dev/null
fi
TORRENT=$BT_DIR/bench.torrent
INFO=$("$PY" "$PEERS/make_content.py" torrent "$SRC/bench.bin" --out "$TORRENT" --piece-length "$PIECE")
BYTES=$(echo "$INFO" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["total_size"])')
echo "   content + torrent: $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s, $BYTES bytes, $(echo "$INFO" | "$PY" -c 'import json,sys; d=json.load(sys.stdin); print(d["num_pieces"], "pieces, infohash", d["info_hash"])')" >&2

pin "$SEEDER_CPU" "$PY" "$PEERS/lt_peer.py" --torrent "$TORRENT" --save "$SRC" --seed --timeout 3600 --interval 5 \
  >"$BT_DIR/seeder.log" 2>&1 &
SEEDER_PID=$!
for _ in $(seq 1 600); do grep -q '"ready"' "$BT_DIR/seeder.log" && break
  kill -0 "$SEEDER_PID" 2>/dev/null || { cat "$BT_DIR/seeder.log" >&2; exit 1; }; sleep 0.2; done
SEED_PORT=$("$PY" -c 'import json,sys
print([json.loads(l) for l in open(sys.argv[1]) if "\"ready\"" in l][0]["port"])' "$BT_DIR/seeder.log")
echo "   seeder ready on 127.0.0.1:$SEED_PORT (data checked)" >&2

# Each leecher runs in a child bash (so measure() sees its whole process tree).
export -f pin cpu_seconds_tree cpu_ticks_tree write_peerhost_bt_config free_port
for name in $LEECHERS; do
  declare -F "leecher_$name" >/dev/null || { echo "no function leecher_$name in $0" >&2; exit 2; }
  export -f "leecher_$name"
done
export PY PEERS PIN LEECHER_CPU TIMEOUT ROOT
ROWS=""
for name in $LEECHERS; do
  out=$BT_DIR/leech-$name
  rm -rf "$out"; mkdir -p "$out"
  res=$BT_DIR/result-$name
  : >"$res"
  echo "== leecher $name" >&2
  sync
  if ! measure "$res" bash -c 'leecher_'"$name"' "$@"' _ "$TORRENT" "127.0.0.1:$SEED_PORT" "$out" "$res"; then
    echo "   $name FAILED (exit $(grep '^exit=' "$res" | cut -d= -f2))" >&2
    ROWS+="| $name | failed | | | | |"$'\n'
    continue
  fi
  got=$(find "$out" -type f -name bench.bin | head -1)
  if [[ -z "$got" ]] || ! cmp -s "$SRC/bench.bin" "$got"; then
    echo "   $name: downloaded file differs from the source (or is missing): $got" >&2
    exit 1
  fi
  # shellcheck disable=SC1090
  eval "$(grep -E '^(wall|user|sys|download_seconds|cpu_seconds)=' "$res" | sed 's/^/local_/')"
  secs=${local_download_seconds:-$local_wall}
  cpu=${local_cpu_seconds:-$(awk -v u="$local_user" -v s="$local_sys" 'BEGIN{print u+s}')}
  row=$(awk -v n="$name" -v b="$BYTES" -v t="$secs" -v w="$local_wall" -v c="$cpu" 'BEGIN {
    printf "| %s | %.1f | %.2f | %.2f | %.2f | %.2f |", n, b / t / 1e6, t, w, c, c / (b / 1073741824) }')
  echo "   $row" >&2
  ROWS+="$row"$'\n'
  unset local_wall local_user local_sys local_download_seconds local_cpu_seconds
  rm -rf "$out"
done

TABLE="| leecher | MB/s | download s | wall s | CPU s | CPU s/GiB |
|---|---:|---:|---:|---:|---:|
$ROWS"
echo "$TABLE"
if [[ -n "${BT_REPORT:-}" ]]; then
  {
    echo "## BitTorrent: $SIZE from a libtorrent $("$PY" -c 'import libtorrent; print(libtorrent.__version__)') seeder over TCP on loopback"
    echo
    echo "bench/bittorrent.sh: $BYTES bytes, $PIECE pieces, v1 torrent; seeder (lt_peer.py, data checked and"
    echo "in the page cache) $( [[ "$PIN" == 1 ]] && echo "on CPU $SEEDER_CPU, each leecher on CPU $LEECHER_CPU" || echo "and leechers unpinned"),"
    echo "connecting by address (no tracker/DHT, uTP off); every download compared byte for byte."
    echo "MB/s = bytes / download seconds (10^6 B); CPU = user+system of the leecher's processes."
    echo
    echo "$TABLE"
  } >>"$BT_REPORT"
fi
