package auditor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"

	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/vmap"
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
	tiles *vmap.TiledMap
}

// Open opens (or creates) the auditor state in dir for the directory
// described by t, fetching from src.
func Open(dir string, t *verifier.Trust, src verifier.Source, opts *Options) (*Auditor, error) {
	if t == nil || t.Log == nil || src == nil {
		return nil, errors.New("auditor: Open needs a trust configuration and a source")
	}
	tiles, err := vmap.NewTiledMap(mapStride, nil)
	if err != nil {
		return nil, err
	}
	a := &Auditor{dir: dir, trust: t, src: src, sem: make(chan struct{}, 1), tiles: tiles}
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
	path := filepath.Join(dir, StateFile)
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout: 5 * time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType, NoSync: a.opts.NoSync,
	})
	if err != nil {
		return nil, fmt.Errorf("auditor: opening state: %w", err)
	}
	a.db = db
	err = db.Update(func(tx *bbolt.Tx) error {
		// The format is checked before anything is written: a file in
		// another format is left as it is.
		if m := tx.Bucket(bMeta); m != nil {
			f, ok, err := getU64(m, kFormat)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%w: no format number", ErrCorruptState)
			}
			if f != stateFormat {
				return fmt.Errorf("%w: %s is in format %d, this auditor reads only format %d (it does not convert older state files): "+
					"move that file (or the whole directory) away and run the audit again from scratch, which replays the whole log",
					ErrStateFormat, path, f, stateFormat)
			}
		}
		for _, n := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(n); err != nil {
				return err
			}
		}
		m := tx.Bucket(bMeta)
		if _, ok, err := getU64(m, kFormat); err != nil || ok {
			return err
		}
		return m.Put(kFormat, u64b(stateFormat))
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
