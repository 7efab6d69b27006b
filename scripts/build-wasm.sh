#!/usr/bin/env bash
# Builds the in-browser verifier: cmd/keyline-wasm as WebAssembly, plus the
# Go runtime's wasm_exec.js of the same toolchain, into
# directory/httpapi/web/wasm/ (not committed), where `keyline serve --http`
# embeds them at build time. Run it (or `go generate ./directory/httpapi`)
# before `go build ./cmd/keyline`; a binary built without it serves the
# page with a notice that the verifier is missing.
#   scripts/build-wasm.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-directory/httpapi/web/wasm}"
mkdir -p "$out"
GOOS=js GOARCH=wasm go build -trimpath -ldflags="-s -w" -o "$out/keyline.wasm.tmp" ./cmd/keyline-wasm
mv "$out/keyline.wasm.tmp" "$out/keyline.wasm"
root="$(go env GOROOT)"
if [ -f "$root/lib/wasm/wasm_exec.js" ]; then
	cp "$root/lib/wasm/wasm_exec.js" "$out/wasm_exec.js"
else
	cp "$root/misc/wasm/wasm_exec.js" "$out/wasm_exec.js"
fi
echo "built $out/keyline.wasm ($(wc -c <"$out/keyline.wasm") bytes, $(gzip -9 -c "$out/keyline.wasm" | wc -c) gzipped)"
