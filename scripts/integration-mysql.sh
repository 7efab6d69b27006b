#!/usr/bin/env bash
# Integration test of the shared (MySQL/MariaDB) state backend and of the
# scale-out roles: a private MariaDB on loopback holding both Trillian's
# database and Keyline's state database, trillian_log_server and
# trillian_log_signer, all torn down on exit.
#
# Runs, against the real servers:
#   - go test -race ./directory/sqlstate/ (schema, lease and fencing, queue,
#     snapshots, map storage) and the directory's TestShared* tests;
#   - go test ./integration/mysql/: two sequencers and two frontends as real
#     `keyline serve` processes under load, the active sequencer SIGKILLed
#     repeatedly and one SIGSTOPped past its lease (docs/operations-scaleout.md).
#
# The Trillian binaries come from the cache that scripts/integration-trillian.sh
# fills (${KEYLINE_CACHE_DIR:-$HOME/.cache/keyline}/trillian-<version>-<go
# version>/bin); they are built into it, the same way, only when missing.
# MariaDB is installed with apt-get only when no mariadbd/mysqld is found.
#
# Knobs: KEYLINE_MYSQL_INTEGRATION=skip skips the script (loudly);
# KEYLINE_MYSQL_KILLS=N sets the SIGKILL rounds (default 3);
# KEYLINE_MYSQL_BENCH=1 also runs the benchmarks (BenchmarkShared*, see
# docs/scaling.md), KEYLINE_MYSQL_BENCH_ACCOUNTS sizes them.
#
# apt-packages: mariadb-server mariadb-client
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"

log() { echo "[mysql-it] $*"; }
die() { echo "[mysql-it] FAILED: $*" >&2; exit 1; }

if [ "${KEYLINE_MYSQL_INTEGRATION:-}" = "skip" ]; then
	echo "!! MySQL state integration test SKIPPED (KEYLINE_MYSQL_INTEGRATION=skip)"
	exit 0
fi

START=$(date +%s)
WORK=$(mktemp -d /tmp/keyline-mysql-it.XXXXXX)
chmod 755 "$WORK"
PIDS=()
BUILD_PID=""
cleanup() {
	local rc=$?
	set +e
	[ -n "$BUILD_PID" ] && kill "$BUILD_PID" 2>/dev/null
	if [ $rc -ne 0 ]; then
		for f in "$WORK"/*.log "$WORK"/*.err; do
			[ -f "$f" ] || continue
			echo "----- last lines of $(basename "$f") -----" >&2
			tail -n 20 "$f" >&2
		done
	fi
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		local pid=${PIDS[$i]}
		kill -TERM "$pid" 2>/dev/null || continue
		for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	rm -rf "$WORK"
	[ $rc -eq 0 ] && log "teardown complete" || echo "[mysql-it] FAILED (exit $rc)" >&2
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

USED_PORTS=" "
free_port() {
	local p
	for _ in $(seq 1 200); do
		p=$((20000 + RANDOM % 12000))
		case "$USED_PORTS" in *" $p "*) continue ;; esac
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			USED_PORTS+="$p "
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

wait_port() { # PID PORT WHAT
	for _ in $(seq 1 600); do
		kill -0 "$1" 2>/dev/null || die "$3 exited during startup"
		if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	die "$3 did not listen on 127.0.0.1:$2 within 60 s"
}

find_mysqld() {
	local c
	for c in mariadbd mysqld /usr/sbin/mariadbd /usr/sbin/mysqld; do
		if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi
	done
	return 1
}

# ---- Trillian binaries (shared cache with integration-trillian.sh) ----------------
TRILLIAN_VERSION=$(go list -m -f '{{.Version}}' github.com/google/trillian) || die "go list -m github.com/google/trillian"
GOVERSION=$(go env GOVERSION)
CACHE_ROOT=${KEYLINE_CACHE_DIR:-$HOME/.cache/keyline}
BIN="$CACHE_ROOT/trillian-$TRILLIAN_VERSION-$GOVERSION/bin"
TRILLIAN_CMDS=(trillian_log_server trillian_log_signer createtree)
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
	log "building Trillian $TRILLIAN_VERSION into $BIN (log: $WORK/build.log)"
	mkdir -p "$CACHE_ROOT"
	STAGE=$(mktemp -d "$CACHE_ROOT/.build.XXXXXX")
	(
		cd "$WORK" &&
			GOBIN="$STAGE/bin" GOFLAGS=-buildvcs=false nice go install \
				"github.com/google/trillian/cmd/trillian_log_server@$TRILLIAN_VERSION" \
				"github.com/google/trillian/cmd/trillian_log_signer@$TRILLIAN_VERSION" \
				"github.com/google/trillian/cmd/createtree@$TRILLIAN_VERSION" &&
			mkdir -p "$(dirname "$BIN")" && rm -rf "$BIN" && mv "$STAGE/bin" "$BIN" && rm -rf "$STAGE"
	) >"$WORK/build.log" 2>&1 &
	BUILD_PID=$!
fi

# ---- MariaDB ----------------------------------------------------------------------
if ! MYSQLD=$(find_mysqld); then
	log "no mariadbd/mysqld found: installing mariadb-server with apt-get"
	POLICY=/usr/sbin/policy-rc.d
	ADDED_POLICY=0
	if [ ! -e "$POLICY" ]; then
		as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $POLICY && chmod 755 $POLICY"
		ADDED_POLICY=1
	fi
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q -o DPkg::Lock::Timeout=600 >"$WORK/apt.log" 2>&1 || die "apt-get update"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		-o DPkg::Lock::Timeout=600 mariadb-server mariadb-client >>"$WORK/apt.log" 2>&1 || die "apt-get install mariadb-server"
	[ "$ADDED_POLICY" = 1 ] && as_root rm -f "$POLICY"
	MYSQLD=$(find_mysqld) || die "mariadb-server installed but no mariadbd/mysqld found"
fi
INSTALL_DB=$(command -v mariadb-install-db || command -v mysql_install_db) || die "mariadb-install-db not found"
MYSQL=$(command -v mariadb || command -v mysql) || die "mariadb/mysql client not found"
MYSQLADMIN=$(command -v mariadb-admin || command -v mysqladmin) || die "mariadb-admin not found"

DB_PORT=$(free_port)
DB_SOCK="$WORK/mysqld.sock"
UOPT=()
[ "$(id -u)" = 0 ] && UOPT=(--user=root)
"$INSTALL_DB" --no-defaults --datadir="$WORK/db" "${UOPT[@]}" \
	--auth-root-authentication-method=normal --skip-test-db >"$WORK/install-db.log" 2>&1 || die "$INSTALL_DB"
"$MYSQLD" --no-defaults --datadir="$WORK/db" "${UOPT[@]}" \
	--bind-address=127.0.0.1 --port="$DB_PORT" --socket="$DB_SOCK" \
	--pid-file="$WORK/mysqld.pid" --log-error="$WORK/mysqld.err" \
	--skip-log-bin --innodb-buffer-pool-size=256M --max-connections=500 \
	</dev/null >"$WORK/mariadb.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 600); do
	kill -0 "${PIDS[0]}" 2>/dev/null || die "mariadbd exited during startup"
	"$MYSQLADMIN" --no-defaults --socket="$DB_SOCK" -uroot ping >/dev/null 2>&1 && break
	sleep 0.1
done
"$MYSQLADMIN" --no-defaults --socket="$DB_SOCK" -uroot ping >/dev/null 2>&1 || die "mariadbd not ready within 60 s"
log "MariaDB on 127.0.0.1:$DB_PORT ($("$MYSQLD" --version | head -1))"

go mod download github.com/google/trillian >/dev/null || die "go mod download github.com/google/trillian"
SCHEMA="$(go env GOMODCACHE)/github.com/google/trillian@$TRILLIAN_VERSION/storage/mysql/schema/storage.sql"
[ -f "$SCHEMA" ] || die "schema not found: $SCHEMA"
DB_PASS="kl-$RANDOM$RANDOM"
# keyline creates one database per test (kltest_*, kldir_*, klit_*).
"$MYSQL" --no-defaults --socket="$DB_SOCK" -uroot <<SQL || die "create databases/users"
CREATE DATABASE trillian;
CREATE USER 'trillian'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON trillian.* TO 'trillian'@'127.0.0.1';
CREATE USER 'keyline'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON *.* TO 'keyline'@'127.0.0.1';
SQL
"$MYSQL" --no-defaults --socket="$DB_SOCK" -uroot trillian <"$SCHEMA" || die "load $SCHEMA"
export KEYLINE_MYSQL_DSN="keyline:$DB_PASS@tcp(127.0.0.1:$DB_PORT)/mysql"

# ---- state tests (need only MariaDB) ---------------------------------------------------
log "go test -race ./directory/sqlstate/ and the directory's shared-state tests"
go test -race -count=1 -v ./directory/sqlstate/ >"$WORK/go-test-sqlstate.log" 2>&1 || { cat "$WORK/go-test-sqlstate.log"; die "go test ./directory/sqlstate/"; }
go test -race -count=1 -v -run 'TestShared' ./directory/ >"$WORK/go-test-shared.log" 2>&1 || { cat "$WORK/go-test-shared.log"; die "go test -run TestShared ./directory/"; }
for f in "$WORK/go-test-sqlstate.log" "$WORK/go-test-shared.log"; do
	grep -q -- '--- SKIP' "$f" && { cat "$f"; die "a test skipped although MariaDB was running"; }
	grep -E -- '^--- (PASS|FAIL)' "$f" | sed 's/^/[mysql-it]   /'
done

# ---- Trillian ----------------------------------------------------------------------
if [ -n "$BUILD_PID" ]; then
	wait "$BUILD_PID" || { BUILD_PID=""; cat "$WORK/build.log" >&2; die "go install Trillian $TRILLIAN_VERSION"; }
	BUILD_PID=""
	cached_ok || die "the built Trillian binaries do not report version $TRILLIAN_VERSION"
fi
MYSQL_URI="trillian:$DB_PASS@tcp(127.0.0.1:$DB_PORT)/trillian"
RPC_PORT=$(free_port)
HTTP_PORT=$(free_port)
"$BIN/trillian_log_server" --storage_system=mysql --quota_system=mysql --mysql_uri="$MYSQL_URI" \
	--rpc_endpoint="127.0.0.1:$RPC_PORT" --http_endpoint="127.0.0.1:$HTTP_PORT" \
	--logtostderr </dev/null >"$WORK/log_server.log" 2>&1 &
PIDS+=($!)
wait_port "${PIDS[-1]}" "$RPC_PORT" trillian_log_server
SIGNER_RPC_PORT=$(free_port)
SIGNER_HTTP_PORT=$(free_port)
"$BIN/trillian_log_signer" --storage_system=mysql --quota_system=mysql --mysql_uri="$MYSQL_URI" \
	--rpc_endpoint="127.0.0.1:$SIGNER_RPC_PORT" --http_endpoint="127.0.0.1:$SIGNER_HTTP_PORT" \
	--force_master --sequencer_interval=20ms --batch_size=5000 --num_sequencers=4 \
	--logtostderr </dev/null >"$WORK/signer.log" 2>&1 &
PIDS+=($!)
wait_port "${PIDS[-1]}" "$SIGNER_RPC_PORT" trillian_log_signer
log "trillian_log_server on 127.0.0.1:$RPC_PORT, signer on 127.0.0.1:$SIGNER_RPC_PORT"

go build -o "$WORK/keyline" ./cmd/keyline || die "go build ./cmd/keyline"

# ---- failover test: real processes ---------------------------------------------------
log "go test ./integration/mysql/ (two sequencers, two frontends, SIGKILL x ${KEYLINE_MYSQL_KILLS:-3}, SIGSTOP)"
KEYLINE_BIN="$WORK/keyline" KEYLINE_TRILLIAN_ADDR="127.0.0.1:$RPC_PORT" KEYLINE_TRILLIAN_BIN="$BIN" \
	go test -count=1 -v -timeout=20m ./integration/mysql/ >"$WORK/go-test-failover.log" 2>&1 ||
	{ cat "$WORK/go-test-failover.log"; die "go test ./integration/mysql/"; }
grep -q -- '--- SKIP' "$WORK/go-test-failover.log" && { cat "$WORK/go-test-failover.log"; die "the failover test skipped"; }
grep -vE -- '^(=== |PASS$|ok )' "$WORK/go-test-failover.log" | sed 's/^/[mysql-it]   /'

if [ "${KEYLINE_MYSQL_BENCH:-}" = 1 ]; then
	log "benchmarks (docs/scaling.md), ${KEYLINE_MYSQL_BENCH_ACCOUNTS:-20000} accounts"
	{
		go test -run '^$' -bench SharedLookup -benchtime "${KEYLINE_MYSQL_LOOKUPS:-5000}x" -timeout 60m ./directory/ &&
			go test -run '^$' -bench SharedEpoch -benchtime 2x -timeout 60m ./directory/
	} >"$WORK/bench.log" 2>&1 || { cat "$WORK/bench.log"; die "benchmarks"; }
	grep -E '^Benchmark' "$WORK/bench.log" | sed 's/^/[mysql-it]   /'
fi
log "MySQL state integration test passed in $(($(date +%s) - START)) s"
