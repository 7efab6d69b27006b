package sqlstate

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// Lease is a held lease: Token is the fencing token every write of the
// holder passes to Begin (and the checkpoint store).
type Lease struct {
	Name   string
	Holder string
	Token  uint64
}

// AcquireLease takes the lease name for holder for d, if it is free (no
// row, or expired by the database's clock) or already holder's; ok=false
// if another holder has it. Taking a lease from another holder (or after
// it expired) increments the token, which fences out the previous holder
// even if it comes back before noticing. Renewing one's own unexpired
// lease keeps the token.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, d time.Duration) (l Lease, ok bool, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return l, false, err
	}
	defer tx.Rollback()
	var curHolder string
	var token uint64
	var expired bool
	err = tx.QueryRowContext(ctx, `SELECT holder, token, expires_at <= NOW(6) FROM leases WHERE name = ? FOR UPDATE`, name).
		Scan(&curHolder, &token, &expired)
	us := d.Microseconds()
	switch {
	case errors.Is(err, sql.ErrNoRows):
		token = 1
		if _, err := tx.ExecContext(ctx, `INSERT INTO leases (name, holder, token, expires_at) VALUES (?, ?, ?, NOW(6) + INTERVAL ? MICROSECOND)`, name, holder, token, us); err != nil {
			return l, false, err
		}
	case err != nil:
		return l, false, err
	case curHolder == holder && !expired:
		if _, err := tx.ExecContext(ctx, `UPDATE leases SET expires_at = NOW(6) + INTERVAL ? MICROSECOND WHERE name = ?`, us, name); err != nil {
			return l, false, err
		}
	case expired:
		token++
		if _, err := tx.ExecContext(ctx, `UPDATE leases SET holder = ?, token = ?, expires_at = NOW(6) + INTERVAL ? MICROSECOND WHERE name = ?`, holder, token, us, name); err != nil {
			return l, false, err
		}
	default:
		return l, false, nil
	}
	if err := tx.Commit(); err != nil {
		return l, false, err
	}
	return Lease{Name: name, Holder: holder, Token: token}, true, nil
}

// RenewLease extends l by d if l is still current (same token, not
// expired); otherwise it returns ErrFenced.
func (s *Store) RenewLease(ctx context.Context, l Lease, d time.Duration) error {
	res, err := s.db.ExecContext(ctx, `UPDATE leases SET expires_at = NOW(6) + INTERVAL ? MICROSECOND
		WHERE name = ? AND holder = ? AND token = ? AND expires_at > NOW(6)`, d.Microseconds(), l.Name, l.Holder, l.Token)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n != 1 {
		return ErrFenced
	}
	return nil
}

// ReleaseLease ends l at once (if still current) so that a standby need not
// wait for it to expire. The token stays: the next holder increments it.
func (s *Store) ReleaseLease(ctx context.Context, l Lease) error {
	_, err := s.db.ExecContext(ctx, `UPDATE leases SET expires_at = NOW(6) WHERE name = ? AND holder = ? AND token = ?`, l.Name, l.Holder, l.Token)
	return err
}

// LeaseInfo is the current state of a lease row, for monitoring.
type LeaseInfo struct {
	Holder    string
	Token     uint64
	Remaining time.Duration // negative once expired
}

// LeaseState returns the lease row, ok=false if it was never taken.
func (s *Store) LeaseState(ctx context.Context, name string) (info LeaseInfo, ok bool, err error) {
	var us int64
	err = s.db.QueryRowContext(ctx, `SELECT holder, token, TIMESTAMPDIFF(MICROSECOND, NOW(6), expires_at) FROM leases WHERE name = ?`, name).
		Scan(&info.Holder, &info.Token, &us)
	if errors.Is(err, sql.ErrNoRows) {
		return info, false, nil
	}
	info.Remaining = time.Duration(us) * time.Microsecond
	return info, err == nil, err
}
