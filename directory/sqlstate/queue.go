package sqlstate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Queue row status.
const (
	StatusQueued = 0 // waiting for the sequencer
	StatusDone   = 1 // in the log, its epoch committed
	StatusFailed = 2 // rejected by the sequencer (Err* set)
)

// Queued is one validated update in the durable queue.
type Queued struct {
	ID        uint64
	Index     [32]byte
	Version   uint64
	PrevHash  [32]byte
	EntryHash [32]byte
	UserID    string
	VRFProof  []byte // nil unless the update creates the account
	Leaf      []byte // the AccountUpdate leaf
}

// Enqueue appends u to the queue unless maxQueued updates are already
// waiting (ErrQueueFull) or an update of the same index and version is
// queued or done (ErrDuplicate), and returns its id. The update is durable
// when Enqueue returns.
func (s *Store) Enqueue(ctx context.Context, u *Queued, maxQueued int) (uint64, error) {
	if maxQueued > 0 {
		var n int
		if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM update_queue WHERE status = 0 LIMIT ?) q`, maxQueued).Scan(&n); err != nil {
			return 0, err
		}
		if n >= maxQueued {
			return 0, ErrQueueFull
		}
	}
	proof := u.VRFProof
	if proof == nil {
		proof = []byte{}
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO update_queue (vrf_index, pending_version, version, prev_hash, entry_hash, user_id, vrf_proof, leaf)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, u.Index[:], u.Version, u.Version, u.PrevHash[:], u.EntryHash[:], []byte(u.UserID), proof, u.Leaf)
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == 1062 { // ER_DUP_ENTRY
		return 0, ErrDuplicate
	}
	if err != nil {
		return 0, err
	}
	id, err := res.LastInsertId()
	return uint64(id), err
}

const queuedCols = `id, vrf_index, version, prev_hash, entry_hash, user_id, vrf_proof, leaf`

func scanQueued(rows *sql.Rows) (*Queued, error) {
	var u Queued
	var idx, prev, hash, uid []byte
	if err := rows.Scan(&u.ID, &idx, &u.Version, &prev, &hash, &uid, &u.VRFProof, &u.Leaf); err != nil {
		return nil, err
	}
	if len(idx) != 32 || len(prev) != 32 || len(hash) != 32 {
		return nil, fmt.Errorf("%w: queue row %d", ErrCorrupt, u.ID)
	}
	copy(u.Index[:], idx)
	copy(u.PrevHash[:], prev)
	copy(u.EntryHash[:], hash)
	u.UserID = string(uid)
	if len(u.VRFProof) == 0 {
		u.VRFProof = nil
	}
	return &u, nil
}

// Pending returns up to limit queued updates, oldest first.
func (s *Store) Pending(ctx context.Context, limit int) ([]*Queued, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+queuedCols+` FROM update_queue WHERE status = 0 ORDER BY id LIMIT ?`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Queued
	for rows.Next() {
		u, err := scanQueued(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// LatestQueued returns the queued update of index with the highest version,
// or nil.
func (s *Store) LatestQueued(ctx context.Context, index [32]byte) (*Queued, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+queuedCols+` FROM update_queue WHERE vrf_index = ? AND status = 0 ORDER BY version DESC LIMIT 1`, index[:])
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, rows.Err()
	}
	return scanQueued(rows)
}

// QueueKey names a sequenced update: its index, version and entry hash.
type QueueKey struct {
	Index     [32]byte
	Version   uint64
	EntryHash [32]byte
}

// MarkDone marks the queued updates matching keys (same index, version and
// entry hash) done in epoch. Updates sequenced without a queue row (replayed
// from the log) match nothing.
func (t *Tx) MarkDone(epoch uint64, keys []QueueKey) error {
	for start := 0; start < len(keys); start += 500 {
		chunk := keys[start:min(len(keys), start+500)]
		args := []any{epoch}
		for _, k := range chunk {
			args = append(args, k.Index[:], k.Version, k.EntryHash[:])
		}
		q := `UPDATE update_queue SET status = 1, epoch = ?, updated_at = NOW(6)
			WHERE status = 0 AND (vrf_index, pending_version, entry_hash) IN (` + placeholdersN(len(chunk), "(?,?,?)") + `)`
		if _, err := t.tx.ExecContext(t.ctx, q, args...); err != nil {
			return err
		}
	}
	return nil
}

func placeholdersN(n int, one string) string {
	b := make([]byte, 0, n*(len(one)+1))
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, one...)
	}
	return string(b)
}

// Rejection is a queued update the sequencer refused, with the API error
// (gRPC code number, reason, message) its submitter receives.
type Rejection struct {
	ID      uint64
	Code    int
	Reason  string
	Message string
}

// MarkFailed marks queued updates failed; their (index, version) is free
// again.
func (t *Tx) MarkFailed(rs []Rejection) error {
	for _, r := range rs {
		msg := r.Message
		if len(msg) > 500 {
			msg = msg[:500]
		}
		if _, err := t.tx.ExecContext(t.ctx, `UPDATE update_queue SET status = 2, pending_version = NULL, err_code = ?, err_reason = ?, err_msg = ?, updated_at = NOW(6)
			WHERE id = ? AND status = 0`, r.Code, r.Reason, msg, r.ID); err != nil {
			return err
		}
	}
	return nil
}

// Result is the outcome of a queued update.
type Result struct {
	Status     int
	Epoch      uint64 // StatusDone
	LogIndex   uint64 // StatusDone: index of its leaf
	Checkpoint []byte // StatusDone: the served checkpoint of Epoch, or of a later epoch if Epoch's is unknown
	Rejection         // StatusFailed
}

// Results returns the outcome of the updates ids that are no longer
// queued (done or failed); ids still queued are absent.
func (s *Store) Results(ctx context.Context, ids []uint64) (map[uint64]Result, error) {
	out := map[uint64]Result{}
	if len(ids) == 0 {
		return out, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	rows, err := s.db.QueryContext(ctx, `SELECT q.id, q.status, COALESCE(q.epoch, 0), COALESCE(h.log_index, 0), e.checkpoint,
			COALESCE(q.err_code, 0), COALESCE(q.err_reason, ''), COALESCE(q.err_msg, '')
		FROM update_queue q
		LEFT JOIN history h ON h.vrf_index = q.vrf_index AND h.version = q.version AND q.status = 1
		LEFT JOIN epochs e ON e.epoch = q.epoch
		WHERE q.status <> 0 AND q.id IN (`+placeholders(len(ids))+`)`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var r Result
		var id uint64
		if err := rows.Scan(&id, &r.Status, &r.Epoch, &r.LogIndex, &r.Checkpoint, &r.Code, &r.Reason, &r.Message); err != nil {
			return nil, err
		}
		r.ID = id
		out[id] = r
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// A done update whose epoch was replayed (no checkpoint of its own) is
	// covered by the latest published checkpoint.
	for id, r := range out {
		if r.Status == StatusDone && r.Checkpoint == nil {
			var cp []byte
			err := s.db.QueryRowContext(ctx, `SELECT checkpoint FROM epochs WHERE epoch >= ? AND checkpoint IS NOT NULL ORDER BY epoch LIMIT 1`, r.Epoch).Scan(&cp)
			if errors.Is(err, sql.ErrNoRows) {
				delete(out, id) // not published yet: still waiting
				continue
			}
			if err != nil {
				return nil, err
			}
			r.Checkpoint = cp
			out[id] = r
		}
	}
	return out, nil
}

// QueueLen returns the number of queued updates.
func (s *Store) QueueLen(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM update_queue WHERE status = 0`).Scan(&n)
	return n, err
}

// PruneQueue deletes done and failed updates older than age.
func (s *Store) PruneQueue(ctx context.Context, age time.Duration) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM update_queue WHERE status <> 0 AND updated_at < NOW(6) - INTERVAL ? MICROSECOND LIMIT 10000`, age.Microseconds())
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
