package verifier

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/keyline/keyline/devices"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier/vmap"
)

// world: alice (2 versions), bob (1), carol absent.
func world(t *testing.T) *testDir {
	d := newTestDir(t)
	d.publish(d.create("alice"), d.create("bob"))
	d.now = d.now.Add(time.Minute)
	d.publish(d.addDevice("alice", "alice-laptop"))
	return d
}

// verify is VerifyLookup, checked against a warm Cache: with a cache that
// verified honest full bundles of every user, and b itself, before, the
// result (or error) must be the same as without one. Every lookup test
// goes through it, so every rejection is also tested with the cache warm.
func verify(d *testDir, st *ClientState, uid string, b *LookupBundle) (*LookupResult, error) {
	d.t.Helper()
	res, err := VerifyLookup(d.trust, st, uid, b, d.now)
	c := NewCache(0)
	for _, u := range []string{"alice", "bob", "carol", "dave", uid} {
		hb, herr := d.Lookup(d.t.Context(), u, 0)
		if herr == nil {
			c.VerifyLookup(d.trust, nil, u, hb, d.now)
		}
	}
	for range 2 { // the second run sees whatever the first one cached
		wres, werr := c.VerifyLookup(d.trust, st, uid, b, d.now)
		if (err == nil) != (werr == nil) || (err != nil && err.Error() != werr.Error()) {
			d.t.Fatalf("with a warm cache: error %v, without: %v", werr, err)
		}
		if err == nil && !reflect.DeepEqual(res, wres) {
			d.t.Fatalf("with a warm cache: result %+v, without: %+v", wres, res)
		}
	}
	return res, err
}

func wantErr(t *testing.T, err error, targets ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want %v", targets)
	}
	for _, target := range targets {
		if !errors.Is(err, target) {
			t.Fatalf("error %v; want %v", err, target)
		}
	}
}

func flip(b []byte) []byte {
	c := append([]byte(nil), b...)
	c[len(c)/2] ^= 1
	return c
}

func TestLookupValid(t *testing.T) {
	d := world(t)
	res, err := verify(d, nil, "  Alice ", d.bundle("alice", 0))
	if err != nil {
		t.Fatal(err)
	}
	a := d.accounts["alice"]
	if !res.Found || res.UserID != "alice" || res.Version != 2 || res.IdentityKey != a.ik.Public() || len(res.State.Devices) != 2 || res.Pin != PinNew || res.Reset != nil {
		t.Fatalf("result %+v", res)
	}
	if res.LogIndex != a.logIdx || res.EntryHash != klog.EntryHash(a.leaf) || res.Epoch.Epoch != 2 {
		t.Fatalf("log index %d entry %x epoch %d", res.LogIndex, res.EntryHash, res.Epoch.Epoch)
	}
	res, err = verify(d, nil, "carol", d.bundle("carol", 0))
	if err != nil || res.Found {
		t.Fatalf("absent: %v %+v", err, res)
	}
}

func TestLookupCheckpoint(t *testing.T) {
	d := world(t)
	b := d.bundle("alice", 0)
	// Log signature by another key with the same name.
	skey, _, _ := klog.GenerateKey(rand.Reader, testOrigin)
	other, _ := note.NewSigner(skey)
	n, _ := note.Open(b.Checkpoint, note.VerifierList(d.trust.Log))
	forged, _ := note.Sign(&note.Note{Text: n.Text}, other, d.witnesses[0], d.witnesses[1])
	b.Checkpoint = forged
	_, err := verify(d, nil, "alice", b)
	wantErr(t, err, ErrCheckpoint, ErrCheckpointSignature)

	// Only one cosignature for a quorum of 2.
	d.cosign = 1
	b = d.bundle("alice", 0)
	b.Checkpoint = d.sign(d.size())
	_, err = verify(d, nil, "alice", b)
	wantErr(t, err, ErrCheckpoint, ErrWitnessQuorum)

	// Forged cosignature: witness 1's line keeps its name and key ID but
	// the signature is not its own.
	d.cosign = 2
	b = d.bundle("alice", 0)
	i := bytes.LastIndex(b.Checkpoint[:len(b.Checkpoint)-1], []byte("\n"))
	line := string(b.Checkpoint[i+1 : len(b.Checkpoint)-1])
	sp := strings.LastIndex(line, " ")
	sig, _ := base64.StdEncoding.DecodeString(line[sp+1:])
	sig[len(sig)-1] ^= 1
	b.Checkpoint = append(append([]byte(nil), b.Checkpoint[:i+1]...), line[:sp+1]+base64.StdEncoding.EncodeToString(sig)+"\n"...)
	_, err = verify(d, nil, "alice", b)
	wantErr(t, err, ErrCheckpoint, ErrCheckpointSignature)
}

func TestLookupRollbackSplitViewConsistency(t *testing.T) {
	d := world(t)
	old := d.bundle("alice", 0)
	res, err := verify(d, nil, "alice", old)
	if err != nil {
		t.Fatal(err)
	}
	st := &ClientState{}
	st.Apply(res, d.now)
	oldSize := res.Checkpoint.Size

	d.publish(d.addDevice("bob", "bob-tablet"))
	nb := d.bundle("alice", oldSize)
	res2, err := verify(d, st, "alice", nb)
	if err != nil {
		t.Fatal(err)
	}
	// Bad consistency proof.
	bad := d.bundle("alice", oldSize)
	bad.Consistency[0] = flip(bad.Consistency[0])
	_, err = verify(d, st, "alice", bad)
	wantErr(t, err, ErrConsistency)
	bad.Consistency = nil
	_, err = verify(d, st, "alice", bad)
	wantErr(t, err, ErrConsistency)

	st.Apply(res2, d.now)
	// Rollback to the old checkpoint.
	_, err = verify(d, st, "alice", old)
	wantErr(t, err, ErrRollback)

	// Split view: same size, other root, validly signed.
	c, _ := klog.ParseCheckpoint([]byte(testOrigin + "\n1\n" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"))
	c.Size = res2.Checkpoint.Size
	c.Hash[0] = 1
	fork := d.bundle("alice", 0)
	fork.Checkpoint = d.signCheckpoint(c)
	_, err = verify(d, st, "alice", fork)
	wantErr(t, err, ErrSplitView)
	var sv *SplitViewError
	if !errors.As(err, &sv) || string(sv.Old) != string(res2.Checkpoint.Note) || string(sv.New) != string(fork.Checkpoint) {
		t.Fatalf("split view evidence %+v", sv)
	}
	// Both notes are evidence: each opens with the log key.
	for _, n := range [][]byte{sv.Old, sv.New} {
		if _, err := d.trust.OpenCheckpoint(n); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLookupEpochRecordAndFreshness(t *testing.T) {
	d := world(t)
	b := d.bundle("alice", 0)
	er, _ := klog.ParseEpochRecord(b.EpochRecord)
	er.Timestamp++
	b.EpochRecord, _ = er.Marshal()
	_, err := verify(d, nil, "alice", b)
	wantErr(t, err, ErrEpochRecord)

	// The previous epoch's record (not the last leaf) with its real proof
	// at its own index does not verify as leaf size-1.
	b = d.bundle("alice", 0)
	first, _ := d.log.Entries(t.Context(), 2, 3)
	b.EpochRecord = first[0]
	_, err = verify(d, nil, "alice", b)
	wantErr(t, err, ErrEpochRecord)

	b = d.bundle("alice", 0)
	b.EpochRecordInclusion = b.EpochRecordInclusion[1:]
	_, err = verify(d, nil, "alice", b)
	wantErr(t, err, ErrEpochRecord)

	b = d.bundle("alice", 0)
	if _, err := VerifyLookup(d.trust, nil, "alice", b, d.now.Add(59*time.Minute)); err != nil {
		t.Fatalf("within MaxAge: %v", err)
	}
	_, err = VerifyLookup(d.trust, nil, "alice", b, d.now.Add(61*time.Minute))
	wantErr(t, err, ErrStale)
	_, err = VerifyLookup(d.trust, nil, "alice", b, d.now.Add(-MaxFutureSkew-time.Second))
	wantErr(t, err, ErrStale)
}

func TestLookupVRF(t *testing.T) {
	d := world(t)
	b := d.bundle("alice", 0)
	b.VRFProof = d.bundle("bob", 0).VRFProof
	_, err := verify(d, nil, "alice", b)
	wantErr(t, err, ErrVRF)
	b.VRFProof = flip(d.bundle("alice", 0).VRFProof)
	_, err = verify(d, nil, "alice", b)
	wantErr(t, err, ErrVRF)
	_, err = verify(d, nil, "Not a user!", b)
	wantErr(t, err, ErrUserID)
}

func TestLookupMapProof(t *testing.T) {
	d := world(t)
	// Index confusion: bob's whole answer (valid map proof for bob's index)
	// served with alice's VRF proof.
	// With the value derived (kind 4) bob's AccountUpdate is refused for
	// alice's index before the path is walked; with alice's AccountUpdate
	// the path fails. A full proof (kind 0) fails on the path.
	b := d.bundle("bob", 0)
	b.VRFProof = d.bundle("alice", 0).VRFProof
	_, err := verify(d, nil, "alice", b)
	wantErr(t, err, ErrIndexMismatch)
	ab := d.bundle("alice", 0)
	b.AccountUpdate, b.AccountUpdateIndex = ab.AccountUpdate, ab.AccountUpdateIndex
	_, err = verify(d, nil, "alice", b)
	wantErr(t, err, ErrMapProof, vmap.ErrRootMismatch)
	d.fullMapProof = true
	b = d.bundle("bob", 0)
	d.fullMapProof = false
	b.VRFProof = ab.VRFProof
	_, err = verify(d, nil, "alice", b)
	wantErr(t, err, ErrMapProof)

	b = d.bundle("alice", 0)
	p, _ := vmap.ParseProof(b.MapProof)
	p.Siblings[0].Hash[0] ^= 1
	b.MapProof, _ = p.MarshalBinary()
	_, err = verify(d, nil, "alice", b)
	wantErr(t, err, ErrMapProof, vmap.ErrRootMismatch)

	b = d.bundle("alice", 0)
	b.MapProof = b.MapProof[:len(b.MapProof)-1]
	_, err = verify(d, nil, "alice", b)
	wantErr(t, err, ErrMapProof, vmap.ErrMalformedProof)

	// A present account's proof omits the map value (kind 4); the full
	// inclusion proof (kind 0) of a directory that predates it still
	// verifies, to the same result.
	b = d.bundle("alice", 0)
	if p, _ := vmap.ParseProof(b.MapProof); p.Kind != vmap.InclusionDerived {
		t.Fatalf("present account served a %s map proof", p.Kind)
	}
	derived, err := verify(d, nil, "alice", b)
	if err != nil {
		t.Fatal(err)
	}
	d.fullMapProof = true
	fb := d.bundle("alice", 0)
	d.fullMapProof = false
	if len(fb.MapProof) != len(b.MapProof)+32 {
		t.Fatalf("full map proof %d bytes, derived %d: want 32 more", len(fb.MapProof), len(b.MapProof))
	}
	full, err := verify(d, nil, "alice", fb)
	if err != nil {
		t.Fatal(err)
	}
	if full.Version != derived.Version || full.LogIndex != derived.LogIndex || full.IdentityKey != derived.IdentityKey {
		t.Fatalf("full and derived map proofs verify differently: %+v, %+v", full, derived)
	}
	b = d.bundle("alice", 0)
	// An absent account's proof is unchanged (non-inclusion); a derived
	// proof served for it claims presence and does not verify.
	cb := d.bundle("carol", 0)
	if p, _ := vmap.ParseProof(cb.MapProof); p.Kind == vmap.Inclusion || p.Kind == vmap.InclusionDerived {
		t.Fatalf("absent account served a %s map proof", p.Kind)
	}
	cb.MapProof = b.MapProof
	_, err = verify(d, nil, "carol", cb)
	wantErr(t, err, ErrPresence)
	ab = d.bundle("alice", 0)
	cb.AccountUpdate, cb.AccountUpdateIndex = ab.AccountUpdate, ab.AccountUpdateIndex
	_, err = verify(d, nil, "carol", cb)
	wantErr(t, err, ErrIndexMismatch)
}

func TestLookupAccountUpdate(t *testing.T) {
	d := world(t)
	// Present in the map, no update served (hiding the account).
	b := d.bundle("alice", 0)
	b.AccountUpdate = nil
	_, err := verify(d, nil, "alice", b)
	wantErr(t, err, ErrPresence)
	// Absent in the map, an update served.
	b = d.bundle("carol", 0)
	ab := d.bundle("alice", 0)
	b.AccountUpdate, b.AccountUpdateIndex = ab.AccountUpdate, ab.AccountUpdateIndex
	_, err = verify(d, nil, "carol", b)
	wantErr(t, err, ErrPresence)
	// A leaf that does not parse.
	b = d.bundle("alice", 0)
	b.AccountUpdate = b.AccountUpdate[:40]
	_, err = verify(d, nil, "alice", b)
	wantErr(t, err, ErrAccountUpdate)
	// The right leaf at another log index: the map value binds the index.
	// With the value derived (kind 4) the path does not lead to the root;
	// a full proof (kind 0) holds another value.
	b = d.bundle("alice", 0)
	b.AccountUpdateIndex--
	_, err = verify(d, nil, "alice", b)
	wantErr(t, err, ErrMapProof, vmap.ErrRootMismatch)
	d.fullMapProof = true
	b = d.bundle("alice", 0)
	d.fullMapProof = false
	b.AccountUpdateIndex--
	_, err = verify(d, nil, "alice", b)
	wantErr(t, err, ErrMapValue)
	// Index pointing at the epoch record.
	b = d.bundle("alice", 0)
	b.AccountUpdateIndex = d.size() - 1
	_, err = verify(d, nil, "alice", b)
	wantErr(t, err, ErrAccountUpdate)
	// Bob's leaf (valid inclusion) for alice: index confusion.
	b = d.bundle("alice", 0)
	bb := d.bundle("bob", 0)
	b.AccountUpdate, b.AccountUpdateIndex = bb.AccountUpdate, bb.AccountUpdateIndex
	_, err = verify(d, nil, "alice", b)
	wantErr(t, err, ErrIndexMismatch)
	// Alice's old v1 leaf at its real index: map value mismatch (show-then-hide / rewrite),
	// caught by the derived proof's path (kind 4) or the full proof's value (kind 0).
	b = d.bundle("alice", 0)
	h := d.history[d.index("alice")][0]
	b.AccountUpdate, b.AccountUpdateIndex = h.Leaf, h.LogIndex
	_, err = verify(d, nil, "alice", b)
	wantErr(t, err, ErrMapProof, vmap.ErrRootMismatch)
	d.fullMapProof = true
	b = d.bundle("alice", 0)
	d.fullMapProof = false
	b.AccountUpdate, b.AccountUpdateIndex = h.Leaf, h.LogIndex
	_, err = verify(d, nil, "alice", b)
	wantErr(t, err, ErrMapValue)
	// A derived proof with no AccountUpdate to derive the value from.
	b = d.bundle("alice", 0)
	b.AccountUpdate = nil
	_, err = verify(d, nil, "alice", b)
	wantErr(t, err, ErrPresence)
}

func TestLookupPayload(t *testing.T) {
	d := world(t)
	a := d.accounts["alice"]
	// A device cert whose account signing key signature is another
	// ASK's (mallory's), in a state alice's ASK signed: that state
	// signature covers the cert's bytes, signature included, so the
	// lookup rule does not verify the cert's own (docs/protocol.md §7.1)
	// and accepts; the full rule of the directory, auditors and monitor
	// refuses it (devices.ErrDeviceCert).
	evil := *a.state
	evil.Version++
	evil.PrevHash, _ = a.state.Hash()
	s, _ := devices.NewRecoverySecret(rand.Reader)
	mallory := &account{uid: "alice", ik: devices.DeriveRootKey(s)}
	mask, _ := devices.NewAccountSigningKey(mallory.ik, "alice", 1, rand.Reader, d.now)
	c := d.newDevice(a, "mallory")
	if err := mask.IssueCert(a.ik.Public(), c); err != nil { // issued by the wrong ASK
		t.Fatal(err)
	}
	evil.Devices = append(append([]*devices.DeviceCert(nil), a.state.Devices...), c)
	payload := resign(t, a, &evil)
	d.publish(entry{"alice", d.updateLeaf(a, klog.UpdateUpdate, evil.Version, payload)})
	res, err := verify(d, nil, "alice", d.bundle("alice", 0))
	if err != nil {
		t.Fatalf("lookup of a state whose signature covers a cert signed by another ASK: %v", err)
	}
	if res.State.Device(c.ID) == nil {
		t.Fatalf("lookup result lacks device %s", c.ID)
	}
	if err := devices.VerifyAccountState(res.State); !errors.Is(err, devices.ErrDeviceCert) {
		t.Fatalf("full check of the looked-up state: %v, want %v", err, devices.ErrDeviceCert)
	}

	// Key substitution: a device that back-signed for another root key
	// (mallory's), its cert signed by alice's ASK, in a state alice's ASK
	// signed. The back-signature is checked by every rule.
	d1 := world(t)
	a1 := d1.accounts["alice"]
	sub := *a1.state
	sub.Version++
	sub.PrevHash, _ = a1.state.Hash()
	dk, _ := devices.NewDeviceKey(rand.Reader)
	mc, err := dk.NewCert("mallory", mallory.ik.Public(), d1.now)
	if err != nil {
		t.Fatal(err)
	}
	if err := a1.ask.IssueCert(mallory.ik.Public(), mc); err != nil {
		t.Fatal(err)
	}
	sub.Devices = append(append([]*devices.DeviceCert(nil), a1.state.Devices...), mc)
	d1.publish(entry{"alice", d1.updateLeaf(a1, klog.UpdateUpdate, sub.Version, resign(t, a1, &sub))})
	_, err = verify(d1, nil, "alice", d1.bundle("alice", 0))
	wantErr(t, err, ErrAccountState, devices.ErrDeviceCert)
	if !strings.Contains(err.Error(), "back-signature does not verify") {
		t.Fatalf("error %q does not name the back-signature", err)
	}

	// State signature by another key.
	d2 := world(t)
	a2 := d2.accounts["alice"]
	bad := *a2.state
	bad.Version++
	bad.PrevHash, _ = a2.state.Hash()
	bad.Signature[0] ^= 1
	d2.publish(entry{"alice", d2.updateLeaf(a2, klog.UpdateUpdate, bad.Version, enc(t, &bad))})
	_, err = verify(d2, nil, "alice", d2.bundle("alice", 0))
	wantErr(t, err, ErrAccountState)

	// Bob's state under alice's index: user mismatch.
	d3 := world(t)
	a3 := d3.accounts["alice"]
	bs := *d3.accounts["bob"].state
	bs.Version = 3
	bs.PrevHash, _ = a3.state.Hash()
	d3.publish(entry{"alice", d3.updateLeaf(a3, klog.UpdateUpdate, 3, resign(t, d3.accounts["bob"], &bs))})
	_, err = verify(d3, nil, "alice", d3.bundle("alice", 0))
	wantErr(t, err, ErrUserMismatch)

	// Version mismatch: leaf v3 carrying alice's v2 state.
	d4 := world(t)
	a4 := d4.accounts["alice"]
	d4.publish(entry{"alice", d4.updateLeaf(a4, klog.UpdateUpdate, 3, enc(t, a4.state))})
	_, err = verify(d4, nil, "alice", d4.bundle("alice", 0))
	wantErr(t, err, ErrVersionMismatch)
}

func TestLookupRevokedDeviceServed(t *testing.T) {
	d := world(t)
	e, gone := d.revoke("alice")
	d.publish(e)
	if _, err := verify(d, nil, "alice", d.bundle("alice", 0)); err != nil {
		t.Fatal(err)
	}
	// Replay of the revoked device's cert next to its revocation.
	a := d.accounts["alice"]
	st := *a.state
	st.Version++
	st.PrevHash, _ = a.state.Hash()
	st.Devices = append(append([]*devices.DeviceCert(nil), st.Devices...), gone)
	d.publish(entry{"alice", d.updateLeaf(a, klog.UpdateUpdate, st.Version, resign(t, a, &st))})
	_, err := verify(d, nil, "alice", d.bundle("alice", 0))
	wantErr(t, err, ErrRevokedDevice, devices.ErrRevokedDevice)
}

func TestLookupReset(t *testing.T) {
	d := world(t)
	oldIK := d.accounts["alice"].ik.Public()
	d.publish(d.reset("alice"))
	res, err := verify(d, nil, "alice", d.bundle("alice", 0))
	if err != nil {
		t.Fatal(err)
	}
	if res.Reset == nil || len(res.Warnings) == 0 || res.IdentityKey == oldIK || res.IdentityKey != d.accounts["alice"].ik.Public() {
		t.Fatalf("reset not reported: %+v", res)
	}
	// Verified pin: the reset is a loud error.
	st := &ClientState{}
	st.Pin("alice", oldIK, true, d.now)
	_, err = verify(d, st, "alice", d.bundle("alice", 0))
	var snc *SafetyNumberChangedError
	if !errors.As(err, &snc) || !snc.Reset || snc.Old != oldIK || snc.New != res.IdentityKey {
		t.Fatalf("got %v", err)
	}
	// Reset signed by another key.
	d2 := world(t)
	_, d2.resetPriv, _ = ed25519.GenerateKey(rand.Reader)
	d2.publish(d2.reset("alice"))
	_, err = verify(d2, nil, "alice", d2.bundle("alice", 0))
	wantErr(t, err, ErrReset, devices.ErrReset)
}

func TestLookupPins(t *testing.T) {
	d := world(t)
	ik := d.accounts["alice"].ik.Public()
	other := [32]byte{1}
	b := d.bundle("alice", 0)
	st := &ClientState{}
	st.Pin("alice", ik, true, d.now)
	if res, err := verify(d, st, "alice", b); err != nil || res.Pin != PinMatchVerified {
		t.Fatalf("%v %v", err, res)
	}
	st.Pin("alice", ik, false, d.now)
	if res, err := verify(d, st, "alice", b); err != nil || res.Pin != PinMatch {
		t.Fatalf("%v %v", err, res)
	}
	st.Pin("alice", other, false, d.now)
	res, err := verify(d, st, "alice", b)
	if err != nil || res.Pin != PinChanged || res.PinnedIK != other || len(res.Warnings) != 1 {
		t.Fatalf("%v %+v", err, res)
	}
	st.Apply(res, d.now)
	if c := st.Contacts["alice"]; c.IK != ik || c.Verified {
		t.Fatalf("re-pin %+v", c)
	}
	st.Pin("alice", other, true, d.now)
	_, err = verify(d, st, "alice", b)
	wantErr(t, err, ErrSafetyNumberChanged)
	// Pinned contact proven absent.
	st.Pin("carol", other, false, d.now)
	_, err = verify(d, st, "carol", d.bundle("carol", 0))
	wantErr(t, err, ErrAccountMissing)
}

func TestLookupStateFromAnotherLog(t *testing.T) {
	d, other := world(t), world(t)
	st := &ClientState{Checkpoint: other.cp}
	_, err := verify(d, st, "alice", d.bundle("alice", 0))
	wantErr(t, err, ErrState)
}

// TestLookupResetPending: during its window a reset entry is served with
// the previous keys and a notice; a verified pin still matches.
func TestLookupResetPending(t *testing.T) {
	d := world(t)
	a := d.accounts["alice"]
	oldIK := a.ik.Public()
	prev := a.state
	e, _ := d.resetPending("alice")
	d.publish(e)
	st := &ClientState{}
	st.Pin("alice", oldIK, true, d.now)
	res, err := verify(d, st, "alice", d.bundle("alice", 0))
	if err != nil {
		t.Fatal(err)
	}
	if res.ResetPending == nil || res.Reset != nil || res.IdentityKey != oldIK || res.Pin != PinMatchVerified || len(res.Warnings) == 0 || !strings.Contains(res.Warnings[0], "RESET PENDING") {
		t.Fatalf("pending reset: %+v", res)
	}
	if len(res.State.Devices) != len(prev.Devices) || res.State.Device(prev.Devices[0].ID) == nil || res.Generation != prev.Generation() {
		t.Fatal("the previous keys are not served during the window")
	}
	// After the window (a later epoch), the reset is in effect and loud.
	d.now = d.now.Add(d.trust.ResetWindow)
	d.publish(d.create("carol"))
	_, err = verify(d, st, "alice", d.bundle("alice", 0))
	var snc *SafetyNumberChangedError
	if !errors.As(err, &snc) || !snc.Reset {
		t.Fatalf("after the window: %v", err)
	}
	// A client that requires a longer window refuses it.
	long := *d.trust
	long.ResetWindow = 2 * d.trust.ResetWindow
	_, err = VerifyLookup(&long, nil, "alice", d.bundle("alice", 0), d.now)
	wantErr(t, err, ErrResetWindow, devices.ErrResetWindow)
}

// TestLookupStaleGeneration: a contact seen at signing key generation 2 is
// never accepted at generation 1 again.
func TestLookupStaleGeneration(t *testing.T) {
	d := world(t)
	a := d.accounts["alice"]
	gen1 := a.ask
	d.publish(d.rotate("alice"))
	rot := a.state
	st := &ClientState{}
	res, err := verify(d, st, "alice", d.bundle("alice", 0))
	if err != nil || res.Generation != 2 {
		t.Fatalf("rotation: %v", err)
	}
	if err := st.Apply(res, d.now); err != nil {
		t.Fatal(err)
	}
	if c := st.contact("alice"); c.Generation != 2 {
		t.Fatalf("pinned generation %d", c.Generation)
	}
	// The rotated-out key signs a self-consistent successor.
	stale := *rot
	stale.Version, stale.PrevHash, stale.SigningKey = rot.Version+1, mustStateHash(t, rot), gen1.Cert
	stale.Trusted = nil
	stale.Devices = nil
	for _, c := range rot.Devices {
		cc := *c
		if err := gen1.IssueCert(a.ik.Public(), &cc); err != nil {
			t.Fatal(err)
		}
		stale.Devices = append(stale.Devices, &cc)
	}
	if err := stale.Sign(gen1); err != nil {
		t.Fatal(err)
	}
	a.state = &stale
	d.publish(entry{"alice", d.updateLeaf(a, klog.UpdateUpdate, stale.Version, enc(t, &stale))})
	if _, err := verify(d, nil, "alice", d.bundle("alice", 0)); err != nil {
		t.Fatalf("a lookup alone cannot tell: %v", err)
	}
	_, err = verify(d, st, "alice", d.bundle("alice", res.Checkpoint.Size))
	wantErr(t, err, ErrStaleSigningKey)
}

func mustStateHash(t *testing.T, s *devices.AccountState) [32]byte {
	t.Helper()
	h, err := s.Hash()
	if err != nil {
		t.Fatal(err)
	}
	return h
}
