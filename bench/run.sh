#!/usr/bin/env bash
# bench/run.sh — what `make bench` runs. Builds release, builds the C baselines OUTSIDE the tree
# (../shared/baselines is read-only in CI), measures everything in ONE run and writes
# bench/BENCHMARKS.md with ratios against the baselines of that same run (these machines are shared
# and swing ±15–25% between periods, so only same-run ratios mean anything). Never gates tests.
#
# Pluggable: add a TCP echo server with one line in ECHO_SERVERS ("label|command with @PORT@"),
# and a section with a function named section_<name> listed in SECTIONS.
#   BENCH_SECS   seconds per measurement (default 3; tcpclient adds 1 s warm-up)
#   BENCH_CONNS  connection counts for request/response (default "1 64 1000")
#   SECTIONS     sections to run (default "tcp_echo rings peerhost_ring shaper store bittorrent bittorrent_swarm")
#   BASELINES_OUT where the C baselines are built (default /tmp/peerhost-baselines)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${BENCH_SECS:-3}
CONNS=${BENCH_CONNS:-"1 64 1000"}
SECTIONS=${SECTIONS:-"tcp_echo rings peerhost_ring shaper store bittorrent bittorrent_swarm"}
BASE=${BASELINES_OUT:-/tmp/peerhost-baselines}
SHARED=${SHARED_DIR:-$ROOT/../shared}
OUT=${BENCH_OUT:-$ROOT/bench/BENCHMARKS.md}
WORK=$(mktemp -d /tmp/peerhost-bench.XXXXXX)
trap 'stop_server; rm -rf "$WORK"' EXIT
ulimit -n 65536 2>/dev/null || true

# Server on CPU 0, load generator on CPU 1 (2-core machine: they share the box either way; pinning
# keeps the split the same for every server so the ratios compare like with like).
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

echo "== building release (everything: host, runner, plugins, benches) and the C baselines in $BASE" >&2
swift build -c release >&2
BIN=$(swift build -c release --show-bin-path)
# The host refuses unsigned plugins: sign the ones just built with this checkout's dev key (docs/signing.md).
make -s -C "$ROOT" sign-dev BIN="$BIN/peerhost" >&2
make -s -C "$SHARED/baselines" OUT="$BASE" >&2

# label|command; @PORT@ is replaced. The first entry is the baseline for the ratios.
# The lead appends e.g. "plugin echo-c (peerhost)|$BIN/peerhost run --config … @PORT@".
ECHO_SERVERS=(
  "C io_uring (uring_echo)|$BASE/uring_echo @PORT@"
  "C epoll (epoll_echo)|$BASE/epoll_echo @PORT@"
  "peerhost direct io_uring (peerhost-bench uring-echo)|$BIN/peerhost-bench uring-echo @PORT@"
  "SwiftNIO 1 thread (peerhost-bench nio-echo)|$BIN/peerhost-bench nio-echo @PORT@"
)
# The plugin path: `peerhost run` with one echo plugin; the client talks to the plugin's granted port
# (a third field fixes the port: manifests grant 7001/7002 only). Not pinned: the core's loop and
# the plugin's runner are two processes and need both CPUs, as the client does.
PLUGIN_CONFIG="$WORK/peerhost-bench.toml"
cat >"$PLUGIN_CONFIG" <<EOF2
[host]
data_dir = "$WORK/data"
http = "127.0.0.1:0"
log_level = "warning"

[security]
trust = ["$ROOT/.peerhost-dev"]

[[plugin]]
name = "echo-c"
manifest = "$ROOT/plugins/echo-c/manifest.toml"

[[plugin]]
name = "echo-swift"
manifest = "$ROOT/plugins/echo-swift/manifest.toml"
EOF2
# The same with spin_us = 50 (default 5): what spinning costs when the load shares the cores.
PLUGIN_CONFIG_SPIN50="$WORK/peerhost-bench-spin50.toml"
sed -e 's/^log_level = "warning"$/log_level = "warning"\n\n[tuning]\nspin_us = 50/' -e "s#$WORK/data#$WORK/data50#" "$PLUGIN_CONFIG" >"$PLUGIN_CONFIG_SPIN50"
ECHO_SERVERS+=(
  "peerhost plugin path: echo-c (C plugin)|$BIN/peerhost run --config $PLUGIN_CONFIG|7001|unpinned"
  "peerhost plugin path: echo-c, spin_us = 50|$BIN/peerhost run --config $PLUGIN_CONFIG_SPIN50|7001|unpinned"
  "peerhost plugin path: echo-swift (Swift SDK plugin)|$BIN/peerhost run --config $PLUGIN_CONFIG|7002|unpinned"
)
if [[ -n "${EXTRA_ECHO_SERVERS:-}" ]]; then
  while IFS= read -r line; do [[ -n "$line" ]] && ECHO_SERVERS+=("$line"); done <<<"$EXTRA_ECHO_SERVERS"
fi

SERVER_PID=""
stop_server() {
  if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""; fi
}
start_server() { # $1 command with @PORT@, $2 port, $3 "unpinned" to use every CPU
  local cmd=${1//@PORT@/$2}
  if [[ "${3:-}" == unpinned ]]; then
    $cmd >>"$WORK/server.log" 2>&1 &
  else
    taskset -c "$SERVER_CPU" $cmd 2>>"$WORK/server.log" &
  fi
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$2") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "server did not start: $cmd" >&2; return 1
}
cpu_ticks() { # utime+stime of a pid and its runner children, in clock ticks
  local total=0 p
  for p in $1 $(pgrep -P "$1" 2>/dev/null); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
field() { # $1 key, stdin: a tcpclient line → value of key=
  tr ' ' '\n' | awk -F= -v k="$1" '$1 == k {print $2}'
}

TCP_RESULTS="$WORK/tcp.tsv"   # label, kind, conns, rate, p50, p99, server_us_per_req
section_tcp_echo() {
  local port=19000
  : >"$TCP_RESULTS"
  local hz; hz=$(getconf CLK_TCK)
  for entry in "${ECHO_SERVERS[@]}"; do
    local label cmd fixed pin
    IFS='|' read -r label cmd fixed pin <<<"$entry"
    port=$((port + 1))
    local p=${fixed:-$port}
    echo "== $label" >&2
    start_server "$cmd" "$p" "$pin" || continue
    for n in $CONNS; do
      local t0 t1 line
      t0=$(cpu_ticks "$SERVER_PID")
      line=$("$BASE/tcpclient" rr "$p" "$n" "$SECS" "$CLIENT_CPU" 2>&1 | tail -1) || line="FAILED $line"
      t1=$(cpu_ticks "$SERVER_PID")
      echo "   rr $n: $line" >&2
      local rps p50 p99
      rps=$(echo "$line" | field req_per_s); p50=$(echo "$line" | field p50); p99=$(echo "$line" | field p99)
      # server CPU per request over warm-up + measurement (an upper bound; the ratio is what matters)
      local us="-"
      if [[ -n "$rps" && "$rps" != "0" ]]; then
        us=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v r="$rps" -v s="$SECS" 'BEGIN { printf "%.2f", d / hz * 1e6 / (r * (s + 1)) }')
      fi
      printf '%s\trr\t%s\t%s\t%s\t%s\t%s\n' "$label" "$n" "${rps:-0}" "${p50:--}" "${p99:--}" "$us" >>"$TCP_RESULTS"
    done
    local line
    line=$("$BASE/tcpclient" bulk "$p" "$SECS" "$CLIENT_CPU" 2>&1 | tail -1) || true
    echo "   bulk: $line" >&2
    printf '%s\tbulk\t1\t%s\t-\t-\t-\n' "$label" "$(echo "$line" | field echoed_GB_per_s)" >>"$TCP_RESULTS"
    stop_server
  done
  {
    echo "## TCP echo over loopback (64 B request/response, closed loop; bulk = 1 connection, 64 KiB writes)"
    echo
    echo "Server pinned to CPU $SERVER_CPU, tcpclient to CPU $CLIENT_CPU, ${SECS} s each after 1 s warm-up."
    echo "Ratios are against the first row's server (C io_uring) and against the direct io_uring echo on"
    echo "Peerhost's own loop, both measured in this run."
    echo
    echo "| server | load | req/s or GB/s | p50 µs | p99 µs | server CPU µs/req | vs C io_uring | vs peerhost direct |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' '
      { key = $2 "/" $3; rows[NR] = $0; if (!(key in base)) base[key] = $4
        if ($1 ~ /^peerhost direct/) direct[key] = $4 }
      END { for (i = 1; i <= NR; i++) { split(rows[i], f, "\t"); key = f[2] "/" f[3]
              load = (f[2] == "rr") ? f[3] " conns" : "bulk"
              r1 = (base[key] > 0) ? sprintf("%.2f×", f[4] / base[key]) : "-"
              r2 = (direct[key] > 0) ? sprintf("%.2f×", f[4] / direct[key]) : "-"
              printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", f[1], load, f[4], f[5], f[6], f[7], r1, r2 } }' "$TCP_RESULTS"
    echo
  } >>"$WORK/report.md"
}

section_rings() {
  echo "== shmring / sockbench" >&2
  local lines=()
  lines+=("$("$BASE/shmring" tput 64 2 2>&1 | tail -1)")
  lines+=("$("$BASE/shmring" tput 4096 2 2>&1 | tail -1)")
  lines+=("$("$BASE/shmring" pp busy 200000 2>&1 | tail -1)")
  lines+=("$("$BASE/shmring" pp efd 50000 2>&1 | tail -1)")
  lines+=("$("$BASE/sockbench" tput seqpacket 64 2 2>&1 | tail -1)")
  lines+=("$("$BASE/sockbench" pp stream 50000 2>&1 | tail -1)")
  local shm64 sock64
  shm64=$(echo "${lines[0]}" | field msgs_per_s); sock64=$(echo "${lines[4]}" | field msgs_per_s)
  {
    echo "## Ring limits of this machine (C baselines: memfd SPSC ring vs socketpair)"
    echo
    echo "PeerhostRing's own figures follow in the next section, with ratios against these lines."
    echo
    echo '```'
    printf '%s\n' "${lines[@]}"
    echo '```'
    echo
    if [[ -n "$shm64" && -n "$sock64" && "$sock64" != "0" ]]; then
      awk -v a="$shm64" -v b="$sock64" 'BEGIN { printf "C ring vs socketpair at 64 B one-way: %.1f×\n\n", a / b }'
    fi
  } >>"$WORK/report.md"
}

section_peerhost_ring() {
  echo "== PeerhostRing (peerhost-ringbench) against the C baselines" >&2
  local rb="$BIN/peerhost-ringbench" secs=2
  local tput busy efd
  tput=$("$rb" tput 2 | tail -1); busy=$("$rb" rtt busy 200000 | tail -1); efd=$("$rb" rtt efd 20000 | tail -1)
  local sock shm sockpp ours
  sock=$("$BASE/sockbench" tput seqpacket 64 2 2>&1 | tail -1 | field msgs_per_s)
  shm=$("$BASE/shmring" tput 64 2 2>&1 | tail -1 | field msgs_per_s)
  sockpp=$("$BASE/sockbench" pp stream 50000 2>&1 | tail -1)
  ours=$(echo "$tput" | field msgs_per_s)
  {
    echo "## PeerhostRing between two processes (64-byte descriptors)"
    echo
    echo "One side is this repository's RingView in Swift, the other a forked C peer using the same"
    echo "ph_ring.h, each pinned to its own CPU."
    echo
    echo '```'
    echo "$tput"; echo "$busy"; echo "$efd"
    echo "socketpair closed loop (sockbench pp stream): $sockpp"
    echo '```'
    echo
    awk -v a="$ours" -v b="$sock" -v c="$shm" 'BEGIN {
      if (b > 0) printf "One-way: PeerhostRing %.1f M msgs/s = %.0f× the socketpair (seqpacket, 64 B, %.2f M/s)", a / 1e6, a / b, b / 1e6
      if (c > 0) printf " and %.1f× the C reference ring (shmring tput 64, %.1f M/s; it copies 64 B payloads per message, ours moves 64 B descriptors).\n\n", a / c, c / 1e6 }'
    echo "### Adaptive wait: open loop, p50 / p99 µs and CPU % of both processes (200 = both cores)"
    echo
    echo "Each side spins SPIN_US after its last message, then sleeps on its eventfd. Latency is from"
    echo "publishing a request to reading its answer. The socketpair column runs the same open loop over"
    echo "a Unix socketpair with both sides blocking in the kernel."
    echo
    echo "| rate req/s | socketpair | spin 0 | spin 5 (default) | spin 50 | spin 200 |"
    echo "|---:|---|---|---|---|---|"
    local rate spin line row
    for rate in 1000 10000 50000 100000; do
      line=$("$rb" rtt socketpair "$rate" "$secs" | tail -1)
      row="| $rate | $(echo "$line" | field p50_us) / $(echo "$line" | field p99_us), $(echo "$line" | field cpu_percent)%"
      for spin in 0 5 50 200; do
        line=$("$rb" rtt adaptive "$rate" "$secs" "$spin" | tail -1)
        row="$row | $(echo "$line" | field p50_us) / $(echo "$line" | field p99_us), $(echo "$line" | field cpu_percent)%"
      done
      echo "$row |"
    done
    echo
    echo "Idle (one message, then nothing for 2 s), CPU % of both processes:"
    for spin in 5 50; do echo "- spin $spin: $("$rb" idle 2 "$spin" | tail -1 | field cpu_percent)%"; done
    echo
  } >>"$WORK/report.md"
}

# The shaper's cost: the plugin echo path with shaping on (global and plugin limits far above the
# load, so every send and receive goes through the buckets but never waits) against the same
# host with shaping off, alternating off/on twice in this run; the ratio is on/off of the sums.
section_shaper() {
  echo "== shaper: echo-c with shaping off vs on (limits far above the load)" >&2
  local off="$PLUGIN_CONFIG" on="$WORK/peerhost-bench-shaped.toml"
  sed -e "s#$WORK/data#$WORK/data-shaped#" "$PLUGIN_CONFIG" >"$on"
  printf '\n[shaping]\nup = "100GiB/s"\ndown = "100GiB/s"\n' >>"$on"
  sed -i -e 's#^manifest = "\(.*echo-c/manifest.toml\)"$#manifest = "\1"\nbandwidth = { up = "50GiB/s", down = "50GiB/s" }#' "$on"
  local n rows="" round cfg line rps
  for n in 1 64; do
    local sum_off=0 sum_on=0
    for round in 1 2; do
      for cfg in off on; do
        local file=$off; [[ $cfg == on ]] && file=$on
        start_server "$BIN/peerhost run --config $file" 7001 unpinned || continue
        line=$("$BASE/tcpclient" rr 7001 "$n" "$SECS" "$CLIENT_CPU" 2>&1 | tail -1) || line=""
        stop_server
        rps=$(echo "$line" | field req_per_s); rps=${rps:-0}
        echo "   $cfg rr $n (round $round): $line" >&2
        if [[ $cfg == off ]]; then sum_off=$(awk -v a="$sum_off" -v b="$rps" 'BEGIN{print a+b}'); else sum_on=$(awk -v a="$sum_on" -v b="$rps" 'BEGIN{print a+b}'); fi
      done
    done
    rows="$rows$(awk -v n="$n" -v a="$sum_off" -v b="$sum_on" 'BEGIN { printf "| %s conns | %.0f | %.0f | %s |\n", n, a / 2, b / 2, (a > 0) ? sprintf("%.2f×", b / a) : "-" }')"$'\n'
  done
  {
    echo "## Shaper cost: plugin echo path (echo-c), shaping on vs off"
    echo
    echo "64 B request/response, ${SECS} s per run, off/on alternated twice in this run (mean of the two)."
    echo "\"On\": [shaping] up/down = 100GiB/s and the plugin's bandwidth = 50GiB/s each way, so every send and"
    echo "receive takes tokens at all three levels but never waits. Target: on/off ≥ 0.95×."
    echo
    echo "| load | off req/s | on req/s | on/off |"
    echo "|---|---:|---:|---:|"
    printf '%s' "$rows"
    echo
  } >>"$WORK/report.md"
}

# The key-value store (KVStore through its API, in process) against raw SQLite via GRDB's raw SQL,
# same settings (WAL, synchronous=FULL, same table), same run. On the data disk, not a tmpfs: the
# fsyncs are what is measured. STORE_BENCH_DIR overrides the directory (default: beside $WORK).
section_store() {
  echo "== key-value store vs raw SQLite (peerhost-bench kv)" >&2
  local dir=${STORE_BENCH_DIR:-$WORK/kvbench} line
  line=$("$BIN/peerhost-bench" kv "$dir" "$SECS" | tail -1)
  echo "   $line" >&2
  local fs; fs=$(df -T "$WORK" | awk 'NR == 2 {print $2}')
  {
    echo "## Key-value store vs raw SQLite (100-byte values, WAL + synchronous=FULL, $fs)"
    echo
    echo "Rows measured ${SECS} s each in this run by \`peerhost-bench kv\` (Sources/peerhost-bench/KVBench.swift)."
    echo "\"Raw\" is GRDB's raw SQL on the same table; the store also reads the old size for the quota and"
    echo "updates the plugin's usage row in each transaction. \"In flight\" is the number of requests"
    echo "submitted and not yet acknowledged (one plugin with a window, or many plugins)."
    echo
    echo "| operation | ops/s | vs raw SQLite (puts: 1 per transaction; gets: 1 lookup) |"
    echo "|---|---:|---:|"
    echo "$line" | tr ' ' '\n' | awk -F= '
      { v[$1] = $2; order[NR] = $1 }
      END {
        label["raw_put"] = "raw SQLite put, 1 per transaction (1 fsync each)"
        label["raw_put_batch64"] = "raw SQLite put, 64 per transaction"
        label["raw_get"] = "raw SQLite get"
        label["store_put_nogroup"] = "store put, group commit off, 64 in flight"
        label["store_put_w1"] = "store put, group commit, 1 in flight"
        label["store_put_w64"] = "store put, group commit, 64 in flight"
        label["store_get_w1"] = "store get, 1 in flight"
        label["store_get_w64"] = "store get, 64 in flight"
        for (i = 1; i <= NR; i++) { k = order[i]; if (!(k in label)) continue
          base = (k ~ /get/) ? v["raw_get"] : v["raw_put"]
          printf "| %s | %.0f | %.2f× |\n", label[k], v[k], (base > 0) ? v[k] / base : 0 }
        printf "\nGroup commit with 64 in flight carried %.1f puts per transaction.\n", v["store_put_w64_requests_per_commit"]
        if (v["raw_put_batch64"] > 0) printf "Store put with group commit (64 in flight) vs raw 64-per-transaction: %.2f×.\n", v["store_put_w64"] / v["raw_put_batch64"]
      }'
    echo
  } >>"$WORK/report.md"
}

# BitTorrent: a 1 GiB download over TCP on loopback from one libtorrent seeder, by each leecher in
# LEECHERS (libtorrent; peerhost once wired), MB/s and CPU s/GiB (bench/bittorrent.sh, which
# documents its environment: BT_SIZE, BT_PIECE, BT_DIR, LEECHERS). About a minute per leecher here
# (1 GiB of content and hashing, the seeder's check, then the downloads), so it runs by default.
section_bittorrent() {
  echo "== bittorrent (bench/bittorrent.sh)" >&2
  BT_REPORT="$WORK/report.md" SEEDER_CPU=$SERVER_CPU LEECHER_CPU=$CLIENT_CPU "$ROOT/bench/bittorrent.sh" >&2
  echo >>"$WORK/report.md"
}

# BitTorrent swarm: 50 peers × 64 MiB through opentracker on loopback, the seeder capped so that
# leechers trade among themselves; Peerhost is one leecher (bench/bittorrent-swarm.sh documents
# SWARM_PEERS, SWARM_SIZE, SWARM_SEED_RATE). A few minutes: 49 Python processes share the CPUs.
section_bittorrent_swarm() {
  echo "== bittorrent_swarm (bench/bittorrent-swarm.sh)" >&2
  SWARM_REPORT="$WORK/report.md" "$ROOT/bench/bittorrent-swarm.sh" >&2
  echo >>"$WORK/report.md"
}

: >"$WORK/report.md"
for s in $SECTIONS; do "section_$s"; done
{
  echo "# Peerhost benchmarks"
  echo
  echo "Generated by \`make bench\` (bench/run.sh) on $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) CPUs."
  echo "Figures swing ±15–25% between runs on this shared 2-vCPU VM: read the ratios, which compare"
  echo "servers measured minutes apart in the same run."
  echo
  cat "$WORK/report.md"
} >"$OUT"
echo "wrote $OUT" >&2
