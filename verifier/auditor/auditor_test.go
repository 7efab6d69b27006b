package auditor_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/keyline/keyline/devices"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier/auditor"
	"github.com/keyline/keyline/verifier/auditor/audittest"
	"github.com/keyline/keyline/verifier/witness"
)

var ctx = context.Background()

func newDir(t testing.TB) *audittest.Directory {
	t.Helper()
	d, err := audittest.NewDirectory(1)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func open(t testing.TB, d *audittest.Directory, dir string, batch int) *auditor.Auditor {
	t.Helper()
	a, err := auditor.Open(dir, d.Trust(), d.Log, &auditor.Options{BatchSize: batch, NoSync: true})
	must(t, err)
	t.Cleanup(func() { a.Close() })
	return a
}

// honest builds a small honest history: creates, device adds, revocations,
// a reset, several epochs.
func honest(t testing.TB, d *audittest.Directory) {
	t.Helper()
	must(t, d.Populate(6, 2, 3))
	a := d.Accounts["user1"]
	must(t, d.AddDevice(a))
	must(t, d.Revoke(a, 0))
	_, err := d.CloseEpoch()
	must(t, err)
	must(t, d.Reset(d.Accounts["user2"]))
	must(t, d.AddDevice(d.Accounts["user3"]))
	_, err = d.CloseEpoch()
	must(t, err)
}

func TestHonestLogProgressResume(t *testing.T) {
	d := newDir(t)
	honest(t, d)
	d.Log.MaxEntries = 3
	dir := t.TempDir()
	a := open(t, d, dir, 4)
	var calls []uint64
	st, err := a.Run(ctx, func(done, total uint64) {
		calls = append(calls, done)
		if total != d.Log.Size() {
			t.Errorf("progress total %d, want %d", total, d.Log.Size())
		}
	})
	must(t, err)
	if st.Replayed != d.Log.Size() || st.Checkpoint == nil || st.Checkpoint.Size != d.Log.Size() {
		t.Fatalf("status %+v, log size %d", st, d.Log.Size())
	}
	if len(calls) < 3 || calls[len(calls)-1] != d.Log.Size() {
		t.Fatalf("progress calls %v", calls)
	}
	if st.Resets != 1 || len(st.ResetIndexes) != 1 || st.Accounts != 6 || st.Epoch != d.Epoch {
		t.Fatalf("status %+v", st)
	}
	// Grow the log; stop mid-way by cancelling after the first batch, then
	// reopen and resume.
	must(t, d.Populate(10, 2, 5))
	cctx, cancel := context.WithCancel(ctx)
	_, err = a.Run(cctx, func(done, total uint64) { cancel() })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
	mid, err := a.Status(ctx)
	must(t, err)
	if mid.Replayed <= st.Replayed || mid.Replayed >= d.Log.Size() {
		t.Fatalf("stopped at %d, want between %d and %d", mid.Replayed, st.Replayed, d.Log.Size())
	}
	a.Close()
	a2, err := auditor.Open(dir, d.Trust(), d.Log, &auditor.Options{BatchSize: 4, NoSync: true})
	must(t, err)
	defer a2.Close()
	var first uint64
	st2, err := a2.Run(ctx, func(done, total uint64) {
		if first == 0 {
			first = done
		}
	})
	must(t, err)
	if first != mid.Replayed+4 && first != d.Log.Size() {
		t.Errorf("resumed at %d, want %d", first, mid.Replayed+4)
	}
	if st2.Replayed != d.Log.Size() || st2.Accounts != 16 {
		t.Fatalf("after resume %+v", st2)
	}
	// A fresh auditor in one go reaches the same state.
	a3 := open(t, d, t.TempDir(), 1000)
	st3, err := a3.Run(ctx, nil)
	must(t, err)
	if st3.Replayed != st2.Replayed || st3.Accounts != st2.Accounts || st3.Checkpoint.Hash != st2.Checkpoint.Hash {
		t.Fatalf("fresh %+v vs resumed %+v", st3, st2)
	}
}

// attack crafts a violation in a fresh directory and returns the auditor's
// violation after checking that its evidence verifies.
func expect(t *testing.T, d *audittest.Directory, rule auditor.Rule) *auditor.Violation {
	t.Helper()
	a := open(t, d, t.TempDir(), 5)
	_, err := a.Run(ctx, nil)
	var v *auditor.Violation
	if !errors.As(err, &v) {
		t.Fatalf("want violation %s, got %v", rule, err)
	}
	if v.Rule != rule || !errors.Is(err, rule) || !errors.Is(err, auditor.ErrViolation) {
		t.Fatalf("got rule %s (%v), want %s", v.Rule, err, rule)
	}
	f, err := auditor.VerifyEvidence(d.Trust(), v.Evidence)
	if err != nil {
		t.Fatalf("evidence does not verify: %v\n%s", err, v.Evidence)
	}
	if f.Rule != rule {
		t.Fatalf("finding %s, want %s", f.Rule, rule)
	}
	onDisk, err := os.ReadFile(v.EvidencePath)
	must(t, err)
	if string(onDisk) != string(v.Evidence) {
		t.Fatal("evidence file differs")
	}
	// The violation sticks.
	if _, err := a.Run(ctx, nil); !errors.Is(err, rule) {
		t.Fatalf("second run: %v", err)
	}
	if err := a.Verify(ctx, mustCP(t, d)); !errors.Is(err, rule) {
		t.Fatalf("Verify: %v", err)
	}
	tamper(t, d, v.Evidence)
	return v
}

func mustCP(t testing.TB, d *audittest.Directory) klog.Checkpoint {
	n, err := d.Log.Checkpoint(ctx)
	must(t, err)
	cp, _, err := klog.OpenCheckpoint(n, d.Log.Verifier(), audittest.Origin)
	must(t, err)
	return cp
}

// tamper checks that modified evidence is rejected.
func tamper(t *testing.T, d *audittest.Directory, ev []byte) {
	t.Helper()
	var e auditor.Evidence
	must(t, json.Unmarshal(ev, &e))
	try := func(name string, mod func(e *auditor.Evidence)) {
		var c auditor.Evidence
		must(t, json.Unmarshal(ev, &c))
		mod(&c)
		b, _ := c.Marshal()
		if _, err := auditor.VerifyEvidence(d.Trust(), b); !errors.Is(err, auditor.ErrBadEvidence) {
			t.Errorf("tampered (%s) evidence accepted: %v", name, err)
		}
	}
	try("rule", func(e *auditor.Evidence) {
		if e.Rule == auditor.RuleSignature {
			e.Rule = auditor.RuleDeviceCert
		} else {
			e.Rule = auditor.RuleSignature
		}
	})
	try("checkpoint signature", func(e *auditor.Evidence) { e.Checkpoints[0][len(e.Checkpoints[0])-20] ^= 1 })
	if len(e.Segments) > 0 {
		try("leaf", func(e *auditor.Evidence) {
			s := &e.Segments[len(e.Segments)-1]
			l := s.Leaves[len(s.Leaves)-1]
			l[len(l)-1] ^= 1
		})
		try("start", func(e *auditor.Evidence) { e.Segments[0].Start++ })
		try("log index", func(e *auditor.Evidence) { e.LogIndex++ })
	}
	if e.Consistency != nil {
		try("consistency", func(e *auditor.Evidence) { e.Consistency.OldRoot[0] ^= 1 })
	}
	// Evidence signed by another log key is rejected.
	other, err := audittest.NewDirectory(99)
	must(t, err)
	if _, err := auditor.VerifyEvidence(other.Trust(), ev); !errors.Is(err, auditor.ErrBadEvidence) {
		t.Errorf("evidence accepted under another log key: %v", err)
	}
}

func base(t *testing.T) (*audittest.Directory, *audittest.Account) {
	d := newDir(t)
	must(t, d.Populate(3, 2, 3))
	return d, d.Accounts["user0"]
}

func closeEpoch(t *testing.T, d *audittest.Directory) {
	_, err := d.CloseEpoch()
	must(t, err)
}

func TestRules(t *testing.T) {
	t.Run("malformed-leaf", func(t *testing.T) {
		d, _ := base(t)
		d.Log.Append([]byte{0x07, 1, 2})
		closeEpoch(t, d)
		expect(t, d, auditor.RuleMalformedLeaf)
	})
	t.Run("payload", func(t *testing.T) {
		d, a := base(t)
		must(t, d.AppendUpdate(a, a.Index, 2, klog.EntryHash(a.Leaf), klog.UpdateUpdate, []byte("not a state")))
		closeEpoch(t, d)
		expect(t, d, auditor.RulePayload)
	})
	t.Run("create-existing", func(t *testing.T) {
		d, a := base(t)
		payload, _ := a.State.MarshalBinary()
		must(t, d.AppendUpdate(nil, a.Index, 1, [32]byte{}, klog.UpdateCreate, payload))
		closeEpoch(t, d)
		expect(t, d, auditor.RuleCreateExisting)
	})
	t.Run("version-rewrite", func(t *testing.T) {
		d, a := base(t)
		must(t, d.AddDevice(a))
		closeEpoch(t, d)
		// Version 2 again, from version 1's leaf.
		b := d.Accounts["user1"]
		must(t, d.AddDevice(b))
		next := *b.State
		payload, _ := next.MarshalBinary()
		must(t, d.AppendUpdate(nil, b.Index, b.State.Version, [32]byte{1}, klog.UpdateUpdate, payload))
		closeEpoch(t, d)
		expect(t, d, auditor.RuleVersionRewrite)
	})
	t.Run("version-skip", func(t *testing.T) {
		d, a := base(t)
		next, err := devices.RevokeDevices(a.State, a.ASK, []devices.DeviceID{a.Devices[0].ID()}, devices.ReasonLost, d.Time.Add(5e9))
		must(t, err)
		next.Version = 3
		must(t, next.Sign(a.ASK))
		payload, _ := next.MarshalBinary()
		must(t, d.AppendUpdate(a, a.Index, 3, klog.EntryHash(a.Leaf), klog.UpdateUpdate, payload))
		closeEpoch(t, d)
		expect(t, d, auditor.RuleVersionSkip)
	})
	t.Run("version-skip-new-index", func(t *testing.T) {
		d, _ := base(t)
		b, err := d.NewAccountState("newbie", 1)
		must(t, err)
		b.State.Version, b.State.PrevHash = 2, [32]byte{9}
		must(t, b.State.Sign(b.ASK))
		payload, _ := b.State.MarshalBinary()
		must(t, d.AppendUpdate(nil, b.Index, 2, [32]byte{9}, klog.UpdateUpdate, payload))
		closeEpoch(t, d)
		v := expect(t, d, auditor.RuleVersionSkip)
		_ = v
	})
	t.Run("prev-hash", func(t *testing.T) {
		d, a := base(t)
		next, err := devices.RevokeDevices(a.State, a.ASK, []devices.DeviceID{a.Devices[0].ID()}, devices.ReasonLost, d.Time.Add(5e9))
		must(t, err)
		payload, _ := next.MarshalBinary()
		must(t, d.AppendUpdate(a, a.Index, 2, [32]byte{7}, klog.UpdateUpdate, payload))
		closeEpoch(t, d)
		expect(t, d, auditor.RulePrevHash)
	})
	t.Run("signature", func(t *testing.T) {
		d, a := base(t)
		next, err := devices.RevokeDevices(a.State, a.ASK, []devices.DeviceID{a.Devices[0].ID()}, devices.ReasonLost, d.Time.Add(5e9))
		must(t, err)
		next.Signature[5] ^= 1
		must(t, d.Update(a, next))
		closeEpoch(t, d)
		expect(t, d, auditor.RuleSignature)
	})
	t.Run("identity-changed (silent reset)", func(t *testing.T) {
		d, a := base(t)
		_, _, st, err := d.ResetPayload(a, d.ResetKey)
		must(t, err)
		must(t, d.Update(a, st)) // new IK as a normal update
		closeEpoch(t, d)
		expect(t, d, auditor.RuleIdentityChanged)
	})
	t.Run("device-cert (key substitution)", func(t *testing.T) {
		d, a := base(t)
		// A device whose cert is signed by another identity key.
		other, err := d.NewAccountState("mallory", 1)
		must(t, err)
		_, c, err := d.NewDevice(a.RK, other.ASK, "evil")
		must(t, err)
		next := *a.State
		next.Version, next.PrevHash = a.State.Version+1, mustHash(t, a.State)
		next.Devices = append(append([]*devices.DeviceCert{}, a.State.Devices...), c)
		sortCerts(next.Devices)
		next.Timestamp = d.Time.Add(5e9)
		must(t, next.Sign(a.ASK))
		// The state's signature by a's ASK covers the cert, so a lookup
		// client accepts it (docs/protocol.md §7.1.7): the auditor is
		// where the cert's own signature is enforced on the log.
		if err := devices.VerifyAccountStateForLookup(&next); err != nil {
			t.Fatalf("lookup rule: %v", err)
		}
		must(t, d.Update(a, &next))
		closeEpoch(t, d)
		expect(t, d, auditor.RuleDeviceCert)
	})
	t.Run("device-cert on create", func(t *testing.T) {
		d, _ := base(t)
		b, err := d.NewAccountState("victim", 1)
		must(t, err)
		other, err := d.NewAccountState("mallory", 1)
		must(t, err)
		b.State.Devices = other.State.Devices // certs issued by another IK
		b.State.Trusted = nil
		must(t, b.State.Sign(b.ASK))
		payload, _ := b.State.MarshalBinary()
		must(t, d.AppendUpdate(nil, b.Index, 1, [32]byte{}, klog.UpdateCreate, payload))
		closeEpoch(t, d)
		v := expect(t, d, auditor.RuleDeviceCert)
		var e auditor.Evidence
		must(t, json.Unmarshal(v.Evidence, &e))
		if e.PrevIndex != nil || len(e.Segments) != 1 || len(e.Segments[0].Leaves) != 1 {
			t.Fatal("create evidence should be the one leaf")
		}
	})
	t.Run("revoked-device (replay)", func(t *testing.T) {
		d, a := base(t)
		must(t, d.Revoke(a, 0))
		closeEpoch(t, d)
		// Bring the revoked device back (keep the revocation record).
		revoked := *a.State
		next := *a.State
		next.Version, next.PrevHash = a.State.Version+1, mustHash(t, a.State)
		old := d.Accounts["user0"]
		_ = old
		// Find the revoked cert in the previous-previous state: re-issue it.
		c, err := a.Devices[0].NewCert("device-0", a.RK.Public(), d.Time)
		must(t, err)
		must(t, a.ASK.IssueCert(a.RK.Public(), c))
		next.Devices = append(append([]*devices.DeviceCert{}, revoked.Devices...), c)
		sortCerts(next.Devices)
		next.Timestamp = d.Time.Add(5e9)
		must(t, next.Sign(a.ASK))
		must(t, d.Update(a, &next))
		closeEpoch(t, d)
		expect(t, d, auditor.RuleRevokedDevice)
	})
	t.Run("revocation dropped", func(t *testing.T) {
		d, a := base(t)
		must(t, d.Revoke(a, 0))
		closeEpoch(t, d)
		next := *a.State
		next.Version, next.PrevHash = a.State.Version+1, mustHash(t, a.State)
		next.Revocations = nil
		next.Timestamp = d.Time.Add(5e9)
		must(t, next.Sign(a.ASK))
		must(t, d.Update(a, &next))
		closeEpoch(t, d)
		expect(t, d, auditor.RuleRevocation)
	})
	t.Run("user-id-changed", func(t *testing.T) {
		d, a := base(t)
		next := *a.State
		next.UserID = "someone-else"
		next.Version, next.PrevHash = a.State.Version+1, mustHash(t, a.State)
		next.Timestamp = d.Time.Add(5e9)
		must(t, next.Sign(a.ASK))
		must(t, d.Update(a, &next))
		closeEpoch(t, d)
		expect(t, d, auditor.RuleUserID)
	})
	t.Run("user-id-two-indexes", func(t *testing.T) {
		d, a := base(t)
		b, err := d.NewAccountState(a.UserID, 1)
		must(t, err)
		payload, _ := b.State.MarshalBinary()
		idx := a.Index
		idx[0] ^= 0xff
		must(t, d.AppendUpdate(nil, idx, 1, [32]byte{}, klog.UpdateCreate, payload))
		closeEpoch(t, d)
		expect(t, d, auditor.RuleUserIndex)
	})
	t.Run("transition (timestamp backwards)", func(t *testing.T) {
		d, a := base(t)
		next := *a.State
		next.Version, next.PrevHash = a.State.Version+1, mustHash(t, a.State)
		next.Timestamp = a.State.Timestamp.Add(-3600e9)
		must(t, next.Sign(a.ASK))
		must(t, d.Update(a, &next))
		closeEpoch(t, d)
		expect(t, d, auditor.RuleTransition)
	})
	t.Run("reset not signed by the reset key", func(t *testing.T) {
		d, a := base(t)
		_, evil, _ := ed25519.GenerateKey(nil)
		p, _, _, err := d.ResetPayload(a, evil)
		must(t, err)
		must(t, d.AppendUpdate(a, a.Index, 2, klog.EntryHash(a.Leaf), klog.UpdateReset, p))
		closeEpoch(t, d)
		expect(t, d, auditor.RuleReset)
	})
	t.Run("epoch-number", func(t *testing.T) {
		d, _ := base(t)
		root, err := d.MapRoot()
		must(t, err)
		d.AppendEpoch(klog.EpochRecord{Epoch: d.Epoch + 2, MapRoot: root, Timestamp: uint64(d.Time.Unix()) + 10})
		d.Log.Publish()
		expect(t, d, auditor.RuleEpochNumber)
	})
	t.Run("epoch-time", func(t *testing.T) {
		d, _ := base(t)
		root, err := d.MapRoot()
		must(t, err)
		d.AppendEpoch(klog.EpochRecord{Epoch: d.Epoch + 1, MapRoot: root, Timestamp: 5})
		d.Log.Publish()
		expect(t, d, auditor.RuleEpochTime)
	})
	t.Run("map-root (show-then-hide)", func(t *testing.T) {
		d, a := base(t)
		must(t, d.AddDevice(a))
		delete(d.Pending, a.Index) // the map keeps showing the old version
		closeEpoch(t, d)
		v := expect(t, d, auditor.RuleMapRoot)
		var e auditor.Evidence
		must(t, json.Unmarshal(v.Evidence, &e))
		if len(e.Segments) != 1 || e.Segments[0].Start != 0 || uint64(len(e.Segments[0].Leaves)) != v.LogIndex+1 {
			t.Fatalf("map-root evidence must hold every leaf up to the epoch record")
		}
	})
	t.Run("checkpoint-end", func(t *testing.T) {
		d, a := base(t)
		must(t, d.AddDevice(a))
		d.Log.Publish()
		expect(t, d, auditor.RuleCheckpointEnd)
	})
}

func mustHash(t *testing.T, s *devices.AccountState) [32]byte {
	h, err := s.Hash()
	must(t, err)
	return h
}

func sortCerts(cs []*devices.DeviceCert) {
	for i := range cs {
		for j := i + 1; j < len(cs); j++ {
			if string(cs[j].ID[:]) < string(cs[i].ID[:]) {
				cs[i], cs[j] = cs[j], cs[i]
			}
		}
	}
}

func TestCheckpointRules(t *testing.T) {
	t.Run("split-view", func(t *testing.T) {
		d, _ := base(t)
		a := open(t, d, t.TempDir(), 100)
		_, err := a.Run(ctx, nil)
		must(t, err)
		d.Log.Serve(d.Log.SignRoot(d.Log.Size(), [32]byte{1, 2, 3}))
		_, err = a.Run(ctx, nil)
		checkCPViolation(t, d, err, auditor.RuleSplitView)
	})
	t.Run("fork (truncation)", func(t *testing.T) {
		d, _ := base(t)
		must(t, d.Populate(3, 1, 3))
		a := open(t, d, t.TempDir(), 100)
		_, err := a.Run(ctx, nil)
		must(t, err)
		d.Log.Serve(d.Log.SignRoot(4, [32]byte{4}))
		_, err = a.Run(ctx, nil)
		checkCPViolation(t, d, err, auditor.RuleFork)
	})
	t.Run("rollback (stale, consistent)", func(t *testing.T) {
		d, _ := base(t)
		first := d.Log.Size()
		must(t, d.Populate(3, 1, 3))
		a := open(t, d, t.TempDir(), 100)
		_, err := a.Run(ctx, nil)
		must(t, err)
		d.Log.Serve(d.Log.SignAt(first))
		if _, err := a.Run(ctx, nil); !errors.Is(err, auditor.ErrRollback) {
			t.Fatalf("got %v, want ErrRollback", err)
		}
	})
	t.Run("entries not in the tree", func(t *testing.T) {
		d, _ := base(t)
		d.Log.Serve(d.Log.SignRoot(d.Log.Size(), [32]byte{9}))
		a := open(t, d, t.TempDir(), 2)
		if _, err := a.Run(ctx, nil); !errors.Is(err, auditor.ErrSource) || errors.Is(err, auditor.ErrViolation) {
			t.Fatalf("got %v, want ErrSource", err)
		}
	})
}

func checkCPViolation(t *testing.T, d *audittest.Directory, err error, rule auditor.Rule) {
	t.Helper()
	var v *auditor.Violation
	if !errors.As(err, &v) || v.Rule != rule {
		t.Fatalf("got %v, want %s", err, rule)
	}
	if _, err := auditor.VerifyEvidence(d.Trust(), v.Evidence); err != nil {
		t.Fatalf("evidence: %v", err)
	}
	tamper(t, d, v.Evidence)
}

func TestWitnessVerify(t *testing.T) {
	d := newDir(t)
	honest(t, d)
	a := open(t, d, t.TempDir(), 4)
	var _ witness.Auditor = a
	cp := mustCP(t, d)
	must(t, a.Verify(ctx, cp)) // catches up synchronously
	// An older epoch-boundary checkpoint verifies; a wrong root does not.
	old, _, err := klog.OpenCheckpoint(d.Log.SignAt(5), d.Log.Verifier(), audittest.Origin)
	must(t, err)
	must(t, a.Verify(ctx, old))
	bad := cp
	bad.Hash[0] ^= 1
	if err := a.Verify(ctx, bad); !errors.Is(err, auditor.ErrNotVerified) {
		t.Fatalf("wrong root: %v", err)
	}
	notEpoch, _, err := klog.OpenCheckpoint(d.Log.SignAt(3), d.Log.Verifier(), audittest.Origin)
	must(t, err)
	if err := a.Verify(ctx, notEpoch); !errors.Is(err, auditor.ErrNotVerified) {
		t.Fatalf("not at epoch: %v", err)
	}
	ahead := cp
	ahead.Size += 10
	if err := a.Verify(ctx, ahead); !errors.Is(err, witness.ErrAuditPending) {
		t.Fatalf("ahead of the source: %v", err)
	}
	// Too far ahead for a synchronous catch-up.
	b, err := auditor.Open(t.TempDir(), d.Trust(), d.Log, &auditor.Options{MaxCatchUp: 3, NoSync: true})
	must(t, err)
	defer b.Close()
	if err := b.Verify(ctx, cp); !errors.Is(err, auditor.ErrTooFarBehind) || !errors.Is(err, witness.ErrAuditPending) {
		t.Fatalf("too far: %v", err)
	}
	// A Source failure is pending, not a refusal.
	c, err := auditor.Open(t.TempDir(), d.Trust(), failing{d.Log}, nil)
	must(t, err)
	defer c.Close()
	if err := c.Verify(ctx, cp); !errors.Is(err, witness.ErrAuditPending) {
		t.Fatalf("failing source: %v", err)
	}
	// Concurrent Verify calls.
	must(t, d.Populate(4, 1, 2))
	cp2 := mustCP(t, d)
	errs := make(chan error, 4)
	for range 4 {
		go func() { errs <- a.Verify(ctx, cp2) }()
	}
	for range 4 {
		must(t, <-errs)
	}
}

func TestFollow(t *testing.T) {
	d := newDir(t)
	honest(t, d)
	a := open(t, d, t.TempDir(), 8)
	cctx, cancel := context.WithCancel(ctx)
	var last uint64
	err := a.Follow(cctx, 5*time.Millisecond, func(done, total uint64) {
		last = done
		if done == d.Log.Size() {
			cancel()
		}
	}, func(err error) { t.Errorf("follow: %v", err) })
	if !errors.Is(err, context.Canceled) || last != d.Log.Size() {
		t.Fatalf("follow returned %v at %d", err, last)
	}
	// A violation ends Follow.
	d.Log.Append([]byte{0xff})
	closeEpoch(t, d)
	if err := a.Follow(ctx, time.Millisecond, nil, nil); !errors.Is(err, auditor.RuleMalformedLeaf) {
		t.Fatalf("follow: %v", err)
	}
}

type failing struct{ *audittest.Log }

func (failing) Entries(context.Context, uint64, uint64) ([][]byte, error) {
	return nil, errors.New("network down")
}
