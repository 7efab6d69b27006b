package verifier

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/keyline/keyline/devices"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/log/embedded"
	"github.com/keyline/keyline/verifier/cosign"
	"github.com/keyline/keyline/verifier/vmap"
	"github.com/keyline/keyline/verifier/vrf"
)

// testOrigin is the log origin of the test directory.
const testOrigin = "keyline.test/dir"

// account is a test user's keys and latest state.
type account struct {
	uid    string
	ik     *devices.RootKey           // RK (kept by the test; a real device never holds it)
	ask    *devices.AccountSigningKey // current ASK
	devs   []*devices.DeviceKey
	state  *devices.AccountState
	reset  *devices.ResetAuthorization // the last reset published, if any
	leaf   []byte                      // latest AccountUpdate leaf
	logIdx uint64
}

// testDir is a small but real directory: an embedded log, a vmap.MemStore
// map, a VRF key, a reset key and two witnesses. It implements Source.
type testDir struct {
	t         testing.TB
	log       *embedded.Log
	logSigner note.Signer
	logVkey   string
	vrfKey    *vrf.PrivateKey
	resetPriv ed25519.PrivateKey
	witnesses []*cosign.Signer
	wvkeys    []string
	trust     *Trust
	m         *vmap.MemStore
	epoch     uint64
	now       time.Time
	cp        []byte // latest signed checkpoint
	accounts  map[string]*account
	// history maps an index to its entries (log index, leaf) in order.
	history map[[32]byte][]HistoryEntry
	// cosign is how many witnesses cosign each checkpoint.
	cosign int
	// full: Lookup never omits the checkpoint (a directory that predates
	// held-checkpoint bundles).
	full bool
	// fullMapProof: Lookup serves a present account's map proof with its
	// value (vmap.Inclusion, a directory that predates derived-value
	// proofs) instead of without (vmap.InclusionDerived).
	fullMapProof bool
	// trustFile is the trust configuration as a file.
	trustFile TrustFile
}

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func newTestDir(t testing.TB) *testDir {
	t.Helper()
	lg, err := embedded.Open(filepath.Join(t.TempDir(), "log.db"), &embedded.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	skey, vkey, err := klog.GenerateKey(rand.Reader, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	vk, err := vrf.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rpub, rpriv, _ := ed25519.GenerateKey(rand.Reader)
	d := &testDir{t: t, log: lg, logSigner: signer, logVkey: vkey, vrfKey: vk, resetPriv: rpriv,
		m: vmap.NewMemStore(), now: t0, accounts: map[string]*account{}, history: map[[32]byte][]HistoryEntry{}, cosign: 2}
	for i := 0; i < 2; i++ {
		_, wpriv, _ := ed25519.GenerateKey(rand.Reader)
		s, err := cosign.NewSigner(fmt.Sprintf("witness%d.test", i), wpriv, func() time.Time { return d.now })
		if err != nil {
			t.Fatal(err)
		}
		_, wv, _ := cosign.EncodeKeys(s.Name(), wpriv)
		d.witnesses = append(d.witnesses, s)
		d.wvkeys = append(d.wvkeys, wv)
	}
	tf := TrustFile{Origin: testOrigin, LogKey: vkey, VRFKey: base64.StdEncoding.EncodeToString(vk.Public().Bytes()),
		ResetKey: base64.StdEncoding.EncodeToString(rpub), Witnesses: d.wvkeys, WitnessQuorum: 2, MaxCheckpointAge: "1h", ResetWindow: "10m"}
	d.trustFile = tf
	if d.trust, err = tf.Trust(); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *testDir) index(uid string) [32]byte {
	beta, _ := d.vrfKey.Prove([]byte(uid))
	return vrf.Index(beta)
}

// entry is one AccountUpdate leaf to publish for a user.
type entry struct {
	uid  string
	leaf []byte
}

// publish appends entries and an EpochRecord, updates the map and signs a
// checkpoint cosigned by d.cosign witnesses.
func (d *testDir) publish(es ...entry) {
	t := d.t
	t.Helper()
	ctx := context.Background()
	size, err := d.log.Size(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var leaves [][]byte
	var ups []vmap.Update
	for i, e := range es {
		up, err := klog.ParseAccountUpdate(e.leaf)
		if err != nil {
			t.Fatal(err)
		}
		li := size + uint64(i)
		leaves = append(leaves, e.leaf)
		ups = append(ups, vmap.Update{Index: up.Index, Value: vmap.MapValue(up.Version, li, klog.EntryHash(e.leaf))})
		d.history[up.Index] = append(d.history[up.Index], HistoryEntry{LogIndex: li, Leaf: e.leaf})
		if a := d.accounts[e.uid]; a != nil {
			a.leaf, a.logIdx = e.leaf, li
		}
	}
	root, err := vmap.Apply(d.m, ups)
	if err != nil {
		t.Fatal(err)
	}
	d.epoch++
	er := &klog.EpochRecord{Epoch: d.epoch, MapRoot: root, Timestamp: uint64(d.now.Unix())}
	erLeaf, _ := er.Marshal()
	leaves = append(leaves, erLeaf)
	if err := d.log.Append(ctx, size, leaves); err != nil {
		t.Fatal(err)
	}
	d.cp = d.sign(size + uint64(len(leaves)))
}

// sign signs the checkpoint of the first size leaves.
func (d *testDir) sign(size uint64) []byte {
	d.t.Helper()
	root, err := d.log.RootHash(context.Background(), size)
	if err != nil {
		d.t.Fatal(err)
	}
	c := klog.Checkpoint{Origin: testOrigin, Size: size}
	copy(c.Hash[:], root)
	return d.signCheckpoint(c)
}

func (d *testDir) signCheckpoint(c klog.Checkpoint) []byte {
	text, err := c.Marshal()
	if err != nil {
		d.t.Fatal(err)
	}
	signers := []note.Signer{d.logSigner}
	for _, w := range d.witnesses[:d.cosign] {
		signers = append(signers, w)
	}
	n, err := note.Sign(&note.Note{Text: string(text)}, signers...)
	if err != nil {
		d.t.Fatal(err)
	}
	return n
}

func (d *testDir) newDevice(a *account, name string) *devices.DeviceCert {
	d.t.Helper()
	dk, err := devices.NewDeviceKey(rand.Reader)
	if err != nil {
		d.t.Fatal(err)
	}
	c, err := dk.NewCert(name, a.ik.Public(), d.now)
	if err != nil {
		d.t.Fatal(err)
	}
	a.devs = append(a.devs, dk)
	return c
}

// updateLeaf returns the AccountUpdate leaf for a's next state s.
func (d *testDir) updateLeaf(a *account, kind klog.UpdateKind, version uint64, payload []byte) []byte {
	d.t.Helper()
	u := &klog.AccountUpdate{Index: d.index(a.uid), Version: version, Update: kind, Payload: payload}
	if version > 1 {
		u.PrevHash = klog.EntryHash(a.leaf)
	}
	b, err := u.Marshal()
	if err != nil {
		d.t.Fatal(err)
	}
	return b
}

func enc(t testing.TB, m interface{ MarshalBinary() ([]byte, error) }) []byte {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// create makes a new account with one device and returns its entry.
func (d *testDir) create(uid string) entry {
	t := d.t
	t.Helper()
	s, err := devices.NewRecoverySecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a := &account{uid: uid, ik: devices.DeriveRootKey(s)}
	if a.ask, err = devices.NewAccountSigningKey(a.ik, uid, 1, rand.Reader, d.now); err != nil {
		t.Fatal(err)
	}
	c := d.newDevice(a, uid+"-phone")
	st, err := devices.NewAccount(a.ask, a.ik.Public(), uid, c, d.now)
	if err != nil {
		t.Fatal(err)
	}
	a.state = st
	d.accounts[uid] = a
	return entry{uid, d.updateLeaf(a, klog.UpdateCreate, 1, enc(t, st))}
}

// addDevice adds a device signed by the account's IK.
func (d *testDir) addDevice(uid, name string) entry {
	t := d.t
	t.Helper()
	a := d.accounts[uid]
	c := d.newDevice(a, name)
	st, err := devices.AddDevice(a.state, a.ask, c, d.now)
	if err != nil {
		t.Fatal(err)
	}
	a.state = st
	return entry{uid, d.updateLeaf(a, klog.UpdateUpdate, st.Version, enc(t, st))}
}

// rotate rotates the account's signing key to the next generation, as a
// compromise of a trusted device would (keeping only its first device).
func (d *testDir) rotate(uid string) entry {
	t := d.t
	t.Helper()
	a := d.accounts[uid]
	next, err := devices.NewAccountSigningKey(a.ik, uid, a.ask.Generation()+1, rand.Reader, d.now)
	if err != nil {
		t.Fatal(err)
	}
	st, err := devices.Rotate(a.state, next, devices.Rotation{Keep: []devices.DeviceID{a.state.Devices[0].ID}, Reason: devices.ReasonCompromised}, d.now)
	if err != nil {
		t.Fatal(err)
	}
	a.ask, a.state = next, st
	return entry{uid, d.updateLeaf(a, klog.UpdateUpdate, st.Version, enc(t, st))}
}

// revoke revokes the account's first device.
func (d *testDir) revoke(uid string) (entry, *devices.DeviceCert) {
	t := d.t
	t.Helper()
	a := d.accounts[uid]
	gone := a.state.Devices[0]
	st, err := devices.RevokeDevices(a.state, a.ask, []devices.DeviceID{gone.ID}, devices.ReasonLost, d.now)
	if err != nil {
		t.Fatal(err)
	}
	a.state = st
	return entry{uid, d.updateLeaf(a, klog.UpdateUpdate, st.Version, enc(t, st))}, gone
}

// reset replaces the account's RK by a directory reset logged now, and
// advances the clock past its window, so the epoch that publishes it
// already has it in effect.
func (d *testDir) reset(uid string) entry {
	e, _ := d.resetPending(uid)
	d.now = d.now.Add(d.trust.ResetWindow)
	return e
}

// resetPending replaces the account's RK by a directory reset logged now,
// pending for the trust's window. The account's previous keys are
// returned so the test can cancel it.
func (d *testDir) resetPending(uid string) (entry, *account) {
	t := d.t
	t.Helper()
	a := d.accounts[uid]
	old := *a
	prev := a.state
	s, _ := devices.NewRecoverySecret(rand.Reader)
	a.ik = devices.DeriveRootKey(s)
	var err error
	if a.ask, err = devices.NewAccountSigningKey(a.ik, uid, 1, rand.Reader, d.now); err != nil {
		t.Fatal(err)
	}
	c := d.newDevice(a, uid+"-new-phone")
	ns, err := devices.NewResetState(prev, a.ik.Public(), a.ask, c, d.now)
	if err != nil {
		t.Fatal(err)
	}
	ra, err := devices.SignReset(d.resetPriv, prev, ns, devices.ResetLostAllKeys, d.now, d.trust.ResetWindow)
	if err != nil {
		t.Fatal(err)
	}
	a.state = ns
	a.reset = ra
	return entry{uid, d.updateLeaf(a, klog.UpdateReset, ns.Version, enc(t, ra))}, &old
}

// resign re-signs a modified state with the account's IK (devices sorted).
func resign(t testing.TB, a *account, st *devices.AccountState) []byte {
	t.Helper()
	sort.Slice(st.Devices, func(i, j int) bool { return bytes.Compare(st.Devices[i].ID[:], st.Devices[j].ID[:]) < 0 })
	if err := st.Sign(a.ask); err != nil {
		t.Fatal(err)
	}
	return enc(t, st)
}

// Source implementation.

func (d *testDir) size() uint64 {
	n, err := d.log.Size(context.Background())
	if err != nil {
		d.t.Fatal(err)
	}
	return n
}

func (d *testDir) Lookup(ctx context.Context, uid string, knownSize uint64) (*LookupBundle, error) {
	size := d.size()
	beta, pi := d.vrfKey.Prove([]byte(uid))
	idx := vrf.Index(beta)
	p, err := vmap.Prove(d.m, idx)
	if err != nil {
		return nil, err
	}
	if p.Kind == vmap.Inclusion && !d.fullMapProof {
		if p, err = p.WithoutValue(); err != nil {
			return nil, err
		}
	}
	b := &LookupBundle{VRFProof: pi, MapProof: enc(d.t, p)}
	if h := d.history[idx]; len(h) > 0 {
		last := h[len(h)-1]
		b.AccountUpdate, b.AccountUpdateIndex = last.Leaf, last.LogIndex
	}
	if knownSize == size && !d.full {
		return b, nil // held-checkpoint bundle
	}
	b.Checkpoint = d.cp
	ers, err := d.log.Entries(ctx, size-1, size)
	if err != nil {
		return nil, err
	}
	b.EpochRecord = ers[0]
	if b.EpochRecordInclusion, err = d.log.InclusionProof(ctx, size-1, size); err != nil {
		return nil, err
	}
	if knownSize > 0 && knownSize < size {
		if b.Consistency, err = d.log.ConsistencyProof(ctx, knownSize, size); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func (d *testDir) History(ctx context.Context, uid string, from uint64) (*HistoryBundle, error) {
	size := d.size()
	beta, pi := d.vrfKey.Prove([]byte(uid))
	hb := &HistoryBundle{Checkpoint: d.cp, VRFProof: pi}
	for _, e := range d.history[vrf.Index(beta)] {
		up, _ := klog.ParseAccountUpdate(e.Leaf)
		if up.Version < from {
			continue
		}
		p, err := d.log.InclusionProof(ctx, e.LogIndex, size)
		if err != nil {
			return nil, err
		}
		hb.Entries = append(hb.Entries, HistoryEntry{LogIndex: e.LogIndex, Leaf: e.Leaf, Inclusion: p})
	}
	return hb, nil
}

func (d *testDir) Checkpoint(context.Context) ([]byte, error) { return d.cp, nil }

func (d *testDir) ConsistencyProof(ctx context.Context, a, b uint64) ([][]byte, error) {
	return d.log.ConsistencyProof(ctx, a, b)
}

func (d *testDir) Entries(ctx context.Context, start, end uint64) ([][]byte, error) {
	return d.log.Entries(ctx, start, end)
}

var _ Source = (*testDir)(nil)

func (d *testDir) bundle(uid string, known uint64) *LookupBundle {
	d.t.Helper()
	b, err := d.Lookup(context.Background(), uid, known)
	if err != nil {
		d.t.Fatal(err)
	}
	return b
}
