package adversary

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory"
	"github.com/keyline/keyline/directory/apierr"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/auditor"
	"github.com/keyline/keyline/verifier/cosign"
	"github.com/keyline/keyline/verifier/vmap"
	"github.com/keyline/keyline/verifier/witness"
)

// Every test: honest path verifies first (the check is not vacuous), then
// the attack, then the detection with its evidence. docs/attacks.md maps
// them.

// Key substitution: the directory serves alice with an extra device whose
// cert is not issued by alice's IK.
func TestAttackKeySubstitution(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.create("alice")
	if _, err := e.client(nil).Lookup(e.ctx, "alice"); err != nil {
		t.Fatalf("honest lookup: %v", err)
	}
	e.auditHonest(e.auditor())

	// The attacker's device, cert issued by the attacker's own key but
	// back-signed for alice's IK.
	evil := newIK(t, "alice")
	dk, c := newDevice(t, evil, "evil")
	if err := dk.BackSign(c, alice.ik.Public()); err != nil {
		t.Fatal(err)
	}
	prevHash, _ := alice.state.Hash()
	build := func() *devices.AccountState {
		st := *alice.state
		st.Version, st.PrevHash, st.Timestamp = 2, prevHash, alice.state.Timestamp.Add(time.Second)
		st.Devices = append(append([]*devices.DeviceCert(nil), alice.state.Devices...), c)
		sortDevices(st.Devices)
		return &st
	}

	t.Run("directory-only", func(t *testing.T) {
		// The directory cannot sign as alice: the state signature is
		// alice's old one.
		st := build()
		e.serveForged(t, updateLeaf(t, e.index("alice"), 2, klog.EntryHash(alice.leaf), klog.UpdateUpdate, marshal(t, st)))
		defer e.src.SetMode(Honest)
		if _, err := e.client(nil).Lookup(e.ctx, "alice"); !errors.Is(err, verifier.ErrAccountState) {
			t.Fatalf("client: got %v, want ErrAccountState", err)
		}
		_, err := e.auditor().Run(e.ctx, nil)
		expectViolation(t, e.trust, err, auditor.RuleSignature)
	})
	t.Run("cert-not-issued-by-IK", func(t *testing.T) {
		// A state signed by alice's ASK (a device holding it tricked into
		// signing) carrying the attacker's cert, not issued by that ASK.
		// The state signature covers the cert's bytes, so a lookup, which
		// does not verify a cert's own ASK signature there
		// (devices.VerifyAccountStateForLookup, docs/protocol.md §7.1),
		// accepts it: whoever signed the state could as well have issued
		// the cert. The directory refuses it as an update and the auditor
		// flags the log entry (devices.ErrDeviceCert, RuleDeviceCert).
		st := build()
		if err := st.Sign(alice.ik.ask); err != nil {
			t.Fatal(err)
		}
		_, err := e.srv.Update(e.ctx, marshal(t, st))
		if apierr.Reason(err) != apierr.BadDeviceCert || !strings.Contains(err.Error(), "account signing key signature does not verify") {
			t.Fatalf("honest directory: update got %v, want %s for the cert's signature", err, apierr.BadDeviceCert)
		}
		e.serveForged(t, updateLeaf(t, e.index("alice"), 2, klog.EntryHash(alice.leaf), klog.UpdateUpdate, marshal(t, st)))
		defer e.src.SetMode(Honest)
		res, err := e.client(nil).Lookup(e.ctx, "alice")
		if err != nil {
			t.Fatalf("client: got %v, want the state its ASK signed", err)
		}
		if res.State.Device(c.ID) == nil {
			t.Fatalf("client: the looked-up state lacks the attacker's device")
		}
		_, err = e.auditor().Run(e.ctx, nil)
		expectViolation(t, e.trust, err, auditor.RuleDeviceCert)
	})
	t.Run("device-not-back-signed-for-IK", func(t *testing.T) {
		// The attacker's device back-signed for the attacker's root key,
		// its cert issued by alice's ASK, in a state alice's ASK signed: the
		// back-signature, which binds the device to alice's root key, is
		// checked by lookups too.
		_, c2 := newDevice(t, evil, "evil-2")
		if err := alice.ik.ask.IssueCert(evil.Public(), c2); err != nil {
			t.Fatal(err)
		}
		st := *alice.state
		st.Version, st.PrevHash, st.Timestamp = 2, prevHash, alice.state.Timestamp.Add(time.Second)
		st.Devices = append(append([]*devices.DeviceCert(nil), alice.state.Devices...), c2)
		sortDevices(st.Devices)
		if err := st.Sign(alice.ik.ask); err != nil {
			t.Fatal(err)
		}
		e.serveForged(t, updateLeaf(t, e.index("alice"), 2, klog.EntryHash(alice.leaf), klog.UpdateUpdate, marshal(t, &st)))
		defer e.src.SetMode(Honest)
		_, err := e.client(nil).Lookup(e.ctx, "alice")
		if !errors.Is(err, verifier.ErrAccountState) {
			t.Fatalf("client: got %v, want ErrAccountState", err)
		}
		if !errors.Is(err, devices.ErrDeviceCert) {
			t.Fatalf("client rejected for another reason than the device cert: %v", err)
		}
		_, err = e.auditor().Run(e.ctx, nil)
		expectViolation(t, e.trust, err, auditor.RuleDeviceCert)
	})
}

// Show-then-hide: carol is shown a reset of bob (attacker's key) in fork
// A; everyone else sees the honest log, which then grows to the same size.
func TestAttackShowThenHide(t *testing.T) {
	e := newEnv(t, nil)
	e.create("alice")
	bob := e.create("bob")
	w := e.newWitness("w1")
	e.cosignHonest(w)

	// Fork A: the honest log plus a reset of bob by the directory.
	f := e.forge(0)
	payload, _ := resetPayload(t, e.keys.ResetKey, bob.state)
	leaf := updateLeaf(t, e.index("bob"), 2, klog.EntryHash(bob.leaf), klog.UpdateReset, payload)
	if _, err := f.AppendUpdate(e.ctx, leaf, true); err != nil {
		t.Fatal(err)
	}
	forkA, err := f.CloseEpoch(e.ctx, EpochOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// With a witness quorum carol would not even accept A: the witness
	// never cosigned it.
	if _, err := w.trust.OpenCheckpoint(forkA); !errors.Is(err, verifier.ErrWitnessQuorum) {
		t.Fatalf("quorum client accepted fork A: %v", err)
	}

	// Carol (no witness quorum) is shown A: it verifies, loudly (reset).
	carol := e.client(nil)
	e.src.ServeOther(f)
	r, err := carol.Lookup(e.ctx, "bob")
	if err != nil {
		t.Fatalf("carol on fork A: %v", err)
	}
	if r.ResetPending == nil || len(r.Warnings) == 0 {
		t.Fatal("a reset was shown without a warning")
	}

	// Hide: the honest log grows to the same size with something else.
	e.src.SetMode(Honest)
	e.create("dave")
	if e.size() != r.Checkpoint.Size {
		t.Fatalf("sizes %d and %d; the test needs equal sizes", e.size(), r.Checkpoint.Size)
	}
	// Bob's own monitor sees nothing (the fork was only shown to carol).
	bm := e.client(nil)
	if err := bm.SetOwn(verifier.OwnAccount{UserID: "bob", Version: 1, EntryHash: klog.EntryHash(bob.leaf)}); err != nil {
		t.Fatal(err)
	}
	if rep, err := verifier.NewMonitor(bm).Check(e.ctx); err != nil || !rep.OK {
		t.Fatalf("bob's monitor on the honest log: %v %+v", err, rep)
	}
	// Carol detects it with transferable evidence.
	_, err = carol.Lookup(e.ctx, "bob")
	var sv *verifier.SplitViewError
	if !errors.As(err, &sv) {
		t.Fatalf("carol after hide: got %v, want *SplitViewError", err)
	}
	checkSplitView(t, e.trust, sv)

	// The witness refuses fork A after cosigning the honest head.
	e.cosignHonest(w)
	proof, err := f.ConsistencyProof(e.ctx, w.size-2, w.size)
	if err != nil {
		t.Fatal(err)
	}
	_, err = witness.AddCheckpoint(e.ctx, nil, w.url, w.size, nil, forkA)
	var ce *witness.ConflictError
	if !errors.As(err, &ce) || ce.Size != w.size {
		t.Fatalf("witness on fork A (same size): got %v, want 409", err)
	}
	if _, err := witness.AddCheckpoint(e.ctx, nil, w.url, w.size-2, proof, forkA); !errors.As(err, &ce) {
		t.Fatalf("witness on fork A (old size): got %v, want 409", err)
	}
}

func checkSplitView(t *testing.T, trust *verifier.Trust, sv *verifier.SplitViewError) {
	t.Helper()
	if sv.OldRoot == sv.NewRoot {
		t.Fatal("split view with equal roots")
	}
	a, err := trust.OpenCheckpoint(sv.Old)
	if err != nil {
		t.Fatal(err)
	}
	b, err := trust.OpenCheckpoint(sv.New)
	if err != nil {
		t.Fatal(err)
	}
	if a.Size != b.Size || a.Hash == b.Hash || a.Size != sv.Size {
		t.Fatalf("evidence is not a split view: %d/%x %d/%x", a.Size, a.Hash[:4], b.Size, b.Hash[:4])
	}
}

// Version skip: the directory writes bob's version 3 right after version 1
// (a reset signed with its reset key, so the entry itself is valid).
func TestAttackVersionSkip(t *testing.T) {
	e := newEnv(t, nil)
	bob := e.create("bob")
	own := e.client(nil)
	if err := own.SetOwn(verifier.OwnAccount{UserID: "bob", Version: 1, EntryHash: klog.EntryHash(bob.leaf)}); err != nil {
		t.Fatal(err)
	}
	if rep, err := verifier.NewMonitor(own).Check(e.ctx); err != nil || !rep.OK {
		t.Fatalf("honest monitor: %v", err)
	}
	e.auditHonest(e.auditor())

	fake := *bob.state
	fake.Version = 2 // a version 2 that was never logged
	payload, _ := resetPayload(t, e.keys.ResetKey, &fake)
	e.serveForged(t, updateLeaf(t, e.index("bob"), 3, klog.EntryHash(bob.leaf), klog.UpdateReset, payload))

	// VerifyLookup alone cannot see the gap (the reset is pending and
	// loud); Client.Lookup verifies the history of a new contact and
	// refuses it.
	b, err := e.src.Lookup(e.ctx, "bob", 0)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := verifier.VerifyLookup(e.trust, nil, "bob", b, time.Now()); err != nil || r.ResetPending == nil || len(r.Warnings) == 0 || r.Version != 3 {
		t.Fatalf("single lookup: %v", err)
	}
	if _, err := e.client(nil).Lookup(e.ctx, "bob"); !errors.Is(err, verifier.ErrHistory) {
		t.Fatalf("client: got %v, want ErrHistory", err)
	}
	// Bob's monitor rejects the history (versions 1, 3).
	rep, err := verifier.NewMonitor(own).Check(e.ctx)
	if !errors.Is(err, verifier.ErrHistory) {
		t.Fatalf("monitor: got %v %+v, want ErrHistory", err, rep)
	}
	_, err = e.auditor().Run(e.ctx, nil)
	expectViolation(t, e.trust, err, auditor.RuleVersionSkip)
}

// Version rewrite: alice's version 2 is written again with other content
// (a reset by the directory), replacing the owner's entry.
func TestAttackVersionRewrite(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.create("alice")
	v1, v1leaf := alice.state, alice.leaf
	e.publish(alice, e.addDevice(alice, "laptop"))
	own := e.client(nil)
	if err := own.SetOwn(verifier.OwnAccount{UserID: "alice", Version: 2, EntryHash: klog.EntryHash(alice.leaf)}); err != nil {
		t.Fatal(err)
	}
	if rep, err := verifier.NewMonitor(own).Check(e.ctx); err != nil || !rep.OK {
		t.Fatalf("honest monitor: %v", err)
	}
	e.auditHonest(e.auditor())

	payload, _ := resetPayload(t, e.keys.ResetKey, v1)
	e.serveForged(t, updateLeaf(t, e.index("alice"), 2, klog.EntryHash(v1leaf), klog.UpdateReset, payload))

	// The owner's monitor: the history holds v2 twice.
	if rep, err := verifier.NewMonitor(own).Check(e.ctx); !errors.Is(err, verifier.ErrHistory) {
		t.Fatalf("monitor: got %v %v, want ErrHistory", err, alertKinds(rep))
	}
	_, err := e.auditor().Run(e.ctx, nil)
	expectViolation(t, e.trust, err, auditor.RuleVersionRewrite)
}

func hasAlert(rep *verifier.MonitorReport, k verifier.AlertKind) bool {
	if rep == nil {
		return false
	}
	for _, a := range rep.Alerts {
		if a.Kind == k {
			return true
		}
	}
	return false
}

func alertKinds(rep *verifier.MonitorReport) []string {
	if rep == nil {
		return nil
	}
	var out []string
	for _, a := range rep.Alerts {
		out = append(out, a.Kind.String()+": "+a.Message)
	}
	return out
}

// Rollback: the directory serves an old checkpoint (and the old lookup) to
// a client that already verified a newer one.
func TestAttackRollback(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.create("alice")
	if err := e.src.Freeze(e.ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	e.publish(alice, e.addDevice(alice, "laptop"))
	c := e.client(nil)
	if _, err := c.Lookup(e.ctx, "alice"); err != nil {
		t.Fatalf("honest: %v", err)
	}
	a := e.auditor()
	e.auditHonest(a)

	e.src.SetMode(Frozen)
	if _, err := c.Lookup(e.ctx, "alice"); !errors.Is(err, verifier.ErrRollback) {
		t.Fatalf("client: got %v, want ErrRollback", err)
	}
	if _, err := c.Checkpoint(e.ctx); !errors.Is(err, verifier.ErrRollback) {
		t.Fatalf("client checkpoint: got %v, want ErrRollback", err)
	}
	if _, err := a.Run(e.ctx, nil); !errors.Is(err, auditor.ErrRollback) {
		t.Fatalf("auditor: got %v, want ErrRollback", err)
	}
	// The client's state still holds the newer checkpoint.
	e.src.SetMode(Honest)
	if r, err := c.Lookup(e.ctx, "alice"); err != nil || r.Version != 2 {
		t.Fatalf("honest after rollback attempt: %v", err)
	}
}

// Split view: a second directory instance with the same keys, forked from
// the same data dir, signs a different head of the same size.
func TestAttackSplitView(t *testing.T) {
	e := newEnv(t, nil)
	e.create("alice")
	w := e.newWitness("w1")
	e.cosignHonest(w)
	cfg := e.cfg
	fork, err := Fork(e.dir, t.TempDir()+"/fork", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer fork.Close()

	// The honest directory gets bob; the fork gets a "bob" with the
	// attacker's keys.
	e.create("bob")
	evil := newIK(t, "bob")
	_, c := newDevice(t, evil, "evil")
	st, err := devices.NewAccount(evil.ask, evil.Public(), "bob", c, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fork.Update(e.ctx, marshal(t, st)); err != nil {
		t.Fatal(err)
	}
	e.cosignHonest(w)

	cl := e.client(nil)
	if _, err := cl.Lookup(e.ctx, "bob"); err != nil {
		t.Fatalf("honest: %v", err)
	}
	a := e.auditor()
	e.auditHonest(a)

	e.src.ServeOther(fork.Source())
	forkNote, err := fork.Checkpoint(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Client: transferable split-view evidence.
	_, err = cl.Lookup(e.ctx, "bob")
	var sv *verifier.SplitViewError
	if !errors.As(err, &sv) {
		t.Fatalf("client: got %v, want *SplitViewError", err)
	}
	checkSplitView(t, e.trust, sv)
	// A quorum client never accepts the fork's head.
	if _, err := w.trust.OpenCheckpoint(forkNote); !errors.Is(err, verifier.ErrWitnessQuorum) {
		t.Fatalf("quorum: got %v", err)
	}
	// The witness answers 409 to the second head.
	_, err = witness.AddCheckpoint(e.ctx, nil, w.url, w.size, nil, forkNote)
	var ce *witness.ConflictError
	if !errors.As(err, &ce) || ce.Size != w.size {
		t.Fatalf("witness: got %v, want 409 with size %d", err, w.size)
	}
	// Auditor: split-view evidence.
	_, err = a.Run(e.ctx, nil)
	fd := expectViolation(t, e.trust, err, auditor.RuleSplitView)
	if len(fd.Checkpoints) != 2 || fd.Checkpoints[0].Hash == fd.Checkpoints[1].Hash {
		t.Fatalf("finding: %+v", fd.Checkpoints)
	}
}

// Truncation: the directory drops bob's entry and serves a longer history
// that is not an extension of what clients saw.
func TestAttackTruncation(t *testing.T) {
	e := newEnv(t, nil)
	e.create("alice")
	cut := e.size()
	bob := e.create("bob")
	cl := e.client(nil)
	if _, err := cl.Lookup(e.ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	a := e.auditor()
	e.auditHonest(a)

	f := e.forge(cut)
	// Step 1: the truncated history, one epoch longer than the cut: smaller
	// than what the client and auditor verified, and not a prefix of it.
	if _, err := f.CloseEpoch(e.ctx, EpochOptions{}); err != nil {
		t.Fatal(err)
	}
	e.src.ServeOther(f)
	if _, err := cl.Lookup(e.ctx, "alice"); !errors.Is(err, verifier.ErrRollback) {
		t.Fatalf("client (smaller): got %v, want ErrRollback", err)
	}
	_, err := a.Run(e.ctx, nil)
	expectViolation(t, e.trust, err, auditor.RuleFork)

	// Step 2: the truncated history grown past the verified size.
	for f.size <= e.size() {
		if _, err := f.CloseEpoch(e.ctx, EpochOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cl.Lookup(e.ctx, "alice"); !errors.Is(err, verifier.ErrConsistency) {
		t.Fatalf("client: got %v, want ErrConsistency", err)
	}
	if _, err := cl.Checkpoint(e.ctx); !errors.Is(err, verifier.ErrConsistency) {
		t.Fatalf("client checkpoint: got %v, want ErrConsistency", err)
	}
	// A second auditor that verified the honest log refuses the longer
	// fork, but (today) only as ErrSource: it does not turn a signed,
	// larger, inconsistent checkpoint into transferable evidence
	// (docs/attacks.md). The client's pair of notes is the evidence.
	e.src.SetMode(Honest)
	a2 := e.auditor()
	e.auditHonest(a2)
	e.src.ServeOther(f)
	if _, err := a2.Run(e.ctx, nil); !errors.Is(err, auditor.ErrSource) {
		t.Fatalf("auditor on the longer fork: got %v", err)
	}
	// Bob's monitor (a fresh device state): his account is gone.
	bm := e.client(nil)
	if err := bm.SetOwn(verifier.OwnAccount{UserID: "bob", Version: 1, EntryHash: klog.EntryHash(bob.leaf)}); err != nil {
		t.Fatal(err)
	}
	rep, err := verifier.NewMonitor(bm).Check(e.ctx)
	if err != nil || !hasAlert(rep, verifier.AlertAccountMissing) {
		t.Fatalf("bob's monitor: %v %v", err, alertKinds(rep))
	}
}

// Map root not matching the log: alice's version 2 is in the log but the
// map still serves version 1 (hiding her new device from lookups).
func TestAttackMapRootMismatch(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.create("alice")
	if _, err := e.client(nil).Lookup(e.ctx, "alice"); err != nil {
		t.Fatalf("honest: %v", err)
	}
	e.auditHonest(e.auditor())
	next := e.addDevice(alice, "laptop")
	nextHash, _ := next.Hash()

	t.Run("consistent-lie", func(t *testing.T) {
		f := e.forge(0)
		leaf := updateLeaf(t, e.index("alice"), 2, klog.EntryHash(alice.leaf), klog.UpdateUpdate, marshal(t, next))
		if _, err := f.AppendUpdate(e.ctx, leaf, false); err != nil {
			t.Fatal(err)
		}
		if _, err := f.CloseEpoch(e.ctx, EpochOptions{}); err != nil {
			t.Fatal(err)
		}
		e.src.ServeOther(f)
		defer e.src.SetMode(Honest)
		// The map proof matches the lying root: a client alone sees v1.
		r, err := e.client(nil).Lookup(e.ctx, "alice")
		if err != nil || r.Version != 1 {
			t.Fatalf("client: %v", err)
		}
		// Alice's monitor expects v2.
		own := e.client(nil)
		if err := own.SetOwn(verifier.OwnAccount{UserID: "alice", Version: 2, StateHash: nextHash}); err != nil {
			t.Fatal(err)
		}
		rep, err := verifier.NewMonitor(own).Check(e.ctx)
		if err != nil || !hasAlert(rep, verifier.AlertVersionBackwards) {
			t.Fatalf("monitor: %v %v", err, alertKinds(rep))
		}
		_, err = e.auditor().Run(e.ctx, nil)
		expectViolation(t, e.trust, err, auditor.RuleMapRoot)
	})
	// The map points at an entry the log does not hold: alice's signed v2
	// is shown to lookups but never logged (the map value names log index
	// at, which holds another leaf). Lookups carry no log inclusion proof
	// for the AccountUpdate (docs/protocol.md §7.1), so a single
	// VerifyLookup accepts it; the entry is not in the log the auditors
	// replay, so their map root differs: map-root.
	t.Run("map-points-at-unlogged-entry", func(t *testing.T) {
		f := e.forge(0)
		at := e.size() - 1 // the previous EpochRecord's index
		leaf := updateLeaf(t, e.index("alice"), 2, klog.EntryHash(alice.leaf), klog.UpdateUpdate, marshal(t, next))
		if err := f.MapUnlogged(leaf, at); err != nil {
			t.Fatal(err)
		}
		if _, err := f.CloseEpoch(e.ctx, EpochOptions{}); err != nil {
			t.Fatal(err)
		}
		e.src.ServeOther(f)
		defer e.src.SetMode(Honest)
		b, err := e.src.Lookup(e.ctx, "alice", 0)
		if err != nil {
			t.Fatal(err)
		}
		r, err := verifier.VerifyLookup(e.trust, nil, "alice", b, time.Now())
		if err != nil || r.Version != 2 || r.LogIndex != at {
			t.Fatalf("VerifyLookup: %v", err)
		}
		logged, err := f.Entries(e.ctx, at, at+1)
		if err != nil || bytes.Equal(logged[0], leaf) {
			t.Fatalf("the log holds the unlogged leaf at %d (%v)", at, err)
		}
		// A client that checks the history (a new contact at version 2)
		// finds no logged v2.
		if _, err := e.client(nil).Lookup(e.ctx, "alice"); !errors.Is(err, verifier.ErrHistory) {
			t.Fatalf("client: got %v, want ErrHistory", err)
		}
		_, err = e.auditor().Run(e.ctx, nil)
		expectViolation(t, e.trust, err, auditor.RuleMapRoot)
	})
	t.Run("root-not-in-epoch-record", func(t *testing.T) {
		f := e.forge(0)
		var bogus [32]byte
		rand.Read(bogus[:])
		if _, err := f.CloseEpoch(e.ctx, EpochOptions{MapRoot: &bogus}); err != nil {
			t.Fatal(err)
		}
		e.src.ServeOther(f)
		defer e.src.SetMode(Honest)
		if _, err := e.client(nil).Lookup(e.ctx, "alice"); !errors.Is(err, verifier.ErrMapProof) {
			t.Fatalf("client: got %v, want ErrMapProof", err)
		}
		_, err := e.auditor().Run(e.ctx, nil)
		expectViolation(t, e.trust, err, auditor.RuleMapRoot)
	})
}

// Stale checkpoint: the directory stops publishing (freezes) and keeps
// serving an old epoch; the honest directory keeps cutting fresh ones.
func TestAttackStaleCheckpoint(t *testing.T) {
	e := newEnv(t, func(c *directory.Config) {
		c.MaxCheckpointAge = "2s"
		c.EmptyEpochInterval = 200 * time.Millisecond
	})
	e.create("alice")
	var err error
	for range 10 { // Freeze needs a moment with no epoch cut.
		if err = e.src.Freeze(e.ctx, "alice"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	frozen := e.client(nil)
	e.src.SetMode(Frozen)
	if _, err := frozen.Lookup(e.ctx, "alice"); err != nil {
		t.Fatalf("frozen answer while still fresh: %v", err)
	}
	time.Sleep(3500 * time.Millisecond)
	if _, err := frozen.Lookup(e.ctx, "alice"); !errors.Is(err, verifier.ErrStale) {
		t.Fatalf("client: got %v, want ErrStale", err)
	}
	e.src.SetMode(Honest)
	if _, err := frozen.Lookup(e.ctx, "alice"); err != nil {
		t.Fatalf("honest (fresh) directory: %v", err)
	}
}

// Forged cosignature: the directory attaches cosignatures the witness never
// made to a head the witness never saw.
func TestAttackForgedCosignature(t *testing.T) {
	e := newEnv(t, nil)
	e.create("alice")
	w := e.newWitness("w1")
	honest := e.cosignHonest(w)
	if _, err := e.client(w.trust).Lookup(e.ctx, "alice"); err != nil {
		t.Fatalf("honest with quorum: %v", err)
	}

	f := e.forge(0)
	payload, _ := resetPayload(t, e.keys.ResetKey, e.users["alice"].state)
	leaf := updateLeaf(t, e.index("alice"), 2, klog.EntryHash(e.users["alice"].leaf), klog.UpdateReset, payload)
	if _, err := f.AppendUpdate(e.ctx, leaf, true); err != nil {
		t.Fatal(err)
	}
	forged, err := f.CloseEpoch(e.ctx, EpochOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, pk, _ := ed25519.GenerateKey(rand.Reader)
	sameName, err := cosign.NewSigner("w1", pk, nil) // another key named w1
	if err != nil {
		t.Fatal(err)
	}
	unknown, err := cosign.NewSigner("w2", pk, nil)
	if err != nil {
		t.Fatal(err)
	}
	realLines := e.honestCosigLines(honest)
	// The real witness' signature line over the honest head, moved to the
	// forged head: same key id, wrong message.
	moved := realLines
	cases := []struct {
		name  string
		lines []byte
		want  error
	}{
		// A cosignature by another key under the witness' name: its key
		// id is unknown, so it does not count.
		{"same-name-other-key", sigLines(t, forged, sameName), verifier.ErrWitnessQuorum},
		// A valid cosignature by a witness the client does not trust.
		{"unknown-witness", sigLines(t, forged, unknown), verifier.ErrWitnessQuorum},
		// The real witness' cosignature of the honest head moved to the
		// forged head: the trusted key's signature does not verify.
		{"moved-real-cosig", moved, verifier.ErrCheckpointSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := append(bytes.Clone(forged), c.lines...)
			if _, err := w.trust.OpenCheckpoint(n); !errors.Is(err, c.want) {
				t.Fatalf("OpenCheckpoint: got %v, want %v", err, c.want)
			}
			src := NewSource(f)
			src.Cosign(forged, c.lines)
			cl := verifier.NewClient(w.trust, t.TempDir()+"/state.json", src)
			_, err := cl.Lookup(e.ctx, "alice")
			if !errors.Is(err, verifier.ErrCheckpoint) || !errors.Is(err, c.want) {
				t.Fatalf("client: got %v, want ErrCheckpoint and %v", err, c.want)
			}
		})
	}
	// Without a witness quorum the same forged head would be accepted:
	// the quorum is what stops it.
	if _, err := e.trust.OpenCheckpoint(forged); err != nil {
		t.Fatalf("forged head does not even carry the log signature: %v", err)
	}
}

// honestCosigLines returns the cosignature lines e.src attaches to n.
func (e *env) honestCosigLines(n []byte) []byte {
	e.t.Helper()
	served, err := e.src.Checkpoint(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	if !bytes.HasPrefix(served, n) || len(served) == len(n) {
		e.t.Fatal("no cosignature attached")
	}
	return served[len(n):]
}

// Replay of a revoked device's cert.
func TestAttackRevokedDeviceReplay(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.create("alice")
	e.publish(alice, e.addDevice(alice, "laptop"))
	v2, v2leaf := alice.state, alice.leaf
	laptop := alice.devs[1].ID()
	revoked, err := devices.RevokeDevices(alice.state, alice.ik.ask, []devices.DeviceID{laptop}, devices.ReasonUnspecified, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e.publish(alice, revoked)
	_ = v2
	own := e.client(nil)
	if err := own.SetOwn(verifier.OwnAccount{UserID: "alice", Version: 3, EntryHash: klog.EntryHash(alice.leaf)}); err != nil {
		t.Fatal(err)
	}
	if rep, err := verifier.NewMonitor(own).Check(e.ctx); err != nil || !rep.OK {
		t.Fatalf("honest monitor: %v", err)
	}
	e.auditHonest(e.auditor())

	t.Run("revoked-cert-listed-again", func(t *testing.T) {
		// A state (signed by the IK, e.g. by the stolen laptop that held
		// it) listing the revoked laptop as current again.
		st := *revoked
		h, _ := revoked.Hash()
		st.Version, st.PrevHash, st.Timestamp = 4, h, revoked.Timestamp.Add(time.Second)
		st.Devices = append(append([]*devices.DeviceCert(nil), revoked.Devices...), v2.Device(laptop))
		sortDevices(st.Devices)
		if err := st.Sign(alice.ik.ask); err != nil {
			t.Fatal(err)
		}
		e.serveForged(t, updateLeaf(t, e.index("alice"), 4, klog.EntryHash(alice.leaf), klog.UpdateUpdate, marshal(t, &st)))
		defer e.src.SetMode(Honest)
		if _, err := e.client(nil).Lookup(e.ctx, "alice"); !errors.Is(err, verifier.ErrRevokedDevice) {
			t.Fatalf("client: got %v, want ErrRevokedDevice", err)
		}
		_, err := e.auditor().Run(e.ctx, nil)
		expectViolation(t, e.trust, err, auditor.RuleRevokedDevice)
	})
	t.Run("old-state-replayed", func(t *testing.T) {
		// The directory alone re-serves the old v2 entry (laptop current).
		f := e.forge(0)
		if _, err := f.AppendUpdate(e.ctx, v2leaf, true); err != nil {
			t.Fatal(err)
		}
		if _, err := f.CloseEpoch(e.ctx, EpochOptions{}); err != nil {
			t.Fatal(err)
		}
		e.src.ServeOther(f)
		defer e.src.SetMode(Honest)
		// The map serves v2 while the owner published v3; the history
		// shows v2 after v3.
		if _, err := verifier.NewMonitor(own).Check(e.ctx); !errors.Is(err, verifier.ErrHistory) {
			t.Fatalf("monitor: got %v, want ErrHistory", err)
		}
		_, err := e.auditor().Run(e.ctx, nil)
		expectViolation(t, e.trust, err, auditor.RuleVersionRewrite)
	})
}

// Map value: a present account's map proof omits the value
// (vmap.InclusionDerived) and the client derives it from the AccountUpdate
// served. Serving another AccountUpdate of the account (its previous
// version: show-then-hide, rollback), the right one at another log index,
// none, or a full proof carrying the value of the other update, is caught.
func TestAttackDerivedMapValue(t *testing.T) {
	e := newEnv(t, nil)
	e.create("bob") // so that alice's path has a sibling
	alice := e.create("alice")
	v1, err := e.srv.Lookup(e.ctx, "alice", 0)
	if err != nil {
		t.Fatal(err)
	}
	e.publish(alice, e.addDevice(alice, "laptop"))
	if r, err := e.client(nil).Lookup(e.ctx, "alice"); err != nil || r.Version != 2 {
		t.Fatalf("honest lookup: %v", err)
	}
	v2, err := e.srv.Lookup(e.ctx, "alice", 0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := vmap.ParseProof(v2.MapProof)
	if err != nil || p.Kind != vmap.InclusionDerived || len(p.Siblings) == 0 {
		t.Fatalf("present account's map proof: %v %v, want %s", p, err, vmap.InclusionDerived)
	}
	u1, err := klog.ParseAccountUpdate(v1.AccountUpdate)
	if err != nil {
		t.Fatal(err)
	}
	// A full (kind 0) proof along v2's path carrying v1's value.
	forged := &vmap.Proof{Kind: vmap.Inclusion, Siblings: p.Siblings,
		Value: vmap.MapValue(u1.Version, v1.AccountUpdateIndex, klog.EntryHash(v1.AccountUpdate))}
	forgedEnc, err := forged.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		tamper func(b *verifier.LookupBundle)
		want   error
	}{
		{"previous-account-update", func(b *verifier.LookupBundle) {
			b.AccountUpdate, b.AccountUpdateIndex = v1.AccountUpdate, v1.AccountUpdateIndex
		}, verifier.ErrMapProof},
		{"other-log-index", func(b *verifier.LookupBundle) { b.AccountUpdateIndex-- }, verifier.ErrMapProof},
		{"no-account-update", func(b *verifier.LookupBundle) { b.AccountUpdate, b.AccountUpdateIndex = nil, 0 }, verifier.ErrPresence},
		{"full-proof-previous-value", func(b *verifier.LookupBundle) {
			b.MapProof = forgedEnc
			b.AccountUpdate, b.AccountUpdateIndex = v1.AccountUpdate, v1.AccountUpdateIndex
		}, verifier.ErrMapProof},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.src.SetTamper(func(uid string, b *verifier.LookupBundle) {
				if uid == "alice" {
					c.tamper(b)
				}
			}, nil)
			defer e.src.SetMode(Honest)
			if _, err := e.client(nil).Lookup(e.ctx, "alice"); !errors.Is(err, c.want) {
				t.Fatalf("client: got %v, want %v", err, c.want)
			}
		})
	}
}

// Index confusion: answers for another user, or another index.
func TestAttackIndexConfusion(t *testing.T) {
	e := newEnv(t, nil)
	e.create("alice")
	bob := e.create("bob")
	if _, err := e.client(nil).Lookup(e.ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	e.auditHonest(e.auditor())
	bobBundle, err := e.srv.Lookup(e.ctx, "bob", 0)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		tamper func(b *verifier.LookupBundle)
		want   error
	}{
		{"bob-vrf-proof", func(b *verifier.LookupBundle) { b.VRFProof = bobBundle.VRFProof }, verifier.ErrVRF},
		{"bob-map-proof", func(b *verifier.LookupBundle) { b.MapProof = bobBundle.MapProof }, verifier.ErrMapProof},
		{"bob-everything", func(b *verifier.LookupBundle) {
			cp := b.Checkpoint
			*b = *bobBundle
			b.Checkpoint = cp
		}, verifier.ErrVRF},
		{"bob-account-update", func(b *verifier.LookupBundle) {
			b.AccountUpdate, b.AccountUpdateIndex = bobBundle.AccountUpdate, bobBundle.AccountUpdateIndex
		}, verifier.ErrIndexMismatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.src.SetTamper(func(uid string, b *verifier.LookupBundle) {
				if uid == "alice" {
					c.tamper(b)
				}
			}, nil)
			defer e.src.SetMode(Honest)
			if _, err := e.client(nil).Lookup(e.ctx, "alice"); !errors.Is(err, c.want) {
				t.Fatalf("client: got %v, want %v", err, c.want)
			}
		})
	}
	t.Run("user-at-two-indexes", func(t *testing.T) {
		// The directory logs a second "bob" (attacker's keys) at a made-up
		// index: lookups of bob never reach it, but it exists.
		evil := newIK(t, "bob")
		_, c := newDevice(t, evil, "evil")
		st, err := devices.NewAccount(evil.ask, evil.Public(), "bob", c, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		var idx [32]byte
		rand.Read(idx[:])
		f := e.forge(0)
		if _, err := f.AppendUpdate(e.ctx, updateLeaf(t, idx, 1, [32]byte{}, klog.UpdateCreate, marshal(t, st)), true); err != nil {
			t.Fatal(err)
		}
		if _, err := f.CloseEpoch(e.ctx, EpochOptions{}); err != nil {
			t.Fatal(err)
		}
		e.src.ServeOther(f)
		defer e.src.SetMode(Honest)
		r, err := e.client(nil).Lookup(e.ctx, "bob")
		if err != nil || r.IdentityKey != bob.ik.Public() {
			t.Fatalf("client lookup of bob: %v", err)
		}
		_, err = e.auditor().Run(e.ctx, nil)
		expectViolation(t, e.trust, err, auditor.RuleUserIndex)
	})
}

// Silent reset: an IK change without the reset key's signature, versus a
// real reset that is loud everywhere.
func TestAttackSilentReset(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.create("alice")
	contact := e.client(nil)
	r, err := contact.Lookup(e.ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := contact.Pin("alice", r.IdentityKey, true); err != nil {
		t.Fatal(err)
	}
	own := e.client(nil)
	if err := own.SetOwn(verifier.OwnAccount{UserID: "alice", Version: 1, EntryHash: klog.EntryHash(alice.leaf)}); err != nil {
		t.Fatal(err)
	}
	e.auditHonest(e.auditor())

	t.Run("update-with-new-IK", func(t *testing.T) {
		evil := newIK(t, "alice")
		_, c := newDevice(t, evil, "evil")
		h, _ := alice.state.Hash()
		st := &devices.AccountState{UserID: "alice", Version: 2, PrevHash: h, IdentityKey: evil.Public(), SigningKey: evil.ask.Cert,
			Devices: []*devices.DeviceCert{c}, Revocations: nil, Timestamp: alice.state.Timestamp.Add(time.Second)}
		if err := st.Sign(evil.ask); err != nil {
			t.Fatal(err)
		}
		e.serveForged(t, updateLeaf(t, e.index("alice"), 2, klog.EntryHash(alice.leaf), klog.UpdateUpdate, marshal(t, st)))
		defer e.src.SetMode(Honest)
		_, err := contact.Lookup(e.ctx, "alice")
		var snc *verifier.SafetyNumberChangedError
		if !errors.As(err, &snc) || snc.Reset || snc.New != evil.Public() {
			t.Fatalf("verified contact: got %v, want SafetyNumberChangedError (not a reset)", err)
		}
		// The owner's monitor: v2 changes the IK without a reset.
		if rep, err := verifier.NewMonitor(own).Check(e.ctx); !errors.Is(err, verifier.ErrHistory) || !errors.Is(err, devices.ErrIdentityChanged) {
			t.Fatalf("monitor: got %v %v, want ErrHistory (identity changed)", err, alertKinds(rep))
		}
		_, err = e.auditor().Run(e.ctx, nil)
		expectViolation(t, e.trust, err, auditor.RuleIdentityChanged)
	})
	t.Run("reset-not-signed-by-reset-key", func(t *testing.T) {
		_, other, _ := ed25519.GenerateKey(rand.Reader)
		payload, _ := resetPayload(t, other, alice.state)
		e.serveForged(t, updateLeaf(t, e.index("alice"), 2, klog.EntryHash(alice.leaf), klog.UpdateReset, payload))
		defer e.src.SetMode(Honest)
		if _, err := e.client(nil).Lookup(e.ctx, "alice"); !errors.Is(err, verifier.ErrReset) {
			t.Fatalf("client: got %v, want ErrReset", err)
		}
		_, err := e.auditor().Run(e.ctx, nil)
		expectViolation(t, e.trust, err, auditor.RuleReset)
	})
	t.Run("real-reset-is-loud", func(t *testing.T) {
		nik := newIK(t, "alice")
		_, c := newDevice(t, nik, "new-phone")
		ns, err := devices.NewResetState(alice.state, nik.Public(), nik.ask, c, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.srv.Reset(e.ctx, e.srv.AdminToken(), "alice", marshal(t, ns), "lost"); err != nil {
			t.Fatal(err)
		}
		// Pending: the contact keeps the verified key, with a notice.
		pr, err := contact.Lookup(e.ctx, "alice")
		if err != nil || pr.ResetPending == nil || pr.IdentityKey != alice.ik.Public() || pr.Pin != verifier.PinMatchVerified {
			t.Fatalf("verified contact during the window: %v", err)
		}
		e.waitResetWindow()
		_, err = contact.Lookup(e.ctx, "alice")
		var snc *verifier.SafetyNumberChangedError
		if !errors.As(err, &snc) || !snc.Reset {
			t.Fatalf("verified contact: got %v, want SafetyNumberChangedError{Reset}", err)
		}
		r, err := e.client(nil).Lookup(e.ctx, "alice")
		if err != nil || r.Reset == nil || len(r.Warnings) == 0 {
			t.Fatalf("new contact: %v (reset must be flagged)", err)
		}
		own := e.client(nil) // a device that has not seen the forged heads above
		if err := own.SetOwn(verifier.OwnAccount{UserID: "alice", Version: 1, EntryHash: klog.EntryHash(alice.leaf)}); err != nil {
			t.Fatal(err)
		}
		rep, err := verifier.NewMonitor(own).Check(e.ctx)
		if err != nil || !hasAlert(rep, verifier.AlertReset) {
			t.Fatalf("monitor: %v %v", err, alertKinds(rep))
		}
		st := e.auditHonest(e.auditor())
		if st.Resets != 1 || len(st.ResetIndexes) != 1 || st.CancelledResets != 0 {
			t.Fatalf("auditor counted %d resets", st.Resets)
		}
	})
}
