#!/usr/bin/python3
"""Deterministic test content and v1 torrents for the BitTorrent tests.

Run with /usr/bin/python3 (the torrent commands use Debian's python3-libtorrent).

    make_content.py tree DIR [--files N] [--total-size SIZE] [--seed S]
        A multi-file directory: N files (default 7) whose sizes add up to SIZE (default 3 MiB),
        uneven on purpose (not piece multiples, one tiny file, one in a nested folder) so pieces
        straddle file boundaries. Same arguments → the same names, sizes and bytes.
    make_content.py file PATH --size SIZE [--seed S]
        One file of SIZE bytes (e.g. 1GiB), written in 4 MiB chunks.
    make_content.py torrent PATH --out F.torrent [--piece-length SIZE] [--tracker URL]...
                            [--tool libtorrent|mktorrent] [--name NAME]
        A v1 torrent of PATH (a file or a directory). libtorrent 2.0 would make a v1+v2 hybrid
        by default; this asks for v1 only. mktorrent gives the same info dictionary (and so the
        same infohash) for a single file and piece length. Prints one JSON line:
        {"info_hash": "<40 hex>", "name", "piece_length", "num_pieces", "total_size", "files",
         "magnet": "magnet:?xt=urn:btih:…", "torrent": "<absolute path>"}
    make_content.py info F.torrent
        The same JSON line for an existing torrent.
    make_content.py retrack F.torrent --out G.torrent --tracker URL [--tracker URL]...
        A copy whose announce/announce-list name these trackers (nothing else changes, so the
        infohash is the same). For clients that take trackers only from the file (transmission-cli).

SIZE accepts a plain byte count or a K/KiB, M/MiB, G/GiB suffix (powers of two).
The bytes come from SHAKE-256 of "peerhost-test/<seed>/<file name>", so any implementation can
regenerate them and they do not compress.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys

CHUNK = 4 << 20


def parse_size(text):
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(t[-1:], 1)
    if mult != 1:
        t = t[:-1]
    try:
        value = int(float(t) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a size (e.g. 4096, 3MiB, 1GiB)")
    if value < 0:
        raise argparse.ArgumentTypeError(f"'{text}' is negative")
    return value


def stream(seed, name, size):
    """Yields the file's bytes in chunks; SHAKE-256 in counter blocks so 1 GiB is quick."""
    done, counter = 0, 0
    while done < size:
        n = min(CHUNK, size - done)
        yield hashlib.shake_256(f"peerhost-test/{seed}/{name}/{counter}".encode()).digest(n)
        done += n
        counter += 1


def write_file(path, size, seed, name=None):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        for chunk in stream(seed, name or os.path.basename(path), size):
            f.write(chunk)


def tree_layout(files, total):
    """Relative names and sizes: uneven weights, a tiny file, a nested one; sizes sum to total."""
    if files < 1:
        raise SystemExit("--files must be at least 1")
    weights = [(i * 7919) % 13 + 3 for i in range(files)]
    sizes = [total * w // sum(weights) for w in weights]
    if files >= 3:
        # A tiny file (shorter than a block) between big ones.
        moved = sizes[1] - 1000 if sizes[1] > 1000 else 0
        sizes[1] -= moved
        sizes[0] += moved
    sizes[-1] += total - sum(sizes)
    names = []
    for i in range(files):
        if i % 3 == 2:
            names.append(f"sub dir/nested-{i}/file-{i}.bin")
        else:
            names.append(f"file-{i}.dat")
    return list(zip(names, sizes))


def cmd_tree(a):
    os.makedirs(a.dir, exist_ok=True)
    layout = tree_layout(a.files, a.total_size)
    for name, size in layout:
        write_file(os.path.join(a.dir, name), size, a.seed, name)
    print(json.dumps({"dir": os.path.abspath(a.dir), "files": [{"path": n, "size": s} for n, s in layout],
                      "total_size": a.total_size}))


def cmd_file(a):
    write_file(a.path, a.size, a.seed)
    print(json.dumps({"path": os.path.abspath(a.path), "size": a.size}))


def describe(torrent_path):
    import libtorrent as lt
    ti = lt.torrent_info(torrent_path)
    ih = str(ti.info_hashes().v1)
    fs = ti.files()
    files = [{"path": fs.file_path(i), "size": fs.file_size(i)} for i in range(fs.num_files())
             if not fs.file_flags(i) & lt.file_storage.flag_pad_file]
    return {"info_hash": ih, "name": ti.name(), "piece_length": ti.piece_length(),
            "num_pieces": ti.num_pieces(), "total_size": ti.total_size(), "files": files,
            "magnet": f"magnet:?xt=urn:btih:{ih}&dn={ti.name()}",
            "torrent": os.path.abspath(torrent_path)}


def cmd_torrent(a):
    path = os.path.abspath(a.path)
    if not os.path.exists(path):
        raise SystemExit(f"{path}: no such file or directory")
    if a.tool == "mktorrent":
        log2 = a.piece_length.bit_length() - 1
        if 1 << log2 != a.piece_length:
            raise SystemExit("mktorrent needs a power-of-two --piece-length")
        cmd = ["mktorrent", "-l", str(log2), "-o", a.out, "-n", a.name or os.path.basename(path)]
        for t in a.tracker:
            cmd += ["-a", t]
        if os.path.exists(a.out):
            os.unlink(a.out)  # mktorrent refuses to overwrite
        r = subprocess.run(cmd + [path], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"mktorrent failed ({r.returncode}): {r.stderr.strip()}")
    else:
        import libtorrent as lt
        fs = lt.file_storage()
        # Files in sorted path order (as mktorrent does), not in readdir order as lt.add_files
        # would: the same tree must give the same infohash on every file system.
        base = os.path.basename(path)
        if os.path.isdir(path):
            rels = []
            for root, dirs, names in os.walk(path):
                for n in names:
                    rels.append(os.path.relpath(os.path.join(root, n), path))
            for rel in sorted(rels, key=lambda r: r.encode()):
                fs.add_file(os.path.join(base, rel), os.path.getsize(os.path.join(path, rel)))
        else:
            fs.add_file(base, os.path.getsize(path))
        if fs.num_files() == 0:
            raise SystemExit(f"{path}: no files")
        ct = lt.create_torrent(fs, a.piece_length, flags=lt.create_torrent.v1_only)
        for t in a.tracker:
            ct.add_tracker(t)
        ct.set_creator("peerhost tests")
        lt.set_piece_hashes(ct, os.path.dirname(path))
        entry = ct.generate()
        if a.name:
            entry[b"info"][b"name"] = a.name.encode()
        with open(a.out, "wb") as f:
            f.write(lt.bencode(entry))
    print(json.dumps(describe(a.out)))


def cmd_retrack(a):
    import libtorrent as lt
    with open(a.torrent, "rb") as f:
        entry = lt.bdecode(f.read())
    if entry is None or b"info" not in entry:
        raise SystemExit(f"{a.torrent}: not a torrent file")
    entry.pop(b"announce-list", None)
    entry.pop(b"announce", None)
    if a.tracker:
        entry[b"announce"] = a.tracker[0].encode()
        entry[b"announce-list"] = [[t.encode()] for t in a.tracker]
    with open(a.out, "wb") as f:
        f.write(lt.bencode(entry))
    print(json.dumps(describe(a.out)))


def cmd_info(a):
    print(json.dumps(describe(a.torrent)))


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tree")
    t.add_argument("dir")
    t.add_argument("--files", type=int, default=7)
    t.add_argument("--total-size", type=parse_size, default=3 << 20)
    t.add_argument("--seed", default="0")
    f = sub.add_parser("file")
    f.add_argument("path")
    f.add_argument("--size", type=parse_size, required=True)
    f.add_argument("--seed", default="0")
    c = sub.add_parser("torrent")
    c.add_argument("path")
    c.add_argument("--out", required=True)
    c.add_argument("--piece-length", type=parse_size, default=256 << 10)
    c.add_argument("--tracker", action="append", default=[])
    c.add_argument("--tool", choices=["libtorrent", "mktorrent"], default="libtorrent")
    c.add_argument("--name")
    i = sub.add_parser("info")
    i.add_argument("torrent")
    r = sub.add_parser("retrack")
    r.add_argument("torrent")
    r.add_argument("--out", required=True)
    r.add_argument("--tracker", action="append", default=[])
    a = p.parse_args(argv)
    {"tree": cmd_tree, "file": cmd_file, "torrent": cmd_torrent, "info": cmd_info, "retrack": cmd_retrack}[a.cmd](a)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
