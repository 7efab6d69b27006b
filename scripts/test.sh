#!/usr/bin/env bash
# Runs every Keyline test: the formatting check, go vet, the unit tests under
# the race detector, and every integration suite scripts/integration-*.sh
# (each installs what it needs, starts its services on loopback with free
# ports, and tears them down). Used by `make test` and CI (.ci/run).
#
# gofmt runs first (seconds; a failure stops the run). Then the suites —
# "unit" (go test -race ./...), one per integration script, and "vet", in
# that order — run in parallel, at most KEYLINE_TEST_JOBS at a time
# (default: the number of CPUs plus one): integration suites spend much of
# their time waiting (apt-get, downloads, server restarts, fault tests),
# which the CPU-bound suites fill. Each suite's output is streamed with a
# "[suite]" prefix and kept in full in $KEYLINE_TEST_LOGS (default: a
# temporary directory, printed at the end); a summary table with every
# suite's status and time ends the run, followed by the last lines of each
# failed suite. Any failing suite fails the run (exit 1).
#
# Knobs: KEYLINE_TEST_JOBS; KEYLINE_TEST_SUITES (space-separated names to run,
# e.g. "vet unit trillian"; default all); KEYLINE_SUITE_TIMEOUT (per suite,
# default 40m); KEYLINE_TEST_QUIET=1 (no streaming, only the summary and the
# failed suites' logs).
#
# Integration scripts that install packages must tolerate a concurrent
# apt-get (another suite may install at the same time): use
# `apt-get -o DPkg::Lock::Timeout=600`; and declare the packages on a line
# `# apt-packages: PKG...` so that .ci/run installs them up front.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"

START=$(date +%s)
LOGS=${KEYLINE_TEST_LOGS:-$(mktemp -d /tmp/keyline-test.XXXXXX)}
mkdir -p "$LOGS"
JOBS=${KEYLINE_TEST_JOBS:-$(($(nproc 2>/dev/null || echo 1) + 1))}
[ "$JOBS" -ge 1 ] 2>/dev/null || JOBS=2
SUITE_TIMEOUT=${KEYLINE_SUITE_TIMEOUT:-40m}

say() { echo "== $*"; }

# ---- gofmt (fast, fails the run at once) ---------------------------------------
say "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' | grep -v '^proto/.*\.pb\.go$') 2>&1)
if [ -n "$unformatted" ]; then
	echo "gofmt needed on:"
	echo "$unformatted"
	exit 1
fi

# ---- suites ------------------------------------------------------------------------
# NAMES[i] runs CMDS[i]: the unit tests, every integration suite, vet.
NAMES=(unit)
CMDS=("go test -race -count=1 ./...")
for f in scripts/integration-*.sh; do
	[ -e "$f" ] || continue
	n=${f#scripts/integration-}
	NAMES+=("${n%.sh}")
	CMDS+=("bash $f")
done
NAMES+=(vet)
CMDS+=("go vet ./...")

selected() {
	[ -z "${KEYLINE_TEST_SUITES:-}" ] && return 0
	case " $KEYLINE_TEST_SUITES " in *" $1 "*) return 0 ;; esac
	return 1
}

# run_suite NAME CMD: runs CMD with a per-suite timeout, its output prefixed
# on stdout (unless quiet) and complete in $LOGS/NAME.log; records the exit
# code and the time in $LOGS/NAME.rc and $LOGS/NAME.time.
run_suite() {
	local name=$1 cmd=$2 t0 rc
	t0=$(date +%s)
	{
		echo "\$ $cmd"
		# timeout puts the suite in its own process group and, when the
		# time is up, signals the whole group.
		timeout -k 30s "$SUITE_TIMEOUT" bash -c "$cmd" </dev/null 2>&1 &
		echo $! >"$LOGS/$name.pid"
		wait $!
		rc=$?
		[ $rc = 124 ] && echo "suite $name timed out after $SUITE_TIMEOUT"
		echo "$rc" >"$LOGS/$name.rc"
	} | tee "$LOGS/$name.log" | if [ "${KEYLINE_TEST_QUIET:-}" = 1 ]; then cat >/dev/null; else sed -u "s/^/[$name] /"; fi
	echo $(($(date +%s) - t0)) >"$LOGS/$name.time"
}

# Stop every running suite (its timeout's process group) if the run is
# interrupted.
on_signal() {
	echo "== interrupted: stopping the suites" >&2
	local f
	for f in "$LOGS"/*.pid; do
		[ -f "$f" ] && kill -TERM -- "-$(cat "$f")" 2>/dev/null
	done
	exit 130
}
trap on_signal INT TERM

RUN=()
for i in "${!NAMES[@]}"; do
	name=${NAMES[$i]}
	selected "$name" || continue
	RUN+=("$name")
	while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
	say "start $name: ${CMDS[$i]}"
	run_suite "$name" "${CMDS[$i]}" &
done
wait

# ---- summary ---------------------------------------------------------------------
FAILED=()
echo
say "summary (logs in $LOGS; $JOBS suites at a time)"
printf '   %-14s %-8s %8s\n' suite status time
for name in "${RUN[@]}"; do
	rc=$(cat "$LOGS/$name.rc" 2>/dev/null || echo "?")
	secs=$(cat "$LOGS/$name.time" 2>/dev/null || echo 0)
	status=ok
	if [ "$rc" != 0 ]; then
		status="FAIL($rc)"
		FAILED+=("$name")
	fi
	printf '   %-14s %-8s %6d s\n' "$name" "$status" "$secs"
done
printf '   %-14s %-8s %6d s\n' total "" $(($(date +%s) - START))
for name in "${FAILED[@]}"; do
	echo
	say "FAILED suite $name: last 60 lines of $LOGS/$name.log"
	tail -n 60 "$LOGS/$name.log"
done
if [ ${#FAILED[@]} -gt 0 ]; then
	say "FAILED: ${FAILED[*]}"
	exit 1
fi
say "all suites passed"
