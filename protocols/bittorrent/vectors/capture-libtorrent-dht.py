#!/usr/bin/python3
# Records real libtorrent (python3-libtorrent 2.0.x) DHT messages as KRPC test vectors.
# Run inside a private network namespace:
#   unshare -n sh -c 'ip link set lo up && /usr/bin/python3 protocols/bittorrent/vectors/capture-libtorrent-dht.py protocols/bittorrent/vectors'
# A Python socket plays a DHT node: libtorrent bootstraps from it, looks up and announces an
# infohash through it (its queries are recorded), and answers the queries the socket sends it
# (its responses are recorded).
import os, socket, sys, time
import libtorrent as lt

out = sys.argv[1]
ME = ("127.0.0.1", 17000)
LT_PORT = 17001
OUR_ID = b"abcdefghij0123456789"
HASH = bytes.fromhex("123456789abcdef123456789abcdef123456789a")
TOKEN = b"tok12345"

u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(ME)
u.settimeout(0.2)

ses = lt.session({
    "listen_interfaces": "127.0.0.1:%d" % LT_PORT,
    "enable_dht": True, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
    "dht_bootstrap_nodes": "127.0.0.1:17000",
    "dht_restrict_routing_ips": False, "dht_restrict_search_ips": False,
})

seen = {}
def save(name, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)

def serve(seconds):
    end = time.time() + seconds
    while time.time() < end:
        try:
            data, src = u.recvfrom(4096)
        except socket.timeout:
            continue
        msg = lt.bdecode(data)
        if msg is None or msg.get(b"y") != b"q":
            continue
        q = msg[b"q"].decode()
        if q not in seen:
            seen[q] = data
            save("libtorrent-dht-%s-query.bencode" % q, data)
        r = {b"id": OUR_ID}
        if q in ("find_node", "get_peers"):
            r[b"nodes"] = b""
            if q == "get_peers":
                r[b"token"] = TOKEN
        u.sendto(lt.bencode({b"t": msg[b"t"], b"y": b"r", b"r": r}), src)

serve(3)
ses.dht_get_peers(lt.sha1_hash(HASH))
serve(3)
# The Python binding does not expose dht_announce's flags; a torrent added by magnet link makes
# libtorrent announce it on the DHT (get_peers, then announce_peer with our token).
import tempfile
atp = lt.parse_magnet_uri("magnet:?xt=urn:btih:" + HASH.hex())
atp.save_path = tempfile.mkdtemp()
ses.add_torrent(atp)
serve(6)

def ask(q, a, t):
    u.sendto(lt.bencode({b"t": t, b"y": b"q", b"q": q, b"a": a}), ("127.0.0.1", LT_PORT))
    end = time.time() + 3
    while time.time() < end:
        try:
            data, src = u.recvfrom(4096)
        except socket.timeout:
            continue
        msg = lt.bdecode(data)
        if msg and msg.get(b"t") == t and msg.get(b"y") in (b"r", b"e"):
            return data
    return None

replies = {
    "ping": ask(b"ping", {b"id": OUR_ID}, b"p1"),
    "find_node": ask(b"find_node", {b"id": OUR_ID, b"target": HASH}, b"f1"),
    "get_peers": ask(b"get_peers", {b"id": OUR_ID, b"info_hash": HASH}, b"g1"),
}
for name, data in replies.items():
    if data:
        save("libtorrent-dht-%s-response.bencode" % name, data)
token = lt.bdecode(replies["get_peers"])[b"r"][b"token"] if replies["get_peers"] else b""
announce = ask(b"announce_peer", {b"id": OUR_ID, b"info_hash": HASH, b"port": 7000, b"token": token}, b"a1")
if announce:
    save("libtorrent-dht-announce_peer-response.bencode", announce)
bad = ask(b"announce_peer", {b"id": OUR_ID, b"info_hash": HASH, b"port": 7000, b"token": b"wrong"}, b"a2")
if bad:
    save("libtorrent-dht-announce_peer-badtoken-error.bencode", bad)
print("queries from libtorrent:", sorted(seen), "responses:", sorted(k for k, v in replies.items() if v),
      "announce:", bool(announce), "bad token:", bool(bad))
