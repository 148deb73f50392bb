#!/usr/bin/env bash
# bench/bittorrent-swarm.sh — swarm behaviour: SWARM_PEERS peers share a SWARM_SIZE torrent through
# opentracker on loopback. One libtorrent seeder with its upload capped (SWARM_SEED_RATE), so the
# leechers must trade pieces among themselves; SWARM_PEERS - 2 libtorrent leechers and one Peerhost
# leecher, all started together. Every leecher stays in the swarm until the last one is done.
#
#   bench/bittorrent-swarm.sh                  # standalone: prints a table (SWARM_REPORT gets Markdown)
#   SECTIONS=bittorrent_swarm bench/run.sh     # as the `bittorrent_swarm` section of `make bench`
#
# Reported: download seconds of the Peerhost leecher against the libtorrent leechers' median and
# 90th percentile, each from the moment it joined to its last piece (lt_peer.py's "complete"
# event counts from its own start; Peerhost's `ctl bittorrent info` download_seconds from the add:
# 48 Python processes starting at once on a small machine delay a CLI by seconds, so the wall time
# of `ctl … add --wait` would measure the machine, not the client), bytes each uploaded to the swarm (share ratio = uploaded / size:
# a leecher that only takes has 0), Peerhost's CPU seconds (host + runner, from /proc) against the
# libtorrent leechers' median (each its own process), all read when the last leecher completes. Every
# download is compared with the source byte for byte.
#
# Environment: SWARM_PEERS (default 50), SWARM_SIZE (64MiB), SWARM_PIECE (256KiB),
# SWARM_SEED_RATE (seeder upload bytes/s, default 8000000), SWARM_TIMEOUT (seconds, default 600),
# SWARM_DIR (work folder, default a new one under /var/tmp), PEERHOST_BIN (default the release build).
# Everything listens on 127.0.0.1; nothing is pinned (50 processes share the machine's CPUs).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/bittorrent-common.sh
. "$ROOT/bench/bittorrent-common.sh"
PY=/usr/bin/python3
PEERS_DIR=$ROOT/Tests/peers
N=${SWARM_PEERS:-50}
SIZE=${SWARM_SIZE:-64MiB}
PIECE=${SWARM_PIECE:-256KiB}
SEED_RATE=${SWARM_SEED_RATE:-8000000}
TIMEOUT=${SWARM_TIMEOUT:-600}
BIN=${PEERHOST_BIN:-$ROOT/.build/release/peerhost}
(( N >= 3 )) || { echo "SWARM_PEERS must be at least 3 (a seeder, a libtorrent leecher, Peerhost)" >&2; exit 2; }
[[ -x "$BIN" ]] || { echo "no peerhost binary at $BIN (make build, or set PEERHOST_BIN)" >&2; exit 2; }
OT=$(command -v opentracker || true)
[[ -n "$OT" ]] || { echo "opentracker missing: make test-deps" >&2; exit 2; }
"$PY" -c 'import libtorrent' 2>/dev/null || { echo "python3-libtorrent missing: make test-deps" >&2; exit 2; }

OWN_DIR=""
if [[ -z "${SWARM_DIR:-}" ]]; then SWARM_DIR=$(mktemp -d /var/tmp/peerhost-swarm.XXXXXX); OWN_DIR=$SWARM_DIR; fi
mkdir -p "$SWARM_DIR"
PIDS=()
HOST_PID=""
cleanup() {
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  [[ -n "$HOST_PID" ]] && kill -TERM "$HOST_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  [[ -n "$OWN_DIR" ]] && rm -rf "$OWN_DIR"
}
trap cleanup EXIT

echo "== bittorrent swarm: $N peers, $SIZE, $PIECE pieces, seeder capped at $SEED_RATE B/s, in $SWARM_DIR" >&2
SRC=$SWARM_DIR/seed
mkdir -p "$SRC"
"$PY" "$PEERS_DIR/make_content.py" file "$SRC/swarm.bin" --size "$SIZE" >/dev/null
TRACKER_PORT=$(free_port)
ANNOUNCE="http://127.0.0.1:$TRACKER_PORT/announce"
TORRENT=$SWARM_DIR/swarm.torrent
INFO=$("$PY" "$PEERS_DIR/make_content.py" torrent "$SRC/swarm.bin" --out "$TORRENT" --piece-length "$PIECE" --tracker "$ANNOUNCE")
HASH=$(echo "$INFO" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["info_hash"])')
BYTES=$(echo "$INFO" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["total_size"])')

# opentracker: an absolute, world-readable whitelist; cwd / (it chroots to "."); SIGINT stops it.
echo "$HASH" >"$SWARM_DIR/whitelist"
chmod 644 "$SWARM_DIR/whitelist"; chmod 755 "$SWARM_DIR"
(cd / && exec "$OT" -i 127.0.0.1 -p "$TRACKER_PORT" -P "$TRACKER_PORT" -w "$SWARM_DIR/whitelist") >"$SWARM_DIR/tracker.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 50); do "$PY" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$TRACKER_PORT" 2>/dev/null && break; sleep 0.1; done

"$PY" "$PEERS_DIR/lt_peer.py" --torrent "$TORRENT" --save "$SRC" --seed --tracker "$ANNOUNCE" --reannounce-every 5 \
  --upload-limit "$SEED_RATE" --timeout "$TIMEOUT" --interval 5 >"$SWARM_DIR/seeder.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 600); do grep -q '"ready"' "$SWARM_DIR/seeder.log" && break; sleep 0.1; done
grep -q '"ready"' "$SWARM_DIR/seeder.log" || { tail -5 "$SWARM_DIR/seeder.log" >&2; exit 1; }

# The Peerhost host first (its start-up is not swarm time), then everyone at once.
work=$SWARM_DIR/peerhost
mkdir -p "$work"
port=$(free_port)
write_peerhost_bt_config "$work" "$BIN" "$port" "lpd = false, dht = false, max_peers_per_torrent = 60"
"$BIN" run --config "$work/peerhost.toml" >"$work/host.log" 2>&1 &
HOST_PID=$!
for _ in $(seq 1 300); do [[ -f $work/data/run.json ]] && break; sleep 0.1; done
sleep 1

T0=$(date +%s.%N)
LT=()
for i in $(seq 1 $((N - 2))); do
  mkdir -p "$SWARM_DIR/lt$i"
  "$PY" "$PEERS_DIR/lt_peer.py" --torrent "$TORRENT" --save "$SWARM_DIR/lt$i" --tracker "$ANNOUNCE" --reannounce-every 10 \
    --timeout "$TIMEOUT" --interval 2 >"$SWARM_DIR/lt$i.log" 2>&1 &
  LT+=($!); PIDS+=($!)
done
mkdir -p "$SWARM_DIR/ph"
CPU0=$(cpu_seconds_tree "$HOST_PID")
rc=0
"$BIN" ctl bittorrent add "$TORRENT" --dir "$SWARM_DIR/ph" --wait --timeout "$TIMEOUT" --config "$work/peerhost.toml" \
  >"$work/add.log" 2>&1 || rc=$?
PH_SECONDS=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}')
[[ $rc == 0 ]] || { echo "peerhost leecher failed:" >&2; tail -5 "$work/add.log" >&2; exit 1; }
cmp -s "$SRC/swarm.bin" "$SWARM_DIR/ph/swarm.bin" || { echo "peerhost's download differs from the source" >&2; exit 1; }
echo "   peerhost complete $PH_SECONDS s after the swarm started" >&2

# Wait for every libtorrent leecher to be complete (they keep seeding until SWARM_TIMEOUT), then
# read everyone's CPU at the same moment: all of them were in the swarm for the same time.
deadline=$(( $(date +%s) + TIMEOUT ))
while :; do
  left=0
  for n in $(seq 1 $((N - 2))); do grep -q '"event":"complete"' "$SWARM_DIR/lt$n.log" 2>/dev/null || left=$((left + 1)); done
  (( left == 0 )) && break
  (( $(date +%s) < deadline )) || { echo "$left libtorrent leechers incomplete after ${TIMEOUT}s" >&2; exit 1; }
  sleep 1
done
SWARM_SECONDS=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}')
LT_CPU=()
for p in "${LT[@]}"; do LT_CPU+=("$(cpu_seconds_tree "$p")"); done
CPU1=$(cpu_seconds_tree "$HOST_PID")
INFO_JSON=$("$BIN" ctl bittorrent info "$HASH" --config "$work/peerhost.toml")
for i in $(seq 1 $((N - 2))); do
  cmp -s "$SRC/swarm.bin" "$SWARM_DIR/lt$i/swarm.bin" || { echo "libtorrent leecher $i: download differs" >&2; exit 1; }
done

# Figures: libtorrent completion seconds (its "complete" event counts from its own start, which is
# within a few tenths of T0), uploads from its last status line (every 2 s).
SUMMARY=$("$PY" - "$SWARM_DIR" "$((N - 2))" "$BYTES" "$PH_SECONDS" "$INFO_JSON" "$CPU0" "$CPU1" "$SWARM_SECONDS" "${LT_CPU[@]}" <<'EOF'
import json, statistics, sys
d, n, size, ph_s, info, cpu0, cpu1 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), json.loads(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
swarm_s = float(sys.argv[8])
lt_cpu = [float(x) for x in sys.argv[9:]]
done_s, up = [], []
for i in range(1, n + 1):
    events = [json.loads(l) for l in open(f"{d}/lt{i}.log") if l.startswith("{")]
    complete = [e for e in events if e.get("event") == "complete"]
    done_s.append(complete[0]["seconds"])
    statuses = [e for e in events if e.get("event") == "status"]
    up.append(statuses[-1]["total_upload"] if statuses else 0)
q = statistics.quantiles(done_s, n=10, method="inclusive")
ph_up = info.get("uploaded", 0)
ph_s = info["download_seconds"]
print(json.dumps({
    "lt_median_s": statistics.median(done_s), "lt_p90_s": q[8], "lt_min_s": min(done_s), "lt_max_s": max(done_s),
    "ph_s": ph_s, "ph_up_ratio": ph_up / size, "lt_up_ratio_median": statistics.median(up) / size,
    "lt_up_ratio_max": max(up) / size, "ph_cpu": cpu1 - cpu0, "lt_cpu_median": statistics.median(lt_cpu),
    "swarm_s": swarm_s, "ph_hash_failures": info.get("hash_failures", 0)}))
EOF
)
TABLE=$(echo "$SUMMARY" | "$PY" -c '
import json, sys
s = json.load(sys.stdin)
print("| leecher | download s | uploaded (× size) | CPU s |")
print("|---|---:|---:|---:|")
print("| Peerhost | %.1f | %.2f | %.2f |" % (s["ph_s"], s["ph_up_ratio"], s["ph_cpu"]))
print("| libtorrent, median | %.1f | %.2f | %.2f |" % (s["lt_median_s"], s["lt_up_ratio_median"], s["lt_cpu_median"]))
print("| libtorrent, 90th percentile / max | %.1f / %.1f | max %.2f | |" % (s["lt_p90_s"], s["lt_max_s"], s["lt_up_ratio_max"]))
print()
print("Peerhost vs the libtorrent median: %.2f× the completion time, %.2f× the uploaded bytes, %.2f× the CPU; "
      "the whole swarm was complete after %.1f s; Peerhost had %d hash failures." % (
    s["ph_s"] / s["lt_median_s"], s["ph_up_ratio"] / max(s["lt_up_ratio_median"], 1e-9),
    s["ph_cpu"] / max(s["lt_cpu_median"], 1e-9), s["swarm_s"], s["ph_hash_failures"]))
')
echo "$TABLE"
if [[ -n "${SWARM_REPORT:-}" ]]; then
  {
    echo "## BitTorrent swarm: $N peers × $SIZE through opentracker on loopback"
    echo
    echo "bench/bittorrent-swarm.sh: one libtorrent $("$PY" -c 'import libtorrent; print(libtorrent.__version__)') seeder capped at $SEED_RATE B/s,"
    echo "$((N - 2)) libtorrent leechers and one Peerhost leecher started together ($PIECE pieces, TCP, unpinned);"
    echo "download seconds from joining to the last piece; uploaded = bytes given to the swarm / torrent size;"
    echo "CPU = user+system seconds of each leecher's processes until the last leecher completed."
    echo
    echo "$TABLE"
  } >>"$SWARM_REPORT"
fi
