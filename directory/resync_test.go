package directory

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory/apierr"
	"github.com/keyline/keyline/directory/loadgen"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/log/embedded"
	"github.com/keyline/keyline/verifier/auditor"
)

// flakyLog is a log backend that behaves like a remote Trillian log: it can
// be down (every call fails with Unavailable), and it can interrupt an
// Append after storing its leaves without integrating them (they stay
// invisible — Size, Entries, proofs — until released, and an Append at
// their indices conflicts), like an append in flight while
// trillian_log_signer is down.
type flakyLog struct {
	*embedded.Log

	mu            sync.Mutex
	down          bool
	hidden        uint64 // stored leaves not yet "integrated"
	interruptNext bool
	appends       int

	proofCalls atomic.Int64 // InclusionProof and ConsistencyProof calls
}

func newFlakyLog(t *testing.T) *flakyLog {
	l, err := embedded.Open(filepath.Join(t.TempDir(), "remote.db"), &embedded.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &flakyLog{Log: l}
}

// Close does not close the underlying log, so that tests can reopen a
// directory on it.
func (f *flakyLog) Close() error { return nil }

func (f *flakyLog) set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

var errDown = status.Error(codes.Unavailable, "flaky log: connection refused")

// visible returns the integrated size.
func (f *flakyLog) visible(ctx context.Context) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return 0, errDown
	}
	n, err := f.Log.Size(ctx)
	return n - f.hidden, err
}

func (f *flakyLog) Size(ctx context.Context) (uint64, error) { return f.visible(ctx) }

func (f *flakyLog) Entries(ctx context.Context, start, end uint64) ([][]byte, error) {
	n, err := f.visible(ctx)
	if err != nil {
		return nil, err
	}
	if end > n {
		return nil, fmt.Errorf("%w: Entries(%d, %d) of %d", klog.ErrRange, start, end, n)
	}
	return f.Log.Entries(ctx, start, end)
}

func (f *flakyLog) RootHash(ctx context.Context, size uint64) ([]byte, error) {
	n, err := f.visible(ctx)
	if err != nil {
		return nil, err
	}
	if size > n {
		return nil, fmt.Errorf("%w: RootHash(%d) of %d", klog.ErrRange, size, n)
	}
	return f.Log.RootHash(ctx, size)
}

func (f *flakyLog) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	f.proofCalls.Add(1)
	n, err := f.visible(ctx)
	if err != nil {
		return nil, err
	}
	if size > n {
		return nil, fmt.Errorf("%w: InclusionProof(%d, %d) of %d", klog.ErrRange, index, size, n)
	}
	return f.Log.InclusionProof(ctx, index, size)
}

func (f *flakyLog) ConsistencyProof(ctx context.Context, oldSize, newSize uint64) ([][]byte, error) {
	f.proofCalls.Add(1)
	n, err := f.visible(ctx)
	if err != nil {
		return nil, err
	}
	if newSize > n {
		return nil, fmt.Errorf("%w: ConsistencyProof(%d, %d) of %d", klog.ErrRange, oldSize, newSize, n)
	}
	return f.Log.ConsistencyProof(ctx, oldSize, newSize)
}

func (f *flakyLog) Append(ctx context.Context, expected uint64, leaves [][]byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errDown
	}
	f.appends++
	stored, err := f.Log.Size(ctx)
	if err != nil {
		return err
	}
	if stored != expected {
		return fmt.Errorf("%w: flaky log: index %d is taken (%d stored, %d integrated)", klog.ErrConflict, expected, stored, stored-f.hidden)
	}
	if err := f.Log.Append(ctx, expected, leaves); err != nil {
		return err
	}
	if f.interruptNext {
		f.interruptNext = false
		f.hidden += uint64(len(leaves))
		return errors.New("flaky log: leaves stored but not integrated in time")
	}
	return nil
}

// openRemote opens a directory in dir on the flaky log.
func openRemote(t *testing.T, dir string, f *flakyLog) *Server {
	t.Helper()
	s, err := Open(Config{DataDir: dir, EpochInterval: 10 * time.Millisecond, NoSync: true, remoteLog: f, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// eventually retries f until it succeeds or 20 s pass.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after 20s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// auditDirectory replays the whole log with the real auditor.
func auditDirectory(t *testing.T, s *Server) *auditor.Status {
	t.Helper()
	a, err := auditor.Open(t.TempDir(), trustOf(t, s), s.Source(), &auditor.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	st, err := a.Run(context.Background(), nil)
	if err != nil {
		t.Fatalf("auditor: %v", err)
	}
	if st.Violation != nil {
		t.Fatalf("auditor found a violation: %+v", st.Violation)
	}
	return st
}

// TestResyncAfterInterruptedAppend is the Trillian wedge of issue 15: an
// epoch's append is stored but not integrated (the signer is down), the
// epoch fails, and the next epochs' conditional appends conflict with the
// stored leaves until they are integrated. The directory must then replay
// them — the interrupted update is in the log, so it is in the map — and
// accept updates again, without a restart and without corrupting anything.
func TestResyncAfterInterruptedAppend(t *testing.T) {
	ctx := context.Background()
	f := newFlakyLog(t)
	s := openRemote(t, t.TempDir(), f)
	trust := trustOf(t, s)
	alice, bob, carol := newTestAccount(t, "alice"), newTestAccount(t, "bob"), newTestAccount(t, "carol")
	if _, err := s.Update(ctx, alice.bytes(t)); err != nil {
		t.Fatal(err)
	}
	f.set(func() { f.interruptNext = true })
	if _, err := s.Update(ctx, bob.bytes(t)); status.Code(err) != codes.Unavailable {
		t.Fatalf("update whose append was interrupted = %v; want Unavailable", err)
	}
	// While the leaves are stored but not integrated, updates fail (their
	// appends conflict), lookups are still served from the installed view.
	time.Sleep(100 * time.Millisecond)
	if _, err := s.Update(ctx, carol.bytes(t)); status.Code(err) != codes.Unavailable {
		t.Fatalf("update while an interrupted append is pending = %v; want Unavailable", err)
	}
	if v := mustLookup(t, s.Source(), trust, "alice"); !v.found {
		t.Fatal("alice not found while the log is wedged")
	}
	f.set(func() { f.hidden = 0 }) // the signer integrates the stored leaves
	eventually(t, "update after the stored leaves were integrated", func() error {
		_, err := s.Update(ctx, carol.bytes(t))
		return err
	})
	for _, uid := range []string{"alice", "bob", "carol"} {
		if v := mustLookup(t, s.Source(), trust, uid); !v.found || v.version != 1 {
			t.Fatalf("%s: found %v version %d; want version 1 (bob's interrupted append is in the log)", uid, v.found, v.version)
		}
	}
	if s.sequencerFailed() {
		t.Fatal("sequencer stopped")
	}
	if st := auditDirectory(t, s); st.Accounts != 3 {
		t.Fatalf("auditor counted %d accounts, want 3", st.Accounts)
	}
}

// TestLookupsWhileLogUnwritable: an epoch's leaves reach the embedded log
// but the epoch fails (the log's fsync fails after its pages were written,
// as in TestDiskFaultsInjected), and no checkpoint can be stored while the
// fault lasts. Recovery replays the epoch from the log but must not commit
// it before a checkpoint covers it: lookups are answered from the last
// published view for the whole fault, not only until the first recovery
// attempt, updates are refused with STORAGE_FAILURE, nothing new is signed,
// and the update is published once the log is writable again.
func TestLookupsWhileLogUnwritable(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir(), nil)
	trust := trustOf(t, s)
	alice, bob, carol := newTestAccount(t, "alice"), newTestAccount(t, "bob"), newTestAccount(t, "carol")
	if _, err := s.Update(ctx, alice.bytes(t)); err != nil {
		t.Fatal(err)
	}
	signedSize := func() uint64 {
		note, err := s.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c, err := trust.OpenCheckpoint(note)
		if err != nil {
			t.Fatal(err)
		}
		return c.Size
	}
	size := signedSize()
	var fault, appendFailed atomic.Bool
	fault.Store(true)
	s.hooks.Store(&testHooks{
		afterAppend: func() error {
			if appendFailed.CompareAndSwap(false, true) {
				return fmt.Errorf("embedded: append: %w", syscall.EIO)
			}
			return nil
		},
		publish: func(n uint64) error {
			if fault.Load() && n > size {
				return fmt.Errorf("log: publish: storing checkpoint: %w", syscall.EIO)
			}
			return nil
		},
	})
	if _, err := s.Update(ctx, bob.bytes(t)); apierr.Reason(err) != apierr.StorageFailure {
		t.Fatalf("update whose epoch failed = %v; want %s", err, apierr.StorageFailure)
	}
	// Recovery attempts fail meanwhile (backoff 100, 200, 400 ms).
	for end := time.Now().Add(800 * time.Millisecond); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if v := mustLookup(t, s.Source(), trust, "alice"); !v.found || v.version != 1 {
			t.Fatalf("alice during the fault: found %v version %d", v.found, v.version)
		}
		// bob's leaf is in the log, under no checkpoint: absent in the view.
		if v := mustLookup(t, s.Source(), trust, "bob"); v.found {
			t.Fatal("bob found during the fault: served from an unpublished epoch")
		}
	}
	if _, err := s.Update(ctx, carol.bytes(t)); apierr.Reason(err) != apierr.StorageFailure {
		t.Fatalf("update during the fault = %v; want %s", err, apierr.StorageFailure)
	}
	if got := signedSize(); got != size {
		t.Fatalf("checkpoint grew from %d to %d while none could be stored", size, got)
	}
	fault.Store(false)
	eventually(t, "update after the fault", func() error {
		_, err := s.Update(ctx, carol.bytes(t))
		return err
	})
	for _, uid := range []string{"alice", "bob", "carol"} {
		if v := mustLookup(t, s.Source(), trust, uid); !v.found || v.version != 1 {
			t.Fatalf("%s after the fault: found %v version %d; want version 1", uid, v.found, v.version)
		}
	}
	if s.sequencerFailed() {
		t.Fatal("sequencer stopped")
	}
	if st := auditDirectory(t, s); st.Accounts != 3 {
		t.Fatalf("auditor counted %d accounts, want 3", st.Accounts)
	}
}

// TestResyncAfterOutage: the log backend refuses every call for a while
// (database restart). Updates fail with Unavailable meanwhile — never with
// a corruption verdict, and the sequencer does not stop — lookups are still
// answered from the node cache, and updates succeed again once the backend
// is back.
func TestResyncAfterOutage(t *testing.T) {
	ctx := context.Background()
	f := newFlakyLog(t)
	s := openRemote(t, t.TempDir(), f)
	trust := trustOf(t, s)
	alice, bob := newTestAccount(t, "alice"), newTestAccount(t, "bob")
	if _, err := s.Update(ctx, alice.bytes(t)); err != nil {
		t.Fatal(err)
	}
	f.set(func() { f.down = true })
	if _, err := s.Update(ctx, bob.bytes(t)); status.Code(err) != codes.Unavailable {
		t.Fatalf("update while the log is down = %v; want Unavailable", err)
	}
	if v := mustLookup(t, s.Source(), trust, "alice"); !v.found {
		t.Fatal("alice not found while the log is down")
	}
	time.Sleep(300 * time.Millisecond) // a few failed recovery attempts
	f.set(func() { f.down = false })
	eventually(t, "update after the outage", func() error {
		_, err := s.Update(ctx, bob.bytes(t))
		return err
	})
	if v := mustLookup(t, s.Source(), trust, "bob"); !v.found || v.version != 1 {
		t.Fatalf("bob: found %v version %d", v.found, v.version)
	}
	if s.sequencerFailed() {
		t.Fatal("sequencer stopped")
	}
	auditDirectory(t, s)
}

// TestOpenWhileLogDown: a directory started while its log backend is down
// serves at once: lookups fail fast with Unavailable (no view yet) instead
// of hanging, updates are refused, and everything works once the backend is
// back.
func TestOpenWhileLogDown(t *testing.T) {
	ctx := context.Background()
	f := newFlakyLog(t)
	dir := t.TempDir()
	s := openRemote(t, dir, f)
	alice := newTestAccount(t, "alice")
	if _, err := s.Update(ctx, alice.bytes(t)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	f.set(func() { f.down = true })
	s = openRemote(t, dir, f)
	start := time.Now()
	if _, err := s.Lookup(ctx, "alice", 0); status.Code(err) != codes.Unavailable {
		t.Fatalf("lookup before recovery = %v; want Unavailable", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("lookup before recovery took %v", d)
	}
	bob := newTestAccount(t, "bob")
	if _, err := s.Update(ctx, bob.bytes(t)); status.Code(err) != codes.Unavailable {
		t.Fatalf("update before recovery = %v; want Unavailable", err)
	}
	f.set(func() { f.down = false })
	trust := trustOf(t, s)
	eventually(t, "update after the backend came back", func() error {
		_, err := s.Update(ctx, bob.bytes(t))
		return err
	})
	if v := mustLookup(t, s.Source(), trust, "alice"); !v.found {
		t.Fatal("alice lost")
	}
}

// TestProofsFromNodeCache: with a remote log, lookups and consistency
// proofs come from the node cache (no proof RPCs) and verify, lookups read
// no leaf from the log (it may be down); a data dir
// whose cache is missing (older version) is filled from the log on open.
func TestProofsFromNodeCache(t *testing.T) {
	ctx := context.Background()
	f := newFlakyLog(t)
	dir := t.TempDir()
	s := openRemote(t, dir, f)
	trust := trustOf(t, s)
	var uids []string
	for i := range 12 {
		a := newTestAccount(t, fmt.Sprintf("user%d", i))
		if _, err := s.Update(ctx, a.bytes(t)); err != nil {
			t.Fatal(err)
		}
		uids = append(uids, a.uid)
	}
	check := func(s *Server) {
		t.Helper()
		before := f.proofCalls.Load()
		for _, uid := range append(uids, "nobody") {
			v := mustLookup(t, s.Source(), trust, uid)
			if v.found != (uid != "nobody") {
				t.Fatalf("%s found=%v", uid, v.found)
			}
		}
		// The user records hold the latest leaves: lookups of existing
		// accounts make no log request at all, and work while it is down.
		f.set(func() { f.down = true })
		for _, uid := range uids {
			if v := mustLookup(t, s.Source(), trust, uid); !v.found || v.version != 1 {
				t.Fatalf("%s with the log down: found=%v version %d", uid, v.found, v.version)
			}
		}
		f.set(func() { f.down = false })
		size := mustLookup(t, s.Source(), trust, "user0").cp.Size
		for old := uint64(1); old < size; old += 3 {
			p, err := s.ConsistencyProof(ctx, old, size)
			if err != nil {
				t.Fatal(err)
			}
			want, err := f.Log.ConsistencyProof(ctx, old, size)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(p) != fmt.Sprint(want) {
				t.Fatalf("consistency proof %d->%d from the cache differs from the log's", old, size)
			}
		}
		if n := f.proofCalls.Load() - before; n != 0 {
			t.Fatalf("lookups and consistency requests made %d proof calls to the log backend", n)
		}
	}
	check(s)
	s.Close()
	// Drop the cache, as in a data dir written before it existed.
	db, err := bbolt.Open(filepath.Join(dir, FileDirDB), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		if err := tx.DeleteBucket(bucketLogNodes); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Delete(keyLogNodes)
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s = openRemote(t, dir, f)
	check(s)
	// A cache that disagrees with the log is refused.
	s.Close()
	db, err = bbolt.Open(filepath.Join(dir, FileDirDB), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		if err := tx.DeleteBucket(bucketLogNodes); err != nil {
			return err
		}
		if err := tx.Bucket(bucketMeta).Delete(keyLogNodes); err != nil {
			return err
		}
		// A cache of one leaf that is not the log's first leaf.
		_, err := appendLogNodesTx(tx, 0, [][]byte{[]byte("not the log's leaf")})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(Config{DataDir: dir, NoSync: true, remoteLog: f})
	if !errors.Is(err, errCorrupt) {
		t.Fatalf("Open with a cache that disagrees with the log = %v; want errCorrupt", err)
	}
}

// TestDropStale: queued entries that no longer extend their account's
// committed chain (a replay committed a version they did not see) are failed
// with Aborted instead of being appended; the others are kept, in order.
func TestDropStale(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir(), nil)
	alice := newTestAccount(t, "alice")
	if _, err := s.Update(ctx, alice.bytes(t)); err != nil {
		t.Fatal(err)
	}
	committed, err := s.committed(ctx, "alice")
	if err != nil || committed == nil {
		t.Fatalf("committed(alice) = %v, %v", committed, err)
	}
	mk := func(uid string, version uint64, prev [32]byte, tag byte) *entry {
		return &entry{index: mustIndex(t, s, uid), userID: uid, version: version, prevHash: prev, entryHash: [32]byte{tag}, done: make(chan result, 1)}
	}
	good := mk("alice", 2, committed.entryHash, 1)   // extends the committed v1
	goodNext := mk("alice", 3, good.entryHash, 2)    // extends good, in the batch
	staleFork := mk("alice", 2, [32]byte{9}, 3)      // a v2 on a v1 that is not the committed one
	staleCreate := mk("alice", 1, [32]byte{}, 4)     // a create of an existing account
	newAcct := mk("bob", 1, [32]byte{}, 5)           // a create of a new account
	staleAfter := mk("bob", 3, newAcct.entryHash, 6) // skips a version
	kept, err := s.dropStale([]*entry{good, staleFork, goodNext, staleCreate, newAcct, staleAfter}, epochTimeBound(0))
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != 3 || kept[0] != good || kept[1] != goodNext || kept[2] != newAcct {
		t.Fatalf("kept %d entries, want good, goodNext, newAcct", len(kept))
	}
	for _, e := range []*entry{staleFork, staleCreate, staleAfter} {
		select {
		case r := <-e.done:
			if status.Code(r.err) != codes.Aborted {
				t.Errorf("stale entry failed with %v; want Aborted", r.err)
			}
		default:
			t.Error("a stale entry was not failed")
		}
	}
}

// TestDropLateCancellation: a cancellation of a pending reset, accepted
// before effective_at, is refused with RESET_WINDOW instead of being logged
// if its epoch would be timestamped auditor.CancelLogSlack or more after
// effective_at (auditors report that as reset-log-time); a second earlier
// it is kept, and an update by the reset's new keys is never refused so.
func TestDropLateCancellation(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir(), nil)
	alice := newTestAccount(t, "alice")
	if _, err := s.Update(ctx, alice.bytes(t)); err != nil {
		t.Fatal(err)
	}
	rs := resetStateFor(t, alice.state, "new phone")
	if _, err := s.Reset(ctx, s.AdminToken(), "alice", mustMarshal(t, rs), "lost"); err != nil {
		t.Fatal(err)
	}
	prev, err := s.committed(ctx, "alice")
	if err != nil || prev == nil || prev.reset == nil {
		t.Fatalf("committed(alice) = %v, %v; want the reset entry", prev, err)
	}
	next, err := devices.Resign(prev.reset.PreviousState(), alice.ask, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cancel, err := devices.LinkAfterReset(next, prev.reset, alice.ask)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(st *devices.AccountState) *entry {
		return &entry{index: prev.index, userID: "alice", version: prev.version + 1, prevHash: prev.entryHash, state: st, done: make(chan result, 1)}
	}
	deadline := uint64(prev.reset.EffectiveAt.Unix() + auditor.CancelLogSlack)
	if kept, err := s.dropStale([]*entry{mk(cancel)}, deadline-1); err != nil || len(kept) != 1 {
		t.Fatalf("cancellation logged %d s after effective_at: kept %d, %v; want it kept", auditor.CancelLogSlack-1, len(kept), err)
	}
	late := mk(cancel)
	if kept, err := s.dropStale([]*entry{late}, deadline); err != nil || len(kept) != 0 {
		t.Fatalf("cancellation logged %d s after effective_at: kept %d, %v; want it refused", auditor.CancelLogSlack, len(kept), err)
	}
	select {
	case r := <-late.done:
		if apierr.Code(r.err) != codes.FailedPrecondition || apierr.Reason(r.err) != apierr.ResetWindow {
			t.Fatalf("late cancellation failed with %v; want FailedPrecondition / %s", r.err, apierr.ResetWindow)
		}
	default:
		t.Fatal("the late cancellation was not failed")
	}
	// The reset's new keys (rs stands for any state under them).
	if kept, err := s.dropStale([]*entry{mk(rs)}, deadline+3600); err != nil || len(kept) != 1 {
		t.Fatalf("update by the reset's keys: kept %d, %v; want it kept", len(kept), err)
	}
}

func mustIndex(t *testing.T, s *Server, uid string) [32]byte {
	t.Helper()
	_, index, err := s.vrf.get(s.db, uid)
	if err != nil {
		t.Fatal(err)
	}
	return index
}

// TestResyncRandomFaults runs concurrent writers against a directory whose
// remote log randomly goes down, interrupts appends (leaves stored, not
// integrated) and later integrates them. Afterwards every acknowledged
// update is served at its version or later, the sequencer still runs, a new
// update is accepted and a full audit of the log passes.
// KEYLINE_RESYNC_SECONDS sets the fault phase (default 3).
func TestResyncRandomFaults(t *testing.T) {
	ctx := context.Background()
	f := newFlakyLog(t)
	s := openRemote(t, t.TempDir(), f)
	trust := trustOf(t, s)
	phase := 3 * time.Second
	if v, err := time.ParseDuration(os.Getenv("KEYLINE_RESYNC_SECONDS") + "s"); err == nil && v > 0 {
		phase = v
	}
	stop := make(chan struct{})
	var mu sync.Mutex
	acked := map[string]uint64{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			var mine []*loadgen.Account
			state := map[string]*devices.AccountState{}
			unsure := map[string]bool{}
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				var a *loadgen.Account
				if len(mine) == 0 || rng.IntN(3) == 0 {
					a, _ = loadgen.NewAccount(fmt.Sprintf("w%d", w), len(mine))
					mine = append(mine, a)
					unsure[a.UserID] = true
				} else {
					a = mine[rng.IntN(len(mine))]
				}
				if unsure[a.UserID] {
					b, err := s.Lookup(ctx, a.UserID, 0)
					if err != nil {
						time.Sleep(5 * time.Millisecond)
						continue
					}
					st, err := loadgen.VerifyLookup(trust, a.UserID, b)
					if err != nil {
						t.Errorf("lookup of %s does not verify: %v", a.UserID, err)
						return
					}
					state[a.UserID] = st
					delete(unsure, a.UserID)
				}
				var next *devices.AccountState
				var err error
				if prev := state[a.UserID]; prev == nil {
					next, err = a.Create(time.Now())
				} else {
					next, err = a.Touch(prev, time.Now())
				}
				if err != nil {
					t.Error(err)
					return
				}
				raw, _ := next.MarshalBinary()
				if _, err := s.Update(ctx, raw); err != nil {
					unsure[a.UserID] = true
					time.Sleep(5 * time.Millisecond)
					continue
				}
				state[a.UserID] = next
				mu.Lock()
				acked[a.UserID] = max(acked[a.UserID], next.Version)
				mu.Unlock()
			}
		}()
	}
	rng := rand.New(rand.NewPCG(42, 42))
	faults := map[string]int{}
	for deadline := time.Now().Add(phase); time.Now().Before(deadline); {
		switch rng.IntN(4) {
		case 0:
			f.set(func() { f.down = true })
			time.Sleep(time.Duration(20+rng.IntN(150)) * time.Millisecond)
			f.set(func() { f.down = false })
			faults["outage"]++
		case 1:
			f.set(func() { f.interruptNext = true })
			time.Sleep(time.Duration(20+rng.IntN(150)) * time.Millisecond)
			f.set(func() { f.interruptNext = false; f.hidden = 0 })
			faults["interrupted append"]++
		default:
			time.Sleep(time.Duration(rng.IntN(100)) * time.Millisecond)
		}
	}
	f.set(func() { f.down, f.interruptNext, f.hidden = false, false, 0 })
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("faults: %v; %d accounts acknowledged; %d log appends", faults, len(acked), f.appends)
	extra := newTestAccount(t, "extra")
	eventually(t, "an update after the faults", func() error {
		_, err := s.Update(ctx, extra.bytes(t))
		return err
	})
	for uid, v := range acked {
		b, err := s.Lookup(ctx, uid, 0)
		if err != nil {
			t.Fatalf("lookup %s: %v", uid, err)
		}
		st, err := loadgen.VerifyLookup(trust, uid, b)
		if err != nil {
			t.Fatalf("lookup %s: %v", uid, err)
		}
		if st == nil || st.Version < v {
			t.Errorf("acknowledged update lost: %s version %d", uid, v)
		}
	}
	if s.sequencerFailed() {
		t.Fatal("sequencer stopped")
	}
	auditDirectory(t, s)
}
