package directory

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/keyline/keyline/devices"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/vmap"
)

// testAccount is a client-side account: its identity key, its devices and
// its latest state.
type testAccount struct {
	uid   string
	ik    *devices.RootKey           // root key (a real device never keeps it)
	ask   *devices.AccountSigningKey // current account signing key
	state *devices.AccountState
}

// newKeys returns a fresh root key and its generation-1 signing key for uid.
func newKeys(t testing.TB, uid string) (*devices.RootKey, *devices.AccountSigningKey) {
	t.Helper()
	rk := devices.DeriveRootKey(devices.RecoverySecret(randSeed(t)))
	ask, err := devices.NewAccountSigningKey(rk, uid, 1, rand.Reader, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return rk, ask
}

// resetStateFor returns the state a reset of prev to fresh keys installs,
// with one device named name.
func resetStateFor(t testing.TB, prev *devices.AccountState, name string) *devices.AccountState {
	t.Helper()
	rk, ask := newKeys(t, prev.UserID)
	dk, err := devices.NewDeviceKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c, err := dk.NewCert(name, rk.Public(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rs, err := devices.NewResetState(prev, rk.Public(), ask, c, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func newTestAccount(t testing.TB, uid string) *testAccount {
	t.Helper()
	ik, ask := newKeys(t, uid)
	dk, err := devices.NewDeviceKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c, err := dk.NewCert("phone", ik.Public(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st, err := devices.NewAccount(ask, ik.Public(), uid, c, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &testAccount{uid: uid, ik: ik, ask: ask, state: st}
}

func randSeed(t testing.TB) [32]byte {
	var s [32]byte
	if _, err := rand.Read(s[:]); err != nil {
		t.Fatal(err)
	}
	return s
}

func (a *testAccount) bytes(t testing.TB) []byte {
	t.Helper()
	b, err := a.state.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// addDevice returns the next state with a new device (not yet applied).
func (a *testAccount) addDevice(t testing.TB, name string) *devices.AccountState {
	t.Helper()
	dk, err := devices.NewDeviceKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c, err := dk.NewCert(name, a.ik.Public(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	next, err := devices.AddDevice(a.state, a.ask, c, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return next
}

func mustMarshal(t testing.TB, s *devices.AccountState) []byte {
	t.Helper()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// verified is what a fully verified lookup established.
type verified struct {
	cp      *verifier.VerifiedCheckpoint
	epoch   *klog.EpochRecord
	found   bool
	update  *klog.AccountUpdate
	state   *devices.AccountState
	version uint64
}

// fullBundle returns uid's lookup bundle as a client holding a checkpoint
// of size known, but not its EpochRecord, gets it (verifier.Client does the
// same): asked with the known size; if that is a held bundle (the served
// size is known), asked again with known size 0, plus the consistency
// proof from known if the served checkpoint grew in between.
func fullBundle(t testing.TB, s *Server, uid string, known uint64) *verifier.LookupBundle {
	t.Helper()
	ctx := context.Background()
	b, err := s.Lookup(ctx, uid, known)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Held() {
		return b
	}
	if b, err = s.Lookup(ctx, uid, 0); err != nil {
		t.Fatal(err)
	}
	i := bytes.LastIndex(b.Checkpoint, []byte("\n\n"))
	c, err := klog.ParseCheckpoint(b.Checkpoint[:i+1])
	if err != nil {
		t.Fatal(err)
	}
	if c.Size > known {
		if b.Consistency, err = s.ConsistencyProof(ctx, known, c.Size); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// verifyLookup checks a lookup bundle the way a client must: checkpoint
// signature, EpochRecord as the last leaf, VRF proof and index, map proof
// under the epoch's root, the AccountUpdate's log index and map value, the
// AccountState's signatures, and the consistency proof from knownSize. b
// must be a full bundle (knownSize below the served size).
func verifyLookup(trust *verifier.Trust, uid string, b *verifier.LookupBundle, knownSize uint64, knownRoot []byte) (*verified, error) {
	cp, err := trust.OpenCheckpoint(b.Checkpoint)
	if err != nil {
		return nil, err
	}
	v := &verified{cp: cp}
	if cp.Size == 0 {
		return nil, fmt.Errorf("empty checkpoint")
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, cp.Size-1, cp.Size, rfc6962.DefaultHasher.HashLeaf(b.EpochRecord), b.EpochRecordInclusion, cp.Hash[:]); err != nil {
		return nil, fmt.Errorf("epoch record inclusion: %w", err)
	}
	if v.epoch, err = klog.ParseEpochRecord(b.EpochRecord); err != nil {
		return nil, err
	}
	index, err := trust.VRF.VerifyIndex([]byte(uid), b.VRFProof)
	if err != nil {
		return nil, fmt.Errorf("vrf: %w", err)
	}
	mp, err := vmap.ParseProof(b.MapProof)
	if err != nil {
		return nil, err
	}
	// A present account's proof omits the value (vmap.InclusionDerived):
	// its path is checked below with the value the AccountUpdate implies.
	derived := mp.Kind == vmap.InclusionDerived
	var value vmap.Value
	found := derived
	if !derived {
		if value, found, err = vmap.Verify(v.epoch.MapRoot, index, mp); err != nil {
			return nil, fmt.Errorf("map proof: %w", err)
		}
	}
	v.found = found
	if knownSize != 0 {
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, knownSize, cp.Size, b.Consistency, knownRoot, cp.Hash[:]); err != nil {
			return nil, fmt.Errorf("consistency: %w", err)
		}
	}
	if !found {
		if b.AccountUpdate != nil {
			return nil, fmt.Errorf("absent user with an AccountUpdate")
		}
		return v, nil
	}
	if b.AccountUpdateIndex >= cp.Size-1 {
		return nil, fmt.Errorf("account update index %d is not before the epoch record", b.AccountUpdateIndex)
	}
	u, err := klog.ParseAccountUpdate(b.AccountUpdate)
	if err != nil {
		return nil, err
	}
	if u.Index != index {
		return nil, fmt.Errorf("account update for another index")
	}
	want := vmap.MapValue(u.Version, b.AccountUpdateIndex, klog.EntryHash(b.AccountUpdate))
	if derived {
		if err := vmap.VerifyDerived(v.epoch.MapRoot, index, mp, want); err != nil {
			return nil, fmt.Errorf("map proof with the account update's value: %w", err)
		}
	} else if want != value {
		return nil, fmt.Errorf("map value does not match the account update")
	}
	v.update, v.version = u, u.Version
	if u.Update == klog.UpdateReset {
		a, err := devices.ParseResetAuthorization(u.Payload)
		if err != nil {
			return nil, err
		}
		v.state = a.NewState // the reset signature needs the previous state: see TestEndToEnd
	} else if v.state, err = devices.ParseAccountState(u.Payload); err != nil {
		return nil, err
	}
	if v.state.UserID != uid || v.state.Version != u.Version {
		return nil, fmt.Errorf("state is %s v%d, want %s v%d", v.state.UserID, v.state.Version, uid, u.Version)
	}
	if err := devices.VerifyAccountState(v.state); err != nil {
		return nil, err
	}
	return v, nil
}

func trustOf(t testing.TB, s *Server) *verifier.Trust {
	t.Helper()
	tr, err := s.Trust().Trust()
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func openTest(t testing.TB, dir string, mod func(*Config)) *Server {
	t.Helper()
	cfg := Config{DataDir: dir, EpochInterval: 10 * time.Millisecond, NoSync: true}
	if mod != nil {
		mod(&cfg)
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustLookup(t testing.TB, s verifier.Source, trust *verifier.Trust, uid string) *verified {
	t.Helper()
	b, err := s.Lookup(context.Background(), uid, 0)
	if err != nil {
		t.Fatalf("Lookup(%q): %v", uid, err)
	}
	norm, err := devices.NormalizeUserID(uid)
	if err != nil {
		t.Fatal(err)
	}
	v, err := verifyLookup(trust, norm, b, 0, nil)
	if err != nil {
		t.Fatalf("Lookup(%q) does not verify: %v", uid, err)
	}
	return v
}

func verifyInclusion(index, size uint64, leaf []byte, p [][]byte, root []byte) error {
	return proof.VerifyInclusion(rfc6962.DefaultHasher, index, size, rfc6962.DefaultHasher.HashLeaf(leaf), p, root)
}
