#!/usr/bin/env bash
# Integration test of Keyline on a real Trillian: a private MariaDB instance,
# trillian_log_server and trillian_log_signer, all on loopback with free
# ports, torn down on exit.
#
# Phases (each is timed): install MariaDB (apt-get, only if no mariadbd/mysqld
# is installed) while the Trillian binaries build (only if the cache under
# ${KEYLINE_CACHE_DIR:-$HOME/.cache/keyline}/trillian-<version>-<go version>
# does not hold binaries of the go.mod version); start MariaDB in a
# temporary directory; load Trillian's MySQL schema; start the servers;
# create a PREORDERED_LOG tree; then
#   1. go test -race ./log/trillian/...: the log.Backend conformance suite and
#      the backend's own tests against the real servers;
#   2. go test ./integration/trillian/: `keyline serve --log-backend trillian`
#      (the real binary, built here) driven through the CLI story (create,
#      pair, revoke, lookup, monitor, audit), then the fault regressions —
#      serve killed while the signer is down with an append in flight, then
#      both restarted; MariaDB killed and restarted under load; the signer
#      killed under load — each checked for lost acknowledged updates, a full
#      audit, and a directory that serves and accepts updates on its own; and
#      the lookup benchmark, embedded vs Trillian in the same run.
# The fault tests stop and start MariaDB and the signer through this script:
#   integration-trillian.sh ctl STATE_DIR kill|start mariadb|signer
#
# Any failing step fails the script. Run as root (as CI does) or as a user
# that can run apt-get through sudo when MariaDB is missing.
# KEYLINE_TRILLIAN_INTEGRATION=skip skips the whole script (say so loudly);
# KEYLINE_TRILLIAN_BENCH=1 also runs the log/trillian benchmarks.
# See docs/operations-trillian.md.
#
# apt-packages: mariadb-server mariadb-client
set -euo pipefail
SCRIPT="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"

log() { echo "[trillian-it] $*"; }
die() { echo "[trillian-it] FAILED: $*" >&2; exit 1; }

# ---- services ------------------------------------------------------------------
# Each service runs detached (output appended to $WORK/NAME.log, stdin from
# /dev/null) with its pid in $WORK/NAME.pid, so that the ctl mode, called by
# the Go fault tests, can kill and restart it.

# alive NAME: whether the service's recorded process runs.
alive() { [ -f "$WORK/$1.pid" ] && kill -0 "$(cat "$WORK/$1.pid")" 2>/dev/null; }

# stop_service NAME SIGNAL: signals the service and waits (10 s) until it exited.
stop_service() {
	local name=$1 sig=$2 pid
	[ -f "$WORK/$name.pid" ] || return 0
	pid=$(cat "$WORK/$name.pid")
	kill "-$sig" "$pid" 2>/dev/null || { rm -f "$WORK/$name.pid"; return 0; }
	for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null
		sleep 0.2
	fi
	rm -f "$WORK/$name.pid"
}

# wait_port NAME PORT: waits until PORT accepts connections while NAME runs.
wait_port() {
	local name=$1 port=$2
	for _ in $(seq 1 600); do
		alive "$name" || die "$name exited during startup (see $WORK/$name.log)"
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	die "$name did not listen on 127.0.0.1:$port within 60 s"
}

start_mariadb() {
	local uopt=()
	[ "$(id -u)" = 0 ] && uopt=(--user=root)
	"$MYSQLD" --no-defaults --datadir="$WORK/db" "${uopt[@]}" \
		--bind-address=127.0.0.1 --port="$DB_PORT" --socket="$DB_SOCK" \
		--pid-file="$WORK/mysqld.pid" --log-error="$WORK/mysqld.err" \
		--skip-log-bin --innodb-buffer-pool-size=64M --max-connections=300 \
		</dev/null >>"$WORK/mariadb.log" 2>&1 &
	echo $! >"$WORK/mariadb.pid"
	disown $!
	for _ in $(seq 1 600); do
		alive mariadb || die "mariadbd exited during startup (see $WORK/mysqld.err)"
		"$MYSQLADMIN" --no-defaults --socket="$DB_SOCK" -uroot ping >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	die "mariadbd not ready within 60 s"
}

start_log_server() {
	"$BIN/trillian_log_server" --storage_system=mysql --quota_system=mysql --mysql_uri="$MYSQL_URI" \
		--rpc_endpoint="127.0.0.1:$RPC_PORT" --http_endpoint="127.0.0.1:$HTTP_PORT" \
		--logtostderr </dev/null >>"$WORK/log_server.log" 2>&1 &
	echo $! >"$WORK/log_server.pid"
	disown $!
	wait_port log_server "$RPC_PORT"
}

start_signer() {
	"$BIN/trillian_log_signer" --storage_system=mysql --quota_system=mysql --mysql_uri="$MYSQL_URI" \
		--rpc_endpoint="127.0.0.1:$SIGNER_RPC_PORT" --http_endpoint="127.0.0.1:$SIGNER_HTTP_PORT" \
		--force_master --sequencer_interval=20ms --batch_size=5000 --num_sequencers=4 \
		--logtostderr </dev/null >>"$WORK/signer.log" 2>&1 &
	echo $! >"$WORK/signer.pid"
	disown $!
	wait_port signer "$SIGNER_RPC_PORT"
}

# ---- ctl mode (used by integration/trillian's fault tests) -------------------------
if [ "${1:-}" = ctl ]; then
	[ $# = 4 ] || die "usage: $0 ctl STATE_DIR kill|stop|start mariadb|signer|log_server"
	WORK=$2
	# shellcheck disable=SC1091
	. "$WORK/state.env"
	case "$3 $4" in
	"kill mariadb" | "kill signer" | "kill log_server") stop_service "$4" KILL ;;
	"stop mariadb" | "stop signer" | "stop log_server") stop_service "$4" TERM ;;
	"start mariadb") alive mariadb || start_mariadb ;;
	"start signer") alive signer || start_signer ;;
	"start log_server") alive log_server || start_log_server ;;
	*) die "ctl: unknown action '$3 $4'" ;;
	esac
	echo "[trillian-it] ctl: $3 $4 done"
	exit 0
fi

if [ "${KEYLINE_TRILLIAN_INTEGRATION:-}" = "skip" ]; then
	echo "!! Trillian integration test SKIPPED (KEYLINE_TRILLIAN_INTEGRATION=skip)"
	exit 0
fi

# ---- phase timing -----------------------------------------------------------
SCRIPT_START=$(date +%s%N)
PHASE_NAME=""
PHASE_START=0
SUMMARY=""
phase() { # phase NAME: ends the running phase, starts NAME
	local now; now=$(date +%s%N)
	if [ -n "$PHASE_NAME" ]; then
		local ms=$(((now - PHASE_START) / 1000000))
		local line; line=$(printf '%-34s %8.1f s' "$PHASE_NAME" "$(awk "BEGIN{print $ms/1000}")")
		log "phase done: $line"
		SUMMARY+="$line"$'\n'
	fi
	PHASE_NAME="${1:-}"
	PHASE_START=$now
	[ -n "$PHASE_NAME" ] && log "phase: $PHASE_NAME"
	return 0
}

# ---- teardown ---------------------------------------------------------------
WORK=""
BUILD_PID=""
cleanup() {
	local rc=$?
	set +e
	[ -n "$BUILD_PID" ] && kill "$BUILD_PID" 2>/dev/null && wait "$BUILD_PID" 2>/dev/null
	if [ -n "$WORK" ] && [ -d "$WORK" ]; then
		if [ $rc -ne 0 ]; then
			for f in "$WORK"/*.log "$WORK"/*.err; do
				[ -f "$f" ] || continue
				case "$f" in */go-test*.log | */apt.log) continue ;; esac
				echo "----- last lines of $(basename "$f") -----" >&2
				tail -n 25 "$f" >&2
			done
		fi
		# Stop in reverse start order: signer, server, then the database
		# (MariaDB gets SIGTERM: a clean shutdown; the Trillian servers hold
		# nothing worth a graceful stop).
		for s in signer log_server; do stop_service "$s" KILL; done
		stop_service mariadb TERM
		rm -rf "$WORK"
	fi
	if [ $rc -eq 0 ]; then
		log "teardown complete"
	else
		echo "[trillian-it] FAILED (exit $rc) in phase: ${PHASE_NAME:-?}" >&2
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"
	elif command -v sudo >/dev/null; then sudo "$@"
	else die "need root (or sudo) to run: $*"
	fi
}

# free_port prints a TCP port on 127.0.0.1 that nothing listens on and that
# this script has not handed out yet.
USED_PORTS=" "
free_port() {
	local p
	for _ in $(seq 1 200); do
		p=$((20000 + RANDOM % 12000)) # below the ephemeral range
		case "$USED_PORTS" in *" $p "*) continue ;; esac
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			USED_PORTS+="$p "
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

find_mysqld() {
	local c
	for c in mariadbd mysqld /usr/sbin/mariadbd /usr/sbin/mysqld; do
		if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi
	done
	return 1
}

WORK=$(mktemp -d /tmp/keyline-trillian-it.XXXXXX)
chmod 755 "$WORK"

# ---- Trillian binaries: cached outside the checkout, verified by version ----------
phase "Trillian binaries (start)"
TRILLIAN_VERSION=$(go list -m -f '{{.Version}}' github.com/google/trillian) ||
	die "go list -m github.com/google/trillian"
GOVERSION=$(go env GOVERSION)
CACHE_ROOT=${KEYLINE_CACHE_DIR:-$HOME/.cache/keyline}
BIN="$CACHE_ROOT/trillian-$TRILLIAN_VERSION-$GOVERSION/bin"
TRILLIAN_CMDS=(trillian_log_server trillian_log_signer createtree)
# cached_ok: every binary exists and was built from the go.mod version.
cached_ok() {
	local c
	for c in "${TRILLIAN_CMDS[@]}"; do
		[ -x "$BIN/$c" ] || return 1
		go version -m "$BIN/$c" 2>/dev/null |
			grep -Eq "^[[:space:]]+mod[[:space:]]+github.com/google/trillian[[:space:]]+$TRILLIAN_VERSION([[:space:]]|$)" ||
			return 1
	done
}
if cached_ok; then
	log "using cached Trillian $TRILLIAN_VERSION binaries in $BIN"
else
	log "building Trillian $TRILLIAN_VERSION into $BIN in the background (log: $WORK/build.log)"
	mkdir -p "$CACHE_ROOT"
	STAGE=$(mktemp -d "$CACHE_ROOT/.build.XXXXXX")
	# Built outside our module, with Trillian's own go.mod; installed into the
	# cache only when complete (a concurrent run may do the same: last wins).
	(
		cd "$WORK" &&
			GOBIN="$STAGE/bin" GOFLAGS=-buildvcs=false go install \
				"github.com/google/trillian/cmd/trillian_log_server@$TRILLIAN_VERSION" \
				"github.com/google/trillian/cmd/trillian_log_signer@$TRILLIAN_VERSION" \
				"github.com/google/trillian/cmd/createtree@$TRILLIAN_VERSION" &&
			mkdir -p "$(dirname "$BIN")" && rm -rf "$BIN" && mv "$STAGE/bin" "$BIN" && rm -rf "$STAGE"
	) >"$WORK/build.log" 2>&1 &
	BUILD_PID=$!
fi

# ---- MariaDB installation -----------------------------------------------------
phase "install MariaDB"
if ! MYSQLD=$(find_mysqld); then
	log "no mariadbd/mysqld found: installing mariadb-server with apt-get (output in $WORK/apt.log)"
	# Keep the package from starting a system service: we run our own.
	POLICY=/usr/sbin/policy-rc.d
	ADDED_POLICY=0
	if [ ! -e "$POLICY" ]; then
		as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $POLICY && chmod 755 $POLICY"
		ADDED_POLICY=1
	fi
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q -o DPkg::Lock::Timeout=600 >"$WORK/apt.log" 2>&1 ||
		die "apt-get update (see $WORK/apt.log)"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		-o DPkg::Lock::Timeout=600 mariadb-server mariadb-client >>"$WORK/apt.log" 2>&1 ||
		die "apt-get install mariadb-server (see $WORK/apt.log)"
	[ "$ADDED_POLICY" = 1 ] && as_root rm -f "$POLICY"
	MYSQLD=$(find_mysqld) || die "mariadb-server installed but no mariadbd/mysqld found"
	log "installed $("$MYSQLD" --version | head -1)"
else
	log "using installed $MYSQLD"
fi
INSTALL_DB=$(command -v mariadb-install-db || command -v mysql_install_db) ||
	die "mariadb-install-db/mysql_install_db not found"
MYSQL=$(command -v mariadb || command -v mysql) || die "mariadb/mysql client not found"
MYSQLADMIN=$(command -v mariadb-admin || command -v mysqladmin) || die "mariadb-admin/mysqladmin not found"

# ---- private MariaDB instance ---------------------------------------------
phase "start MariaDB"
DB_PORT=$(free_port)
DB_SOCK="$WORK/mysqld.sock"
DB_USER_OPT=()
[ "$(id -u)" = 0 ] && DB_USER_OPT=(--user=root)
"$INSTALL_DB" --no-defaults --datadir="$WORK/db" "${DB_USER_OPT[@]}" \
	--auth-root-authentication-method=normal --skip-test-db >"$WORK/install-db.log" 2>&1 ||
	die "$INSTALL_DB (its log is printed below)"
start_mariadb
log "MariaDB on 127.0.0.1:$DB_PORT ($("$MYSQLD" --version | head -1))"

# ---- schema ---------------------------------------------------------------
phase "load Trillian schema"
go mod download github.com/google/trillian >/dev/null || die "go mod download github.com/google/trillian"
SCHEMA="$(go env GOMODCACHE)/github.com/google/trillian@$TRILLIAN_VERSION/storage/mysql/schema/storage.sql"
[ -f "$SCHEMA" ] || die "schema not found: $SCHEMA"
DB_PASS="keyline-it-$RANDOM$RANDOM"
"$MYSQL" --no-defaults --socket="$DB_SOCK" -uroot <<SQL || die "create database/user"
CREATE DATABASE trillian;
CREATE USER 'trillian'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER 'trillian'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON trillian.* TO 'trillian'@'127.0.0.1';
GRANT ALL ON trillian.* TO 'trillian'@'localhost';
SQL
"$MYSQL" --no-defaults --socket="$DB_SOCK" -uroot trillian <"$SCHEMA" || die "load $SCHEMA"
log "schema loaded from $SCHEMA"

# ---- keyline binary (the fault tests run it as a child process) -------------------
phase "build keyline"
go build -o "$WORK/keyline" ./cmd/keyline || die "go build ./cmd/keyline"

# ---- wait for the Trillian build --------------------------------------------------
phase "Trillian binaries (wait)"
if [ -n "$BUILD_PID" ]; then
	wait "$BUILD_PID" || { cat "$WORK/build.log" >&2; BUILD_PID=""; die "go install Trillian $TRILLIAN_VERSION"; }
	BUILD_PID=""
	cached_ok || die "the built Trillian binaries in $BIN do not report version $TRILLIAN_VERSION"
	log "built and cached Trillian $TRILLIAN_VERSION in $BIN"
fi

# ---- servers ------------------------------------------------------------------
phase "start Trillian"
MYSQL_URI="trillian:$DB_PASS@tcp(127.0.0.1:$DB_PORT)/trillian"
RPC_PORT=$(free_port)
HTTP_PORT=$(free_port)
SIGNER_RPC_PORT=$(free_port)
SIGNER_HTTP_PORT=$(free_port)
start_log_server
start_signer
log "trillian_log_server on 127.0.0.1:$RPC_PORT, trillian_log_signer on 127.0.0.1:$SIGNER_RPC_PORT"
# What the ctl mode needs to restart the services.
{
	for v in MYSQLD MYSQLADMIN DB_PORT DB_SOCK BIN MYSQL_URI RPC_PORT HTTP_PORT SIGNER_RPC_PORT SIGNER_HTTP_PORT; do
		printf '%s=%q\n' "$v" "${!v}"
	done
} >"$WORK/state.env"

# ---- tree ----------------------------------------------------------------------
phase "createtree"
TREE_ID=$("$BIN/createtree" --admin_server="127.0.0.1:$RPC_PORT" --tree_type=PREORDERED_LOG \
	--display_name=keyline-it --max_root_duration=0 2>"$WORK/createtree.err") ||
	die "createtree: $(cat "$WORK/createtree.err")"
[[ "$TREE_ID" =~ ^[0-9]+$ ]] || die "createtree printed '$TREE_ID', want a tree id"
log "PREORDERED_LOG tree $TREE_ID"

export KEYLINE_TRILLIAN_ADDR="127.0.0.1:$RPC_PORT"

# require_passed LOG TEST...: each TEST ran and passed, and nothing skipped.
require_passed() {
	local f=$1; shift
	grep -q -- '--- SKIP' "$f" && { cat "$f"; die "a Trillian test skipped although the servers were running"; }
	for want in "$@"; do
		grep -q -- "^--- PASS: $want " "$f" ||
			{ cat "$f"; die "$want did not run and pass against the real Trillian"; }
	done
}

# ---- log backend tests ---------------------------------------------------------------
phase "go test -race ./log/trillian/..."
KEYLINE_TRILLIAN_TREE_ID="$TREE_ID" \
	go test -race -count=1 -v ./log/trillian/... >"$WORK/go-test-log.log" 2>&1 ||
	{ cat "$WORK/go-test-log.log"; die "go test ./log/trillian/..."; }
grep -E -- '^--- PASS' "$WORK/go-test-log.log" | sed 's/^/[trillian-it]   /'
require_passed "$WORK/go-test-log.log" TestConformanceTrillian TestReopenTrillian TestCreatetreeTreeReopen TestTrillianConflictStatuses

# ---- the whole directory on Trillian ---------------------------------------------------
phase "go test ./integration/trillian/"
KEYLINE_BIN="$WORK/keyline" KEYLINE_TRILLIAN_CTL="$SCRIPT" KEYLINE_TRILLIAN_STATE="$WORK" \
	go test -count=1 -v -timeout=20m -run . -bench=. -benchtime=1x ./integration/trillian/ \
	>"$WORK/go-test-dir.log" 2>&1 ||
	{ cat "$WORK/go-test-dir.log"; die "go test ./integration/trillian/"; }
grep -vE -- '^(=== |PASS$|ok )' "$WORK/go-test-dir.log" | sed 's/^/[trillian-it]   /'
require_passed "$WORK/go-test-dir.log" TestCLIStory TestServeKilledWhileSignerDown TestMariaDBRestartUnderLoad TestSignerKilledUnderLoad

if [ "${KEYLINE_TRILLIAN_BENCH:-}" = 1 ]; then
	phase "log/trillian benchmarks"
	go test -run='^$' -bench=. -benchtime="${KEYLINE_TRILLIAN_BENCHTIME:-2s}" ./log/trillian/ ||
		die "benchmarks"
fi
phase ""

TOTAL_MS=$((($(date +%s%N) - SCRIPT_START) / 1000000))
echo "[trillian-it] phase timings:"
printf '%s' "$SUMMARY" | sed 's/^/[trillian-it]   /'
printf '[trillian-it]   %-34s %8.1f s\n' "total" "$(awk "BEGIN{print $TOTAL_MS/1000}")"
log "Trillian integration test passed"
