package sqlstate

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"

	klog "github.com/keyline/keyline/log"
)

// Checkpoints is a log.CheckpointStore in the state database, fenced by the
// sequencer lease: StoreCheckpoint fails with ErrFenced (and stores nothing)
// unless Token() is still the lease's token, so a sequencer that lost its
// lease can never publish a checkpoint.
type Checkpoints struct {
	S     *Store
	Token func() uint64
}

var _ klog.CheckpointStore = (*Checkpoints)(nil)

// LatestCheckpoint implements log.CheckpointStore.
func (c *Checkpoints) LatestCheckpoint(ctx context.Context) ([]byte, error) {
	var b []byte
	err := c.S.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = ?`, metaCheckpoint).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return b, err
}

// StoreCheckpoint implements log.CheckpointStore.
func (c *Checkpoints) StoreCheckpoint(ctx context.Context, prev, next []byte) error {
	token := c.Token()
	tx, err := c.S.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := checkFence(ctx, tx, token); err != nil {
		return err
	}
	var cur []byte
	err = tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = ? FOR UPDATE`, metaCheckpoint).Scan(&cur)
	if errors.Is(err, sql.ErrNoRows) {
		cur, err = nil, nil
	}
	if err != nil {
		return err
	}
	if !bytes.Equal(cur, prev) || (cur == nil) != (prev == nil) {
		return fmt.Errorf("%w: stored checkpoint differs from the expected previous one", klog.ErrCheckpointConflict)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO checkpoints (note, token) VALUES (?, ?)`, next, token); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO meta (name, value) VALUES (?, ?) ON DUPLICATE KEY UPDATE value = VALUES(value)`, metaCheckpoint, next); err != nil {
		return err
	}
	return tx.Commit()
}
