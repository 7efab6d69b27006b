// Crash recovery at open and after a failed epoch: replaying the log suffix
// the map and account index miss, closing an unfinished epoch, publishing
// (docs/protocol.md §6.5). The in-process retry loop is in resync.go.

package directory

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory/mapdb"
	klog "github.com/keyline/keyline/log"
)

// recover brings the map and index up to the log (replaying the log suffix
// they miss), closes a trailing unfinished epoch, publishes a checkpoint at
// the log's size and installs the published view.
func (s *Server) recover(ctx context.Context) error {
	if err := s.fillLogCache(ctx); err != nil {
		return err
	}
	if err := s.replay(ctx); err != nil {
		return err
	}
	if !s.haveEpoch {
		// First start: the genesis epoch 0 holds the empty map.
		if _, err := s.runEpoch(ctx, nil, false); err != nil {
			return fmt.Errorf("directory: genesis epoch: %w", err)
		}
		return nil
	}
	cp, err := s.publish(ctx, s.size)
	if err != nil {
		return fmt.Errorf("directory: publishing: %w", err)
	}
	s.signed.Store(&signedHead{size: s.size, note: cp})
	v, err := s.buildView(ctx, cp, s.cosign(ctx, cp))
	if err != nil {
		return err
	}
	s.install(v)
	return nil
}

// replay applies the log leaves the map and index miss.
func (s *Server) replay(ctx context.Context) error {
	var applied uint64
	if err := s.db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketMeta).Get(keyApplied); len(b) == 8 {
			applied = be64(b)
		}
		return nil
	}); err != nil {
		return err
	}
	s.size = applied
	e, _, err := s.m.LatestEpoch()
	switch {
	case err == nil:
		s.epoch, s.haveEpoch = e, true
	case errors.Is(err, mapdb.ErrNoEpoch):
		s.haveEpoch = false
	default:
		return err
	}
	if s.haveEpoch != (applied > 0) {
		return fmt.Errorf("%w: map has epoch=%v but index covers %d leaves", errCorrupt, s.haveEpoch, applied)
	}
	if applied > 0 {
		leaves, err := s.backend.Entries(ctx, applied-1, applied)
		if err != nil {
			return corruptOr(err, "reading leaf %d", applied-1)
		}
		rec, err := klog.ParseEpochRecord(leaves[0])
		if err != nil || rec.Epoch != s.epoch {
			return fmt.Errorf("%w: leaf %d is not the EpochRecord of epoch %d", errCorrupt, applied-1, s.epoch)
		}
		s.lastTS = rec.Timestamp
	}
	return s.replayLeaves(ctx, applied, replayTarget{
		what:       "the map and index",
		committed:  s.committedReplayed,
		withState:  true,
		applyEpoch: s.applyReplayed,
		closeEpoch: func(ctx context.Context, batch []*entry) error {
			_, err := s.runEpoch(ctx, batch, true)
			return err
		},
	})
}

// committedReplayed is replay's committed: the committed entry of the
// replayed entry e's user, whose index must be e's. It sets e's VRF proof:
// the stored one, or for a new account a proof computed now (the log does
// not hold proofs), whose index must be the leaf's.
func (s *Server) committedReplayed(ctx context.Context, e *entry) (*entry, error) {
	prev, err := s.committed(ctx, e.userID)
	if err != nil {
		return nil, err
	}
	if prev != nil {
		if prev.index != e.index {
			return nil, fmt.Errorf("%w: user %q is stored at index %x, its log leaf at %x", errCorrupt, e.userID, prev.index[:8], e.index[:8])
		}
		e.pi = prev.pi
		return prev, nil
	}
	pi, index, err := s.vrf.get(nil, e.userID)
	if err != nil {
		return nil, err
	}
	if index != e.index {
		return nil, fmt.Errorf("%w: leaf of user %q at index %x, its VRF index is %x", errCorrupt, e.userID, e.index[:8], index[:8])
	}
	e.pi = pi
	return nil, nil
}

// replayTarget is where replayLeaves applies log leaves: the embedded
// databases (replay) or the shared state (replayShared).
type replayTarget struct {
	what string // "the map and index": names the target in messages
	// committed returns the committed entry e (a replayed leaf, with its
	// userID set when withState) follows, or nil; it may complete e (the
	// embedded state sets its VRF proof).
	committed func(ctx context.Context, e *entry) (*entry, error)
	withState bool // decode each entry's AccountState (stateOf), refusing old formats
	// applyEpoch commits the entries of batch, closed by the EpochRecord
	// rec (leaf recLeaf at index pos), and advances the sequencer state.
	applyEpoch func(ctx context.Context, batch []*entry, rec *klog.EpochRecord, recLeaf []byte, pos uint64) error
	// closeEpoch appends an EpochRecord after batch, the leaves of an
	// interrupted append at the end of the log, and commits them.
	closeEpoch func(ctx context.Context, batch []*entry) error
}

// replayLeaves applies the log leaves from applied (the size t covers, the
// end of epoch s.epoch) to the end of the log: it checks every account's
// version chain, commits each epoch at its EpochRecord, and closes an epoch
// the log ends inside of.
func (s *Server) replayLeaves(ctx context.Context, applied uint64, t replayTarget) error {
	size, err := s.backend.Size(ctx)
	if err != nil {
		return err
	}
	if size < applied {
		return fmt.Errorf("%w: log has %d leaves, but %d are covered by %s", errCorrupt, size, applied, t.what)
	}
	if size > applied {
		s.cfg.Logf("directory: replaying log leaves [%d, %d) into %s", applied, size, t.what)
	}
	var batch []*entry
	latest := map[[32]byte]*entry{}
	for pos := applied; pos < size; {
		end := min(size, pos+1000)
		leaves, err := s.backend.Entries(ctx, pos, end)
		if err != nil {
			return err
		}
		if len(leaves) == 0 {
			return fmt.Errorf("%w: no leaves at %d", errCorrupt, pos)
		}
		for _, leaf := range leaves {
			l, err := klog.ParseLeaf(leaf)
			if err != nil {
				return fmt.Errorf("%w: leaf %d: %v", errCorrupt, pos, err)
			}
			switch l := l.(type) {
			case *klog.AccountUpdate:
				e := &entry{index: l.Index, version: l.Version, prevHash: l.PrevHash, entryHash: klog.EntryHash(leaf), leaf: leaf}
				if t.withState {
					if e.state, e.reset, err = stateOf(l); err != nil {
						return fmt.Errorf("%w: leaf %d: %w", errCorrupt, pos, err)
					}
					e.userID = e.state.UserID
				}
				prev := latest[l.Index]
				if prev == nil {
					if prev, err = t.committed(ctx, e); err != nil {
						return err
					}
				} else if prev.userID != e.userID {
					return fmt.Errorf("%w: leaf %d: user %q at the index of %q", errCorrupt, pos, e.userID, prev.userID)
				} else {
					e.pi = prev.pi
				}
				if err := checkChain(prev, e); err != nil {
					return fmt.Errorf("%w: leaf %d: %v", errCorrupt, pos, err)
				}
				latest[l.Index] = e
				batch = append(batch, e)
			case *klog.EpochRecord:
				if s.haveEpoch && l.Epoch != s.epoch+1 || !s.haveEpoch && l.Epoch != 0 {
					return fmt.Errorf("%w: leaf %d is EpochRecord %d after epoch %d", errCorrupt, pos, l.Epoch, s.epoch)
				}
				if err := t.applyEpoch(ctx, batch, l, leaf, pos); err != nil {
					return err
				}
				batch, latest = nil, map[[32]byte]*entry{}
			}
			pos++
		}
	}
	if len(batch) > 0 {
		// The log ends inside an epoch (an append was interrupted after
		// its first leaves): those leaves are permanent, so close the
		// epoch over them.
		s.cfg.Logf("directory: closing an unfinished epoch of %d log leaves", len(batch))
		if !s.haveEpoch {
			return fmt.Errorf("%w: account updates before the genesis epoch", errCorrupt)
		}
		if err := t.closeEpoch(ctx, batch); err != nil {
			return fmt.Errorf("directory: closing unfinished epoch: %w", err)
		}
	}
	return nil
}

func checkChain(prev, e *entry) error {
	if prev == nil {
		if e.version != 1 {
			return fmt.Errorf("index %x: version %d of an unknown account", e.index[:8], e.version)
		}
		return nil
	}
	if e.version != prev.version+1 || e.prevHash != prev.entryHash {
		return fmt.Errorf("index %x: version %d does not follow version %d", e.index[:8], e.version, prev.version)
	}
	return nil
}

// stateOf returns the AccountState an AccountUpdate leaf sets, and for a
// reset entry its authorization. A payload of an older format (a data dir
// written by a Keyline before format 2) is refused with an error naming
// the version.
func stateOf(u *klog.AccountUpdate) (*devices.AccountState, *devices.ResetAuthorization, error) {
	if len(u.Payload) > 0 && u.Payload[0] < payloadFormat {
		return nil, nil, fmt.Errorf("%w: account version %d is stored in format %d, written by an older Keyline (identity key signing states); this directory reads format %d only: start a new data dir", ErrOldDataDir, u.Version, u.Payload[0], payloadFormat)
	}
	if u.Update == klog.UpdateReset {
		a, err := devices.ParseResetAuthorization(u.Payload)
		if err != nil {
			return nil, nil, err
		}
		return a.NewState, a, nil
	}
	st, err := devices.ParseAccountState(u.Payload)
	return st, nil, err
}

// payloadFormat is the format byte of the AccountState and
// ResetAuthorization encodings this directory reads.
const payloadFormat = 0x02

// ErrOldDataDir is wrapped by the error Open returns for a data dir
// written in an older format.
var ErrOldDataDir = errors.New("directory: data dir of an older format")

// applyReplayed commits a replayed epoch and checks its map root against
// the EpochRecord.
func (s *Server) applyReplayed(ctx context.Context, batch []*entry, rec *klog.EpochRecord, recLeaf []byte, pos uint64) error {
	first := pos - uint64(len(batch))
	for i, e := range batch {
		e.logIndex = first + uint64(i)
	}
	tx, err := s.db.Begin(true)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	root, err := s.applyTx(tx, rec.Epoch, batch, pos+1)
	if err != nil {
		return err
	}
	if root != rec.MapRoot {
		return fmt.Errorf("%w: epoch %d: map root %x recomputed from the log differs from the EpochRecord's %x", errCorrupt, rec.Epoch, root[:8], rec.MapRoot[:8])
	}
	if s.cacheLog {
		local, err := appendLogNodesTx(tx, first, append(leavesOf(batch), recLeaf))
		if err != nil {
			return err
		}
		trusted, err := s.backend.RootHash(ctx, pos+1)
		if err != nil {
			return corruptOr(err, "log root at size %d", pos+1)
		}
		if err := checkLogRoot(pos+1, local, trusted); err != nil {
			return err
		}
	}
	if err := s.publishBeforeCommit(ctx, rec.Epoch, pos+1); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	s.epoch, s.haveEpoch, s.size, s.lastTS = rec.Epoch, true, pos+1, rec.Timestamp
	return nil
}

// publishBeforeCommit makes sure, during an in-process recovery (a view is
// being served), that a checkpoint covering the replayed epoch ending at
// log size end is stored before the epoch's map and index are committed,
// the order runEpoch follows. If the log cannot be written (its fsync
// fails, its disk is full) publishing fails, the epoch is not committed,
// and the map and index stay at the served view's epoch: lookups go on
// being answered from it while recovery is retried. Committed first, the
// map would be at an epoch no view can be built for, and it keeps the
// latest epoch's tree only, so every lookup would be refused until the log
// is writable again. At start (no view yet) it does nothing: recover
// publishes once after the whole replay.
func (s *Server) publishBeforeCommit(ctx context.Context, epoch, end uint64) error {
	if s.view.Load() == nil {
		return nil
	}
	note, err := s.cps.LatestCheckpoint(ctx)
	if err != nil {
		return fmt.Errorf("reading the stored checkpoint: %w", err)
	}
	if note != nil {
		c, _, err := klog.OpenCheckpoint(note, s.keys.verifier, s.keys.origin)
		if err != nil {
			return fmt.Errorf("stored checkpoint: %w", err)
		}
		if c.Size >= end {
			return nil // already covered (the epoch's publish succeeded, its commit did not)
		}
	}
	if _, err := s.publish(ctx, end); err != nil {
		return fmt.Errorf("publishing replayed epoch %d: %w", epoch, err)
	}
	return nil
}
