#!/usr/bin/env bash
# Integration test of the Trillian log backend (log/trillian) against a real
# Trillian: a private MariaDB instance, trillian_log_server and
# trillian_log_signer, all on loopback, torn down on exit.
#
# Phases (each is timed): install MariaDB (apt-get, only if no mariadbd/mysqld
# is installed), start MariaDB in a temporary directory, load Trillian's MySQL
# schema, build the Trillian binaries at the version in go.mod (cached under
# .cache/trillian/), start the servers, create a PREORDERED_LOG tree with
# createtree, then run `go test -race ./log/trillian/...` with
# KEYLINE_TRILLIAN_ADDR and KEYLINE_TRILLIAN_TREE_ID set so that the backend
# runs the same conformance suite as the embedded backend.
#
# Any failing step fails the script. Run as root (as CI does) or as a user
# that can run apt-get through sudo when MariaDB is missing.
# KEYLINE_TRILLIAN_INTEGRATION=skip skips the whole script (say so loudly);
# KEYLINE_TRILLIAN_BENCH=1 also runs the benchmarks against the real servers.
# See docs/operations-trillian.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"

if [ "${KEYLINE_TRILLIAN_INTEGRATION:-}" = "skip" ]; then
	echo "!! Trillian integration test SKIPPED (KEYLINE_TRILLIAN_INTEGRATION=skip)"
	exit 0
fi

log() { echo "[trillian-it] $*"; }
die() { echo "[trillian-it] FAILED: $*" >&2; exit 1; }

# ---- phase timing -----------------------------------------------------------
SCRIPT_START=$(date +%s%N)
PHASE_NAME=""
PHASE_START=0
SUMMARY=""
phase() { # phase NAME: ends the running phase, starts NAME
	local now; now=$(date +%s%N)
	if [ -n "$PHASE_NAME" ]; then
		local ms=$(((now - PHASE_START) / 1000000))
		local line; line=$(printf '%-28s %8.1f s' "$PHASE_NAME" "$(awk "BEGIN{print $ms/1000}")")
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
PIDS=()
cleanup() {
	local rc=$?
	set +e
	if [ $rc -ne 0 ] && [ -n "$WORK" ] && [ -d "$WORK" ]; then
		for f in "$WORK"/*.log; do
			[ -f "$f" ] || continue
			echo "----- last lines of $(basename "$f") -----" >&2
			tail -n 25 "$f" >&2
		done
	fi
	# Stop in reverse start order: signer, server, then the database.
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		local pid=${PIDS[$i]}
		kill -TERM "$pid" 2>/dev/null || continue
		for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	[ -n "$WORK" ] && rm -rf "$WORK"
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

# wait_port PID PORT WHAT: waits until PORT accepts connections, PID alive.
wait_port() {
	local pid=$1 port=$2 what=$3
	for _ in $(seq 1 600); do
		kill -0 "$pid" 2>/dev/null || die "$what exited during startup"
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	die "$what did not listen on 127.0.0.1:$port within 60 s"
}

find_mysqld() {
	local c
	for c in mariadbd mysqld /usr/sbin/mariadbd /usr/sbin/mysqld; do
		if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi
	done
	return 1
}

# ---- 1. MariaDB installation ------------------------------------------------
WORK=$(mktemp -d /tmp/keyline-trillian-it.XXXXXX)
chmod 755 "$WORK"
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
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$WORK/apt.log" 2>&1 ||
		die "apt-get update"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		mariadb-server mariadb-client >>"$WORK/apt.log" 2>&1 || die "apt-get install mariadb-server"
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

# ---- 2. private MariaDB instance ---------------------------------------------
phase "start MariaDB"
DB_PORT=$(free_port)
DB_SOCK="$WORK/mysqld.sock"
DB_USER_OPT=()
[ "$(id -u)" = 0 ] && DB_USER_OPT=(--user=root)
"$INSTALL_DB" --no-defaults --datadir="$WORK/db" "${DB_USER_OPT[@]}" \
	--auth-root-authentication-method=normal --skip-test-db >"$WORK/install-db.log" 2>&1 ||
	die "$INSTALL_DB (its log is printed below)"
"$MYSQLD" --no-defaults --datadir="$WORK/db" "${DB_USER_OPT[@]}" \
	--bind-address=127.0.0.1 --port="$DB_PORT" --socket="$DB_SOCK" \
	--pid-file="$WORK/mysqld.pid" --log-error="$WORK/mysqld.log" \
	--skip-log-bin --innodb-buffer-pool-size=64M --max-connections=200 \
	>"$WORK/mysqld-stdout.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 600); do
	kill -0 "${PIDS[0]}" 2>/dev/null || die "mariadbd exited during startup"
	"$MYSQLADMIN" --no-defaults --socket="$DB_SOCK" -uroot ping >/dev/null 2>&1 && break
	sleep 0.1
done
"$MYSQLADMIN" --no-defaults --socket="$DB_SOCK" -uroot ping >/dev/null 2>&1 ||
	die "mariadbd not ready within 60 s"
log "MariaDB on 127.0.0.1:$DB_PORT ($("$MYSQLD" --version | head -1))"

# ---- 3. schema ---------------------------------------------------------------
phase "load Trillian schema"
TRILLIAN_VERSION=$(go list -m -f '{{.Version}}' github.com/google/trillian) ||
	die "go list -m github.com/google/trillian"
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

# ---- 4. Trillian binaries ------------------------------------------------------
phase "build Trillian $TRILLIAN_VERSION"
GOVERSION=$(go env GOVERSION)
BIN="$ROOT/.cache/trillian/$TRILLIAN_VERSION-$GOVERSION/bin"
if [ -x "$BIN/trillian_log_server" ] && [ -x "$BIN/trillian_log_signer" ] && [ -x "$BIN/createtree" ]; then
	log "using cached binaries in $BIN"
else
	mkdir -p "$BIN"
	# Built outside our module, with Trillian's own go.mod.
	(cd "$WORK" && GOBIN="$BIN" GOFLAGS=-buildvcs=false go install \
		"github.com/google/trillian/cmd/trillian_log_server@$TRILLIAN_VERSION" \
		"github.com/google/trillian/cmd/trillian_log_signer@$TRILLIAN_VERSION" \
		"github.com/google/trillian/cmd/createtree@$TRILLIAN_VERSION") ||
		{ rm -rf "$BIN"; die "go install Trillian $TRILLIAN_VERSION"; }
fi

# ---- 5. servers ------------------------------------------------------------------
phase "start Trillian"
MYSQL_URI="trillian:$DB_PASS@tcp(127.0.0.1:$DB_PORT)/trillian"
RPC_PORT=$(free_port)
HTTP_PORT=$(free_port)
SIGNER_RPC_PORT=$(free_port)
SIGNER_HTTP_PORT=$(free_port)
"$BIN/trillian_log_server" --storage_system=mysql --quota_system=mysql --mysql_uri="$MYSQL_URI" \
	--rpc_endpoint="127.0.0.1:$RPC_PORT" --http_endpoint="127.0.0.1:$HTTP_PORT" \
	--logtostderr >"$WORK/log_server.log" 2>&1 &
PIDS+=($!)
wait_port "${PIDS[-1]}" "$RPC_PORT" trillian_log_server
"$BIN/trillian_log_signer" --storage_system=mysql --quota_system=mysql --mysql_uri="$MYSQL_URI" \
	--rpc_endpoint="127.0.0.1:$SIGNER_RPC_PORT" --http_endpoint="127.0.0.1:$SIGNER_HTTP_PORT" \
	--force_master --sequencer_interval=20ms --batch_size=5000 --num_sequencers=4 \
	--logtostderr >"$WORK/log_signer.log" 2>&1 &
PIDS+=($!)
wait_port "${PIDS[-1]}" "$SIGNER_RPC_PORT" trillian_log_signer
log "trillian_log_server on 127.0.0.1:$RPC_PORT, trillian_log_signer on 127.0.0.1:$SIGNER_RPC_PORT"

# ---- 6. tree ----------------------------------------------------------------------
phase "createtree"
TREE_ID=$("$BIN/createtree" --admin_server="127.0.0.1:$RPC_PORT" --tree_type=PREORDERED_LOG \
	--display_name=keyline-it --max_root_duration=0 2>"$WORK/createtree.log") ||
	die "createtree"
[[ "$TREE_ID" =~ ^[0-9]+$ ]] || die "createtree printed '$TREE_ID', want a tree id"
log "PREORDERED_LOG tree $TREE_ID"

# ---- 7. tests ----------------------------------------------------------------------
phase "go test ./log/trillian/..."
KEYLINE_TRILLIAN_ADDR="127.0.0.1:$RPC_PORT" KEYLINE_TRILLIAN_TREE_ID="$TREE_ID" \
	go test -race -count=1 -v ./log/trillian/... >"$WORK/go-test.log" 2>&1 ||
	{ cat "$WORK/go-test.log"; die "go test ./log/trillian/..."; }
grep -E '^(=== RUN|--- (FAIL|SKIP)|ok|FAIL|PASS)' "$WORK/go-test.log" | grep -v '^=== RUN' || true
grep -q -- '--- SKIP' "$WORK/go-test.log" && { cat "$WORK/go-test.log"; die "a Trillian test skipped although servers were running"; }
grep -E -- '^--- PASS' "$WORK/go-test.log" | sed 's/^/[trillian-it]   /'
for want in TestConformanceTrillian TestReopenTrillian TestCreatetreeTreeReopen TestTrillianConflictStatuses; do
	grep -q -- "^--- PASS: $want " "$WORK/go-test.log" ||
		{ cat "$WORK/go-test.log"; die "$want did not run and pass against the real Trillian"; }
done
if [ "${KEYLINE_TRILLIAN_BENCH:-}" = 1 ]; then
	phase "benchmarks"
	KEYLINE_TRILLIAN_ADDR="127.0.0.1:$RPC_PORT" \
		go test -run='^$' -bench=. -benchtime="${KEYLINE_TRILLIAN_BENCHTIME:-2s}" ./log/trillian/ ||
		die "benchmarks"
fi
phase ""

TOTAL_MS=$((($(date +%s%N) - SCRIPT_START) / 1000000))
echo "[trillian-it] phase timings:"
printf '%s' "$SUMMARY" | sed 's/^/[trillian-it]   /'
printf '[trillian-it]   %-28s %8.1f s\n' "total" "$(awk "BEGIN{print $TOTAL_MS/1000}")"
log "Trillian integration test passed"
