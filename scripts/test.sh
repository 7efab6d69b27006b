#!/usr/bin/env bash
# Runs every Keyline test: formatting and vet checks, the unit tests under the
# race detector, and the integration suites. Used by `make test` and CI.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' | grep -v '^proto/.*\.pb\.go$') 2>/dev/null || true)
if [ -n "$unformatted" ]; then
	echo "gofmt needed on:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test -race"
go test -race -count=1 ./...

# ---- BEGIN integration: Trillian log backend (owner: log/trillian) ----------
# Starts a private MariaDB + trillian_log_server + trillian_log_signer on
# loopback and runs log/trillian's conformance tests against them (installs
# mariadb-server with apt-get if missing). See docs/operations-trillian.md.
echo "== integration: Trillian log backend"
./scripts/integration-trillian.sh
# ---- END integration: Trillian log backend ----------------------------------

# ---- BEGIN integration: browser (owner: directory/httpapi) -------------------
# Builds the WebAssembly verifier and drives the /verify page in headless
# Chromium (installs chromium with apt-get if missing). Remove this block
# once test.sh runs every scripts/integration-*.sh by itself.
echo "== integration: browser"
./scripts/integration-browser.sh
# ---- END integration: browser -------------------------------------------------

# ---- BEGIN integration: MySQL state and failover (owner: directory/sqlstate) --
# Private MariaDB + Trillian on loopback: the shared-state tests and the
# failover test (two sequencers, two frontends, SIGKILL/SIGSTOP). Remove this
# block once test.sh runs every scripts/integration-*.sh by itself.
echo "== integration: MySQL state and failover"
./scripts/integration-mysql.sh
# ---- END integration: MySQL state and failover -------------------------------
