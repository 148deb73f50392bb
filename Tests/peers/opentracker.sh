#!/bin/sh
# opentracker.sh PORT WHITELIST INFOHASH...  — start Debian's opentracker on 127.0.0.1:PORT (TCP for
# http://127.0.0.1:PORT/announce and UDP for udp://127.0.0.1:PORT) for these infohashes, in the
# foreground (exec: the caller's pid is the tracker's; SIGHUP re-reads the whitelist).
#
# Why it looks like this (found on Debian 12's opentracker 0.0~git20210823):
#  * it is built with the whitelist feature: without -w every announce gets "Requested download is
#    not authorized for use with this tracker";
#  * run as root it chroots to -d (default ".") and drops to user nobody, and it resolves a relative
#    -w path only after that: the whitelist must be an ABSOLUTE path that nobody can read (the file
#    0644 and every folder above it searchable), else it warns "Can't open accesslist file" and
#    refuses everything;
#  * the whitelist is one 40-hex-digit infohash per line.
#  * -i binds the address for both -p (TCP) and -P (UDP); its default announce interval is ~30 min,
#    so a peer that announced before the seeder will not hear of it soon: start seeders first.
set -eu
[ $# -ge 3 ] || { echo "usage: $0 PORT WHITELIST INFOHASH..." >&2; exit 2; }
port=$1; list=$2; shift 2
case $list in /*) ;; *) list=$(pwd)/$list ;; esac
: >"$list"
for h in "$@"; do
  case $h in *[!0-9a-fA-F]*) echo "not a hex infohash: $h" >&2; exit 2 ;; esac
  [ ${#h} -eq 40 ] || { echo "not 40 hex digits: $h" >&2; exit 2; }
  echo "$h" | tr 'A-F' 'a-f' >>"$list"
done
chmod 0644 "$list"
command -v opentracker >/dev/null || { echo "opentracker not found: install the Debian package opentracker (make test does)" >&2; exit 127; }
cd /
exec opentracker -i 127.0.0.1 -p "$port" -P "$port" -w "$list"
