package directory

import (
	"context"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/keyline/keyline/directory/apierr"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/log/embedded"
)

func TestRestartKeepsKeysAndState(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir, nil)
	tf := *s.Trust()
	a := newTestAccount(t, "dave")
	if _, err := s.Update(ctx, a.bytes(t)); err != nil {
		t.Fatal(err)
	}
	cp1, _ := s.Checkpoint(ctx)
	s.Close()

	s = openTest(t, dir, nil)
	if tf2 := *s.Trust(); tf2.LogKey != tf.LogKey || tf2.VRFKey != tf.VRFKey || tf2.ResetKey != tf.ResetKey {
		t.Fatal("keys changed across a restart")
	}
	trust := trustOf(t, s)
	c1, _ := trust.OpenCheckpoint(cp1)
	v := mustLookup(t, s.Source(), trust, "dave")
	if !v.found || v.version != 1 {
		t.Fatal("account lost across a restart")
	}
	next := a.addDevice(t, "watch")
	if _, err := s.Update(ctx, mustMarshal(t, next)); err != nil {
		t.Fatal(err)
	}
	b, err := s.Lookup(ctx, "dave", c1.Size)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := verifyLookup(trust, "dave", b, c1.Size, c1.Hash[:]); err != nil || v.version != 2 {
		t.Fatalf("after restart and update: %v", err)
	}
	if _, err := Open(Config{DataDir: dir, Origin: "other.example/dir"}); err == nil {
		t.Fatal("opened a data dir with another origin")
	}
}

// TestCrashRecovery injects a crash at each step between the log append
// and the map/index commit, reopens the directory and checks that the
// acknowledged-or-not update is in the map exactly as in the log, that
// the map root equals the EpochRecord's, that the signed checkpoint from
// before the crash is extended (never forked), and that later epochs work.
func TestCrashRecovery(t *testing.T) {
	for _, step := range []string{"afterAppend", "afterPublish"} {
		t.Run(step, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			s := openTest(t, dir, nil)
			trust := trustOf(t, s)
			a := newTestAccount(t, "erin")
			if _, err := s.Update(ctx, a.bytes(t)); err != nil {
				t.Fatal(err)
			}
			before, _ := s.Checkpoint(ctx)
			var signedAtCrash []byte
			h := &testHooks{}
			crash := func() error {
				signedAtCrash, _ = s.cps.LatestCheckpoint(ctx)
				return errCrash
			}
			if step == "afterAppend" {
				h.afterAppend = crash
			} else {
				h.afterPublish = crash
			}
			s.hooks.Store(h)
			next := a.addDevice(t, "laptop")
			_, err := s.Update(ctx, mustMarshal(t, next))
			if apierr.Code(err) != codes.Unavailable {
				t.Fatalf("update during crash: %v", err)
			}
			// The sequencer is stopped: further updates fail fast.
			if _, err := s.Update(ctx, newTestAccount(t, "frank").bytes(t)); apierr.Code(err) != codes.Unavailable {
				t.Fatalf("update after crash: %v", err)
			}
			// Lookups still serve the last published epoch.
			if v := mustLookup(t, s.Source(), trust, "erin"); v.version != 1 {
				t.Fatalf("lookup after crash: version %d", v.version)
			}
			s.Close()

			s = openTest(t, dir, nil)
			v := mustLookup(t, s.Source(), trust, "erin")
			if v.version != 2 {
				t.Fatalf("after recovery: version %d, want 2 (the update is in the log)", v.version)
			}
			// The map root served is the EpochRecord's (verifyLookup checked
			// the proof against it) and equals mapdb's recorded root.
			if r, err := s.m.Root(v.epoch.Epoch); err != nil || r != v.epoch.MapRoot {
				t.Fatalf("map root %x, EpochRecord %x (%v)", r, v.epoch.MapRoot, err)
			}
			// No fork: the served checkpoint extends the one signed before
			// the crash and the one signed at the crash.
			for _, old := range [][]byte{before, signedAtCrash} {
				oc, err := trust.OpenCheckpoint(old)
				if err != nil {
					t.Fatal(err)
				}
				b, err := s.Lookup(ctx, "erin", oc.Size)
				if err != nil {
					t.Fatal(err)
				}
				if b.Held() {
					// Served at oc's size: it must be oc's root.
					cur, err := s.Checkpoint(ctx)
					if err != nil {
						t.Fatal(err)
					}
					cc, err := trust.OpenCheckpoint(cur)
					if err != nil || cc.Size != oc.Size || cc.Hash != oc.Hash {
						t.Fatalf("held bundle at size %d, but the served checkpoint is %d %x (%v)", oc.Size, cc.Size, cc.Hash[:8], err)
					}
					continue
				}
				if _, err := verifyLookup(trust, "erin", b, oc.Size, oc.Hash[:]); err != nil {
					t.Fatalf("checkpoint of size %d not extended: %v", oc.Size, err)
				}
			}
			// Later epochs continue.
			a.state = next
			if _, err := s.Update(ctx, mustMarshal(t, a.addDevice(t, "tv"))); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Update(ctx, newTestAccount(t, "frank").bytes(t)); err != nil {
				t.Fatal(err)
			}
			if v := mustLookup(t, s.Source(), trust, "erin"); v.version != 3 {
				t.Fatalf("version %d after recovery and update", v.version)
			}
			if v := mustLookup(t, s.Source(), trust, "frank"); v.version != 1 {
				t.Fatalf("frank version %d", v.version)
			}
		})
	}
}

// TestUnfinishedEpoch: the log ends with AccountUpdates but no
// EpochRecord (an interrupted multi-batch append). Open closes the epoch
// over them.
func TestUnfinishedEpoch(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir, nil)
	trust := trustOf(t, s)
	a := newTestAccount(t, "gina")
	_, index, err := s.vrf.get(nil, "gina")
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	l, err := embedded.Open(filepath.Join(dir, FileLogDB), nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := (&klog.AccountUpdate{Index: index, Version: 1, Update: klog.UpdateCreate, Payload: a.bytes(t)}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := appendAtEnd(ctx, l, leaf); err != nil {
		t.Fatal(err)
	}
	l.Close()

	s = openTest(t, dir, nil)
	v := mustLookup(t, s.Source(), trust, "gina")
	if !v.found || v.version != 1 {
		t.Fatal("the logged but unclosed create is not in the map")
	}
	if _, err := s.Update(ctx, mustMarshal(t, a.addDevice(t, "second"))); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptMapRefused: a log leaf that does not follow the chain makes
// Open fail closed instead of serving a wrong map.
func TestCorruptLogRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir, nil)
	a := newTestAccount(t, "hal")
	_, index, _ := s.vrf.get(nil, "hal")
	s.Close()
	l, err := embedded.Open(filepath.Join(dir, FileLogDB), nil)
	if err != nil {
		t.Fatal(err)
	}
	var prev [32]byte
	prev[0] = 1
	leaf, _ := (&klog.AccountUpdate{Index: index, Version: 2, PrevHash: prev, Update: klog.UpdateUpdate, Payload: a.bytes(t)}).Marshal()
	if err := appendAtEnd(ctx, l, leaf); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if s, err := Open(Config{DataDir: dir, NoSync: true}); err == nil {
		s.Close()
		t.Fatal("opened a log with a broken version chain")
	}
}

// appendAtEnd appends leaves at the end of l.
func appendAtEnd(ctx context.Context, l klog.Backend, leaves ...[]byte) error {
	size, err := l.Size(ctx)
	if err != nil {
		return err
	}
	return l.Append(ctx, size, leaves)
}
