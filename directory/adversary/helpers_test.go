package adversary

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/auditor"
	"github.com/keyline/keyline/verifier/cosign"
	"github.com/keyline/keyline/verifier/witness"
)

// env is an honest directory, the adversary holding its keys, and the
// Source (initially honest) that every verifier in a test talks to.
type env struct {
	t     *testing.T
	ctx   context.Context
	dir   string
	cfg   directory.Config
	srv   *directory.Server
	keys  *Keys
	trust *verifier.Trust
	src   *Source
	users map[string]*user
}

// user is an honest user with real device keys.
type user struct {
	uid   string
	ik    *ikeys
	devs  []*devices.DeviceKey
	state *devices.AccountState
	leaf  []byte // latest AccountUpdate leaf
}

// resetWindow is the reset window of the test directories.
const resetWindow = 2 * time.Second

func newEnv(t *testing.T, tweak func(*directory.Config)) *env {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "honest")
	cfg := directory.Config{
		DataDir:            dir,
		EpochInterval:      10 * time.Millisecond,
		EmptyEpochInterval: time.Hour,
		MaxCheckpointAge:   "2h", // must exceed EmptyEpochInterval (directory.Config)
		ResetWindow:        resetWindow,
		NoSync:             true,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	srv, err := directory.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	trust, err := srv.Trust().Trust()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := LoadKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ctx: context.Background(), dir: dir, cfg: cfg, srv: srv, keys: keys, trust: trust,
		src: NewSource(srv.Source()), users: map[string]*user{}}
}

// ikeys are an account's root key and current account signing key (a
// test keeps both; a real device never holds the root key).
type ikeys struct {
	rk  *devices.RootKey
	ask *devices.AccountSigningKey
}

// Public returns the root public key.
func (k *ikeys) Public() [32]byte { return k.rk.Public() }

func newDevice(t *testing.T, ik *ikeys, name string) (*devices.DeviceKey, *devices.DeviceCert) {
	t.Helper()
	dk, err := devices.NewDeviceKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c, err := dk.NewCert(name, ik.Public(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := ik.ask.IssueCert(ik.Public(), c); err != nil {
		t.Fatal(err)
	}
	return dk, c
}

// newIK returns fresh keys for uid: a root key and its generation-1 ASK.
func newIK(t *testing.T, uid string) *ikeys {
	t.Helper()
	var s devices.RecoverySecret
	if _, err := rand.Read(s[:]); err != nil {
		t.Fatal(err)
	}
	k := &ikeys{rk: devices.DeriveRootKey(s)}
	var err error
	if k.ask, err = devices.NewAccountSigningKey(k.rk, uid, 1, rand.Reader, time.Now()); err != nil {
		t.Fatal(err)
	}
	return k
}

// rotate certifies the next ASK generation of u's root key.
func (k *ikeys) rotate(t *testing.T) *devices.AccountSigningKey {
	t.Helper()
	ask, err := devices.NewAccountSigningKey(k.rk, k.ask.Cert.UserID, k.ask.Generation()+1, rand.Reader, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ask
}

func marshal(t *testing.T, s *devices.AccountState) []byte {
	t.Helper()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// create publishes a new honest account with one device.
func (e *env) create(uid string) *user {
	e.t.Helper()
	ik := newIK(e.t, uid)
	dk, c := newDevice(e.t, ik, "phone")
	st, err := devices.NewAccount(ik.ask, ik.Public(), uid, c, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	u := &user{uid: uid, ik: ik, devs: []*devices.DeviceKey{dk}}
	e.publish(u, st)
	e.users[uid] = u
	return u
}

func (e *env) publish(u *user, st *devices.AccountState) {
	e.t.Helper()
	r, err := e.srv.Update(e.ctx, marshal(e.t, st))
	if err != nil {
		e.t.Fatal(err)
	}
	u.state, u.leaf = st, r.Leaf
}

// addDevice returns u's next state with a new device (not published).
func (e *env) addDevice(u *user, name string) *devices.AccountState {
	e.t.Helper()
	dk, c := newDevice(e.t, u.ik, name)
	next, err := devices.AddDevice(u.state, u.ik.ask, c, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	u.devs = append(u.devs, dk)
	return next
}

func (e *env) size() uint64 {
	e.t.Helper()
	n, err := e.srv.Checkpoint(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	c, _, err := klog.OpenCheckpoint(n, e.keys.LogVerifier, e.keys.Origin)
	if err != nil {
		e.t.Fatal(err)
	}
	return c.Size
}

// serveForged forges the honest log plus leaf, closes an epoch over it and
// makes the clients' source serve the forgery (the caller restores
// e.src.SetMode(Honest)). It returns the forgery.
func (e *env) serveForged(t *testing.T, leaf []byte) *Forgery {
	t.Helper()
	f := e.forge(0)
	if _, err := f.AppendUpdate(e.ctx, leaf, true); err != nil {
		t.Fatal(err)
	}
	if _, err := f.CloseEpoch(e.ctx, EpochOptions{}); err != nil {
		t.Fatal(err)
	}
	e.src.ServeOther(f)
	return f
}

// forge copies the honest log's first size leaves (0: all) into a Forgery.
func (e *env) forge(size uint64) *Forgery {
	e.t.Helper()
	if size == 0 {
		size = e.size()
	}
	f, err := NewForgery(e.ctx, e.keys, e.t.TempDir(), e.srv.Source(), size)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { f.Close() })
	return f
}

// client is a fresh client of e.src with its own state file.
func (e *env) client(t *verifier.Trust) *verifier.Client {
	if t == nil {
		t = e.trust
	}
	return verifier.NewClient(t, filepath.Join(e.t.TempDir(), "state.json"), e.src)
}

// auditor is a fresh auditor of e.src.
func (e *env) auditor() *auditor.Auditor {
	e.t.Helper()
	a, err := auditor.Open(e.t.TempDir(), e.trust, e.src, &auditor.Options{NoSync: true})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { a.Close() })
	return a
}

// auditHonest checks that an auditor accepts the honest log as served now
// (the auditor is not vacuous).
func (e *env) auditHonest(a *auditor.Auditor) *auditor.Status {
	e.t.Helper()
	st, err := a.Run(e.ctx, nil)
	if err != nil {
		e.t.Fatalf("auditor rejects the honest directory: %v", err)
	}
	return st
}

// expectViolation checks that err is an auditor violation of rule, that its
// evidence verifies offline, and that tampered evidence does not.
func expectViolation(t *testing.T, trust *verifier.Trust, err error, rule auditor.Rule) *auditor.Finding {
	t.Helper()
	var v *auditor.Violation
	if !errors.As(err, &v) {
		t.Fatalf("auditor: got %v, want a %s violation", err, rule)
	}
	if v.Rule != rule || !errors.Is(err, rule) {
		t.Fatalf("auditor: rule %s (%s), want %s", v.Rule, v.Detail, rule)
	}
	f, err := auditor.VerifyEvidence(trust, v.Evidence)
	if err != nil {
		t.Fatalf("evidence of %s does not verify: %v", rule, err)
	}
	if f.Rule != rule {
		t.Fatalf("evidence establishes %s, want %s", f.Rule, rule)
	}
	// Tampered evidence must not verify.
	ev, err := auditor.ParseEvidence(v.Evidence)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.Segments) > 0 && len(ev.Segments[0].Leaves) > 0 {
		l := ev.Segments[0].Leaves
		l[len(l)-1][len(l[len(l)-1])-1] ^= 1
	} else {
		// Change the root hash line of a signed checkpoint.
		c := ev.Checkpoints[len(ev.Checkpoints)-1]
		l1 := bytes.IndexByte(c, '\n')
		l2 := l1 + 1 + bytes.IndexByte(c[l1+1:], '\n')
		if c[l2+1] == 'A' {
			c[l2+1] = 'B'
		} else {
			c[l2+1] = 'A'
		}
	}
	bad, err := ev.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auditor.VerifyEvidence(trust, bad); !errors.Is(err, auditor.ErrBadEvidence) {
		t.Fatalf("tampered %s evidence: got %v, want ErrBadEvidence", rule, err)
	}
	// Evidence checked against another directory's keys does not verify.
	other := *trust
	_, vk, _ := klog.GenerateKey(rand.Reader, trust.Origin)
	if other.Log, err = note.NewVerifier(vk); err != nil {
		t.Fatal(err)
	}
	if _, err := auditor.VerifyEvidence(&other, v.Evidence); !errors.Is(err, auditor.ErrBadEvidence) {
		t.Fatalf("%s evidence verified under another log key: %v", rule, err)
	}
	return f
}

// updateLeaf returns the canonical AccountUpdate leaf.
func updateLeaf(t *testing.T, idx [32]byte, version uint64, prev [32]byte, kind klog.UpdateKind, payload []byte) []byte {
	t.Helper()
	b, err := (&klog.AccountUpdate{Index: idx, Version: version, PrevHash: prev, Update: kind, Payload: payload}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// index returns uid's VRF index, computed with the stolen VRF key.
func (e *env) index(uid string) [32]byte {
	e.t.Helper()
	idx, _, err := (&Forgery{Keys: e.keys}).Index(uid)
	if err != nil {
		e.t.Fatal(err)
	}
	return idx
}

// waitResetWindow sleeps past the reset window and publishes another
// account, so that the latest epoch is after every reset's window.
func (e *env) waitResetWindow() {
	e.t.Helper()
	time.Sleep(resetWindow + 1100*time.Millisecond)
	var b [8]byte
	rand.Read(b[:])
	e.create(fmt.Sprintf("filler-%x", b))
}

// resetPayload returns a reset authorization signed with key replacing
// prev by a state of a new (attacker's) identity key.
func resetPayload(t *testing.T, key ed25519.PrivateKey, prev *devices.AccountState) ([]byte, *devices.AccountState) {
	t.Helper()
	nik := newIK(t, prev.UserID)
	_, c := newDevice(t, nik, "attacker")
	ns, err := devices.NewResetState(prev, nik.Public(), nik.ask, c, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a, err := devices.SignReset(key, prev, ns, devices.ResetLostAllKeys, time.Now(), resetWindow)
	if err != nil {
		t.Fatal(err)
	}
	b, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b, ns
}

// sortDevices sorts certs by device id, as the encoding requires.
func sortDevices(ds []*devices.DeviceCert) {
	slices.SortFunc(ds, func(a, b *devices.DeviceCert) int { return bytes.Compare(a.ID[:], b.ID[:]) })
}

// witnessEnv is a real C2SP witness (verifier/witness over HTTP) whose
// auditor replays the honest directory.
type witnessEnv struct {
	url   string
	name  string
	vkey  string
	ver   *cosign.Verifier
	size  uint64
	trust *verifier.Trust // e.trust with this witness and quorum 1
}

func (e *env) newWitness(name string) *witnessEnv {
	e.t.Helper()
	skey, vkey, err := cosign.GenerateKey(name)
	if err != nil {
		e.t.Fatal(err)
	}
	signer, err := cosign.NewSignerFromSkey(skey, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	lg, err := witness.LogFromVkey(e.srv.Trust().LogKey)
	if err != nil {
		e.t.Fatal(err)
	}
	store, err := witness.OpenBoltStore(filepath.Join(e.t.TempDir(), "witness.db"))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { store.Close() })
	// The witness' auditor replays the honest directory directly.
	aud, err := auditor.Open(e.t.TempDir(), e.trust, e.srv.Source(), &auditor.Options{NoSync: true})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { aud.Close() })
	w, err := witness.New(witness.Config{Signer: signer, Logs: []witness.Log{lg}, Store: store, Auditor: aud})
	if err != nil {
		e.t.Fatal(err)
	}
	hs := httptest.NewServer(w)
	e.t.Cleanup(hs.Close)
	ver, err := cosign.NewVerifierFromVkey(vkey)
	if err != nil {
		e.t.Fatal(err)
	}
	tr := *e.trust
	tr.Witnesses = []*cosign.Verifier{ver}
	tr.Quorum = 1
	return &witnessEnv{url: hs.URL, name: name, vkey: vkey, ver: ver, trust: &tr}
}

// cosignHonest has the witness cosign the honest directory's latest
// checkpoint and makes e.src attach the cosignature.
func (e *env) cosignHonest(w *witnessEnv) []byte {
	e.t.Helper()
	n, err := e.srv.Checkpoint(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	c, _, err := klog.OpenCheckpoint(n, e.keys.LogVerifier, e.keys.Origin)
	if err != nil {
		e.t.Fatal(err)
	}
	proof, err := e.srv.ConsistencyProof(e.ctx, w.size, c.Size)
	if err != nil {
		e.t.Fatal(err)
	}
	lines, err := witness.AddCheckpoint(e.ctx, nil, w.url, w.size, proof, n)
	if err != nil {
		e.t.Fatalf("witness refuses the honest checkpoint %d: %v", c.Size, err)
	}
	w.size = c.Size
	e.src.Cosign(n, lines)
	return n
}

// noteText returns the signed text of a note (its first part).
func noteText(n []byte) []byte {
	i := bytes.Index(n, []byte("\n\n"))
	return n[:i+1]
}

// sigLines returns the signature lines signer makes over note n's text.
func sigLines(t *testing.T, n []byte, s note.Signer) []byte {
	t.Helper()
	text := noteText(n)
	signed, err := note.Sign(&note.Note{Text: string(text)}, s)
	if err != nil {
		t.Fatal(err)
	}
	return signed[len(text)+1:]
}
