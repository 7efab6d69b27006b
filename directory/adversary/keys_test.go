package adversary

import (
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory/apierr"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/auditor"
	"github.com/keyline/keyline/verifier/webverify"
)

// staleState is what a stolen device holding the rotated-out signing key
// ask can sign on top of latest: a self-consistent state (every cert
// re-signed by ask, its SigningKeyCert a genuine RK signature of an older
// generation) adding the attacker's device "evil".
func staleState(t *testing.T, u *user, ask *devices.AccountSigningKey, latest *devices.AccountState) *devices.AccountState {
	t.Helper()
	h, err := latest.Hash()
	if err != nil {
		t.Fatal(err)
	}
	rk := u.ik.Public()
	st := &devices.AccountState{UserID: u.uid, Version: latest.Version + 1, PrevHash: h, IdentityKey: rk, SigningKey: ask.Cert,
		Revocations: latest.Revocations, Timestamp: latest.Timestamp.Add(time.Second)}
	for _, d := range latest.Devices {
		c := *d
		if err := ask.IssueCert(rk, &c); err != nil {
			t.Fatal(err)
		}
		st.Devices = append(st.Devices, &c)
	}
	dk, err := devices.NewDeviceKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	evil, err := dk.NewCert("evil", rk, st.Timestamp)
	if err != nil {
		t.Fatal(err)
	}
	if err := ask.IssueCert(rk, evil); err != nil {
		t.Fatal(err)
	}
	st.Devices = append(st.Devices, evil)
	sortDevices(st.Devices)
	if err := st.Sign(ask); err != nil {
		t.Fatal(err)
	}
	if err := devices.VerifyAccountState(st); err != nil {
		t.Fatalf("the stale state must be self-consistent, so that only the generation rule stops it: %v", err)
	}
	return st
}

// Stolen trusted device after recovery: alice's laptop (holding the
// generation-1 account signing key) is stolen; alice recovers on a new
// device with the paper key (generation 2). The laptop keeps publishing
// with generation 1: the honest directory refuses it (STALE_SIGNING_KEY);
// a malicious directory holding all its keys serves it anyway, and every
// client (a verified contact, a contact pinned before the rotation, a new
// contact) and the auditor reject it, with evidence that verifies offline.
// Bob's verified safety number for alice never changes.
func TestAttackStolenDeviceAfterRecovery(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.create("alice") // its first device ("phone" here) plays the laptop: generation 1, trusted
	gen1 := alice.ik.ask
	e.publish(alice, e.addDevice(alice, "watch"))
	bob := e.client(nil)
	if err := bob.Pin("alice", alice.ik.Public(), true); err != nil {
		t.Fatal(err)
	}
	early := e.client(nil) // a contact that last looked alice up before the rotation
	if _, err := early.Lookup(e.ctx, "alice"); err != nil {
		t.Fatalf("honest lookup: %v", err)
	}

	// Honest path: before the theft the laptop's key is the current one.
	e.publish(alice, e.addDevice(alice, "tablet"))
	if r, err := bob.Lookup(e.ctx, "alice"); err != nil || r.Pin != verifier.PinMatchVerified || r.Generation != 1 {
		t.Fatalf("honest lookup: %v", err)
	}
	e.auditHonest(e.auditor())

	// The laptop is stolen; alice recovers on a new device with the paper
	// key: generation 2, every other device revoked.
	gen2 := alice.ik.rotate(t)
	_, fresh := newDevice(t, &ikeys{rk: alice.ik.rk, ask: gen2}, "new-laptop")
	recovered, err := devices.Recover(alice.state, gen2, fresh, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e.publish(alice, recovered)
	alice.ik.ask = gen2
	r, err := bob.Lookup(e.ctx, "alice")
	if err != nil || r.Pin != verifier.PinMatchVerified || r.Generation != 2 || r.IdentityKey != alice.ik.Public() {
		t.Fatalf("after recovery: %v (the safety number must not change)", err)
	}
	own := e.client(nil)
	if err := own.SetOwn(verifier.OwnAccount{UserID: "alice", Version: alice.state.Version, EntryHash: klog.EntryHash(alice.leaf)}); err != nil {
		t.Fatal(err)
	}
	if rep, err := verifier.NewMonitor(own).Check(e.ctx); err != nil || !rep.OK {
		t.Fatalf("honest monitor: %v", err)
	}
	e.auditHonest(e.auditor())

	// The in-browser verifier: a contact that verified the recovery.
	web := newPage(t, e)
	wr := web.lookup(t, "", "alice")
	if !wr.OK || wr.Version != recovered.Version {
		t.Fatalf("browser after recovery: %+v", wr)
	}
	webState := wr.State

	stale := staleState(t, alice, gen1, alice.state)

	t.Run("honest-directory-refuses", func(t *testing.T) {
		_, err := e.srv.Update(e.ctx, marshal(t, stale))
		if apierr.Reason(err) != apierr.StaleSigningKey || apierr.Code(err) != codes.FailedPrecondition {
			t.Fatalf("got %v, want FailedPrecondition / STALE_SIGNING_KEY", err)
		}
		// The laptop cannot even build it with the library.
		if _, err := devices.AddDevice(alice.state, gen1, fresh, time.Now()); !errors.Is(err, devices.ErrStaleSigningKey) {
			t.Fatalf("AddDevice with the rotated-out key: %v", err)
		}
	})

	t.Run("malicious-directory-serves-it", func(t *testing.T) {
		e.serveForged(t, updateLeaf(t, e.index("alice"), stale.Version, klog.EntryHash(alice.leaf), klog.UpdateUpdate, marshal(t, stale)))
		defer e.src.SetMode(Honest)
		// The lookup alone verifies (the state is self-consistent): only
		// what the client knows about the account's generations stops it.
		for name, c := range map[string]*verifier.Client{"verified contact": bob, "contact pinned before the rotation": early, "new contact": e.client(nil)} {
			if _, err := c.Lookup(e.ctx, "alice"); !errors.Is(err, verifier.ErrStaleSigningKey) {
				t.Fatalf("%s: got %v, want ErrStaleSigningKey", name, err)
			}
		}
		// The browser's verifier applies the same history rule.
		for name, state := range map[string]string{"browser, new contact": "", "browser, contact that verified the recovery": webState} {
			if r := web.lookup(t, state, "alice"); r.OK || r.State != "" || r.ErrorKind != "ErrStaleSigningKey" {
				t.Fatalf("%s: got %+v, want ErrStaleSigningKey", name, r)
			}
		}
		if _, err := verifier.NewMonitor(own).Check(e.ctx); !errors.Is(err, verifier.ErrStaleSigningKey) {
			t.Fatalf("owner's monitor: got %v, want ErrStaleSigningKey", err)
		}
		_, err := e.auditor().Run(e.ctx, nil)
		expectViolation(t, e.trust, err, auditor.RuleStaleSigningKey)
	})

	// Throughout, bob's verified safety number is unchanged.
	r, err = bob.Lookup(e.ctx, "alice")
	if err != nil || r.Pin != verifier.PinMatchVerified {
		t.Fatalf("bob after the attack: %v", err)
	}
}

// Reset during its window: a directory reset is logged pending; lookups
// keep returning the old keys with a notice; the owner cancels it with the
// current signing key and it never takes effect. A directory that applies
// a reset early, or despite the cancellation, is caught by clients and by
// the auditor with evidence.
func TestAttackResetDuringWindow(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.create("alice")
	bob := e.client(nil)
	if err := bob.Pin("alice", alice.ik.Public(), true); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Lookup(e.ctx, "alice"); err != nil {
		t.Fatalf("honest lookup: %v", err)
	}
	before := alice.state
	// The in-browser verifier: a contact that pinned alice's key unverified,
	// and one that verified it.
	web := newPage(t, e)
	wr := web.lookup(t, "", "alice")
	if !wr.OK {
		t.Fatalf("browser, honest lookup: %+v", wr)
	}
	webPinned := wr.State
	webVerified, err := webverify.MarkVerified(webPinned, "alice", wr.IdentityKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}

	// The operator (or someone who talked them into it) resets alice.
	rs := resetStateOf(t, alice.state)
	if _, err := e.srv.Reset(e.ctx, e.srv.AdminToken(), "alice", marshal(t, rs.state), "lost"); err != nil {
		t.Fatal(err)
	}
	resetLeaf := latestLeaf(t, e, "alice")
	pr, err := bob.Lookup(e.ctx, "alice")
	if err != nil || pr.ResetPending == nil || pr.IdentityKey != alice.ik.Public() || pr.Pin != verifier.PinMatchVerified || len(pr.Warnings) == 0 {
		t.Fatalf("lookup during the window: %v", err)
	}
	reset := pr.ResetPending
	own := e.client(nil)
	if err := own.SetOwn(verifier.OwnAccount{UserID: "alice", Version: before.Version, EntryHash: klog.EntryHash(alice.leaf)}); err != nil {
		t.Fatal(err)
	}
	if rep, err := verifier.NewMonitor(own).Check(e.ctx); err != nil || !hasAlert(rep, verifier.AlertResetPending) {
		t.Fatalf("owner's monitor during the window: %v %v", err, alertKinds(rep))
	}
	// The reset's new keys cannot be used during the window.
	early, err := devices.RevokeDevices(rs.state, rs.keys.ask, nil, devices.ReasonUnspecified, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.Update(e.ctx, marshal(t, early)); apierr.Reason(err) != apierr.ResetPending {
		t.Fatalf("new keys during the window: got %v, want RESET_PENDING", err)
	}

	// Honest path: alice cancels with her current signing key.
	next, err := devices.Resign(reset.PreviousState(), alice.ik.ask, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cancel, err := devices.LinkAfterReset(next, reset, alice.ik.ask)
	if err != nil {
		t.Fatal(err)
	}
	e.publish(alice, cancel)
	e.waitResetWindow()
	r, err := bob.Lookup(e.ctx, "alice")
	if err != nil || r.ResetPending != nil || r.Reset != nil || r.IdentityKey != alice.ik.Public() || r.Pin != verifier.PinMatchVerified {
		t.Fatalf("after the cancellation and the window: %v", err)
	}
	if r, err := e.client(nil).Lookup(e.ctx, "alice"); err != nil || r.IdentityKey != alice.ik.Public() {
		t.Fatalf("new contact after the cancellation: %v", err)
	}
	st := e.auditHonest(e.auditor())
	if st.Resets != 1 || st.CancelledResets != 1 {
		t.Fatalf("auditor counted %d resets, %d cancelled", st.Resets, st.CancelledResets)
	}
	// The cancelled reset's new keys stay out for good.
	after, err := devices.RevokeDevices(rs.state, rs.keys.ask, nil, devices.ReasonUnspecified, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.Update(e.ctx, marshal(t, after)); apierr.Code(err) != codes.FailedPrecondition {
		t.Fatalf("the cancelled reset's keys after the window: got %v, want FailedPrecondition", err)
	}

	t.Run("applied-despite-cancellation", func(t *testing.T) {
		// The directory publishes the reset's new keys after alice's
		// cancellation (a state of the new keys, after the window).
		h, _ := cancel.Hash()
		x := *after
		x.Version, x.PrevHash = cancel.Version+1, h
		if err := x.Sign(rs.keys.ask); err != nil {
			t.Fatal(err)
		}
		e.serveForged(t, updateLeaf(t, e.index("alice"), x.Version, klog.EntryHash(latestLeaf(t, e, "alice")), klog.UpdateUpdate, marshal(t, &x)))
		defer e.src.SetMode(Honest)
		if _, err := bob.Lookup(e.ctx, "alice"); !errors.Is(err, verifier.ErrIdentityChanged) {
			t.Fatalf("verified contact: got %v, want ErrIdentityChanged", err)
		}
		if _, err := e.client(nil).Lookup(e.ctx, "alice"); !errors.Is(err, verifier.ErrHistory) {
			t.Fatalf("new contact: got %v, want ErrHistory", err)
		}
		for name, c := range map[string]struct{ state, kind string }{
			"browser, unverified pin": {webPinned, "ErrIdentityChanged"},
			"browser, verified pin":   {webVerified, "ErrIdentityChanged"},
			"browser, new contact":    {"", "ErrHistory"},
		} {
			if r := web.lookup(t, c.state, "alice"); r.OK || r.State != "" || r.ErrorKind != c.kind {
				t.Fatalf("%s: got %+v, want %s", name, r, c.kind)
			}
		}
		_, err := e.auditor().Run(e.ctx, nil)
		expectViolation(t, e.trust, err, auditor.RuleIdentityChanged)
	})

	t.Run("applied-early", func(t *testing.T) {
		// A fork of the log just after the reset entry, in which the
		// directory uses the reset's new keys before the window ended.
		n := logIndexOf(t, e, resetLeaf) + 2 // the reset and its epoch record
		f := e.forge(n)
		h, _ := rs.state.Hash()
		x := *early
		x.PrevHash = h
		if err := x.Sign(rs.keys.ask); err != nil {
			t.Fatal(err)
		}
		leaf := updateLeaf(t, e.index("alice"), x.Version, klog.EntryHash(resetLeaf), klog.UpdateUpdate, marshal(t, &x))
		if _, err := f.AppendUpdate(e.ctx, leaf, true); err != nil {
			t.Fatal(err)
		}
		if _, err := f.CloseEpoch(e.ctx, EpochOptions{}); err != nil {
			t.Fatal(err)
		}
		e.src.ServeOther(f)
		defer e.src.SetMode(Honest)
		contact := e.client(nil)
		if err := contact.Pin("alice", alice.ik.Public(), true); err != nil {
			t.Fatal(err)
		}
		if _, err := contact.Lookup(e.ctx, "alice"); !errors.Is(err, verifier.ErrResetWindow) {
			t.Fatalf("verified contact: got %v, want ErrResetWindow", err)
		}
		verified, err := webverify.MarkVerified("", "alice", fmt.Sprintf("%x", alice.ik.Public()), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if r := web.lookup(t, verified, "alice"); r.OK || r.State != "" || r.ErrorKind != "ErrResetWindow" {
			t.Fatalf("browser, verified contact: got %+v, want ErrResetWindow", r)
		}
		_, err = e.auditor().Run(e.ctx, nil)
		expectViolation(t, e.trust, err, auditor.RuleResetWindow)
	})

	t.Run("applied-early-forward-dated", func(t *testing.T) {
		// The directory holds the reset's new keys and dates their first
		// state at effective_at, but logs it in an epoch before then.
		n := logIndexOf(t, e, resetLeaf) + 2
		f := e.forge(n)
		h, _ := rs.state.Hash()
		x := *early
		x.PrevHash, x.Timestamp = h, reset.EffectiveAt
		if err := x.Sign(rs.keys.ask); err != nil {
			t.Fatal(err)
		}
		leaf := updateLeaf(t, e.index("alice"), x.Version, klog.EntryHash(resetLeaf), klog.UpdateUpdate, marshal(t, &x))
		if _, err := f.AppendUpdate(e.ctx, leaf, true); err != nil {
			t.Fatal(err)
		}
		if _, err := f.CloseEpoch(e.ctx, EpochOptions{}); err != nil { // timestamp: the reset epoch's + 1 s
			t.Fatal(err)
		}
		e.src.ServeOther(f)
		defer e.src.SetMode(Honest)
		_, err := e.auditor().Run(e.ctx, nil)
		expectViolation(t, e.trust, err, auditor.RuleResetLogTime)
	})

	t.Run("cancellation-logged-after-the-window", func(t *testing.T) {
		// A cancellation (state timestamped within the window) that the
		// directory logs only after the reset took effect.
		n := logIndexOf(t, e, resetLeaf) + 2
		f := e.forge(n)
		leaf := updateLeaf(t, e.index("alice"), cancel.Version, klog.EntryHash(resetLeaf), klog.UpdateUpdate, marshal(t, cancel))
		if _, err := f.AppendUpdate(e.ctx, leaf, true); err != nil {
			t.Fatal(err)
		}
		if _, err := f.CloseEpoch(e.ctx, EpochOptions{Timestamp: uint64(reset.EffectiveAt.Unix()) + auditor.CancelLogSlack + 1}); err != nil {
			t.Fatal(err)
		}
		e.src.ServeOther(f)
		defer e.src.SetMode(Honest)
		_, err := e.auditor().Run(e.ctx, nil)
		expectViolation(t, e.trust, err, auditor.RuleResetLogTime)
	})

	t.Run("window-too-short", func(t *testing.T) {
		// A reset signed with a window shorter than trust.json's.
		a, err := devices.SignReset(e.keys.ResetKey, alice.state, resetStateOf(t, alice.state).state, devices.ResetLostAllKeys, time.Now(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		payload, _ := a.MarshalBinary()
		e.serveForged(t, updateLeaf(t, e.index("alice"), a.Version, klog.EntryHash(latestLeaf(t, e, "alice")), klog.UpdateReset, payload))
		defer e.src.SetMode(Honest)
		if _, err := e.client(nil).Lookup(e.ctx, "alice"); !errors.Is(err, verifier.ErrResetWindow) {
			t.Fatalf("client: got %v, want ErrResetWindow", err)
		}
		if r := web.lookup(t, "", "alice"); r.OK || r.State != "" || r.ErrorKind != "ErrResetWindow" {
			t.Fatalf("browser, new contact: got %+v, want ErrResetWindow", r)
		}
		_, err = e.auditor().Run(e.ctx, nil)
		expectViolation(t, e.trust, err, auditor.RuleResetWindow)
	})
}

// resetOf is a reset's new state and the keys that sign it.
type resetOf struct {
	keys  *ikeys
	state *devices.AccountState
}

func resetStateOf(t *testing.T, prev *devices.AccountState) resetOf {
	t.Helper()
	k := newIK(t, prev.UserID)
	_, c := newDevice(t, k, "new-phone")
	ns, err := devices.NewResetState(prev, k.Public(), k.ask, c, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return resetOf{keys: k, state: ns}
}

// latestLeaf returns the AccountUpdate leaf the honest directory serves
// for uid.
func latestLeaf(t *testing.T, e *env, uid string) []byte {
	t.Helper()
	b, err := e.srv.Source().Lookup(e.ctx, uid, 0)
	if err != nil {
		t.Fatal(err)
	}
	return b.AccountUpdate
}

// logIndexOf returns the log index of leaf in the honest directory.
func logIndexOf(t *testing.T, e *env, leaf []byte) uint64 {
	t.Helper()
	u, err := klog.ParseAccountUpdate(leaf)
	if err != nil {
		t.Fatal(err)
	}
	h, err := e.srv.Source().History(e.ctx, "alice", u.Version)
	if err != nil || len(h.Entries) == 0 {
		t.Fatalf("history: %v", err)
	}
	return h.Entries[0].LogIndex
}
