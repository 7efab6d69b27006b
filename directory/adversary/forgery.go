package adversary

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/keyline/keyline/devices"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/log/embedded"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/vmap"
	"github.com/keyline/keyline/verifier/vrf"
)

// Forgery is a hand-made history signed with the directory's real keys: a
// copy of a prefix of the honest log (in an embedded log in its own file)
// followed by whatever leaves the attacker appends, with a map maintained
// the way the attacker chooses and checkpoints signed by the real log key.
// It is a verifier.Source serving lookups, histories, entries and proofs of
// that history, all internally consistent unless the attack makes them not.
type Forgery struct {
	Keys *Keys

	mu      sync.Mutex
	log     *embedded.Log
	m       *vmap.MemStore
	epoch   uint64
	lastTS  uint64
	pending map[[32]byte]vmap.Value
	entries map[[32]byte][]uint64 // log indexes of every AccountUpdate per index
	mapped  map[[32]byte]uint64   // log index the map value points to
	// unlogged: map values set by MapUnlogged, to a leaf not in the log.
	unlogged map[[32]byte]unloggedLeaf
	cp       []byte
	size     uint64 // size of cp
}

// NewForgery copies the leaves [0, size) of src (size must be a published
// checkpoint size, so the prefix ends with an EpochRecord) into a new
// embedded log in dir, rebuilds the map from them (checking every epoch's
// map root), and signs a checkpoint of that prefix with the real log key.
func NewForgery(ctx context.Context, k *Keys, dir string, src verifier.Source, size uint64) (*Forgery, error) {
	l, err := embedded.Open(filepath.Join(dir, "forged-log.db"), &embedded.Options{NoSync: true})
	if err != nil {
		return nil, err
	}
	f := &Forgery{
		Keys: k, log: l, m: vmap.NewMemStore(),
		pending:  map[[32]byte]vmap.Value{},
		entries:  map[[32]byte][]uint64{},
		mapped:   map[[32]byte]uint64{},
		unlogged: map[[32]byte]unloggedLeaf{},
	}
	for pos := uint64(0); pos < size; {
		leaves, err := src.Entries(ctx, pos, size)
		if err != nil {
			return nil, err
		}
		if len(leaves) == 0 {
			return nil, fmt.Errorf("adversary: source returned no leaves at %d", pos)
		}
		for _, leaf := range leaves {
			if err := f.appendCopied(ctx, leaf); err != nil {
				return nil, fmt.Errorf("adversary: copying leaf %d: %w", pos, err)
			}
			pos++
		}
	}
	if len(f.pending) != 0 {
		return nil, errors.New("adversary: copied prefix does not end with an EpochRecord")
	}
	if _, err := f.Sign(ctx, size); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *Forgery) appendCopied(ctx context.Context, leaf []byte) error {
	l, err := klog.ParseLeaf(leaf)
	if err != nil {
		return err
	}
	switch l := l.(type) {
	case *klog.AccountUpdate:
		_, err := f.AppendUpdate(ctx, leaf, true)
		return err
	case *klog.EpochRecord:
		root, err := f.applyPending()
		if err != nil {
			return err
		}
		if root != l.MapRoot {
			return fmt.Errorf("map root of epoch %d differs from the one recomputed", l.Epoch)
		}
		f.epoch, f.lastTS = l.Epoch, l.Timestamp
		_, err = f.appendLeaf(ctx, leaf)
		return err
	}
	return nil
}

// Close closes the forged log.
func (f *Forgery) Close() error { return f.log.Close() }

// Index returns userID's VRF index (the attacker holds the VRF key).
func (f *Forgery) Index(userID string) ([32]byte, []byte, error) {
	uid, err := devices.NormalizeUserID(userID)
	if err != nil {
		return [32]byte{}, nil, err
	}
	beta, pi := f.Keys.VRF.Prove([]byte(uid))
	return vrf.Index(beta), pi, nil
}

// Latest returns the latest AccountUpdate leaf of userID in the forged log
// (nil if none) and its log index.
func (f *Forgery) Latest(ctx context.Context, userID string) ([]byte, uint64, error) {
	idx, _, err := f.Index(userID)
	if err != nil {
		return nil, 0, err
	}
	f.mu.Lock()
	es := f.entries[idx]
	f.mu.Unlock()
	if len(es) == 0 {
		return nil, 0, nil
	}
	i := es[len(es)-1]
	leaves, err := f.log.Entries(ctx, i, i+1)
	if err != nil {
		return nil, 0, err
	}
	return leaves[0], i, nil
}

// AppendUpdate appends an AccountUpdate leaf (any bytes that parse as one).
// If setMap, the map value of its index is set to it at the next epoch, as
// an honest directory does; otherwise the map keeps its old value (the log
// and the map disagree).
func (f *Forgery) AppendUpdate(ctx context.Context, leaf []byte, setMap bool) (uint64, error) {
	u, err := klog.ParseAccountUpdate(leaf)
	if err != nil {
		return 0, err
	}
	i, err := f.appendLeaf(ctx, leaf)
	if err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries[u.Index] = append(f.entries[u.Index], i)
	if setMap {
		f.pending[u.Index] = vmap.MapValue(u.Version, i, klog.EntryHash(leaf))
		f.mapped[u.Index] = i
	}
	return i, nil
}

type unloggedLeaf struct {
	leaf []byte
	at   uint64
}

// MapUnlogged sets, at the next epoch, the map value of leaf's index to
// MapValue(version, at, EntryHash(leaf)) without appending leaf to the
// log: the map points at an entry the log does not hold at index at (the
// log may hold another leaf there, or nothing yet). Lookups serve leaf
// with log index at; histories and entries serve the log.
func (f *Forgery) MapUnlogged(leaf []byte, at uint64) error {
	u, err := klog.ParseAccountUpdate(leaf)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending[u.Index] = vmap.MapValue(u.Version, at, klog.EntryHash(leaf))
	f.unlogged[u.Index] = unloggedLeaf{leaf: leaf, at: at}
	return nil
}

func (f *Forgery) applyPending() (vmap.Hash, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ups := make([]vmap.Update, 0, len(f.pending))
	for idx, v := range f.pending {
		ups = append(ups, vmap.Update{Index: idx, Value: v})
	}
	clear(f.pending)
	if len(ups) == 0 {
		return vmap.Root(f.m)
	}
	return vmap.Apply(f.m, ups)
}

// EpochOptions let an attacker lie in an EpochRecord.
type EpochOptions struct {
	// MapRoot, if set, is written instead of the map's root.
	MapRoot *[32]byte
	// Timestamp, if non-zero, is written instead of the previous epoch's
	// timestamp + 1.
	Timestamp uint64
}

// CloseEpoch applies the pending map values, appends the next EpochRecord
// and signs a checkpoint of the whole forged log, which it returns.
func (f *Forgery) CloseEpoch(ctx context.Context, o EpochOptions) ([]byte, error) {
	root, err := f.applyPending()
	if err != nil {
		return nil, err
	}
	if o.MapRoot != nil {
		root = *o.MapRoot
	}
	ts := f.lastTS + 1
	if o.Timestamp != 0 {
		ts = o.Timestamp
	}
	f.epoch++
	f.lastTS = ts
	rec, _ := (&klog.EpochRecord{Epoch: f.epoch, MapRoot: root, Timestamp: ts}).Marshal()
	if _, err := f.appendLeaf(ctx, rec); err != nil {
		return nil, err
	}
	size, err := f.log.Size(ctx)
	if err != nil {
		return nil, err
	}
	return f.Sign(ctx, size)
}

// Sign signs the checkpoint of the first size leaves with the real log key
// and serves it.
func (f *Forgery) Sign(ctx context.Context, size uint64) ([]byte, error) {
	root, err := f.log.RootHash(ctx, size)
	if err != nil {
		return nil, err
	}
	c := klog.Checkpoint{Origin: f.Keys.Origin, Size: size}
	copy(c.Hash[:], root)
	n, err := klog.SignCheckpoint(c, f.Keys.LogSigner)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.cp, f.size = n, size
	f.mu.Unlock()
	return n, nil
}

// Checkpoint implements verifier.Source: the latest forged checkpoint.
func (f *Forgery) Checkpoint(ctx context.Context) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cp, nil
}

// ConsistencyProof implements verifier.Source.
func (f *Forgery) ConsistencyProof(ctx context.Context, oldSize, newSize uint64) ([][]byte, error) {
	return f.log.ConsistencyProof(ctx, oldSize, newSize)
}

// Entries implements verifier.Source.
func (f *Forgery) Entries(ctx context.Context, start, end uint64) ([][]byte, error) {
	f.mu.Lock()
	size := f.size
	f.mu.Unlock()
	if end > size {
		end = size
	}
	return f.log.Entries(ctx, start, end)
}

// Lookup implements verifier.Source: a bundle proving what the forged map
// and log hold for userID under the forged checkpoint, without the
// checkpoint if knownSize is its size. If knownSize is larger than the
// forged log, no consistency proof is sent. A leaf set by MapUnlogged is
// served with the log index it claims.
func (f *Forgery) Lookup(ctx context.Context, userID string, knownSize uint64) (*verifier.LookupBundle, error) {
	idx, pi, err := f.Index(userID)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	cp, size := f.cp, f.size
	at, present := f.mapped[idx]
	unlogged, isUnlogged := f.unlogged[idx]
	f.mu.Unlock()
	p, err := vmap.Prove(f.m, idx)
	if err != nil {
		return nil, err
	}
	mp, err := p.MarshalBinary()
	if err != nil {
		return nil, err
	}
	rec, err := f.log.Entries(ctx, size-1, size)
	if err != nil {
		return nil, err
	}
	recProof, err := f.log.InclusionProof(ctx, size-1, size)
	if err != nil {
		return nil, err
	}
	b := &verifier.LookupBundle{Checkpoint: cp, VRFProof: pi, MapProof: mp, EpochRecord: rec[0], EpochRecordInclusion: recProof}
	switch {
	case isUnlogged:
		b.AccountUpdate, b.AccountUpdateIndex = unlogged.leaf, unlogged.at
	case present && at < size:
		leaves, err := f.log.Entries(ctx, at, at+1)
		if err != nil {
			return nil, err
		}
		b.AccountUpdate, b.AccountUpdateIndex = leaves[0], at
	}
	if knownSize == size {
		b.Checkpoint, b.EpochRecord, b.EpochRecordInclusion = nil, nil, nil
		return b, nil
	}
	if knownSize > 0 && knownSize < size {
		if b.Consistency, err = f.log.ConsistencyProof(ctx, knownSize, size); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// History implements verifier.Source: every forged-log entry of userID's
// index with version >= fromVersion.
func (f *Forgery) History(ctx context.Context, userID string, fromVersion uint64) (*verifier.HistoryBundle, error) {
	idx, pi, err := f.Index(userID)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	cp, size := f.cp, f.size
	es := append([]uint64(nil), f.entries[idx]...)
	f.mu.Unlock()
	h := &verifier.HistoryBundle{Checkpoint: cp, VRFProof: pi}
	for _, i := range es {
		if i >= size {
			continue
		}
		leaves, err := f.log.Entries(ctx, i, i+1)
		if err != nil {
			return nil, err
		}
		u, err := klog.ParseAccountUpdate(leaves[0])
		if err != nil {
			return nil, err
		}
		if u.Version < fromVersion {
			continue
		}
		proof, err := f.log.InclusionProof(ctx, i, size)
		if err != nil {
			return nil, err
		}
		h.Entries = append(h.Entries, verifier.HistoryEntry{LogIndex: i, Leaf: leaves[0], Inclusion: proof})
	}
	return h, nil
}

var _ verifier.Source = (*Forgery)(nil)

// appendLeaf appends leaf at the end of the forged log and returns its index.
func (f *Forgery) appendLeaf(ctx context.Context, leaf []byte) (uint64, error) {
	size, err := f.log.Size(ctx)
	if err != nil {
		return 0, err
	}
	return size, f.log.Append(ctx, size, [][]byte{leaf})
}
