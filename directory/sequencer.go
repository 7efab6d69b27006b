// The epoch sequencer: taking queued updates, running an epoch (map and
// index transaction, conditional append, publish, witnesses, commit) and
// installing its view (docs/protocol.md §6.2).

package directory

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/grpc/codes"

	"github.com/keyline/keyline/directory/apierr"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier/vmap"
)

// applyTx writes an epoch's map updates and index records in tx and returns
// the new map root. newSize is the log size after the epoch.
func (s *Server) applyTx(tx *bbolt.Tx, epoch uint64, batch []*entry, newSize uint64) (vmap.Hash, error) {
	last := map[[32]byte]*entry{}
	for _, e := range batch {
		last[e.index] = e
	}
	updates := make([]vmap.Update, 0, len(last))
	for idx, e := range last {
		updates = append(updates, vmap.Update{Index: idx, Value: vmap.MapValue(e.version, e.logIndex, e.entryHash)})
	}
	root, err := s.m.ApplyEpochTx(tx, epoch, updates)
	if err != nil {
		return root, err
	}
	// Pages split at bbolt's default 50%. An epoch inserts its keys
	// (random: VRF indexes, user ids) a few per page, and over many
	// epochs even splits fill pages to ~69%; splitting at 90% leaves a
	// page at 90% that soon splits again and one at ~10% that fills
	// slowly: 36% in use after 100 epochs of 1,000 history records
	// (docs/performance.md §3.1).
	hist, users := tx.Bucket(bucketHistory), tx.Bucket(bucketUsers)
	// Each entry supersedes the previous version of its account: that
	// version's log index moves to history.
	prevLogIndex := map[[32]byte]uint64{}
	for _, e := range batch {
		if e.version > 1 {
			li, ok := prevLogIndex[e.index]
			if !ok {
				rec, err := getUser(tx, e.userID)
				if err != nil {
					return root, err
				}
				if rec == nil || rec.Index != e.index || rec.Version != e.version-1 {
					return root, fmt.Errorf("%w: version %d of %q does not follow its user record", errCorrupt, e.version, e.userID)
				}
				li = rec.LogIndex
			}
			if err := hist.Put(historyKey(e.index, e.version-1), u64(li)); err != nil {
				return root, err
			}
		}
		prevLogIndex[e.index] = e.logIndex
	}
	for _, e := range last {
		if len(e.pi) != vrfProofSize || e.userID == "" {
			return root, fmt.Errorf("directory: entry of index %x without user id or VRF proof", e.index[:8])
		}
		r := userRecord{Proof: e.pi, Index: e.index, Version: e.version, LogIndex: e.logIndex}
		if s.cacheLog {
			r.Leaf = e.leaf
		}
		if err := users.Put([]byte(e.userID), r.marshal()); err != nil {
			return root, err
		}
	}
	return root, tx.Bucket(bucketMeta).Put(keyApplied, u64(newSize))
}

// errCrash is returned by a test hook to simulate a crash: the sequencer
// stops at once without cleaning up.
var errCrash = errors.New("directory: simulated crash")

// nextEpoch numbers the epoch that batch closes: its epoch number (0 for
// the genesis epoch), the log size after its leaves and EpochRecord, and its
// timestamp (now, never before the previous epoch's). It sets each entry's
// log index, counted from the current log size.
func (s *Server) nextEpoch(batch []*entry) (epoch, newSize, ts uint64) {
	first := s.size
	if s.haveEpoch {
		epoch = s.epoch + 1
	}
	for i, e := range batch {
		e.logIndex = first + uint64(i)
	}
	ts = max(uint64(time.Now().Unix()), s.lastTS)
	return epoch, first + uint64(len(batch)) + 1, ts
}

// epochAppend returns the leaves an epoch appends to a log of size first
// and the index its first one must get: batch's leaves and the EpochRecord
// rec, or rec alone after the batch (preAppended: batch's leaves are
// already the log's last ones).
func epochAppend(batch []*entry, rec []byte, first uint64, preAppended bool) (leaves [][]byte, want uint64) {
	if preAppended {
		return [][]byte{rec}, first + uint64(len(batch))
	}
	leaves = make([][]byte, 0, len(batch)+1)
	for _, e := range batch {
		leaves = append(leaves, e.leaf)
	}
	return append(leaves, rec), first
}

// runEpoch sequences one epoch: appends batch's leaves (unless
// preAppended: they are already the log's last leaves) and the
// EpochRecord, publishes the checkpoint, gathers cosignatures, commits the
// map and index, and installs the new view.
func (s *Server) runEpoch(ctx context.Context, batch []*entry, preAppended bool) (*epochView, error) {
	first := s.size
	epoch, newSize, ts := s.nextEpoch(batch)
	tx, err := s.db.Begin(true)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	root, err := s.applyTx(tx, epoch, batch, newSize)
	if err != nil {
		return nil, err
	}
	rec, _ := (&klog.EpochRecord{Epoch: epoch, MapRoot: root, Timestamp: ts}).Marshal()
	leaves, want := epochAppend(batch, rec, first, preAppended)
	var localRoot []byte
	if s.cacheLog {
		if localRoot, err = appendLogNodesTx(tx, first, append(leavesOf(batch), rec)); err != nil {
			return nil, err
		}
	}
	// The append is conditional on want: if the log does not end there
	// (leaves of an interrupted append, another writer) nothing is written
	// and resync rereads the log.
	if err := s.backend.Append(ctx, want, leaves); err != nil {
		return nil, fmt.Errorf("appending epoch %d at log index %d: %w", epoch, want, err)
	}
	s.appended = appendedRecord{size: newSize, leaf: rec}
	if h := s.hooks.Load(); h != nil && h.afterAppend != nil {
		if err := h.afterAppend(); err != nil {
			return nil, err
		}
	}
	cp, err := s.publish(ctx, newSize)
	if err != nil {
		return nil, fmt.Errorf("publishing epoch %d: %w", epoch, err)
	}
	if localRoot != nil {
		c, _, err := klog.OpenCheckpoint(cp, s.keys.verifier, s.keys.origin)
		if err != nil {
			return nil, fmt.Errorf("%w: own checkpoint: %v", errCorrupt, err)
		}
		if err := checkLogRoot(newSize, localRoot, c.Hash[:]); err != nil {
			return nil, err
		}
	}
	if h := s.hooks.Load(); h != nil && h.afterPublish != nil {
		if err := h.afterPublish(); err != nil {
			return nil, err
		}
	}
	s.signed.Store(&signedHead{size: newSize, note: cp})
	// Wait for the witness quorum: until then lookups are served from the
	// previous view, whose checkpoint has it (see cosignQuorum).
	served, err := s.cosignQuorum(ctx, cp)
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("committing epoch %d: %w", epoch, err)
	}
	s.epoch, s.haveEpoch, s.size, s.lastTS, s.lastCut = epoch, true, newSize, ts, time.Now()
	v, err := s.buildView(ctx, cp, served)
	if err != nil {
		return nil, err
	}
	s.install(v)
	if err := s.checkPread(); err != nil {
		s.cfg.Logf("directory: %v (lookups keep reading through the memory maps)", err)
	}
	return v, nil
}

// buildView checks a published checkpoint against the map and builds the
// view lookups are served from.
func (s *Server) buildView(ctx context.Context, cp, served []byte) (*epochView, error) {
	c, _, err := klog.OpenCheckpoint(cp, s.keys.verifier, s.keys.origin)
	if err != nil {
		return nil, fmt.Errorf("%w: own checkpoint: %v", errCorrupt, err)
	}
	if c.Size != s.size {
		return nil, fmt.Errorf("%w: checkpoint size %d, map and index cover %d", errCorrupt, c.Size, s.size)
	}
	var proof [][]byte
	if err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		proof, err = s.inclusionProofTx(ctx, tx, c.Size-1, c.Size)
		return err
	}); err != nil {
		return nil, err
	}
	leaves, err := s.lastLeaf(ctx, c.Size)
	if err != nil {
		return nil, err
	}
	rec, err := klog.ParseEpochRecord(leaves[0])
	if err != nil {
		return nil, fmt.Errorf("%w: checkpoint's last leaf: %v", errCorrupt, err)
	}
	mroot, err := s.m.Root(rec.Epoch)
	if err != nil || mroot != rec.MapRoot || rec.Epoch != s.epoch {
		return nil, fmt.Errorf("%w: EpochRecord %d does not match the map (epoch %d)", errCorrupt, rec.Epoch, s.epoch)
	}
	return &epochView{
		epoch: rec.Epoch, size: c.Size, mapRoot: rec.MapRoot, timestamp: rec.Timestamp,
		checkpoint: served, record: leaves[0], recordProof: proof,
		next: make(chan struct{}), cons: map[uint64][][]byte{},
	}, nil
}

func (s *Server) install(v *epochView) {
	old := s.view.Swap(v)
	if old != nil {
		close(old.next)
	}
}

// sequencer cuts epochs until Close.
func (s *Server) sequencer() {
	defer close(s.seqDone)
	s.sequencing.Store(true)
	if s.startRecovering {
		if err := s.resync(context.Background(), nil); err != nil {
			if err != errClosing {
				s.cfg.Logf("directory: recovery failed, sequencer stopped: %v", err)
			}
			s.setFailed(err)
			<-s.closing
			return
		}
	}
	t := time.NewTicker(s.cfg.EpochInterval)
	defer t.Stop()
	s.lastCut = time.Now()
	for {
		stop := func() {
			s.mu.Lock()
			s.failed = errors.New("directory closed")
			s.mu.Unlock()
			s.failQueued(apierr.New(codes.Unavailable, apierr.Unavailable, "directory is shutting down"))
		}
		if s.awaitViewQuorum() != nil { // only Close interrupts it
			stop()
			return
		}
		select {
		case <-s.closing:
			stop()
			return
		case <-t.C:
		case <-s.kick:
		}
		for {
			batch := s.take()
			if len(batch) == 0 && time.Since(s.lastCut) < s.cfg.EmptyEpochInterval {
				break
			}
			if err := s.cut(batch); err != nil {
				return
			}
			if len(s.queue) < s.cfg.MaxBatch {
				break
			}
		}
	}
}

// take removes up to MaxBatch entries from the queue.
func (s *Server) take() []*entry {
	var batch []*entry
	for len(batch) < s.cfg.MaxBatch {
		select {
		case e := <-s.queue:
			batch = append(batch, e)
			s.dequeued(e)
		default:
			return batch
		}
	}
	return batch
}

// cut runs one epoch and acknowledges its entries. A failure fails the
// batch and everything queued; the sequencer then resynchronizes from the
// log, or stops (returning the error) if it cannot.
func (s *Server) cut(batch []*entry) error {
	ctx := context.Background()
	batch, err := s.dropStale(batch, epochTimeBound(s.lastTS))
	if err != nil {
		s.cfg.Logf("directory: checking the batch against the map: %v", err)
	}
	v, err := s.runEpoch(ctx, batch, false)
	if err == nil {
		s.mu.Lock()
		for _, e := range batch {
			if s.pending[e.index] == e {
				delete(s.pending, e.index)
			}
		}
		s.mu.Unlock()
		for _, e := range batch {
			e.done <- result{epoch: v.epoch, logIndex: e.logIndex, checkpoint: v.checkpoint}
		}
		return nil
	}
	s.cfg.Logf("directory: epoch %d failed: %v", s.epoch+1, err)
	fail := epochFailure(err)
	for _, e := range batch {
		e.done <- result{err: fail}
	}
	s.failQueued(fail)
	if errors.Is(err, errCrash) || errors.Is(err, errClosing) {
		s.setFailed(err)
		return err
	}
	if rerr := s.resync(ctx, err); rerr != nil {
		if rerr != errClosing {
			s.cfg.Logf("directory: recovery failed, sequencer stopped: %v", rerr)
		}
		s.setFailed(rerr)
		return rerr
	}
	return nil
}

func (s *Server) setFailed(err error) {
	s.mu.Lock()
	s.failed = err
	s.mu.Unlock()
	s.failQueued(apierr.New(codes.Unavailable, apierr.Unavailable, "the directory's sequencer stopped after a failure"))
}

// failQueued fails every queued entry and forgets every pending one.
func (s *Server) failQueued(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		select {
		case e := <-s.queue:
			s.queuedBytes -= int64(len(e.leaf))
			e.done <- result{err: err}
		default:
			clear(s.pending)
			return
		}
	}
}
