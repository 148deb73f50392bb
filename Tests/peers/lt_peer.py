#!/usr/bin/python3
"""One libtorrent 2.0 peer, driven from the command line, reporting JSON lines on stdout.

Run with /usr/bin/python3: Debian's python3-libtorrent is built for the system Python, not for a
pyenv or venv python3 that may come first on PATH.

    lt_peer.py --torrent F.torrent --save DIR --seed --listen 0 [--peer 127.0.0.1:6881]...
    lt_peer.py --magnet 'magnet:?xt=urn:btih:…' --save DIR --peer 127.0.0.1:6881 --exit-when-complete

What it prints (one JSON object per line, flushed at once; never anything else on stdout):
  {"event":"ready","port":P,"info_hash":"<40 hex>","seeding":bool,"dht_port":P|null}
        once it listens; with --seed only after the data was checked and every piece is there
        (a seeder whose data is incomplete ends with outcome "error" instead).
  {"event":"status","state":…,"progress":0..1,"download_rate":B/s,"upload_rate":B/s,
   "num_peers":N,"num_seeds":N,"total_done":B,"total_wanted":B,"total_download":B,
   "total_upload":B,"pieces":N,"num_pieces":N,"dht_nodes":N}        every --interval seconds
  {"event":"tracker_reply","url":U,"num_peers":N} / {"event":"tracker_error","url":U,"message":M}
  {"event":"dht_bootstrap"} / {"event":"metadata"} / {"event":"complete","seconds":S}
  {"event":"dht_reply","num_peers":N}   a DHT lookup for our torrent found peers
  {"event":"lsd_peer","peer":"ip:port"}   local service discovery found a peer (--lsd)
  {"event":"dht_announce","info_hash":H,"peer":"ip:port"}   a node announced H to us
  {"event":"peer_connected","peer":"ip:port"} / {"event":"peer_error","peer":…,"message":…}
  {"event":"hash_failed","piece":N} / {"event":"error","message":M}
  {"event":"done","outcome":O,…}   the last line. O is one of
        complete  (--exit-when-complete and every wanted piece is verified; exit 0)
        stopped   (SIGTERM/SIGINT, or the parent went away; exit 0)
        time_up   (--timeout reached while complete, e.g. a seeder's lifetime; exit 0)
        timeout   (--timeout reached while incomplete; exit 3)
        error     (bad arguments, a torrent/file error, a seeder without its data; exit 2)

Why these settings: tests run on loopback only (often in an empty network namespace), so LSD
(unless --lsd), UPnP and NAT-PMP are off; uTP is off both ways because libtorrent prefers uTP for outgoing
connections and uTP on loopback ran at about 5 MB/s here (TCP is what the tests exercise); every
peer shares 127.0.0.1, so several connections per IP are allowed and the DHT's per-IP
restrictions and rate-limit bans are lifted when --dht is on.
"""
import argparse
import json
import os
import re
import signal
import sys
import time

import libtorrent as lt

EXIT_OK, EXIT_ERROR, EXIT_TIMEOUT = 0, 2, 3


def emit(**fields):
    sys.stdout.write(json.dumps(fields, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def parse_endpoint(text, what):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"{what} '{text}' is not HOST:PORT")
    return host.strip("[]"), int(port)


class ArgumentError(ValueError):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):  # a JSON "done" line instead of argparse's exit 2 with usage text
        raise ArgumentError(message)


def parse_args(argv):
    p = Parser(description="one libtorrent peer for tests (see the module docstring)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--torrent", help=".torrent file")
    src.add_argument("--magnet", help="magnet URI (metadata fetched from peers, BEP 9)")
    p.add_argument("--save", help="save path (a multi-file torrent lands in SAVE/<name>/)")
    p.add_argument("--listen", type=int, default=0, help="TCP listen port (0: any free port; reported in 'ready')")
    p.add_argument("--bind", default="127.0.0.1", help="IP to listen on (default 127.0.0.1)")
    p.add_argument("--peer", action="append", default=[], help="HOST:PORT to connect to (repeatable)")
    p.add_argument("--reconnect-every", type=float, default=0,
                   help="seconds between new connect_peer calls for every --peer (0: once, at ready; "
                        "libtorrent then retries on its own backoff). For a peer that restarts.")
    p.add_argument("--seed", action="store_true", help="SAVE holds the data: check it, then serve it")
    p.add_argument("--dht", action="store_true", help="enable the DHT (on the listen port, UDP)")
    p.add_argument("--lsd", action="store_true",
                   help="enable local service discovery (BEP 14) on the --bind interface; needs an "
                        "interface that can multicast (a veth in a test namespace, not loopback)")
    p.add_argument("--dht-bootstrap", action="append", default=[], help="HOST:PORT DHT node (repeatable)")
    p.add_argument("--dht-announce-every", type=float, default=5.0,
                   help="seconds between forced DHT announces (libtorrent's own interval is 15 min)")
    p.add_argument("--tracker", action="append", default=[], help="tracker announce URL (repeatable)")
    p.add_argument("--reannounce-every", type=float, default=0,
                   help="seconds between forced tracker announces (0: the tracker's interval, ~30 min "
                        "with opentracker); lets a seeder learn of leechers that cannot connect out")
    p.add_argument("--upload-limit", type=int, default=0, help="bytes/s (0: none); applies on loopback too")
    p.add_argument("--download-limit", type=int, default=0, help="bytes/s (0: none); applies on loopback too")
    p.add_argument("--exit-when-complete", action="store_true", help="exit 0 once every wanted piece is verified")
    p.add_argument("--timeout", type=float, default=0, help="seconds before giving up (0: none)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between status lines")
    p.add_argument("--max-connections", type=int, default=200)
    p.add_argument("--encryption", choices=["plaintext", "enabled", "forced"], default="plaintext",
                   help="outgoing connections: plaintext only (default), MSE first with a plaintext "
                        "retry (libtorrent's default), or MSE only; incoming accept both unless forced")
    args = p.parse_args(argv)
    args.peers = [parse_endpoint(x, "--peer") for x in args.peer]
    args.dht_nodes = [parse_endpoint(x, "--dht-bootstrap") for x in args.dht_bootstrap]
    if args.dht_bootstrap and not args.dht:
        p.error("--dht-bootstrap needs --dht")
    if not (args.torrent or args.magnet) and not args.dht:
        p.error("give --torrent or --magnet (or --dht alone for a DHT node without a torrent)")
    if (args.torrent or args.magnet) and not args.save:
        p.error("--save is required with --torrent or --magnet")
    if not (args.torrent or args.magnet) and (args.seed or args.peer or args.tracker or args.exit_when_complete):
        p.error("--seed, --peer, --tracker and --exit-when-complete need --torrent or --magnet")
    return args


def session_settings(args):
    s = {
        "listen_interfaces": f"{args.bind}:{args.listen}" if ":" not in args.bind else f"[{args.bind}]:{args.listen}",
        # A port that is taken must fail the start, not silently move to another one.
        "listen_system_port_fallback": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "enable_outgoing_tcp": True,
        "enable_incoming_tcp": True,
        "enable_lsd": bool(args.lsd),
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_dht": bool(args.dht),
        "dht_bootstrap_nodes": ",".join(f"{h}:{p}" for h, p in args.dht_nodes),
        "allow_multiple_connections_per_ip": True,
        "connections_limit": args.max_connections,
        # Trackers on 127.0.0.1 must get an answer now, and every announce must reach every tracker.
        "announce_to_all_trackers": True,
        "announce_to_all_tiers": True,
        "alert_mask": lt.alert.category_t.error_notification
        | lt.alert.category_t.status_notification
        | lt.alert.category_t.storage_notification
        | lt.alert.category_t.tracker_notification
        | lt.alert.category_t.peer_notification
        | lt.alert.category_t.connect_notification
        | lt.alert.category_t.dht_notification,
        "user_agent": "peerhost-test-lt/" + lt.__version__,
        # libtorrent's default opens with an MSE (encrypted) handshake and retries in plaintext
        # only after that connection fails, seconds later; tests of plain BitTorrent want plaintext.
        "out_enc_policy": {"plaintext": int(lt.enc_policy.pe_disabled), "enabled": int(lt.enc_policy.pe_enabled),
                           "forced": int(lt.enc_policy.pe_forced)}[args.encryption],
        "in_enc_policy": int(lt.enc_policy.pe_forced if args.encryption == "forced" else lt.enc_policy.pe_enabled),
    }
    if args.dht:
        s.update({
            # Every node of a test swarm is 127.0.0.1: without these, libtorrent keeps one node per
            # IP/subnet in its routing table and in searches, and bans an IP that sends > 5 packets/s.
            "dht_restrict_routing_ips": False,
            "dht_restrict_search_ips": False,
            "dht_ignore_dark_internet": False,
            "dht_prefer_verified_node_ids": False,
            "dht_enforce_node_id": False,
            "dht_block_ratelimit": 100000,
            "dht_upload_rate_limit": 1 << 20,
        })
    if args.upload_limit or args.download_limit:
        # Loopback is a "local network": by default it is exempt from the session's limits.
        s["ignore_limits_on_local_network"] = False
        s["upload_rate_limit"] = args.upload_limit
        s["download_rate_limit"] = args.download_limit
    return s


class Peer:
    def __init__(self, args):
        self.args = args
        self.ses = lt.session(session_settings(args))
        self.parent = os.getppid()
        self.handle = None
        self.port = None
        self.udp_port = None
        self.next_dht_announce = 0.0
        self.next_reannounce = None
        self.next_reconnect = None
        self.num_pieces = None
        self.ready = False
        self.complete_at = None
        self.started = time.monotonic()
        self.stop_signal = None
        self.dht_nodes = 0

    def add_torrent(self):
        a = self.args
        if a.torrent:
            atp = lt.add_torrent_params()
            atp.ti = lt.torrent_info(a.torrent)
        else:
            atp = lt.parse_magnet_uri(a.magnet)
        atp.save_path = os.path.abspath(a.save)
        # Never auto-managed: the test says when it runs; nothing is queued or paused behind it.
        atp.flags &= ~lt.torrent_flags.auto_managed
        atp.flags &= ~lt.torrent_flags.paused
        if a.tracker:
            atp.trackers = list(atp.trackers) + a.tracker
        self.handle = self.ses.add_torrent(atp)
        if a.upload_limit:
            self.handle.set_upload_limit(a.upload_limit)
        if a.download_limit:
            self.handle.set_download_limit(a.download_limit)

    def info_hash(self):
        ih = self.handle.info_hashes()
        return str(ih.v1) if ih.has_v1() else str(ih.get_best())

    def connect_peers(self):
        for host, port in self.args.peers:
            try:
                self.handle.connect_peer((host, port))
            except Exception as e:  # e.g. "no metadata yet" never raises; a bad address does
                emit(event="peer_error", peer=f"{host}:{port}", message=str(e))

    def is_complete(self, st):
        return st.has_metadata and st.state in (lt.torrent_status.finished, lt.torrent_status.seeding) \
            and st.total_wanted_done == st.total_wanted

    def maybe_ready(self):
        if self.ready or self.port is None or (self.args.dht and self.udp_port is None):
            return
        if self.handle is None:  # a DHT node without a torrent
            self.ready = True
            emit(event="ready", port=self.port, info_hash=None, seeding=False, dht_port=self.udp_port,
                 pid=os.getpid())
            return
        st = self.handle.status()
        if self.args.seed:
            if st.state in (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data):
                return
            if not self.is_complete(st):
                raise Failure(f"seeder's data in {self.args.save} is incomplete after checking: "
                              f"{st.num_pieces} pieces of {self.piece_count(st)} verified")
        self.ready = True
        emit(event="ready", port=self.port, info_hash=self.info_hash(), seeding=bool(self.args.seed),
             dht_port=self.udp_port if self.args.dht else None, pid=os.getpid())
        self.connect_peers()

    def piece_count(self, st):
        if self.num_pieces is None and st.has_metadata:
            self.num_pieces = self.handle.torrent_file().num_pieces()
        return self.num_pieces

    def status_line(self):
        # Answered by a dht_stats_alert: the routing table's size. Not in the first second: once
        # in CI a DHT node died of SIGSEGV right after the stats request it makes 1 ms after start
        # (libtorrent 2.0.8; not reproduced in 60 local starts), so the DHT gets a moment to start.
        if self.args.dht and time.monotonic() - self.started >= 1.0:
            self.ses.post_dht_stats()
        if self.handle is None:
            emit(event="status", state="dht_node", dht_nodes=self.dht_nodes,
                 elapsed=round(time.monotonic() - self.started, 3))
            return None
        st = self.handle.status()
        emit(event="status", state=str(st.state), progress=round(st.progress, 6),
             download_rate=st.download_payload_rate, upload_rate=st.upload_payload_rate,
             num_peers=st.num_peers, num_seeds=st.num_seeds, total_done=st.total_wanted_done,
             total_wanted=st.total_wanted, total_download=st.total_payload_download,
             total_upload=st.total_payload_upload, pieces=st.num_pieces,
             num_pieces=self.piece_count(st),
             dht_nodes=self.dht_nodes,
             elapsed=round(time.monotonic() - self.started, 3))
        return st

    def handle_alert(self, a):
        t = type(a).__name__
        if t == "listen_succeeded_alert":
            if a.socket_type == lt.socket_type_t.tcp:
                self.port = a.port
            elif a.socket_type == lt.socket_type_t.udp:
                self.udp_port = a.port
        elif t == "listen_failed_alert":
            raise Failure(f"listen on {a.address}:{a.port} ({a.socket_type}) failed: {a.message()}")
        elif t == "add_torrent_alert":
            if a.error.value():
                raise Failure(f"adding the torrent failed: {a.error.message()}")
        elif t == "torrent_error_alert":
            raise Failure(f"torrent error: {a.error.message()} ({a.filename()})")
        elif t in ("file_error_alert", "fastresume_rejected_alert") and a.error.value():
            if t == "file_error_alert":
                raise Failure(f"file error on {a.filename()}: {a.error.message()}")
        elif t == "metadata_received_alert":
            emit(event="metadata")
        elif t == "metadata_failed_alert":
            emit(event="error", message=a.message())
        elif t == "tracker_reply_alert":
            emit(event="tracker_reply", url=a.tracker_url(), num_peers=a.num_peers)
        elif t in ("tracker_error_alert", "tracker_warning_alert"):
            emit(event="tracker_error", url=a.tracker_url(), message=a.message())
        elif t == "dht_bootstrap_alert":
            emit(event="dht_bootstrap")
            self.next_dht_announce = 0.0
        elif t == "dht_stats_alert":
            self.dht_nodes = sum(b.get("num_nodes", 0) for b in a.routing_table)
        elif t == "dht_announce_alert":
            # Another node announced a torrent to us (a bootstrap node sees the seeder's announce).
            emit(event="dht_announce", info_hash=str(a.info_hash), peer=f"{a.ip}:{a.port}")
        elif t == "dht_reply_alert":
            emit(event="dht_reply", num_peers=a.num_peers)
        elif a.what() == "lsd_peer":
            # Debian's binding has no lsd_peer_alert class (the object is a plain alert), so the
            # peer comes from the message: "NAME peer [ 10.0.0.1:6881 client: … ]: received peer …".
            m = re.search(r"\[ (\S+:\d+) ", a.message())
            emit(event="lsd_peer", peer=m.group(1) if m else None, message=a.message())
        elif t == "peer_connect_alert" or t == "peer_connected_alert":
            pass
        elif t == "peer_disconnected_alert":
            emit(event="peer_disconnected", peer=f"{a.ip[0]}:{a.ip[1]}", message=a.error.message())
        elif t == "peer_error_alert":
            emit(event="peer_error", peer=f"{a.ip[0]}:{a.ip[1]}", message=a.error.message())
        elif t == "peer_ban_alert":
            emit(event="peer_banned", peer=f"{a.ip[0]}:{a.ip[1]}")
        elif t == "hash_failed_alert":
            emit(event="hash_failed", piece=a.piece_index)
        elif t == "torrent_finished_alert":
            self.mark_complete()

    def mark_complete(self):
        """The "complete" event, once, for a peer that downloaded (a seeder started complete)."""
        if self.complete_at is None and not self.args.seed and self.handle is not None:
            self.complete_at = time.monotonic()
            emit(event="complete", seconds=round(self.complete_at - self.started, 3))

    def is_done(self):
        """Complete (every wanted piece verified); a DHT node without a torrent counts as complete."""
        return self.handle is None or self.is_complete(self.handle.status())

    def run(self):
        a = self.args
        if a.torrent or a.magnet:
            self.add_torrent()
        deadline = self.started + a.timeout if a.timeout > 0 else None
        next_status = time.monotonic()
        while True:
            now = time.monotonic()
            if self.stop_signal is not None:
                return self.finish("stopped", EXIT_OK, signal=self.stop_signal)
            if os.getppid() != self.parent:
                # The test process died without stopping us: do not linger as an orphan.
                return self.finish("stopped", EXIT_OK, reason="parent exited")
            if deadline is not None and now >= deadline:
                if self.is_done():
                    return self.finish("time_up", EXIT_OK)
                st = self.handle.status()
                return self.finish("timeout", EXIT_TIMEOUT,
                                   message=f"not complete after {a.timeout} s: progress {st.progress:.4f}, "
                                           f"{st.num_peers} peers, state {st.state}")
            # Sleeps until an alert arrives or the next status line is due (no busy loop).
            wait = max(0.0, min(next_status - now, (deadline - now) if deadline else a.interval))
            self.ses.wait_for_alert(int(wait * 1000) + 1)
            for alert in self.ses.pop_alerts():
                self.handle_alert(alert)
            self.maybe_ready()
            if a.dht and self.ready and self.handle is not None and time.monotonic() >= self.next_dht_announce:
                # libtorrent announces to the DHT every 15 minutes; a test swarm forms in seconds.
                self.handle.force_dht_announce()
                self.next_dht_announce = time.monotonic() + a.dht_announce_every
            if a.reannounce_every > 0 and self.ready and self.handle is not None:
                if self.next_reannounce is None:
                    self.next_reannounce = time.monotonic() + a.reannounce_every
                elif time.monotonic() >= self.next_reannounce:
                    self.handle.force_reannounce(0, -1, lt.reannounce_flags_t.ignore_min_interval)
                    self.next_reannounce = time.monotonic() + a.reannounce_every
            if a.reconnect_every > 0 and a.peers and self.ready:
                if self.next_reconnect is None or time.monotonic() >= self.next_reconnect:
                    if self.next_reconnect is not None:
                        self.connect_peers()  # libtorrent ignores peers it is already connected to
                    self.next_reconnect = time.monotonic() + a.reconnect_every
            if time.monotonic() >= next_status:
                next_status += a.interval
                st = self.status_line()
                if st is not None and self.is_complete(st):
                    self.mark_complete()
            if a.exit_when_complete and self.ready:
                if self.is_done():
                    self.mark_complete()
                    self.status_line()
                    return self.finish("complete", EXIT_OK)

    def finish(self, outcome, code, **extra):
        fields = dict(event="done", outcome=outcome, exit_code=code,
                      elapsed=round(time.monotonic() - self.started, 3))
        if self.handle is not None:
            st = self.handle.status()
            fields.update(progress=round(st.progress, 6), total_download=st.total_payload_download,
                          total_upload=st.total_payload_upload)
            if self.complete_at is not None:
                fields["download_seconds"] = round(self.complete_at - self.started, 3)
        fields.update(extra)
        emit(**fields)
        return code


class Failure(Exception):
    pass


def main(argv):
    try:
        args = parse_args(argv)
    except ValueError as e:
        emit(event="done", outcome="error", exit_code=EXIT_ERROR, message=str(e))
        return EXIT_ERROR
    peer = None
    try:
        peer = Peer(args)

        def on_signal(signum, _frame):
            peer.stop_signal = signal.Signals(signum).name

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        # Foundation's Process starts children with its spawning thread's signal mask, in which
        # Swift's worker threads block SIGTERM and SIGINT: without this, a stop would never arrive.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        return peer.run()
    except Failure as e:
        return (peer.finish("error", EXIT_ERROR, message=str(e)) if peer
                else (emit(event="done", outcome="error", exit_code=EXIT_ERROR, message=str(e)) or EXIT_ERROR))
    except Exception as e:  # libtorrent raises RuntimeError for unreadable torrents, bad magnets, …
        emit(event="done", outcome="error", exit_code=EXIT_ERROR, message=f"{type(e).__name__}: {e}")
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
