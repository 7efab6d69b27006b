#!/bin/bash
# Serves an existing benchmark fixture (a data dir of N accounts
# "bench-<i>", e.g. $TMPDIR/keyline-dir-bench-v2-N built by the directory
# benchmarks) with `keyline serve` on loopback and runs `keyline bench
# --no-create` against it: lookups without and with client verification
# (client on the same cores); reports lookups/s as a ratio to the
# single-core ed25519 verifies/s the bench measures in the same run, server
# CPU per lookup, and the server's memory sampled every 0.5 s from
# /proc/PID/status: RssAnon (heap, stacks: what the process allocated) and
# RssFile (pages of the bbolt files it maps, reclaimable page cache), peak
# of each, and VmHWM. Extra `keyline serve` flags go in $SERVE_ARGS (e.g.
# SERVE_ARGS="--max-resident 268435456"). Usage:
#   scripts/bench-fixture.sh DATA_DIR N [DURATION] [KEYLINE_BINARY]
set -euo pipefail
data=${1:?data dir}
n=${2:?accounts}
dur=${3:-20s}
bin=${4:-}
work=$(mktemp -d)
trap 'kill $srv 2>/dev/null || true; kill $sampler 2>/dev/null || true; wait $srv 2>/dev/null || true; rm -rf "$work"' EXIT
if [ -z "$bin" ]; then
	go build -o "$work/keyline" ./cmd/keyline
	bin=$work/keyline
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" serve --listen 127.0.0.1:$port --data-dir "$data" --insecure-no-sync --peer-rate-limit 1000000 --rate-limit 1000000 ${SERVE_ARGS:-} >"$work/serve.log" 2>&1 &
srv=$!
for _ in $(seq 600); do
	python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' $port 2>/dev/null && break
	sleep 0.5
done
(while sleep 0.5; do awk '/RssAnon|RssFile/ {print $1, $2}' /proc/$srv/status 2>/dev/null | tr '\n' ' '; echo; done) >"$work/rss.txt" &
sampler=$!
cpu() { awk '{print $14+$15}' /proc/$srv/stat; }
kl() { "$bin" --server 127.0.0.1:$port --trust "$data/trust.json" "$@"; }
for v in "" --verify; do
	c0=$(cpu)
	kl --json bench --no-create --prefix bench --accounts "$n" --duration "$dur" --concurrency 16 $v >"$work/lookup.json"
	c1=$(cpu)
	l=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["lookups"], round(d["lookups_per_sec"]), d["p50_ms"], d["p99_ms"], round(d["proof_bytes"]), round(d["payload_bytes"]), round(d["ed25519_verifies_per_sec"]))' "$work/lookup.json")
	set -- $l
	echo "lookups${v:+ (verified)}: $2/s ($(echo "scale=3; $2 / $7" | bc) x ed25519 at $7/s), p50 $3 ms, p99 $4 ms; bundle $5 B + $6 B payload; server CPU $(echo "scale=1; ($c1 - $c0) * 10000 / $1" | bc) µs per lookup"
done
kill $sampler
awk '{for (i=1;i<NF;i+=2) {v=$(i+1)/1024; if (v>m[$i]) m[$i]=v}} END {printf "server memory peak: RssAnon %.0f MiB, RssFile %.0f MiB; ", m["RssAnon:"], m["RssFile:"]}' "$work/rss.txt"
awk '/VmHWM/ {printf "VmHWM %.0f MiB\n", $2/1024}' /proc/$srv/status
du -b "$data"/*.db | awk -v n="$n" '{printf "disk %s: %d bytes, %.0f B/account\n", $2, $1, $1/n}'
