// Package sqlstate keeps the directory's state (account index, history,
// VRF proofs of users, the verifiable map's storage records, epochs, the
// latest signed checkpoint, the durable update queue and the sequencer
// lease) in a MySQL 8 or MariaDB 10.11 database, so that any number of
// directory processes share it: frontends read it, one sequencer writes it.
//
// Invariants:
//
//   - Every write of an epoch (map records, accounts, history, users, the
//     applied log size, the epoch row, the queue rows it completes) is in
//     one transaction (Tx), and Tx.Commit first locks the lease row and
//     checks that the fencing token is still the committer's: a sequencer
//     that lost its lease (paused, partitioned) can never commit an epoch
//     or store a checkpoint (ErrFenced), even if it does not know yet.
//   - Readers use a Snapshot: one read-only REPEATABLE READ transaction, so
//     the published epoch row, the map and the account index they read are
//     from one committed epoch.
//   - The log stays the source of truth: the state covers the log prefix
//     recorded as "applied", and a sequencer that takes over replays the
//     log suffix beyond it.
//
// The schema is versioned (schema.go); Open applies the missing
// migrations. All times are the database server's, so the lease does not
// depend on the processes' clocks.
package sqlstate

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Errors of the store. Callers match with errors.Is.
var (
	// ErrFenced means the lease's fencing token is no longer the
	// caller's: another sequencer took over. Nothing was written.
	ErrFenced = errors.New("sqlstate: lease lost (fencing token changed)")
	// ErrCorrupt means a stored record does not decode.
	ErrCorrupt = errors.New("sqlstate: corrupt stored state")
	// ErrQueueFull means Enqueue found the queue at its bound.
	ErrQueueFull = errors.New("sqlstate: update queue full")
	// ErrDuplicate means Enqueue found an update of the same index and
	// version already queued or done.
	ErrDuplicate = errors.New("sqlstate: an update of this index and version is already queued")
	// ErrSchema means the database has a newer schema than this binary.
	ErrSchema = errors.New("sqlstate: unsupported schema version")
)

// DefaultIdleTimeout is the session wait_timeout (seconds) Open sets
// unless the DSN sets one: the server drops a connection idle that long,
// releasing the locks of a stopped process's transaction.
const DefaultIdleTimeout = 60

// SequencerLease is the name of the sequencer's lease row.
const SequencerLease = "sequencer"

// Store is a directory state database. It is safe for concurrent use.
type Store struct {
	db    *sql.DB
	stmts stmtCache // the lookup path's prepared statements, by shape
}

// Open connects to the database named in dsn (go-sql-driver/mysql DSN,
// "user:pass@tcp(host:port)/dbname"), checks it, and applies the missing
// schema migrations.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlstate: bad DSN: %w", err)
	}
	if cfg.DBName == "" {
		return nil, errors.New("sqlstate: the DSN names no database (user:pass@tcp(host:port)/DBNAME)")
	}
	// One round trip per statement: parameters are interpolated client
	// side (binary-safe with the driver's escaping).
	cfg.InterpolateParams = true
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	// A process that stops between locking the lease row (a commit's
	// fence check) and committing, or while holding an idle transaction,
	// keeps its row locks until the server drops its connection: bound
	// that, and the time a lease acquisition waits for such a lock, so a
	// standby can take over. (Fencing does not depend on these: they only
	// bound how long a stopped process can delay the takeover.)
	if _, ok := cfg.Params["wait_timeout"]; !ok {
		cfg.Params["wait_timeout"] = strconv.Itoa(DefaultIdleTimeout)
	}
	if _, ok := cfg.Params["innodb_lock_wait_timeout"]; !ok {
		cfg.Params["innodb_lock_wait_timeout"] = "10"
	}
	cfg.MaxAllowedPacket = 64 << 20
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("sqlstate: %w", err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(64)
	db.SetMaxIdleConns(64)
	db.SetConnMaxLifetime(10 * time.Minute)
	s := &Store{db: db}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlstate: connecting to %s: %w", cfg.Addr, err)
	}
	if err := s.migrate(pctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// DB returns the database handle (for tests and monitoring).
func (s *Store) DB() *sql.DB { return s.db }

// Close closes the prepared statements and the connections.
func (s *Store) Close() error {
	s.stmts.close()
	return s.db.Close()
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INT NOT NULL PRIMARY KEY,
		applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
	) ENGINE=InnoDB`); err != nil {
		return fmt.Errorf("sqlstate: creating schema_migrations: %w", err)
	}
	// Serialize concurrent starts: only one process migrates at a time.
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, `SELECT GET_LOCK('keyline_schema_migration', 60)`).Scan(&got); err != nil || got.Int64 != 1 {
		return fmt.Errorf("sqlstate: taking the migration lock: %v", err)
	}
	defer conn.ExecContext(context.Background(), `SELECT RELEASE_LOCK('keyline_schema_migration')`)
	var cur sql.NullInt64
	if err := conn.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&cur); err != nil {
		return fmt.Errorf("sqlstate: reading the schema version: %w", err)
	}
	if int(cur.Int64) > SchemaVersion {
		return fmt.Errorf("%w: the database has schema version %d, this binary knows up to %d", ErrSchema, cur.Int64, SchemaVersion)
	}
	for v := int(cur.Int64) + 1; v <= SchemaVersion; v++ {
		for _, stmt := range migrations[v] {
			if _, err := conn.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("sqlstate: migration %d: %w", v, err)
			}
		}
		if _, err := conn.ExecContext(ctx, `INSERT INTO schema_migrations (version) VALUES (?)`, v); err != nil {
			return fmt.Errorf("sqlstate: recording migration %d: %w", v, err)
		}
	}
	var iso string
	if err := conn.QueryRowContext(ctx, `SELECT @@SESSION.tx_isolation`).Scan(&iso); err != nil {
		if err2 := conn.QueryRowContext(ctx, `SELECT @@SESSION.transaction_isolation`).Scan(&iso); err2 != nil {
			return fmt.Errorf("sqlstate: reading the isolation level: %v", err2)
		}
	}
	if iso != "REPEATABLE-READ" {
		return fmt.Errorf("sqlstate: the server's transaction isolation is %s; Keyline's snapshots need REPEATABLE-READ (the InnoDB default)", iso)
	}
	return nil
}

// Meta names.
const (
	metaApplied    = "applied"
	metaLatest     = "latest_epoch"
	metaCheckpoint = "checkpoint"
)

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// querier is what Snapshot, Tx and Store share for reads.
type querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
}

// reader implements the reads on a querier.
type reader struct {
	ctx context.Context
	q   querier
	// lock makes the reads of a write transaction locking reads, so that
	// they see the latest committed rows.
	lock bool
}

func (r reader) suffix() string {
	if r.lock {
		return " FOR UPDATE"
	}
	return ""
}

func (r reader) metaU64(name string) (uint64, bool, error) {
	var b []byte
	err := r.q.QueryRowContext(r.ctx, `SELECT value FROM meta WHERE name = ?`+r.suffix(), name).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	if len(b) != 8 {
		return 0, false, fmt.Errorf("%w: meta %s is %d bytes", ErrCorrupt, name, len(b))
	}
	return binary.BigEndian.Uint64(b), true, nil
}

// Applied returns the log size the map and index cover (0 before the
// first epoch).
func (r reader) Applied() (uint64, error) {
	v, _, err := r.metaU64(metaApplied)
	return v, err
}

// LatestEpoch returns the latest committed epoch, ok=false before the
// first.
func (r reader) LatestEpoch() (epoch uint64, ok bool, err error) {
	return r.metaU64(metaLatest)
}

// Epoch is one epoch row.
type Epoch struct {
	Epoch      uint64
	MapRoot    [32]byte
	LogSize    uint64
	Checkpoint []byte // nil if the epoch was not published on its own
}

// EpochRow returns the row of epoch, or nil.
func (r reader) EpochRow(epoch uint64) (*Epoch, error) {
	var e Epoch
	var root []byte
	err := r.q.QueryRowContext(r.ctx, `SELECT epoch, map_root, log_size, checkpoint FROM epochs WHERE epoch = ?`, epoch).
		Scan(&e.Epoch, &root, &e.LogSize, &e.Checkpoint)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(root) != 32 {
		return nil, fmt.Errorf("%w: map root of epoch %d is %d bytes", ErrCorrupt, epoch, len(root))
	}
	copy(e.MapRoot[:], root)
	return &e, nil
}

// Latest returns the latest epoch's row, or nil before the first epoch.
func (r reader) Latest() (*Epoch, error) {
	e, ok, err := r.LatestEpoch()
	if err != nil || !ok {
		return nil, err
	}
	row, err := r.EpochRow(e)
	if err != nil {
		return nil, err
	}
	if row == nil {
		return nil, fmt.Errorf("%w: latest epoch %d has no row", ErrCorrupt, e)
	}
	return row, nil
}

// Account is the latest entry of one VRF index.
type Account struct {
	Version   uint64
	LogIndex  uint64
	EntryHash [32]byte
	Leaf      []byte
}

// Account returns the latest entry of index, or nil.
func (r reader) Account(index [32]byte) (*Account, error) {
	var a Account
	var h []byte
	err := r.q.QueryRowContext(r.ctx, `SELECT version, log_index, entry_hash, leaf FROM accounts WHERE vrf_index = ?`, index[:]).
		Scan(&a.Version, &a.LogIndex, &h, &a.Leaf)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(h) != 32 {
		return nil, fmt.Errorf("%w: entry hash of %d bytes", ErrCorrupt, len(h))
	}
	copy(a.EntryHash[:], h)
	return &a, nil
}

// History returns the log indexes of index's versions >= from, oldest
// first, at most limit.
func (r reader) History(index [32]byte, from uint64, limit int) ([]uint64, error) {
	rows, err := r.q.QueryContext(r.ctx, `SELECT log_index FROM history WHERE vrf_index = ? AND version >= ? ORDER BY version LIMIT ?`, index[:], from, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []uint64
	for rows.Next() {
		var li uint64
		if err := rows.Scan(&li); err != nil {
			return nil, err
		}
		out = append(out, li)
	}
	return out, rows.Err()
}

// GetMany returns the map records of keys, in order, nil for absent ones,
// in one query per 1000 keys.
func (r reader) GetMany(keys [][]byte) ([][]byte, error) {
	out := make([][]byte, len(keys))
	pos := make(map[string][]int, len(keys))
	for i, k := range keys {
		pos[string(k)] = append(pos[string(k)], i)
	}
	uniq := make([][]byte, 0, len(pos))
	seen := make(map[string]bool, len(pos))
	for _, k := range keys {
		if !seen[string(k)] {
			seen[string(k)] = true
			uniq = append(uniq, k)
		}
	}
	for start := 0; start < len(uniq); start += 1000 {
		chunk := uniq[start:min(len(uniq), start+1000)]
		args := make([]any, len(chunk))
		for i, k := range chunk {
			args[i] = k
		}
		rows, err := r.q.QueryContext(r.ctx, `SELECT k, v FROM map_kv WHERE k IN (`+placeholders(len(chunk))+`)`+r.suffix(), args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var k, v []byte
			if err := rows.Scan(&k, &v); err != nil {
				rows.Close()
				return nil, err
			}
			for _, i := range pos[string(k)] {
				out[i] = v
			}
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

// Snapshot is a consistent read-only view of the state: every read sees the
// same committed epoch. Close it when done.
type Snapshot struct {
	reader
	tx *sql.Tx
}

// Snapshot starts a read-only REPEATABLE READ transaction.
func (s *Store) Snapshot(ctx context.Context) (*Snapshot, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	return &Snapshot{reader: reader{ctx: ctx, q: tx}, tx: tx}, nil
}

// Close ends the snapshot.
func (s *Snapshot) Close() { s.tx.Rollback() }

// Reads outside any snapshot see the latest committed state.

// Latest returns the latest epoch row, or nil before the first epoch.
func (s *Store) Latest(ctx context.Context) (*Epoch, error) { return s.r(ctx).Latest() }

// Applied returns the log size the state covers.
func (s *Store) Applied(ctx context.Context) (uint64, error) { return s.r(ctx).Applied() }

// LatestEpoch returns the latest committed epoch, ok=false before the first.
func (s *Store) LatestEpoch(ctx context.Context) (uint64, bool, error) { return s.r(ctx).LatestEpoch() }

// EpochRow returns the row of epoch, or nil.
func (s *Store) EpochRow(ctx context.Context, epoch uint64) (*Epoch, error) {
	return s.r(ctx).EpochRow(epoch)
}

// Account returns the latest committed entry of index, or nil.
func (s *Store) Account(ctx context.Context, index [32]byte) (*Account, error) {
	return s.r(ctx).Account(index)
}

func (s *Store) r(ctx context.Context) reader { return reader{ctx: ctx, q: s.db} }

// User returns the VRF proof and index stored for userID, ok=false if none.
func (s *Store) User(ctx context.Context, userID string) (proof []byte, index [32]byte, ok bool, err error) {
	var idx []byte
	err = s.db.QueryRowContext(ctx, `SELECT vrf_proof, vrf_index FROM users WHERE user_id = ?`, []byte(userID)).Scan(&proof, &idx)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, index, false, nil
	}
	if err != nil {
		return nil, index, false, err
	}
	if len(idx) != 32 || len(proof) != 80 {
		return nil, index, false, fmt.Errorf("%w: users row of %q", ErrCorrupt, userID)
	}
	copy(index[:], idx)
	return proof, index, true, nil
}

// Size returns the bytes the state's tables take (data and indexes, as
// the server estimates them) by table.
func (s *Store) Size(ctx context.Context) (map[string]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT table_name, data_length + index_length FROM information_schema.tables WHERE table_schema = DATABASE()`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var name string
		var n sql.NullInt64
		if err := rows.Scan(&name, &n); err != nil {
			return nil, err
		}
		out[name] = n.Int64
	}
	return out, rows.Err()
}

// ErrKeysDiffer means ClaimKeys found another key fingerprint recorded.
var ErrKeysDiffer = errors.New("sqlstate: the state database belongs to a directory with other keys")

// ErrLayoutDiffers means ClaimLayout found another map layout recorded.
var ErrLayoutDiffers = errors.New("sqlstate: the state database stores the map in another layout")

// ClaimKeys records fingerprint (a hash of the directory's public keys and
// origin) on first use and afterwards checks that it is the recorded one, so
// that a process started with other keys (a data dir not copied from the
// first) cannot serve or write this state (ErrKeysDiffer).
func (s *Store) ClaimKeys(ctx context.Context, fingerprint []byte) error {
	return s.claim(ctx, "keys", fingerprint, ErrKeysDiffer)
}

// ClaimLayout records the name of the map's storage layout in map_kv on
// first use and afterwards checks it (ErrLayoutDiffers).
func (s *Store) ClaimLayout(ctx context.Context, layout string) error {
	return s.claim(ctx, "map_layout", []byte(layout), ErrLayoutDiffers)
}

func (s *Store) claim(ctx context.Context, name string, value []byte, differs error) error {
	if _, err := s.db.ExecContext(ctx, `INSERT IGNORE INTO meta (name, value) VALUES (?, ?)`, name, value); err != nil {
		return err
	}
	var got []byte
	if err := s.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = ?`, name).Scan(&got); err != nil {
		return err
	}
	if string(got) != string(value) {
		return fmt.Errorf("%w: %q recorded, %q wanted", differs, got, value)
	}
	return nil
}

// ReadHistory reads, in one round trip (one read view), the latest epoch's
// row and the log indexes of index's versions >= from (at most limit,
// oldest first).
func (s *Store) ReadHistory(ctx context.Context, index [32]byte, from uint64, limit int) (*Epoch, []uint64, error) {
	rows, err := s.db.QueryContext(ctx, `(SELECT 0 AS kind, map_root AS k, checkpoint AS v, epoch AS n1, log_size AS n2 FROM epochs ORDER BY epoch DESC LIMIT 1)
		UNION ALL (SELECT 1, NULL, NULL, version, log_index FROM history WHERE vrf_index = ? AND version >= ? ORDER BY version LIMIT ?)`, index[:], from, limit)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var e *Epoch
	type hv struct{ version, li uint64 }
	var hs []hv
	for rows.Next() {
		var kind int
		var k, v []byte
		var n1, n2 uint64
		if err := rows.Scan(&kind, &k, &v, &n1, &n2); err != nil {
			return nil, nil, err
		}
		if kind == 0 {
			if len(k) != 32 {
				return nil, nil, fmt.Errorf("%w: map root of epoch %d", ErrCorrupt, n1)
			}
			e = &Epoch{Epoch: n1, LogSize: n2, Checkpoint: v}
			copy(e.MapRoot[:], k)
		} else {
			hs = append(hs, hv{n1, n2})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].version < hs[j].version })
	out := make([]uint64, len(hs))
	for i, h := range hs {
		out[i] = h.li
	}
	return e, out, nil
}

// Accounts returns the latest committed entries of indexes (absent ones
// are missing from the map), in one query per 1000 indexes.
func (s *Store) Accounts(ctx context.Context, indexes [][32]byte) (map[[32]byte]*Account, error) {
	out := make(map[[32]byte]*Account, len(indexes))
	for start := 0; start < len(indexes); start += 1000 {
		chunk := indexes[start:min(len(indexes), start+1000)]
		args := make([]any, len(chunk))
		for i := range chunk {
			args[i] = chunk[i][:]
		}
		rows, err := s.db.QueryContext(ctx, `SELECT vrf_index, version, log_index, entry_hash, leaf FROM accounts WHERE vrf_index IN (`+placeholders(len(chunk))+`)`, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var a Account
			var idx, h []byte
			if err := rows.Scan(&idx, &a.Version, &a.LogIndex, &h, &a.Leaf); err != nil {
				rows.Close()
				return nil, err
			}
			if len(idx) != 32 || len(h) != 32 {
				rows.Close()
				return nil, fmt.Errorf("%w: account row", ErrCorrupt)
			}
			copy(a.EntryHash[:], h)
			out[[32]byte(idx)] = &a
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
	}
	return out, nil
}
