package directory

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory/apierr"
	klog "github.com/keyline/keyline/log"
)

// Bounds of the retry loop that brings the sequencer back in line with the
// log after a failed epoch (see resync).
const (
	resyncFirstBackoff = 100 * time.Millisecond
	resyncMaxBackoff   = 5 * time.Second
	// viewWait bounds how long a read waits for the view of an epoch whose
	// map is already committed; it then fails with Unavailable.
	viewWait = 5 * time.Second
)

// permanent reports whether err is a verdict about stored state (the log
// and the directory's databases disagree, or the log backend proved itself
// inconsistent) rather than a failure that may go away: a log backend that is
// down or restarting, an append conflict (resolved by reading the log
// again), an interrupted append. Only permanent errors stop the sequencer.
func permanent(err error) bool {
	return errors.Is(err, errCorrupt) || errors.Is(err, klog.ErrCorrupt) || errors.Is(err, ErrConfig)
}

// corruptOr describes a failed log read: as errCorrupt if err is a verdict
// about stored state (see permanent) or says the log lacks data the
// directory's databases cover (log.ErrRange); otherwise (the backend is
// unreachable) wrapped as it is, so that resync retries it.
func corruptOr(err error, format string, args ...any) error {
	if permanent(err) || errors.Is(err, klog.ErrRange) {
		return fmt.Errorf("%w: %s: %v", errCorrupt, fmt.Sprintf(format, args...), err)
	}
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), err)
}

// resync brings the sequencer back in line with the log after a failed (or
// interrupted) epoch: it runs recover — reread the log, replay the leaves the
// map and index miss (for a Trillian log, leaves of an interrupted append are
// integrated by the signer and then replayed), publish and install the view —
// and retries it with exponential backoff while it fails with an error that
// is not permanent. It returns nil once a view is installed, errClosing if the
// directory closes meanwhile, or a permanent error.
//
// While resync runs, updates are refused with Unavailable and reads that
// need a view recovery has not installed fail at once with Unavailable.
func (s *Server) resync(ctx context.Context, cause error) error {
	s.recovering.Store(true)
	defer s.recovering.Store(false)
	backoff := resyncFirstBackoff
	start := time.Now()
	for attempt := 1; ; attempt++ {
		err := s.recover(ctx)
		if err == nil {
			s.setDegraded(nil)
			if attempt > 1 || cause != nil {
				s.cfg.Logf("directory: recovered after %d attempt(s) in %v", attempt, time.Since(start).Round(time.Millisecond))
			}
			return nil
		}
		if permanent(err) {
			return err
		}
		s.setDegraded(err) // Update now fails at once, naming a storage fault
		s.cfg.Logf("directory: recovery attempt %d failed, retrying in %v (updates are refused meanwhile): %v", attempt, backoff, err)
		t := time.NewTimer(backoff)
		select {
		case <-s.closing:
			t.Stop()
			return errClosing
		case <-t.C:
		}
		backoff = min(backoff*2, resyncMaxBackoff)
	}
}

// recoveringErr is the error of an update or read refused while resync runs.
func recoveringErr() error {
	return apierr.New(codes.Unavailable, apierr.Unavailable, "the directory is recovering from a log backend failure; retry shortly")
}

// awaitView waits until v is replaced by a newer view, for a read that
// found the map already at the next epoch. It fails at once with
// Unavailable while resync runs (the view it waits for may never be
// installed), and after viewWait.
func (s *Server) awaitView(ctx context.Context, v *epochView) error {
	deadline := time.NewTimer(viewWait)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.recovering.Load() || s.sequencerFailed() {
			return recoveringErr()
		}
		select {
		case <-v.next:
			return nil
		case <-ctx.Done():
			return ctxError(ctx.Err(), "waiting for the next epoch")
		case <-deadline.C:
			return apierr.New(codes.Unavailable, apierr.Unavailable, "the next epoch is not published yet; retry shortly")
		case <-tick.C:
		}
	}
}

func (s *Server) sequencerFailed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed != nil
}

// leavesOf returns the leaves of batch.
func leavesOf(batch []*entry) [][]byte {
	out := make([][]byte, len(batch))
	for i, e := range batch {
		out[i] = e.leaf
	}
	return out
}

// dropStale removes from batch, and fails, the entries that no longer extend
// their account's committed chain. Updates are validated against the
// committed state when they are queued; a resync that replays leaves of an
// interrupted append (now integrated) can commit a version they did not see,
// and appending them would fork the account's chain. It returns the entries
// that still apply; on a database error it returns the batch unchanged (the
// epoch will then fail and resync).
//
// It also fails the cancellations of a reset that can no longer be logged
// in time (lateCancellation) in an epoch timestamped at most ts
// (epochTimeBound).
func (s *Server) dropStale(batch []*entry, ts uint64) ([]*entry, error) {
	keep := batch[:0:0]
	var stale, late []*entry
	latest := map[[32]byte]*entry{}
	var err error
	for _, e := range batch {
		prev, ok := latest[e.index]
		if !ok {
			if prev, err = s.committedHead(e.userID); err != nil {
				break
			}
		}
		if checkChain(prev, e) != nil {
			stale = append(stale, e)
			continue
		}
		if prev != nil && lateCancellation(prev.reset, e.state, ts) {
			late = append(late, e)
			continue
		}
		latest[e.index] = e
		keep = append(keep, e)
	}
	if err != nil {
		return batch, err
	}
	if len(stale)+len(late) == 0 {
		return batch, nil
	}
	if len(stale) > 0 {
		s.cfg.Logf("directory: dropping %d queued update(s) overtaken by replayed log entries", len(stale))
	}
	if len(late) > 0 {
		s.cfg.Logf("directory: refusing %d queued reset cancellation(s) that can no longer be logged in time", len(late))
	}
	s.mu.Lock()
	for _, e := range append(stale, late...) {
		if s.pending[e.index] == e {
			delete(s.pending, e.index)
		}
	}
	s.mu.Unlock()
	for _, e := range stale {
		e.done <- result{err: apierr.New(codes.Aborted, apierr.ConcurrentUpdate, "another update of %q reached the log first; look it up and retry", e.userID)}
	}
	for _, e := range late {
		e.done <- result{err: apierr.New(codes.FailedPrecondition, apierr.ResetWindow, "%s", lateCancellationMsg(e.userID))}
	}
	return keep, nil
}

// epochTimeBound is a bound on the timestamp of an epoch cut now (within
// a second) after one timestamped lastTS: nextEpoch's, rounded up.
func epochTimeBound(lastTS uint64) uint64 {
	return max(uint64(time.Now().Add(time.Second).Unix()), lastTS)
}

// lateCancellation reports whether next, the version after the reset
// entry with authorization reset (nil: the previous entry is no reset),
// cancels it (it keeps the previous root key) and would be logged in an
// epoch timestamped ts, devices.CancelLogSlack or more after the reset
// took effect. Update accepts a cancellation until effective_at; one that
// waited in the queue (or behind a witness quorum) past the slack is
// refused instead of being logged, since auditors would report an honest
// directory for it (RuleResetLogTime).
func lateCancellation(reset *devices.ResetAuthorization, next *devices.AccountState, ts uint64) bool {
	if reset == nil || reset.NewState == nil || next == nil || next.IdentityKey == reset.NewState.IdentityKey {
		return false
	}
	return int64(ts) >= reset.EffectiveAt.Unix()+devices.CancelLogSlack
}

// lateCancellationMsg is the message a late cancellation is refused with
// (FailedPrecondition / RESET_WINDOW).
func lateCancellationMsg(userID string) string {
	return fmt.Sprintf("the reset of %q took effect before this cancellation could be logged; it can no longer be cancelled", userID)
}

// committedHead returns the latest committed entry of userID's account
// (its index, version and entry hash are what resync compares), or nil.
func (s *Server) committedHead(userID string) (*entry, error) {
	return s.committed(context.Background(), userID)
}

// appendedRecord is an EpochRecord leaf the sequencer appended and the log
// size it ends.
type appendedRecord struct {
	size uint64
	leaf []byte
}

// lastLeaf returns leaf size-1 (in a one-element slice): the EpochRecord the
// sequencer just appended if it is that one, so that a view is installed
// after its epoch commits even if the log backend fails meanwhile, else read
// from the log.
func (s *Server) lastLeaf(ctx context.Context, size uint64) ([][]byte, error) {
	if a := s.appended; a.size == size && a.leaf != nil {
		return [][]byte{a.leaf}, nil
	}
	return s.backend.Entries(ctx, size-1, size)
}
