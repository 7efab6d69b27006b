#!/bin/bash
# Measures `keyline serve` + `keyline bench` on this machine over loopback
# (docs/performance.md): creates N accounts (fsync on, the default 1 s
# epochs; the create requests are generated before the timed phase, 4096 in
# flight), then lookups without and with client verification; reports
# server CPU per operation (read from /proc), server RSS, disk per account,
# and single-core ed25519 verifies/s measured in the same run.
# Usage: scripts/bench-e2e.sh N [DURATION] [KEYLINE_BINARY]
set -euo pipefail
n=${1:?accounts}
dur=${2:-10s}
bin=${3:-}
work=$(mktemp -d)
trap 'kill $srv 2>/dev/null || true; wait $srv 2>/dev/null || true; rm -rf "$work"' EXIT
if [ -z "$bin" ]; then
	go build -o "$work/keyline" ./cmd/keyline
	bin=$work/keyline
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" serve --listen 127.0.0.1:$port --data-dir "$work/data" --max-streams-per-peer 4096 >"$work/serve.log" 2>&1 &
srv=$!
for _ in $(seq 100); do [ -f "$work/data/trust.json" ] && break; sleep 0.1; done
sleep 0.5
cpu() { awk '{print $14+$15}' /proc/$srv/stat; }
kl() { "$bin" --server 127.0.0.1:$port --trust "$work/data/trust.json" "$@"; }
ed=$(cd "$(dirname "$0")/.." && go test -run '^$' -bench Ed25519Verify -benchtime 20000x ./directory/mapdb | awk '/verifies\/s/ {for (i=1;i<=NF;i++) if ($(i+1)=="verifies/s") print $i}')
echo "ed25519 single-core verifies/s: $ed"
kl --json bench --accounts "$n" --duration 1ms --concurrency 16 --create-concurrency 4096 --server-pid $srv >"$work/create.json" 2>/dev/null
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); ed=float(sys.argv[2]); r=d["updates_per_sec"]
v=d["ed25519_cpu_s_per_verify"]; c=d["server_cpu_s_per_create"]
print("create: %d accounts in %.2f s (keys generated before, in %.2f s, %.0f µs of load generator CPU each): %.0f creates/s (%.3f x ed25519); server CPU %.1f µs per create = %.2f ed25519 verifies of %.1f µs CPU (%d cores: %.0f creates/s CPU-bound); load generator %.1f µs while submitting" % (d["created"], d["create_seconds"], d["keygen_seconds"], d["client_cpu_s_per_keygen"]*1e6, r, r/ed, c*1e6, c/v, v*1e6, int(sys.argv[3]), int(sys.argv[3])/c, d["client_cpu_s_per_create"]*1e6))' "$work/create.json" "$ed" "$(nproc)"
sleep 2
for v in "" --verify; do
	c0=$(cpu)
	kl --json bench --accounts "$n" --duration "$dur" --concurrency 16 $v >"$work/lookup.json" 2>/dev/null
	c1=$(cpu)
	l=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["lookups"], round(d["lookups_per_sec"]), d["p50_ms"], d["p99_ms"], round(d["proof_bytes"]), round(d["payload_bytes"]))' "$work/lookup.json")
	set -- $l
	echo "lookups${v:+ (verified)}: $2/s ($(echo "scale=3; $2 / $ed" | bc) x ed25519), p50 $3 ms, p99 $4 ms; bundle $5 B + $6 B payload; server CPU $(echo "scale=1; ($c1 - $c0) * 10000 / $1" | bc) µs per lookup"
done
echo "server RSS: $(awk '/VmHWM/ {print $2/1024 " MiB peak"}' /proc/$srv/status), $(awk '/VmRSS/ {print $2/1024 " MiB now"}' /proc/$srv/status)"
du -b "$work/data"/*.db | awk -v n="$n" '{printf "disk %s: %d bytes, %.0f B/account\n", $2, $1, $1/n}'
