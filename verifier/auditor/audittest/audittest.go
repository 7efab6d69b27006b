// Package audittest builds real Keyline logs in memory for tests: an
// RFC 6962 log that signs C2SP checkpoints and serves them as a
// verifier.Source, and an honest directory that appends real AccountUpdates
// (devices keys and signatures), EpochRecords with real vmap roots, and lets
// tests append anything else to craft attacks.
package audittest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/keyline/keyline/devices"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/auditor/internal/mtree"
	"github.com/keyline/keyline/verifier/vmap"
	"github.com/keyline/keyline/verifier/vrf"
	"github.com/transparency-dev/merkle/rfc6962"
)

// ErrNotImplemented is returned by the Source methods a Log does not serve.
var ErrNotImplemented = errors.New("audittest: not implemented")

// Log is an in-memory RFC 6962 log with a note signing key. It implements
// verifier.Source for Checkpoint, ConsistencyProof and Entries. Safe for
// concurrent use.
type Log struct {
	Origin   string
	SKey     string
	VKey     string
	signer   note.Signer
	verifier note.Verifier

	mu     sync.Mutex
	leaves [][]byte
	tree   *mtree.Mem
	served []byte
	// MaxEntries, if non-zero, bounds how many leaves Entries returns.
	MaxEntries int
}

// NewLog returns an empty log with a log key derived from rnd.
func NewLog(origin string, rnd io.Reader) (*Log, error) {
	skey, vkey, err := klog.GenerateKey(rnd, origin)
	if err != nil {
		return nil, err
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, err
	}
	t, _ := mtree.NewMem(nil)
	return &Log{Origin: origin, SKey: skey, VKey: vkey, signer: s, verifier: v, tree: t}, nil
}

// Verifier returns the log's note verifier.
func (l *Log) Verifier() note.Verifier { return l.verifier }

// Append appends a leaf and returns its index.
func (l *Log) Append(leaf []byte) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.leaves = append(l.leaves, bytes.Clone(leaf))
	if err := l.tree.Append(rfc6962.DefaultHasher.HashLeaf(leaf)); err != nil {
		panic(err)
	}
	return uint64(len(l.leaves) - 1)
}

// Size returns the number of leaves.
func (l *Log) Size() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return uint64(len(l.leaves))
}

// Leaf returns leaf i.
func (l *Log) Leaf(i uint64) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.leaves[i])
}

// Root returns the root of the first size leaves.
func (l *Log) Root(size uint64) [32]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, err := mtree.Root(l.tree.Get, size)
	if err != nil {
		panic(err)
	}
	return [32]byte(r)
}

// SignRoot signs a checkpoint of any size and root (for split views).
func (l *Log) SignRoot(size uint64, root [32]byte) []byte {
	n, err := klog.SignCheckpoint(klog.Checkpoint{Origin: l.Origin, Size: size, Hash: root}, l.signer)
	if err != nil {
		panic(err)
	}
	return n
}

// SignAt signs the checkpoint of the first size leaves.
func (l *Log) SignAt(size uint64) []byte { return l.SignRoot(size, l.Root(size)) }

// Publish signs the checkpoint of the current size and serves it.
func (l *Log) Publish() []byte {
	n := l.SignAt(l.Size())
	l.Serve(n)
	return n
}

// Serve makes Checkpoint return n.
func (l *Log) Serve(n []byte) {
	l.mu.Lock()
	l.served = n
	l.mu.Unlock()
}

// Checkpoint implements verifier.Source.
func (l *Log) Checkpoint(ctx context.Context) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.served == nil {
		return nil, errors.New("audittest: no checkpoint published")
	}
	return l.served, nil
}

// ConsistencyProof implements verifier.Source.
func (l *Log) ConsistencyProof(ctx context.Context, oldSize, newSize uint64) ([][]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if oldSize > newSize || newSize > uint64(len(l.leaves)) {
		return nil, fmt.Errorf("audittest: consistency %d -> %d out of range", oldSize, newSize)
	}
	return mtree.Consistency(l.tree.Get, oldSize, newSize)
}

// InclusionProof returns the inclusion proof of leaf i in the tree of size.
func (l *Log) InclusionProof(i, size uint64) ([][]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return mtree.Inclusion(l.tree.Get, i, size)
}

// Entries implements verifier.Source.
func (l *Log) Entries(ctx context.Context, start, end uint64) ([][]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if start > end || end > uint64(len(l.leaves)) {
		return nil, fmt.Errorf("audittest: entries [%d, %d) out of range", start, end)
	}
	if l.MaxEntries > 0 && end-start > uint64(l.MaxEntries) {
		end = start + uint64(l.MaxEntries)
	}
	out := make([][]byte, 0, end-start)
	for _, x := range l.leaves[start:end] {
		out = append(out, bytes.Clone(x))
	}
	return out, nil
}

// Lookup is not served.
func (l *Log) Lookup(ctx context.Context, userID string, knownSize uint64) (*verifier.LookupBundle, error) {
	return nil, ErrNotImplemented
}

// History is not served.
func (l *Log) History(ctx context.Context, userID string, fromVersion uint64) (*verifier.HistoryBundle, error) {
	return nil, ErrNotImplemented
}

// Account is one account the Directory keeps, with its private keys.
type Account struct {
	UserID   string
	Index    [32]byte
	RK       *devices.RootKey           // root key (kept by the test directory)
	ASK      *devices.AccountSigningKey // current account signing key
	Devices  []*devices.DeviceKey
	State    *devices.AccountState
	Leaf     []byte // latest AccountUpdate leaf
	LogIndex uint64
}

// Directory is an honest directory over a Log: it appends valid entries and
// correct epoch records. Its fields are exported so tests can misbehave.
type Directory struct {
	Log      *Log
	VRF      *vrf.PrivateKey
	ResetKey ed25519.PrivateKey
	Map      *vmap.MemStore
	Epoch    uint64
	Time     time.Time // clock for states and epochs; advanced 1 s per use
	Pending  map[[32]byte]vmap.Value
	Accounts map[string]*Account
	rnd      io.Reader
}

// Origin is the log origin of every test Directory.
const Origin = "audittest.example/log"

type seeded struct{ r *rand.ChaCha8 }

func (s seeded) Read(p []byte) (int, error) { return s.r.Read(p) }

// NewDirectory returns an empty honest directory whose keys derive from seed.
func NewDirectory(seed uint64) (*Directory, error) {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	rnd := seeded{rand.NewChaCha8(s)}
	l, err := NewLog(Origin, rnd)
	if err != nil {
		return nil, err
	}
	vk, err := vrf.GenerateKey(rnd)
	if err != nil {
		return nil, err
	}
	_, rk, err := ed25519.GenerateKey(rnd)
	if err != nil {
		return nil, err
	}
	d := &Directory{Log: l, VRF: vk, ResetKey: rk, Map: vmap.NewMemStore(),
		Time: time.Unix(1_700_000_000, 0).UTC(), Pending: map[[32]byte]vmap.Value{},
		Accounts: map[string]*Account{}, rnd: rnd}
	// Like the real directory, the log starts with the genesis epoch 0,
	// which holds the empty map.
	d.AppendEpoch(klog.EpochRecord{Epoch: 0, MapRoot: vmap.EmptyRoot, Timestamp: uint64(d.now().Unix())})
	return d, nil
}

// Trust returns the trust configuration of d (no witnesses).
func (d *Directory) Trust() *verifier.Trust {
	return &verifier.Trust{Origin: Origin, Log: d.Log.Verifier(), VRF: d.VRF.Public(),
		ResetKey: d.ResetKey.Public().(ed25519.PublicKey), MaxAge: time.Hour, ResetWindow: ResetWindow}
}

// Index returns the VRF index of userID.
func (d *Directory) Index(userID string) [32]byte {
	beta, _ := d.VRF.Prove([]byte(userID))
	return vrf.Index(beta)
}

func (d *Directory) now() time.Time {
	d.Time = d.Time.Add(time.Second)
	return d.Time
}

// NewDevice returns a new device key with a cert back-signed for rk and
// issued by ask.
func (d *Directory) NewDevice(rk *devices.RootKey, ask *devices.AccountSigningKey, name string) (*devices.DeviceKey, *devices.DeviceCert, error) {
	dk, err := devices.NewDeviceKey(d.rnd)
	if err != nil {
		return nil, nil, err
	}
	c, err := dk.NewCert(name, rk.Public(), d.now())
	if err != nil {
		return nil, nil, err
	}
	if err := ask.IssueCert(rk.Public(), c); err != nil {
		return nil, nil, err
	}
	return dk, c, nil
}

// NewAccountState returns a signed version-1 state with nDevices devices
// (not appended).
func (d *Directory) NewAccountState(userID string, nDevices int) (*Account, error) {
	secret, err := devices.NewRecoverySecret(d.rnd)
	if err != nil {
		return nil, err
	}
	rk := devices.DeriveRootKey(secret)
	ask, err := devices.NewAccountSigningKey(rk, userID, 1, d.rnd, d.now())
	if err != nil {
		return nil, err
	}
	dk, c, err := d.NewDevice(rk, ask, "device-0")
	if err != nil {
		return nil, err
	}
	st, err := devices.NewAccount(ask, rk.Public(), userID, c, d.now())
	if err != nil {
		return nil, err
	}
	a := &Account{UserID: userID, Index: d.Index(userID), RK: rk, ASK: ask, Devices: []*devices.DeviceKey{dk}, State: st}
	for i := 1; i < nDevices; i++ {
		dk, c, err := d.NewDevice(rk, ask, fmt.Sprintf("device-%d", i))
		if err != nil {
			return nil, err
		}
		if a.State, err = devices.AddDevice(a.State, ask, c, d.now()); err != nil {
			return nil, err
		}
		a.Devices = append(a.Devices, dk)
	}
	if nDevices > 1 { // re-sign as version 1 with all devices
		st := *a.State
		st.Version, st.PrevHash, st.Revocations = 1, [32]byte{}, nil
		if err := st.Sign(ask); err != nil {
			return nil, err
		}
		a.State = &st
	}
	return a, nil
}

// Create appends a create entry for a new account with nDevices devices.
func (d *Directory) Create(userID string, nDevices int) (*Account, error) {
	a, err := d.NewAccountState(userID, nDevices)
	if err != nil {
		return nil, err
	}
	payload, err := a.State.MarshalBinary()
	if err != nil {
		return nil, err
	}
	if err := d.AppendUpdate(a, a.Index, 1, [32]byte{}, klog.UpdateCreate, payload); err != nil {
		return nil, err
	}
	d.Accounts[userID] = a
	return a, nil
}

// AppendUpdate appends an AccountUpdate leaf built from the given fields,
// records it as a's latest entry and sets its map value, as an honest
// directory would for a valid entry (tests pass invalid fields for attacks).
func (d *Directory) AppendUpdate(a *Account, index [32]byte, version uint64, prev [32]byte, kind klog.UpdateKind, payload []byte) error {
	leaf, err := (&klog.AccountUpdate{Index: index, Version: version, PrevHash: prev, Update: kind, Payload: payload}).Marshal()
	if err != nil {
		return err
	}
	i := d.Log.Append(leaf)
	if a != nil {
		a.Leaf, a.LogIndex = leaf, i
	}
	d.Pending[index] = vmap.MapValue(version, i, klog.EntryHash(leaf))
	return nil
}

// Update appends the next version of a's account with state next.
func (d *Directory) Update(a *Account, next *devices.AccountState) error {
	payload, err := next.MarshalBinary()
	if err != nil {
		return err
	}
	if err := d.AppendUpdate(a, a.Index, a.State.Version+1, klog.EntryHash(a.Leaf), klog.UpdateUpdate, payload); err != nil {
		return err
	}
	a.State = next
	return nil
}

// AddDevice appends an update adding a new device to a.
func (d *Directory) AddDevice(a *Account) error {
	dk, c, err := d.NewDevice(a.RK, a.ASK, fmt.Sprintf("device-%d", len(a.Devices)))
	if err != nil {
		return err
	}
	next, err := devices.AddDevice(a.State, a.ASK, c, d.now())
	if err != nil {
		return err
	}
	a.Devices = append(a.Devices, dk)
	return d.Update(a, next)
}

// Revoke appends an update revoking a's device k.
func (d *Directory) Revoke(a *Account, k int) error {
	next, err := devices.RevokeDevices(a.State, a.ASK, []devices.DeviceID{a.Devices[k].ID()}, devices.ReasonRetired, d.now())
	if err != nil {
		return err
	}
	return d.Update(a, next)
}

// ResetWindow is the reset window of the test directory's trust.
const ResetWindow = 10 * time.Second

// ResetPayload returns a reset authorization signed with key replacing a's
// state by a new root key, pending for ResetWindow (a is not changed).
// The new keys are returned as an Account (State: the reset's new state).
func (d *Directory) ResetPayload(a *Account, key ed25519.PrivateKey) ([]byte, *Account, *devices.AccountState, error) {
	secret, err := devices.NewRecoverySecret(d.rnd)
	if err != nil {
		return nil, nil, nil, err
	}
	rk := devices.DeriveRootKey(secret)
	ask, err := devices.NewAccountSigningKey(rk, a.UserID, 1, d.rnd, d.now())
	if err != nil {
		return nil, nil, nil, err
	}
	dk, c, err := d.NewDevice(rk, ask, "reset-device")
	if err != nil {
		return nil, nil, nil, err
	}
	now := d.now()
	st, err := devices.NewResetState(a.State, rk.Public(), ask, c, now)
	if err != nil {
		return nil, nil, nil, err
	}
	auth, err := devices.SignReset(d.ResetKey, a.State, st, devices.ResetLostAllKeys, now, ResetWindow)
	if err != nil {
		return nil, nil, nil, err
	}
	if !key.Equal(d.ResetKey) { // re-sign with another key, bypassing SignReset's check
		auth.Signature = [64]byte{}
		body, _ := auth.MarshalBinary()
		body = body[:len(body)-64]
		copy(auth.Signature[:], ed25519.Sign(key, append([]byte("keyline reset v2\x00"), body...)))
	}
	p, err := auth.MarshalBinary()
	return p, &Account{UserID: a.UserID, Index: a.Index, RK: rk, ASK: ask, Devices: []*devices.DeviceKey{dk}, State: st}, st, err
}

// Reset appends a valid reset of a and advances the clock past its
// window, so that a.State (the new state) can be updated next.
func (d *Directory) Reset(a *Account) error {
	p, na, st, err := d.ResetPayload(a, d.ResetKey)
	if err != nil {
		return err
	}
	if err := d.AppendUpdate(a, a.Index, a.State.Version+1, klog.EntryHash(a.Leaf), klog.UpdateReset, p); err != nil {
		return err
	}
	a.RK, a.ASK, a.State, a.Devices = na.RK, na.ASK, st, na.Devices
	d.Time = d.Time.Add(ResetWindow) // the next update by the new keys is after the window
	return nil
}

// MapRoot applies the pending map values and returns the map root.
func (d *Directory) MapRoot() ([32]byte, error) {
	ups := make([]vmap.Update, 0, len(d.Pending))
	for i, v := range d.Pending {
		ups = append(ups, vmap.Update{Index: i, Value: v})
	}
	clear(d.Pending)
	return vmap.Apply(d.Map, ups)
}

// AppendEpoch appends an EpochRecord as given.
func (d *Directory) AppendEpoch(e klog.EpochRecord) uint64 {
	l, _ := e.Marshal()
	return d.Log.Append(l)
}

// CloseEpoch appends the next EpochRecord with the correct map root and
// publishes (serves) a checkpoint, which it returns.
func (d *Directory) CloseEpoch() ([]byte, error) {
	root, err := d.MapRoot()
	if err != nil {
		return nil, err
	}
	d.Epoch++
	d.AppendEpoch(klog.EpochRecord{Epoch: d.Epoch, MapRoot: root, Timestamp: uint64(d.now().Unix())})
	return d.Log.Publish(), nil
}

// Populate creates n accounts named user<i> with nDevices devices each and
// closes an epoch every perEpoch accounts (and at the end).
func (d *Directory) Populate(n, nDevices, perEpoch int) error {
	for i := 0; i < n; i++ {
		if _, err := d.Create(fmt.Sprintf("user%d", len(d.Accounts)), nDevices); err != nil {
			return err
		}
		if (i+1)%perEpoch == 0 || i == n-1 {
			if _, err := d.CloseEpoch(); err != nil {
				return err
			}
		}
	}
	return nil
}

// RangeProof returns the compact ranges [0, start) and [end, size) that prove
// leaves [start, end) in the tree of size (the evidence Segment form).
func (l *Log) RangeProof(start, end, size uint64) (left, right [][]byte, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if left, err = mtree.RangeHashes(l.tree.Get, 0, start); err != nil {
		return nil, nil, err
	}
	right, err = mtree.RangeHashes(l.tree.Get, end, size)
	return left, right, err
}
