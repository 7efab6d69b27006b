package directory

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/keyline/keyline/directory/apierr"
	"github.com/keyline/keyline/directory/sqlstate"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier/vmap"
)

// errLeaseLost stops the epochs of a sequencer whose lease renewal failed.
var errLeaseLost = errors.New("directory: sequencer lease lost")

// sharedSequencer competes for the lease until Close; while holding it, it
// recovers from the log and cuts epochs from the durable queue.
func (s *Server) sharedSequencer() {
	defer close(s.seqDone)
	d := s.cfg.LeaseDuration
	for {
		l, ok := s.acquireLease(d)
		if !ok {
			return // closing
		}
		s.cfg.Logf("directory: sequencer lease acquired (holder %s, token %d)", l.Holder, l.Token)
		s.sh.lease.Store(&l)
		ctx, cancel := context.WithCancelCause(context.Background())
		renewDone := make(chan struct{})
		go func() {
			defer close(renewDone)
			s.renewLease(ctx, cancel, l, d)
		}()
		err := s.leadEpochs(ctx)
		cancel(err)
		<-renewDone
		s.sh.lease.Store(nil)
		select {
		case <-s.closing:
			rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
			s.sh.st.ReleaseLease(rctx, l)
			rcancel()
			s.cfg.Logf("directory: sequencer lease released")
			return
		default:
		}
		s.cfg.Logf("directory: sequencer stepped down (token %d): %v", l.Token, err)
		// Step down: let the lease expire (or another holder keep it)
		// before competing again.
		rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.sh.st.ReleaseLease(rctx, l)
		rcancel()
		select {
		case <-s.closing:
			return
		case <-time.After(d / 4):
		}
	}
}

// acquireLease polls for the lease until it is ours; ok=false on Close.
func (s *Server) acquireLease(d time.Duration) (sqlstate.Lease, bool) {
	standby := false
	for {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		l, ok, err := s.sh.st.AcquireLease(ctx, sqlstate.SequencerLease, s.cfg.LeaseHolder, d)
		cancel()
		if err == nil && ok {
			return l, true
		}
		if err != nil {
			s.cfg.Logf("directory: taking the sequencer lease: %v", err)
		} else if !standby {
			standby = true
			s.cfg.Logf("directory: standby: another sequencer holds the lease")
		}
		select {
		case <-s.closing:
			return l, false
		case <-time.After(d / 5):
		}
	}
}

// renewLease renews l every d/4 until ctx ends; when a renewal fails with
// ErrFenced, or no renewal succeeded for d/2 (the lease may be about to
// expire), it cancels ctx.
func (s *Server) renewLease(ctx context.Context, cancel context.CancelCauseFunc, l sqlstate.Lease, d time.Duration) {
	last := time.Now()
	t := time.NewTicker(d / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.closing:
			cancel(errClosedShared)
			return
		case <-t.C:
		}
		rctx, rcancel := context.WithTimeout(ctx, d/4)
		err := s.sh.st.RenewLease(rctx, l, d)
		rcancel()
		if err == nil {
			last = time.Now()
			continue
		}
		if errors.Is(err, sqlstate.ErrFenced) || time.Since(last) > d/2 {
			cancel(fmt.Errorf("%w: %v", errLeaseLost, err))
			return
		}
		s.cfg.Logf("directory: renewing the sequencer lease: %v", err)
	}
}

var errClosedShared = errors.New("directory closed")

// leadEpochs recovers and cuts epochs until ctx ends or an error needs a
// new recovery by a (possibly other) sequencer.
func (s *Server) leadEpochs(ctx context.Context) error {
	for {
		err := s.recoverShared(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil || errors.Is(err, sqlstate.ErrFenced) {
			return err
		}
		s.cfg.Logf("directory: sequencer recovery failed, retrying: %v", err)
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(time.Second):
		}
	}
	t := time.NewTicker(s.cfg.EpochInterval)
	defer t.Stop()
	s.lastCut = time.Now()
	sincePrune := 0
	// From now on every epoch (and a recovered one, above, from its second
	// attempt) waits for the witness quorum, as the single process does.
	s.sequencing.Store(true)
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-t.C:
		}
		for {
			rows, err := s.sh.st.Pending(ctx, s.cfg.MaxBatch)
			if err != nil {
				if ctx.Err() != nil {
					return context.Cause(ctx)
				}
				s.cfg.Logf("directory: reading the update queue: %v", err)
				break
			}
			batch, rejects, err := s.sharedBatch(ctx, rows)
			if err != nil {
				return err
			}
			if len(batch) == 0 && len(rejects) == 0 && time.Since(s.lastCut) < s.cfg.EmptyEpochInterval {
				break
			}
			if _, err := s.runEpochShared(ctx, batch, rejects, false); err != nil {
				s.cfg.Logf("directory: epoch failed: %v", err)
				return err // step down; recover (this or another sequencer) from the log
			}
			if len(rows) < s.cfg.MaxBatch {
				break
			}
		}
		if sincePrune++; sincePrune >= 1000 {
			sincePrune = 0
			if _, err := s.sh.st.PruneQueue(ctx, time.Hour); err != nil {
				s.cfg.Logf("directory: pruning the update queue: %v", err)
			}
		}
	}
}

// sharedBatch turns queued rows (oldest first) into a batch whose entries
// chain on the committed state and on each other; rows that do not (an
// update accepted by a frontend on a state that another update replaced
// meanwhile) are refused with CONCURRENT_UPDATE.
func (s *Server) sharedBatch(ctx context.Context, rows []*sqlstate.Queued) ([]*entry, []sqlstate.Rejection, error) {
	var batch []*entry
	var rejects []sqlstate.Rejection
	var idxs [][32]byte
	seen := map[[32]byte]bool{}
	for _, q := range rows {
		if !seen[q.Index] {
			seen[q.Index] = true
			idxs = append(idxs, q.Index)
		}
	}
	committed, err := s.sh.st.Accounts(ctx, idxs)
	if err != nil {
		return nil, nil, err
	}
	latest := map[[32]byte]*entry{}
	ts := epochTimeBound(s.lastTS)
	for _, q := range rows {
		prev, ok := latest[q.Index]
		if !ok {
			if a := committed[q.Index]; a != nil {
				if klog.EntryHash(a.Leaf) != a.EntryHash {
					return nil, nil, fmt.Errorf("%w: account record entry hash mismatch", errCorrupt)
				}
				// checkChain needs the version and entry hash only;
				// lateCancellation the reset authorization.
				prev = &entry{index: q.Index, version: a.Version, entryHash: a.EntryHash}
				if u, err := klog.ParseAccountUpdate(a.Leaf); err == nil && u.Update == klog.UpdateReset {
					_, prev.reset, _ = stateOf(u) // nil if it does not parse: no cancellation check
				}
			}
		}
		e := &entry{index: q.Index, userID: q.UserID, pi: q.VRFProof, version: q.Version, prevHash: q.PrevHash, entryHash: q.EntryHash, leaf: q.Leaf}
		u, err := klog.ParseAccountUpdate(q.Leaf)
		if err != nil || klog.EntryHash(q.Leaf) != q.EntryHash || u.Index != q.Index || u.Version != q.Version || u.PrevHash != q.PrevHash {
			rejects = append(rejects, sqlstate.Rejection{ID: q.ID, Code: int(codes.Internal), Reason: apierr.Internal, Message: "internal error"})
			s.cfg.Logf("directory: queued update %d does not match its leaf; refused", q.ID)
			continue
		}
		if err := checkChain(prev, e); err != nil {
			rejects = append(rejects, sqlstate.Rejection{ID: q.ID, Code: int(codes.Aborted), Reason: apierr.ConcurrentUpdate,
				Message: fmt.Sprintf("another update of %q was published meanwhile; look it up and retry", q.UserID)})
			continue
		}
		if prev != nil && prev.reset != nil {
			if st, _, err := stateOf(u); err == nil && lateCancellation(prev.reset, st, ts) {
				rejects = append(rejects, sqlstate.Rejection{ID: q.ID, Code: int(codes.FailedPrecondition), Reason: apierr.ResetWindow, Message: lateCancellationMsg(q.UserID)})
				continue
			}
		}
		latest[q.Index] = e
		batch = append(batch, e)
	}
	return batch, rejects, nil
}

// recoverShared brings the shared state up to the log, closes a trailing
// unfinished epoch, publishes a checkpoint at the log's size, records it as
// the latest epoch's served checkpoint and installs the view.
func (s *Server) recoverShared(ctx context.Context) error {
	if err := s.replayShared(ctx); err != nil {
		return err
	}
	if !s.haveEpoch {
		if _, err := s.runEpochShared(ctx, nil, nil, false); err != nil {
			return fmt.Errorf("directory: genesis epoch: %w", err)
		}
		return nil
	}
	cp, err := s.publish(ctx, s.size)
	if err != nil {
		return fmt.Errorf("directory: publishing: %w", err)
	}
	if c, _, err := klog.OpenCheckpoint(cp, s.keys.verifier, s.keys.origin); err != nil || c.Size != s.size {
		return fmt.Errorf("%w: published checkpoint does not cover the %d leaves the state covers", errCorrupt, s.size)
	}
	s.signed.Store(&signedHead{size: s.size, note: cp})
	served, err := s.cosignQuorum(ctx, cp)
	if err != nil {
		return err
	}
	if err := s.sh.st.SetCheckpoint(ctx, s.sh.leaseToken(), s.epoch, served); err != nil {
		return err
	}
	e, err := s.sh.st.EpochRow(ctx, s.epoch)
	if err != nil || e == nil {
		return fmt.Errorf("%w: epoch %d row: %v", errCorrupt, s.epoch, err)
	}
	_, err = s.sharedView(ctx, e)
	return err
}

// replayShared applies the log leaves the shared state misses.
func (s *Server) replayShared(ctx context.Context) error {
	st := s.sh.st
	applied, err := st.Applied(ctx)
	if err != nil {
		return err
	}
	s.size = applied
	s.epoch, s.haveEpoch, err = st.LatestEpoch(ctx)
	if err != nil {
		return err
	}
	if s.haveEpoch != (applied > 0) {
		return fmt.Errorf("%w: state has epoch=%v but covers %d leaves", errCorrupt, s.haveEpoch, applied)
	}
	if applied > 0 {
		leaves, err := s.backend.Entries(ctx, applied-1, applied)
		if err != nil {
			return fmt.Errorf("reading leaf %d: %w", applied-1, err)
		}
		rec, err := klog.ParseEpochRecord(leaves[0])
		if err != nil || rec.Epoch != s.epoch {
			return fmt.Errorf("%w: leaf %d is not the EpochRecord of epoch %d", errCorrupt, applied-1, s.epoch)
		}
		s.lastTS = rec.Timestamp
	}
	return s.replayLeaves(ctx, applied, replayTarget{
		what:      "the shared state",
		committed: func(ctx context.Context, e *entry) (*entry, error) { return s.committedShared(ctx, e.index) },
		applyEpoch: func(ctx context.Context, batch []*entry, rec *klog.EpochRecord, _ []byte, pos uint64) error {
			first := pos - uint64(len(batch))
			for i, e := range batch {
				e.logIndex = first + uint64(i)
			}
			if err := s.commitShared(ctx, rec.Epoch, batch, nil, pos+1, &rec.MapRoot, nil); err != nil {
				return err
			}
			s.epoch, s.haveEpoch, s.size, s.lastTS = rec.Epoch, true, pos+1, rec.Timestamp
			return nil
		},
		closeEpoch: func(ctx context.Context, batch []*entry) error {
			_, err := s.runEpochShared(ctx, batch, nil, true)
			return err
		},
	})
}

// sharedTx is an epoch's open write transaction with its map root.
type sharedTx struct {
	tx   *sqlstate.Tx
	root vmap.Hash
}

// beginShared writes an epoch's map updates, account records, history,
// users and queue outcomes in a new fenced transaction (not committed).
func (s *Server) beginShared(ctx context.Context, epoch uint64, batch []*entry, rejects []sqlstate.Rejection) (*sharedTx, error) {
	tx, err := s.sh.st.Begin(ctx, s.sh.leaseToken())
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			tx.Rollback()
		}
	}()
	last := map[[32]byte]*entry{}
	for _, e := range batch {
		last[e.index] = e
	}
	updates := make([]vmap.Update, 0, len(last))
	accs := make([]sqlstate.AccountRow, 0, len(last))
	for idx, e := range last {
		updates = append(updates, vmap.Update{Index: idx, Value: vmap.MapValue(e.version, e.logIndex, e.entryHash)})
		accs = append(accs, sqlstate.AccountRow{Index: idx, Account: sqlstate.Account{Version: e.version, LogIndex: e.logIndex, EntryHash: e.entryHash, Leaf: e.leaf}})
	}
	root, err := s.sh.m.apply(tx, updates)
	if err != nil {
		return nil, err
	}
	hist := make([]sqlstate.HistoryRow, 0, len(batch))
	keys := make([]sqlstate.QueueKey, 0, len(batch))
	var users []sqlstate.UserRow
	for _, e := range batch {
		hist = append(hist, sqlstate.HistoryRow{Index: e.index, Version: e.version, LogIndex: e.logIndex})
		keys = append(keys, sqlstate.QueueKey{Index: e.index, Version: e.version, EntryHash: e.entryHash})
		if e.pi != nil && e.version == 1 {
			users = append(users, sqlstate.UserRow{UserID: e.userID, Proof: e.pi, Index: e.index})
		}
	}
	if err := tx.PutAccounts(accs); err != nil {
		return nil, err
	}
	if err := tx.PutHistory(hist); err != nil {
		return nil, err
	}
	if err := tx.PutUsers(users); err != nil {
		return nil, err
	}
	if err := tx.MarkDone(epoch, keys); err != nil {
		return nil, err
	}
	if err := tx.MarkFailed(rejects); err != nil {
		return nil, err
	}
	ok = true
	return &sharedTx{tx: tx, root: root}, nil
}

// commitShared writes and commits a replayed epoch whose map root must be
// wantRoot.
func (s *Server) commitShared(ctx context.Context, epoch uint64, batch []*entry, rejects []sqlstate.Rejection, newSize uint64, wantRoot *vmap.Hash, served []byte) error {
	t, err := s.beginShared(ctx, epoch, batch, rejects)
	if err != nil {
		return err
	}
	defer t.tx.Rollback()
	if wantRoot != nil && t.root != *wantRoot {
		return fmt.Errorf("%w: epoch %d: map root %x recomputed from the log differs from the EpochRecord's %x", errCorrupt, epoch, t.root[:8], wantRoot[:8])
	}
	if err := t.tx.PutEpoch(sqlstate.Epoch{Epoch: epoch, MapRoot: t.root, LogSize: newSize, Checkpoint: served}); err != nil {
		return err
	}
	return t.tx.Commit()
}

// runEpochShared is runEpoch on the shared state: the epoch's state is
// written in one fenced transaction, committed after the log append, the
// checkpoint (stored fenced) and the witnesses' cosignatures, together with
// the served checkpoint.
func (s *Server) runEpochShared(ctx context.Context, batch []*entry, rejects []sqlstate.Rejection, preAppended bool) (*epochView, error) {
	first := s.size
	epoch, newSize, ts := s.nextEpoch(batch)
	t, err := s.beginShared(ctx, epoch, batch, rejects)
	if err != nil {
		return nil, err
	}
	defer t.tx.Rollback()
	rec, _ := (&klog.EpochRecord{Epoch: epoch, MapRoot: t.root, Timestamp: ts}).Marshal()
	leaves, want := epochAppend(batch, rec, first, preAppended)
	// Check the lease right before the append: a sequencer that lost it
	// must not append (the conditional append at the expected index is the
	// second guard).
	l := s.sh.lease.Load()
	if l == nil {
		return nil, fmt.Errorf("before appending epoch %d: %w", epoch, errLeaseLost)
	}
	if err := s.sh.st.RenewLease(ctx, *l, s.cfg.LeaseDuration); err != nil {
		return nil, fmt.Errorf("before appending epoch %d: %w", epoch, err)
	}
	// Conditional on the log's size: a deposed sequencer's append at an
	// index another one has written fails (log.ErrConflict).
	if err := s.backend.Append(ctx, want, leaves); err != nil {
		return nil, fmt.Errorf("appending epoch %d at log index %d: %w", epoch, want, err)
	}
	cp, err := s.publish(ctx, newSize)
	if err != nil {
		return nil, fmt.Errorf("publishing epoch %d: %w", epoch, err)
	}
	if c, _, err := klog.OpenCheckpoint(cp, s.keys.verifier, s.keys.origin); err != nil || c.Size != newSize {
		return nil, fmt.Errorf("%w: published checkpoint (size %d, %v) does not cover epoch %d (%d leaves)", errCorrupt, c.Size, err, epoch, newSize)
	}
	s.signed.Store(&signedHead{size: newSize, note: cp})
	// Wait for the witness quorum (lookups keep being served from the
	// previous epoch meanwhile).
	served, err := s.cosignQuorum(ctx, cp)
	if err != nil {
		return nil, err
	}
	if err := t.tx.PutEpoch(sqlstate.Epoch{Epoch: epoch, MapRoot: t.root, LogSize: newSize, Checkpoint: served}); err != nil {
		return nil, err
	}
	if err := t.tx.Commit(); err != nil {
		return nil, fmt.Errorf("committing epoch %d: %w", epoch, err)
	}
	s.epoch, s.haveEpoch, s.size, s.lastTS, s.lastCut = epoch, true, newSize, ts, time.Now()
	return s.sharedView(ctx, &sqlstate.Epoch{Epoch: epoch, MapRoot: t.root, LogSize: newSize, Checkpoint: served})
}
