// Package auditor replays a Keyline directory's whole log, checks every rule
// of docs/protocol.md on every entry, recomputes every map root, and
// produces transferable evidence (VerifyEvidence) for any violation. Its
// state is kept durably in a bbolt file, so it resumes where it stopped.
//
// An *Auditor also implements the witness's auditor interface (Verify): a
// witness cosigns a checkpoint only once the auditor has replayed the log up
// to exactly that checkpoint without finding a violation.
package auditor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"go.etcd.io/bbolt"

	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/auditor/internal/mtree"
	"github.com/keyline/keyline/verifier/vmap"
	"github.com/keyline/keyline/verifier/vmap/boltstore"
	"github.com/keyline/keyline/verifier/witness"
)

var _ witness.Auditor = (*Auditor)(nil)

// StateFile is the name of the auditor's bbolt file inside its directory.
const StateFile = "audit.db"

// Errors that are not violations: the Source misbehaved in a way that shows
// nothing transferable, or the request cannot be served.
var (
	// ErrSource: the Source returned data that does not verify (entries not
	// in the signed tree, a bad consistency proof, too few entries). It is
	// not evidence against the directory: a network attacker could cause it.
	ErrSource = errors.New("auditor: source returned unverifiable data")
	// ErrRollback: the Source served a signed checkpoint older than one
	// already verified (consistent with it, so not a fork). A stale or
	// rolled-back view; not transferable evidence of misbehaviour.
	ErrRollback = errors.New("auditor: checkpoint older than the last verified one")
	// ErrTooFarBehind: Verify was asked about a checkpoint further ahead than
	// Options.MaxCatchUp leaves; Run/Follow must catch up first.
	// It wraps witness.ErrAuditPending.
	ErrTooFarBehind = fmt.Errorf("auditor: checkpoint too far ahead to verify synchronously (%w)", witness.ErrAuditPending)
	// ErrNotVerified: Verify's checkpoint does not match what the auditor
	// replayed (wrong root, not at an epoch boundary, or a size the Source
	// has not reached).
	ErrNotVerified = errors.New("auditor: checkpoint not verified")
)

// Options tune an Auditor. The zero value is usable.
type Options struct {
	// BatchSize is the number of leaves verified and committed per bbolt
	// transaction (default 4096).
	BatchSize int
	// MaxCatchUp bounds how many leaves Verify replays synchronously
	// (default 100000, about 30 s of replay on 2 cores).
	MaxCatchUp uint64
	// VerifyTimeout bounds one Verify call (default 2 minutes).
	VerifyTimeout time.Duration
	// NoSync disables fsync of the state file (tests and benchmarks only).
	NoSync bool
	// Workers is the number of goroutines that pre-check each batch's
	// signatures before the sequential rule pass (default
	// runtime.GOMAXPROCS(0)); 1 disables the pre-check. It changes speed
	// only, never a result (see parallel.go).
	Workers int
}

// Auditor replays one directory's log. It is safe for concurrent use; replay
// is serialized.
type Auditor struct {
	dir   string
	db    *bbolt.DB
	trust *verifier.Trust
	src   verifier.Source
	opts  Options
	sem   chan struct{} // held while replaying or reading state
	done  atomic.Uint64 // leaves replayed, for Status without the lock
}

// Open opens (or creates) the auditor state in dir for the directory
// described by t, fetching from src.
func Open(dir string, t *verifier.Trust, src verifier.Source, opts *Options) (*Auditor, error) {
	if t == nil || t.Log == nil || src == nil {
		return nil, errors.New("auditor: Open needs a trust configuration and a source")
	}
	a := &Auditor{dir: dir, trust: t, src: src, sem: make(chan struct{}, 1)}
	if opts != nil {
		a.opts = *opts
	}
	if a.opts.BatchSize <= 0 {
		a.opts.BatchSize = 4096
	}
	if a.opts.MaxCatchUp == 0 {
		a.opts.MaxCatchUp = 100000
	}
	if a.opts.VerifyTimeout <= 0 {
		a.opts.VerifyTimeout = 2 * time.Minute
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("auditor: %w", err)
	}
	db, err := bbolt.Open(filepath.Join(dir, StateFile), 0o600, &bbolt.Options{
		Timeout: 5 * time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType, NoSync: a.opts.NoSync,
	})
	if err != nil {
		return nil, fmt.Errorf("auditor: opening state: %w", err)
	}
	a.db = db
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, n := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(n); err != nil {
				return err
			}
		}
		m := tx.Bucket(bMeta)
		f, ok, err := getU64(m, kFormat)
		if err != nil {
			return err
		}
		if !ok {
			return m.Put(kFormat, u64b(1))
		}
		if f != 1 {
			return fmt.Errorf("%w: unknown format %d", ErrCorruptState, f)
		}
		return nil
	})
	if err == nil {
		var s *state
		if s, err = a.load(); err == nil {
			a.done.Store(s.next)
		}
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return a, nil
}

// Close closes the state file.
func (a *Auditor) Close() error { return a.db.Close() }

func (a *Auditor) lock(ctx context.Context) error {
	select {
	case a.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (a *Auditor) unlock() { <-a.sem }

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

// Status describes what the auditor has verified.
type Status struct {
	// Checkpoint is the last checkpoint verified up to its size, and Note its
	// signed note; nil before the first.
	Checkpoint *klog.Checkpoint
	Note       []byte
	Replayed   uint64 // leaves replayed (log index of the next leaf)
	Epoch      uint64 // last epoch record replayed
	EpochTime  uint64 // its timestamp
	Accounts   uint64 // VRF indexes created
	Resets     uint64 // reset entries replayed (pending, in effect or cancelled)
	// CancelledResets counts the resets the owner cancelled within their
	// window (the version after the reset is signed with the previous
	// keys): they never took effect.
	CancelledResets uint64
	// ResetIndexes lists the log index of every reset entry, oldest first.
	ResetIndexes []uint64
	// Violation is the violation found, if any: the auditor stops at it.
	Violation *Violation
}

// Status returns the auditor's verified state.
func (a *Auditor) Status(ctx context.Context) (*Status, error) {
	if err := a.lock(ctx); err != nil {
		return nil, err
	}
	defer a.unlock()
	s, err := a.load()
	if err != nil {
		return nil, err
	}
	st := &Status{Checkpoint: s.cp, Note: s.cpNote, Replayed: s.next}
	err = a.db.View(func(tx *bbolt.Tx) error {
		m := tx.Bucket(bMeta)
		if l := m.Get(kEpochLeaf); l != nil {
			er, err := klog.ParseEpochRecord(l)
			if err != nil {
				return fmt.Errorf("%w: %v", ErrCorruptState, err)
			}
			st.Epoch, st.EpochTime = er.Epoch, er.Timestamp
		}
		var err error
		if st.Accounts, _, err = getU64(m, kAccounts); err != nil {
			return err
		}
		if st.Resets, _, err = getU64(m, kResets); err != nil {
			return err
		}
		if st.CancelledResets, _, err = getU64(m, kCancelled); err != nil {
			return err
		}
		return tx.Bucket(bResets).ForEach(func(k, _ []byte) error {
			if len(k) == 8 {
				st.ResetIndexes = append(st.ResetIndexes, binaryU64(k))
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if s.violation != nil {
		st.Violation, err = violationFromEvidence(s.violation, a.dir)
		if err != nil {
			return nil, err
		}
	}
	return st, nil
}

func binaryU64(b []byte) uint64 {
	var x uint64
	for _, c := range b {
		x = x<<8 | uint64(c)
	}
	return x
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

// Run fetches the Source's latest checkpoint, checks it against the last
// verified one, and replays every new leaf, calling progress (if non-nil)
// after each committed batch with the leaves replayed and the checkpoint's
// size. It returns the auditor's status once the log is verified up to that
// checkpoint, or a *Violation (errors.Is(err, ErrViolation)) with its
// evidence; once a violation is found, every later call returns it.
func (a *Auditor) Run(ctx context.Context, progress func(done, total uint64)) (*Status, error) {
	if err := a.lock(ctx); err != nil {
		return nil, err
	}
	err := a.runLocked(ctx, progress)
	a.unlock()
	if err != nil {
		return nil, err
	}
	return a.Status(ctx)
}

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

func (a *Auditor) storedViolation(s *state) error {
	v, err := violationFromEvidence(s.violation, a.dir)
	if err != nil {
		return err
	}
	return v
}

// Follow runs Run every interval until ctx is done or a violation is found.
// Errors that are not violations are passed to onError (if non-nil) and
// retried at the next interval.
func (a *Auditor) Follow(ctx context.Context, interval time.Duration, progress func(done, total uint64), onError func(error)) error {
	for {
		_, err := a.Run(ctx, progress)
		if errors.Is(err, ErrViolation) {
			return err
		}
		if err != nil && onError != nil && ctx.Err() == nil {
			onError(err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// Verify implements the witness's auditor interface: it returns nil only if
// the auditor has replayed the log up to exactly cp.Size, found no
// violation, the tree of that size has root cp.Hash, and its last leaf is an
// EpochRecord. If cp is ahead of what was replayed (by at most
// Options.MaxCatchUp leaves), it first catches up from the Source, within
// Options.VerifyTimeout.
//
// Errors that may pass (a timeout, the Source failing or serving data that
// does not verify, not caught up) wrap witness.ErrAuditPending; a
// *Violation or ErrNotVerified means cp must never be cosigned.
func (a *Auditor) Verify(ctx context.Context, cp klog.Checkpoint) error {
	err := a.verify(ctx, cp)
	if err == nil || errors.Is(err, ErrViolation) || errors.Is(err, ErrNotVerified) || errors.Is(err, witness.ErrAuditPending) ||
		errors.Is(err, ErrCorruptState) || errors.Is(err, ErrRollback) {
		return err
	}
	return fmt.Errorf("%w: %w", witness.ErrAuditPending, err)
}

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
	for s.next < cp.Size || s.cp == nil || s.cp.Size != cp.Size {
		if err := ctx.Err(); err != nil {
			return err
		}
		mem, err := mtree.NewMem(s.rng)
		if err != nil {
			return err
		}
		end := min(cp.Size, s.next+uint64(a.opts.BatchSize))
		leaves, err := a.fetch(ctx, s.next, end)
		if err != nil {
			return err
		}
		for _, l := range leaves {
			if err := mem.Append(hasher.HashLeaf(l)); err != nil {
				return err
			}
		}
		root, err := mem.Range.GetRootHash(nil)
		if err != nil {
			return err
		}
		if end == 0 {
			root = hasher.EmptyRoot()
		}
		if end < cp.Size {
			p, err := a.src.ConsistencyProof(ctx, end, cp.Size)
			if err != nil {
				return fmt.Errorf("auditor: consistency proof: %w", err)
			}
			if err := proof.VerifyConsistency(hasher, end, cp.Size, p, root, cp.Hash[:]); err != nil {
				return fmt.Errorf("%w: entries [%d, %d) are not in the checkpoint's tree: %v", ErrSource, s.next, end, err)
			}
		} else if !bytes.Equal(root, cp.Hash[:]) {
			return fmt.Errorf("%w: entries up to %d do not hash to the checkpoint's root", ErrSource, end)
		}
		var f *finding
		err = a.db.Update(func(tx *bbolt.Tx) error {
			var err error
			if f, err = a.replay(tx, s.next, leaves, end == cp.Size, cp); err != nil {
				return err
			} else if f != nil {
				return errRollback
			}
			for id, h := range mem.Nodes {
				if err := tx.Bucket(bNodes).Put(nodeKey(id), h); err != nil {
					return err
				}
			}
			m := tx.Bucket(bMeta)
			if err := m.Put(kNext, u64b(end)); err != nil {
				return err
			}
			if err := m.Put(kRange, bytes.Join(mem.Range.Hashes(), nil)); err != nil {
				return err
			}
			if end == cp.Size {
				return m.Put(kCheckpoint, note)
			}
			return nil
		})
		if f != nil {
			return a.violate(ctx, s, mem, note, cp, f)
		}
		if err != nil {
			return err
		}
		s.next, s.rng = end, mem.Range
		if end == cp.Size {
			c := cp
			s.cp, s.cpNote = &c, note
		}
		a.done.Store(end)
		if progress != nil {
			progress(end, cp.Size)
		}
	}
	return nil
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
func (a *Auditor) replay(tx *bbolt.Tx, start uint64, leaves [][]byte, atEnd bool, cp klog.Checkpoint) (*finding, error) {
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
	var pc *precheck // nil: compute everything here
	if w := a.workers(); w > 1 {
		pc = precheckBatch(accts, a.trust, leaves, w)
	}
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
			root, err := vmap.Apply(boltstore.New(tx.Bucket(bMap)), ups)
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
			if pe, r, _ = decodeEntry(rec.leaf); r != "" || pe == nil {
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
