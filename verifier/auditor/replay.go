// The replay behind Run and Verify: loading the stored position, syncing to
// a checkpoint batch by batch (authenticate, check the rules, commit) and
// the catch-up of Verify. auditor.go holds the public API.

package auditor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"go.etcd.io/bbolt"

	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier/auditor/internal/mtree"
	"github.com/keyline/keyline/verifier/vmap"
	"github.com/keyline/keyline/verifier/vmap/boltstore"
	"github.com/keyline/keyline/verifier/witness"
)

// state is the replay position read from the meta bucket.
type state struct {
	next      uint64
	rng       *compact.Range
	cpNote    []byte
	cp        *klog.Checkpoint
	violation []byte
}

func (a *Auditor) load() (*state, error) {
	s := &state{}
	err := a.db.View(func(tx *bbolt.Tx) error {
		m := tx.Bucket(bMeta)
		var err error
		if s.next, _, err = getU64(m, kNext); err != nil {
			return err
		}
		rb := m.Get(kRange)
		if len(rb)%32 != 0 {
			return fmt.Errorf("%w: compact range of %d bytes", ErrCorruptState, len(rb))
		}
		var hs [][]byte
		for i := 0; i < len(rb); i += 32 {
			hs = append(hs, append([]byte(nil), rb[i:i+32]...))
		}
		if s.rng, err = mtree.Factory.NewRange(0, s.next, hs); err != nil {
			return fmt.Errorf("%w: compact range: %v", ErrCorruptState, err)
		}
		if n := m.Get(kCheckpoint); n != nil {
			s.cpNote = bytes.Clone(n)
			cp, _, err := klog.OpenCheckpoint(s.cpNote, a.trust.Log, a.trust.Origin)
			if err != nil {
				return fmt.Errorf("%w: stored checkpoint: %v", ErrCorruptState, err)
			}
			s.cp = &cp
		}
		s.violation = bytes.Clone(m.Get(kViolation))
		return nil
	})
	return s, err
}

func violationFromEvidence(ev []byte, dir string) (*Violation, error) {
	e, err := ParseEvidence(ev)
	if err != nil {
		return nil, fmt.Errorf("%w: stored evidence: %v", ErrCorruptState, err)
	}
	return &Violation{Rule: e.Rule, LogIndex: e.LogIndex, Detail: e.Detail, Evidence: ev, EvidencePath: evidencePath(dir, e)}, nil
}

func evidencePath(dir string, e *Evidence) string {
	return filepath.Join(dir, fmt.Sprintf("evidence-%s-%d.json", string(e.Rule), e.LogIndex))
}

// runLocked is Run with the auditor's lock held.
func (a *Auditor) runLocked(ctx context.Context, progress func(done, total uint64)) error {
	s, err := a.load()
	if err != nil {
		return err
	}
	if s.violation != nil {
		return a.storedViolation(s)
	}
	note, err := a.src.Checkpoint(ctx)
	if err != nil {
		return fmt.Errorf("auditor: fetching checkpoint: %w", err)
	}
	cp, _, err := klog.OpenCheckpoint(note, a.trust.Log, a.trust.Origin)
	if err != nil {
		return fmt.Errorf("%w: checkpoint: %v", ErrSource, err)
	}
	return a.syncTo(ctx, s, note, cp, progress)
}

// storedViolation returns the violation recorded in s as a *Violation.
func (a *Auditor) storedViolation(s *state) error {
	v, err := violationFromEvidence(s.violation, a.dir)
	if err != nil {
		return err
	}
	return v
}

// verify is Verify without the mapping of other errors to
// witness.ErrAuditPending.
func (a *Auditor) verify(ctx context.Context, cp klog.Checkpoint) error {
	ctx, cancel := context.WithTimeout(ctx, a.opts.VerifyTimeout)
	defer cancel()
	if cp.Origin != a.trust.Origin {
		return fmt.Errorf("%w: origin %q, want %q", ErrNotVerified, cp.Origin, a.trust.Origin)
	}
	if err := a.lock(ctx); err != nil {
		return err
	}
	defer a.unlock()
	s, err := a.load()
	if err != nil {
		return err
	}
	if s.violation != nil {
		return a.storedViolation(s)
	}
	if s.cp == nil || cp.Size > s.cp.Size {
		if cp.Size > s.next && cp.Size-s.next > a.opts.MaxCatchUp {
			return fmt.Errorf("%w: %d leaves ahead", ErrTooFarBehind, cp.Size-s.next)
		}
		note, err := a.src.Checkpoint(ctx)
		if err != nil {
			return fmt.Errorf("auditor: fetching checkpoint: %w", err)
		}
		latest, _, err := klog.OpenCheckpoint(note, a.trust.Log, a.trust.Origin)
		if err != nil {
			return fmt.Errorf("%w: checkpoint: %v", ErrSource, err)
		}
		if latest.Size < cp.Size {
			return fmt.Errorf("%w: the source's latest checkpoint has %d leaves, fewer than %d", witness.ErrAuditPending, latest.Size, cp.Size)
		}
		if latest.Size-s.next > a.opts.MaxCatchUp {
			return fmt.Errorf("%w: %d leaves ahead", ErrTooFarBehind, latest.Size-s.next)
		}
		if err := a.syncTo(ctx, s, note, latest, nil); err != nil {
			return err
		}
		if s, err = a.load(); err != nil {
			return err
		}
	}
	return a.db.View(func(tx *bbolt.Tx) error {
		if cp.Size > s.cp.Size {
			return fmt.Errorf("%w: size %d not replayed", ErrNotVerified, cp.Size)
		}
		if cp.Size > 0 {
			if _, ok, err := getU64(tx.Bucket(bEpochs), u64b(cp.Size)); err != nil {
				return err
			} else if !ok {
				return fmt.Errorf("%w: leaf %d is not an EpochRecord", ErrNotVerified, cp.Size-1)
			}
		}
		root, err := mtree.Root(dbNodes(tx), cp.Size)
		if err != nil {
			return err
		}
		if !bytes.Equal(root, cp.Hash[:]) {
			return fmt.Errorf("%w: the replayed tree of size %d has root %x, not %x", ErrNotVerified, cp.Size, root[:8], cp.Hash[:8])
		}
		return nil
	})
}

// finding is a violation found during replay, before its evidence is built.
type finding struct {
	rule   Rule
	x      uint64  // offending leaf
	prev   *uint64 // earlier leaf compared with
	cover  bool    // evidence must hold every leaf from prev (or 0) to x
	detail string
}

func (f *finding) Error() string { return string(f.rule) + ": " + f.detail }

// syncTo replays the log up to the verified checkpoint cp (signed note).
func (a *Auditor) syncTo(ctx context.Context, s *state, note []byte, cp klog.Checkpoint, progress func(done, total uint64)) error {
	hasher := rfc6962.DefaultHasher
	if last := s.cp; last != nil {
		switch {
		case cp.Size == last.Size && cp.Hash != last.Hash:
			return a.violate(ctx, s, nil, note, cp, &finding{rule: RuleSplitView, detail: "two checkpoints of one size"})
		case cp.Size == last.Size:
			return nil
		case cp.Size < last.Size:
			var root []byte
			err := a.db.View(func(tx *bbolt.Tx) (err error) { root, err = mtree.Root(dbNodes(tx), cp.Size); return })
			if err != nil {
				return err
			}
			if !bytes.Equal(root, cp.Hash[:]) {
				return a.violate(ctx, s, nil, note, cp, &finding{rule: RuleFork, detail: "checkpoint is not a prefix of the last verified one"})
			}
			return fmt.Errorf("%w: size %d, last verified %d", ErrRollback, cp.Size, last.Size)
		}
		p, err := a.src.ConsistencyProof(ctx, last.Size, cp.Size)
		if err != nil {
			return fmt.Errorf("auditor: consistency proof: %w", err)
		}
		if err := proof.VerifyConsistency(hasher, last.Size, cp.Size, p, last.Hash[:], cp.Hash[:]); err != nil {
			return fmt.Errorf("%w: consistency proof from %d to %d: %v", ErrSource, last.Size, cp.Size, err)
		}
	}
	if cp.Size < s.next {
		// Replayed past cp before a crash: cp must match what was replayed.
		return a.db.Update(func(tx *bbolt.Tx) error {
			root, err := mtree.Root(dbNodes(tx), cp.Size)
			if err != nil {
				return err
			}
			if !bytes.Equal(root, cp.Hash[:]) {
				return fmt.Errorf("%w: checkpoint of size %d does not match the replayed leaves", ErrSource, cp.Size)
			}
			if _, ok, _ := getU64(tx.Bucket(bEpochs), u64b(cp.Size)); !ok && cp.Size > 0 {
				return fmt.Errorf("%w: checkpoint of size %d does not end at an EpochRecord", ErrNotVerified, cp.Size)
			}
			return tx.Bucket(bMeta).Put(kCheckpoint, note)
		})
	}
	if s.next == cp.Size && s.cp != nil && s.cp.Size == cp.Size {
		return nil
	}
	// The batches are prepared (fetched, authenticated, pre-checked) one
	// batch ahead of the rule pass on another goroutine (produce), and
	// applied here in order, one bbolt transaction each.
	pctx, cancel := context.WithCancel(ctx)
	batches := make(chan *batch)
	var stopped sync.WaitGroup
	stopped.Go(func() { a.produce(pctx, batches, s.next, s.rng, cp) })
	stop := func() {
		cancel()
		for range batches {
		}
		stopped.Wait()
	}
	defer stop()
	for b := range batches {
		if b.err != nil {
			return b.err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		end := b.end
		var f *finding
		err := a.db.Update(func(tx *bbolt.Tx) error {
			var err error
			if f, err = a.replay(tx, b.start, b.leaves, b.pc, end == cp.Size, cp); err != nil {
				return err
			} else if f != nil {
				return errRollback
			}
			nodes := tx.Bucket(bNodes)
			nodes.FillPercent = 1 // keys grow within each level: pages stay full
			for id, h := range b.mem.Nodes {
				if err := nodes.Put(nodeKey(id), h); err != nil {
					return err
				}
			}
			m := tx.Bucket(bMeta)
			if err := m.Put(kNext, u64b(end)); err != nil {
				return err
			}
			if err := m.Put(kRange, bytes.Join(b.mem.Range.Hashes(), nil)); err != nil {
				return err
			}
			if end == cp.Size {
				return m.Put(kCheckpoint, note)
			}
			return nil
		})
		if f != nil {
			stop() // violate fetches from the Source itself
			return a.violate(ctx, s, b.mem, note, cp, f)
		}
		if err != nil {
			return err
		}
		s.next, s.rng = end, b.mem.Range
		if end == cp.Size {
			c := cp
			s.cp, s.cpNote = &c, note
		}
		a.done.Store(end)
		if progress != nil {
			progress(end, cp.Size)
		}
	}
	return ctx.Err()
}

// batch is one batch of leaves [start, end) prepared for the rule pass:
// authenticated against the checkpoint (mem continues the compact range of
// the leaves before start with their hashes) and pre-checked (pc, nil with
// Workers = 1); or err, the last batch sent.
type batch struct {
	start, end uint64
	leaves     [][]byte
	mem        *mtree.Mem
	pc         *precheck
	err        error
}

// produce prepares the batches from start (whose compact range is rng) to
// cp.Size and sends them on out in order, then closes out. It stops after
// a batch with an error, or when ctx is done.
//
// It prepares batch j while the rule pass applies batch j-1: out is
// unbuffered, so when produce starts batch j the rule pass has received
// j-1 and thus committed j-2. The pre-check's guess of an index's previous
// entry is therefore the latest earlier entry in batch j, else in batch
// j-1 (the overlay, pc.last of j-1), else the account record read in a
// read transaction of its own (which holds at least every batch up to j-2;
// one per lookup, so that no read transaction stays open across the rule
// pass's commits and keeps their freed pages from being reused).
// That is what the rule pass will find if no earlier batch has a
// violation; a wrong guess would only cost a recomputation (parallel.go).
func (a *Auditor) produce(ctx context.Context, out chan<- *batch, start uint64, rng *compact.Range, cp klog.Checkpoint) {
	defer close(out)
	hasher := rfc6962.DefaultHasher
	var overlay map[[32]byte]*entry
	for {
		b := &batch{start: start, end: min(cp.Size, start+uint64(a.opts.BatchSize))}
		b.err = func() error {
			var err error
			if b.mem, err = mtree.NewMem(rng); err != nil {
				return err
			}
			if b.leaves, err = a.fetch(ctx, b.start, b.end); err != nil {
				return err
			}
			for _, l := range b.leaves {
				if err := b.mem.Append(hasher.HashLeaf(l)); err != nil {
					return err
				}
			}
			root, err := b.mem.Range.GetRootHash(nil)
			if err != nil {
				return err
			}
			if b.end == 0 {
				root = hasher.EmptyRoot()
			}
			if b.end < cp.Size {
				p, err := a.src.ConsistencyProof(ctx, b.end, cp.Size)
				if err != nil {
					return fmt.Errorf("auditor: consistency proof: %w", err)
				}
				if err := proof.VerifyConsistency(hasher, b.end, cp.Size, p, root, cp.Hash[:]); err != nil {
					return fmt.Errorf("%w: entries [%d, %d) are not in the checkpoint's tree: %v", ErrSource, b.start, b.end, err)
				}
			} else if !bytes.Equal(root, cp.Hash[:]) {
				return fmt.Errorf("%w: entries up to %d do not hash to the checkpoint's root", ErrSource, b.end)
			}
			if w := a.workers(); w > 1 {
				stored := storedPrev(a.db)
				b.pc = precheckBatch(func(idx [32]byte) (*entry, []byte, bool) {
					if e, ok := overlay[idx]; ok {
						return e, nil, true
					}
					return stored(idx)
				}, a.trust, b.leaves, w)
				overlay = b.pc.last
			}
			return nil
		}()
		select {
		case out <- b:
		case <-ctx.Done():
			return
		}
		if b.err != nil || b.end == cp.Size {
			return
		}
		start, rng = b.end, b.mem.Range
	}
}

var errRollback = errors.New("auditor: rollback")

// fetch returns leaves [start, end) from the Source, looping over short
// answers.
func (a *Auditor) fetch(ctx context.Context, start, end uint64) ([][]byte, error) {
	out := make([][]byte, 0, end-start)
	for i := start; i < end; {
		ls, err := a.src.Entries(ctx, i, end)
		if err != nil {
			return nil, fmt.Errorf("auditor: entries [%d, %d): %w", i, end, err)
		}
		if len(ls) == 0 || uint64(len(ls)) > end-i {
			return nil, fmt.Errorf("%w: asked for entries [%d, %d), got %d", ErrSource, i, end, len(ls))
		}
		out = append(out, ls...)
		i += uint64(len(ls))
	}
	return out, nil
}

// replay checks and applies leaves starting at log index start in tx. It
// returns a finding (and tx must be rolled back) on a violation.
func (a *Auditor) replay(tx *bbolt.Tx, start uint64, leaves [][]byte, pc *precheck, atEnd bool, cp klog.Checkpoint) (*finding, error) {
	meta, accts, users, epochs := tx.Bucket(bMeta), tx.Bucket(bAccounts), tx.Bucket(bUsers), tx.Bucket(bEpochs)
	nAccounts, _, err := getU64(meta, kAccounts)
	if err != nil {
		return nil, err
	}
	nResets, _, err := getU64(meta, kResets)
	if err != nil {
		return nil, err
	}
	nCancelled, _, err := getU64(meta, kCancelled)
	if err != nil {
		return nil, err
	}
	var lastEpoch *klog.EpochRecord
	var lastEpochIdx *uint64
	if l := meta.Get(kEpochLeaf); l != nil {
		if lastEpoch, err = klog.ParseEpochRecord(l); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorruptState, err)
		}
		i, _, err := getU64(meta, kEpochIndex)
		if err != nil {
			return nil, err
		}
		lastEpochIdx = &i
	}
	pending := tx.Bucket(bPending)
	for k, leaf := range leaves {
		i := start + uint64(k)
		xe, rule, detail := pc.decode(k, leaf)
		if rule != "" {
			return &finding{rule: rule, x: i, detail: detail}, nil
		}
		if xe == nil { // EpochRecord
			er, err := klog.ParseEpochRecord(leaf)
			if err != nil {
				return nil, err
			}
			if rule, detail := checkEpoch(lastEpoch, er); rule != "" {
				return &finding{rule: rule, x: i, prev: lastEpochIdx, cover: true, detail: detail}, nil
			}
			after := tx.Bucket(bAfterReset)
			var late *finding
			seenAfter := 0
			if err := after.ForEach(func(k, v []byte) error {
				seenAfter++
				if len(v) != 17 || late != nil {
					if len(v) != 17 {
						return fmt.Errorf("%w: after-reset record", ErrCorruptState)
					}
					return nil
				}
				if rule, detail := checkResetLogTime(er, int64(binaryU64(v[8:16])), v[16] == 1); rule != "" {
					p := binaryU64(v[:8])
					late = &finding{rule: rule, x: i, prev: &p, cover: true, detail: fmt.Sprintf("leaf %d: %s", binaryU64(k), detail)}
				}
				return nil
			}); err != nil {
				return nil, err
			}
			if late != nil {
				return late, nil
			}
			if seenAfter > 0 {
				if err := tx.DeleteBucket(bAfterReset); err != nil {
					return nil, err
				}
				if _, err := tx.CreateBucket(bAfterReset); err != nil {
					return nil, err
				}
			}
			var ups []vmap.Update
			if err := pending.ForEach(func(k, v []byte) error {
				ups = append(ups, vmap.Update{Index: vmap.Index(k), Value: vmap.Value(v)})
				return nil
			}); err != nil {
				return nil, err
			}
			root, err := a.tiles.Apply(boltstore.NewTiles(tx.Bucket(bTiles)), ups)
			if err != nil {
				return nil, fmt.Errorf("auditor: map: %w", err)
			}
			if root != er.MapRoot {
				return &finding{rule: RuleMapRoot, x: i, cover: true,
					detail: fmt.Sprintf("epoch %d has map root %x, the log implies %x", er.Epoch, er.MapRoot[:8], root[:8])}, nil
			}
			if len(ups) > 0 {
				if err := tx.DeleteBucket(bPending); err != nil {
					return nil, err
				}
				if pending, err = tx.CreateBucket(bPending); err != nil {
					return nil, err
				}
			}
			if err := epochs.Put(u64b(i+1), u64b(er.Epoch)); err != nil {
				return nil, err
			}
			lastEpoch = er
			ii := i
			lastEpochIdx = &ii
			continue
		}
		u := xe.u
		var pe *entry
		var rec *accountRec
		var prevIdx *uint64
		if v := accts.Get(u.Index[:]); v != nil {
			if rec, err = parseAccountRec(v); err != nil {
				return nil, err
			}
			var r Rule
			if pe, r, _ = pc.storedLeafEntry(k, rec.leaf); r != "" || pe == nil {
				return nil, fmt.Errorf("%w: stored leaf of index %x", ErrCorruptState, u.Index[:8])
			}
			pi := rec.logIndex
			prevIdx = &pi
		}
		if rule, detail := pc.check(k, a.trust, pe, xe); rule != "" {
			f := &finding{rule: rule, x: i, prev: prevIdx, detail: detail}
			f.cover = rule == RuleVersionSkip
			return f, nil
		}
		if rec == nil {
			rec = &accountRec{}
			nAccounts++
			uid := []byte(xe.state.UserID)
			if v := users.Get(uid); v != nil {
				if len(v) != 40 {
					return nil, fmt.Errorf("%w: user record", ErrCorruptState)
				}
				p := binaryU64(v[32:])
				return &finding{rule: RuleUserIndex, x: i, prev: &p,
					detail: fmt.Sprintf("user id %q already at index %x", xe.state.UserID, v[:8])}, nil
			}
			if err := users.Put(uid, append(bytes.Clone(u.Index[:]), u64b(i)...)); err != nil {
				return nil, err
			}
		}
		if pe != nil && pe.reset != nil && xe.reset == nil {
			cancelled := xe.state.IdentityKey == pe.reset.Current.IdentityKey
			if cancelled {
				nCancelled++ // checkEntry accepted it as a cancellation
			}
			ar := append(u64b(*prevIdx), u64b(uint64(pe.reset.EffectiveAt.Unix()))...)
			if cancelled {
				ar = append(ar, 1)
			} else {
				ar = append(ar, 0)
			}
			if err := tx.Bucket(bAfterReset).Put(u64b(i), ar); err != nil {
				return nil, err
			}
		}
		if u.Update == klog.UpdateReset {
			nResets++
			rec.resets++
			if err := tx.Bucket(bResets).Put(u64b(i), bytes.Clone(u.Index[:])); err != nil {
				return nil, err
			}
		}
		rec.version, rec.logIndex, rec.leaf = u.Version, i, leaf
		if err := accts.Put(bytes.Clone(u.Index[:]), rec.marshal()); err != nil {
			return nil, err
		}
		val := vmap.MapValue(u.Version, i, klog.EntryHash(leaf))
		if err := pending.Put(bytes.Clone(u.Index[:]), val[:]); err != nil {
			return nil, err
		}
	}
	if atEnd && cp.Size > 0 && (lastEpochIdx == nil || *lastEpochIdx != cp.Size-1) {
		return &finding{rule: RuleCheckpointEnd, x: cp.Size - 1, detail: fmt.Sprintf("leaf %d, the last of a checkpoint, is not an EpochRecord", cp.Size-1)}, nil
	}
	if err := meta.Put(kAccounts, u64b(nAccounts)); err != nil {
		return nil, err
	}
	if err := meta.Put(kResets, u64b(nResets)); err != nil {
		return nil, err
	}
	if err := meta.Put(kCancelled, u64b(nCancelled)); err != nil {
		return nil, err
	}
	if lastEpoch != nil {
		l, _ := lastEpoch.Marshal()
		if err := meta.Put(kEpochLeaf, l); err != nil {
			return nil, err
		}
		if err := meta.Put(kEpochIndex, u64b(*lastEpochIdx)); err != nil {
			return nil, err
		}
	}
	return nil, nil
}
