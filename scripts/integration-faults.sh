#!/usr/bin/env bash
# Storage-fault and crash integration tests of the directory (owner: reliab;
# see docs/operations.md, "Crash and storage-fault tests").
#
#   - installs strace with apt-get if it is missing (it injects EIO into the
#     write and fsync system calls of a running `keyline serve`);
#   - runs directory/crashtest with KEYLINE_FAULT_TESTS=1: TestDiskFaultsInjected
#     (EIO on fdatasync of log.db, on writes and on fdatasync of directory.db),
#     and TestDiskFull (a full tmpfs; needs root to mount it); and, only when
#     KEYLINE_CRASH_TRIALS is set (e.g. 1000), the long TestServeSIGKILL (the
#     plain `go test ./...` run already does 200 SIGKILLs).
#
# apt-packages: strace
# KEYLINE_FAULTS_INTEGRATION=skip skips it (says so loudly). Every process it
# starts listens on 127.0.0.1 with a free port and is killed by the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"

if [ "${KEYLINE_FAULTS_INTEGRATION:-}" = "skip" ]; then
	echo "!! storage-fault integration tests SKIPPED (KEYLINE_FAULTS_INTEGRATION=skip)"
	exit 0
fi
log() { echo "[faults-it] $*"; }

if ! command -v strace >/dev/null 2>&1; then
	log "installing strace"
	if [ "$(id -u)" = 0 ]; then
		apt-get install -y -o DPkg::Lock::Timeout=600 strace >/dev/null || { apt-get update -o DPkg::Lock::Timeout=600 >/dev/null && apt-get install -y -o DPkg::Lock::Timeout=600 strace >/dev/null; }
	else
		sudo apt-get install -y -o DPkg::Lock::Timeout=600 strace >/dev/null
	fi
fi
if [ "$(id -u)" != 0 ]; then
	log "not root: TestDiskFull (tmpfs mount) will be skipped"
fi

start=$(date +%s)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
tests='TestDiskFaultsInjected|TestDiskFull'
if [ -n "${KEYLINE_CRASH_TRIALS:-}" ]; then
	tests="$tests|TestServeSIGKILL"
fi
KEYLINE_FAULT_TESTS=1 go test -count=1 -timeout 30m -v \
	-run "$tests" ./directory/crashtest >"$out" 2>&1 || status=$?
grep -E '^(--- |PASS|FAIL|ok|panic)|faults_test|crash_test' "$out" || true
if [ "$status" != 0 ]; then
	tail -n 100 "$out"
fi
log "done in $(($(date +%s) - start))s (exit $status)"
exit "$status"
