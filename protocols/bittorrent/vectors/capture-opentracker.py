#!/usr/bin/python3
# Records real opentracker replies as test vectors for Tests/BitTorrentProtocolTests.
# Run inside a private network namespace (opentracker binds fixed ports):
#   unshare -n sh -c 'ip link set lo up && /usr/bin/python3 protocols/bittorrent/vectors/capture-opentracker.py protocols/bittorrent/vectors'
# Debian's opentracker refuses every announce unless started with -w and an absolute,
# world-readable whitelist of infohashes (hex, one per line).
import os, socket, struct, subprocess, sys, tempfile, time, urllib.parse

out = sys.argv[1]
HASH = bytes.fromhex("123456789abcdef123456789abcdef123456789a")   # the BEP 3 / wiki percent-encoding vector
OTHER = bytes.fromhex("00" * 19 + "01")                            # not whitelisted
PORT = 16969

wl_dir = tempfile.mkdtemp()
os.chmod(wl_dir, 0o755)
wl = os.path.join(wl_dir, "whitelist")
with open(wl, "w") as f:
    f.write(HASH.hex() + "\n")
os.chmod(wl, 0o644)
tracker = subprocess.Popen(["/usr/bin/opentracker", "-i", "127.0.0.1", "-p", str(PORT), "-P", str(PORT), "-w", wl],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", PORT), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)

    def http(path_query):
        s = socket.create_connection(("127.0.0.1", PORT))
        s.sendall(("GET %s HTTP/1.0\r\nHost: 127.0.0.1:%d\r\nUser-Agent: Peerhost/0.1\r\nConnection: close\r\n\r\n" % (path_query, PORT)).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        return data

    def announce(h, peer_id, port, left, event=None, compact=1):
        q = "info_hash=%s&peer_id=%s&port=%d&uploaded=0&downloaded=0&left=%d&compact=%d&numwant=50" % (
            urllib.parse.quote_from_bytes(h, safe="-._~"), urllib.parse.quote_from_bytes(peer_id, safe="-._~"), port, left, compact)
        if event:
            q += "&event=" + event
        return http("/announce?" + q)

    # Two seeders and a leecher from 127.0.0.1 on different ports; then the reply a new leecher gets.
    announce(HASH, b"-PH0001-seedseed0001", 6881, 0, "started")
    announce(HASH, b"-PH0001-seedseed0002", 6882, 0, "started")
    announce(HASH, b"-PH0001-leechleech03", 6883, 1000, "started")
    with open(os.path.join(out, "opentracker-announce.http"), "wb") as f:
        f.write(announce(HASH, b"-PH0001-leechleech04", 6884, 1000, "started"))
    with open(os.path.join(out, "opentracker-announce-refused.http"), "wb") as f:
        f.write(announce(OTHER, b"-PH0001-leechleech05", 6885, 1000, "started"))
    with open(os.path.join(out, "opentracker-scrape.http"), "wb") as f:
        f.write(http("/scrape?info_hash=" + urllib.parse.quote_from_bytes(HASH, safe="-._~")))

    # UDP (BEP 15) with fixed transaction ids: 0x0a0b0c0d for connect, 0x01020304 announce, 0x05060708 scrape.
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(2)
    u.sendto(struct.pack(">QII", 0x41727101980, 0, 0x0a0b0c0d), ("127.0.0.1", PORT))
    connect_reply, _ = u.recvfrom(2048)
    cid = struct.unpack(">IIQ", connect_reply[:16])[2]
    req = struct.pack(">QII20s20sQQQIIIiH", cid, 1, 0x01020304, HASH, b"-PH0001-udpudpudp006",
                      0, 1000, 0, 2, 0, 0x11223344, 50, 6886)
    u.sendto(req, ("127.0.0.1", PORT))
    announce_reply, _ = u.recvfrom(2048)
    u.sendto(struct.pack(">QII20s", cid, 2, 0x05060708, HASH), ("127.0.0.1", PORT))
    scrape_reply, _ = u.recvfrom(2048)
    for name, data in [("connect", connect_reply), ("announce", announce_reply), ("scrape", scrape_reply)]:
        with open(os.path.join(out, "opentracker-udp-%s.bin" % name), "wb") as f:
            f.write(data)
    with open(os.path.join(out, "opentracker-udp-announce-request.bin"), "wb") as f:
        f.write(req)
finally:
    tracker.terminate()
    tracker.wait()
