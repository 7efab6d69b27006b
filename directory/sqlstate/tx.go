package sqlstate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// Tx is an epoch's write transaction, fenced by a lease token: Commit
// fails with ErrFenced, writing nothing, unless the lease row still holds
// token. Reads in a Tx are locking reads (they see the latest committed
// rows and keep them until Commit).
type Tx struct {
	reader
	tx    *sql.Tx
	token uint64
	done  bool
}

// Begin starts an epoch's transaction for the holder of lease token token.
func (s *Store) Begin(ctx context.Context, token uint64) (*Tx, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return &Tx{reader: reader{ctx: ctx, q: tx, lock: true}, tx: tx, token: token}, nil
}

// Rollback abandons the transaction (no-op after Commit).
func (t *Tx) Rollback() {
	if !t.done {
		t.done = true
		t.tx.Rollback()
	}
}

// checkFence locks the lease row and checks the token, in q's transaction.
func checkFence(ctx context.Context, q querier, token uint64) error {
	var cur uint64
	err := q.QueryRowContext(ctx, `SELECT token FROM leases WHERE name = ? FOR UPDATE`, SequencerLease).Scan(&cur)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: no lease row", ErrFenced)
	}
	if err != nil {
		return err
	}
	if cur != token {
		return fmt.Errorf("%w: token is %d, ours %d", ErrFenced, cur, token)
	}
	return nil
}

// Commit checks the fencing token under the lease row's lock and commits.
// On ErrFenced nothing is written.
func (t *Tx) Commit() error {
	if t.done {
		return errors.New("sqlstate: transaction already ended")
	}
	if err := checkFence(t.ctx, t.tx, t.token); err != nil {
		t.Rollback()
		return err
	}
	t.done = true
	return t.tx.Commit()
}

// rowsInsert runs "INSERT INTO table (cols) VALUES (...),(...) tail" over
// rows in chunks that keep the statement well under max_allowed_packet.
func (t *Tx) rowsInsert(head, tail string, ncols int, rows [][]any) error {
	one := "(" + placeholders(ncols) + ")"
	for start := 0; start < len(rows); {
		end, bytes := start, 0
		for end < len(rows) && end-start < 1000 && bytes < 8<<20 {
			for _, v := range rows[end] {
				if b, ok := v.([]byte); ok {
					bytes += 2*len(b) + 4
				} else {
					bytes += 24
				}
			}
			end++
		}
		var sb strings.Builder
		sb.WriteString(head)
		args := make([]any, 0, (end-start)*ncols)
		for i := start; i < end; i++ {
			if i > start {
				sb.WriteByte(',')
			}
			sb.WriteString(one)
			args = append(args, rows[i]...)
		}
		sb.WriteString(tail)
		if _, err := t.tx.ExecContext(t.ctx, sb.String(), args...); err != nil {
			return err
		}
		start = end
	}
	return nil
}

// KV is one map storage record.
type KV struct {
	Key, Value []byte
}

// PutMany writes map records (insert or replace) in batched statements.
func (t *Tx) PutMany(kvs []KV) error {
	rows := make([][]any, len(kvs))
	for i, kv := range kvs {
		rows[i] = []any{kv.Key, kv.Value}
	}
	return t.rowsInsert(`INSERT INTO map_kv (k, v) VALUES `, ` ON DUPLICATE KEY UPDATE v = VALUES(v)`, 2, rows)
}

// AccountRow is one account record to write.
type AccountRow struct {
	Index [32]byte
	Account
}

// PutAccounts writes the latest record of each index.
func (t *Tx) PutAccounts(accs []AccountRow) error {
	rows := make([][]any, len(accs))
	for i, a := range accs {
		rows[i] = []any{a.Index[:], a.Version, a.LogIndex, a.EntryHash[:], a.Leaf}
	}
	return t.rowsInsert(`INSERT INTO accounts (vrf_index, version, log_index, entry_hash, leaf) VALUES `,
		` ON DUPLICATE KEY UPDATE version = VALUES(version), log_index = VALUES(log_index), entry_hash = VALUES(entry_hash), leaf = VALUES(leaf)`, 5, rows)
}

// HistoryRow is the log index of one version of an index.
type HistoryRow struct {
	Index    [32]byte
	Version  uint64
	LogIndex uint64
}

// PutHistory records versions' log indexes.
func (t *Tx) PutHistory(hs []HistoryRow) error {
	rows := make([][]any, len(hs))
	for i, h := range hs {
		rows[i] = []any{h.Index[:], h.Version, h.LogIndex}
	}
	return t.rowsInsert(`INSERT INTO history (vrf_index, version, log_index) VALUES `, ` ON DUPLICATE KEY UPDATE log_index = VALUES(log_index)`, 3, rows)
}

// UserRow is a user id's VRF proof and index.
type UserRow struct {
	UserID string
	Proof  []byte
	Index  [32]byte
}

// PutUsers records users' VRF proofs.
func (t *Tx) PutUsers(us []UserRow) error {
	rows := make([][]any, len(us))
	for i, u := range us {
		rows[i] = []any{[]byte(u.UserID), u.Proof, u.Index[:]}
	}
	return t.rowsInsert(`INSERT INTO users (user_id, vrf_proof, vrf_index) VALUES `, ` ON DUPLICATE KEY UPDATE vrf_proof = VALUES(vrf_proof), vrf_index = VALUES(vrf_index)`, 3, rows)
}

func (t *Tx) putMeta(name string, v []byte) error {
	_, err := t.tx.ExecContext(t.ctx, `INSERT INTO meta (name, value) VALUES (?, ?) ON DUPLICATE KEY UPDATE value = VALUES(value)`, name, v)
	return err
}

// PutEpoch records epoch e as the latest epoch and e.LogSize as the applied
// log size. e.Checkpoint may be nil (a replayed epoch).
func (t *Tx) PutEpoch(e Epoch) error {
	if _, err := t.tx.ExecContext(t.ctx, `INSERT INTO epochs (epoch, map_root, log_size, checkpoint) VALUES (?, ?, ?, ?)
		ON DUPLICATE KEY UPDATE map_root = VALUES(map_root), log_size = VALUES(log_size), checkpoint = VALUES(checkpoint)`,
		e.Epoch, e.MapRoot[:], e.LogSize, nullBytes(e.Checkpoint)); err != nil {
		return err
	}
	if err := t.putMeta(metaLatest, u64(e.Epoch)); err != nil {
		return err
	}
	return t.putMeta(metaApplied, u64(e.LogSize))
}

func nullBytes(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

// SetCheckpoint records the served checkpoint of an already committed
// epoch (the one recovery publishes after replaying), fenced like Commit.
func (s *Store) SetCheckpoint(ctx context.Context, token, epoch uint64, checkpoint []byte) error {
	t, err := s.Begin(ctx, token)
	if err != nil {
		return err
	}
	defer t.Rollback()
	res, err := t.tx.ExecContext(ctx, `UPDATE epochs SET checkpoint = ? WHERE epoch = ?`, checkpoint, epoch)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		var one int
		if err := t.tx.QueryRowContext(ctx, `SELECT 1 FROM epochs WHERE epoch = ?`, epoch).Scan(&one); err != nil {
			return fmt.Errorf("%w: no row for epoch %d: %v", ErrCorrupt, epoch, err)
		}
	}
	return t.Commit()
}
