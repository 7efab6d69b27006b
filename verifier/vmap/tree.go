package vmap

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
)

// Reader is read access to the key-value space holding one map. Get
// returns (nil, nil) for an absent key. The returned slice may be used only
// until the next call on the Reader (bbolt semantics); vmap copies it.
type Reader interface {
	Get(key []byte) ([]byte, error)
}

// Store is read-write access to the key-value space holding one map. Put
// must copy neither key nor value lazily: vmap never reuses a slice it has
// passed to Put. Apply's writes are atomic only if the Store is (run it
// inside one database transaction); vmap never deletes keys, because the
// map supports inserts and updates only and nodes never move.
type Store interface {
	Reader
	Put(key, value []byte) error
}

// Update sets Index to Value.
type Update struct {
	Index Index
	Value Value
}

// Errors of the tree operations.
var (
	// ErrDuplicateIndex means a batch sets the same index twice.
	ErrDuplicateIndex = errors.New("vmap: duplicate index in batch")
	// ErrCorruptStore means a stored node does not decode or is
	// inconsistent with its parent.
	ErrCorruptStore = errors.New("vmap: corrupt store")
)

// Storage layout (all keys inside the Store's own key space):
//
//	"root"                 -> ref of the root (kind 0 when the map is empty)
//	'n' || [32] prefix (masked) || u8 depth -> interior node record
//
// Keys put the prefix first so that every subtree is one contiguous key
// range: the nodes of a path's lower levels share database pages, which
// keeps the pages a batch dirties (and rewrites) close to one per update.
//
// An interior node record is ref(left) || ref(right). A ref is
//
//	0x00                                   empty (root only)
//	0x01 || [32] index || [32] value       leaf, stored inline in its parent
//	0x02 || u8 depth || [32] prefix || [32] hash   interior node
var rootKey = []byte("root")

const (
	refEmpty = 0
	refLeaf  = 1
	refNode  = 2
)

type ref struct {
	kind  uint8
	depth uint8 // refNode: branching bit
	key   Index // refLeaf: index; refNode: masked prefix
	val   Hash  // refLeaf: value; refNode: node hash
}

func (r *ref) hash() Hash {
	switch r.kind {
	case refLeaf:
		return LeafHash(r.key, r.val)
	case refNode:
		return r.val
	}
	return EmptyRoot
}

// bits is the length of the prefix all entries under r share.
func (r *ref) bits() int {
	if r.kind == refLeaf {
		return 256
	}
	return int(r.depth)
}

func (r *ref) append(b []byte) []byte {
	b = append(b, r.kind)
	switch r.kind {
	case refLeaf:
		b = append(b, r.key[:]...)
		b = append(b, r.val[:]...)
	case refNode:
		b = append(b, r.depth)
		b = append(b, r.key[:]...)
		b = append(b, r.val[:]...)
	}
	return b
}

func parseRef(b []byte) (ref, []byte, error) {
	var r ref
	if len(b) < 1 {
		return r, nil, fmt.Errorf("%w: truncated ref", ErrCorruptStore)
	}
	r.kind = b[0]
	b = b[1:]
	switch r.kind {
	case refEmpty:
	case refLeaf:
		if len(b) < 64 {
			return r, nil, fmt.Errorf("%w: truncated leaf ref", ErrCorruptStore)
		}
		copy(r.key[:], b[:32])
		copy(r.val[:], b[32:64])
		b = b[64:]
	case refNode:
		if len(b) < 65 {
			return r, nil, fmt.Errorf("%w: truncated node ref", ErrCorruptStore)
		}
		r.depth = b[0]
		copy(r.key[:], b[1:33])
		copy(r.val[:], b[33:65])
		b = b[65:]
	default:
		return r, nil, fmt.Errorf("%w: unknown ref kind %d", ErrCorruptStore, r.kind)
	}
	return r, b, nil
}

type node struct {
	depth    uint8
	prefix   Index
	children [2]ref
}

func (n *node) hash() Hash {
	return NodeHash(n.depth, n.prefix, n.children[0].hash(), n.children[1].hash())
}

func nodeKey(depth uint8, prefix Index) []byte {
	k := make([]byte, 0, 34)
	k = append(k, 'n')
	k = append(k, prefix[:]...)
	return append(k, depth)
}

func loadNode(s Reader, r *ref) (*node, error) {
	b, err := s.Get(nodeKey(r.depth, r.key))
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, fmt.Errorf("%w: node (depth %d, prefix %x) missing", ErrCorruptStore, r.depth, r.key[:8])
	}
	n := &node{depth: r.depth, prefix: r.key}
	rest := b
	for i := range n.children {
		n.children[i], rest, err = parseRef(rest)
		if err != nil {
			return nil, err
		}
		c := &n.children[i]
		if c.kind == refEmpty || c.bits() <= int(n.depth) ||
			commonPrefixLen(&c.key, &n.prefix) < int(n.depth) || bit(&c.key, int(n.depth)) != i {
			return nil, fmt.Errorf("%w: node (depth %d) has misplaced child %d", ErrCorruptStore, n.depth, i)
		}
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes in node record", ErrCorruptStore)
	}
	return n, nil
}

func storeNode(s Store, n *node) (ref, error) {
	v := n.children[0].append(make([]byte, 0, 132))
	v = n.children[1].append(v)
	if err := s.Put(nodeKey(n.depth, n.prefix), v); err != nil {
		return ref{}, err
	}
	return ref{kind: refNode, depth: n.depth, key: n.prefix, val: n.hash()}, nil
}

func loadRoot(s Reader) (ref, error) {
	b, err := s.Get(rootKey)
	if err != nil {
		return ref{}, err
	}
	if b == nil {
		return ref{kind: refEmpty}, nil
	}
	r, rest, err := parseRef(b)
	if err != nil {
		return ref{}, err
	}
	if len(rest) != 0 {
		return ref{}, fmt.Errorf("%w: trailing bytes in root", ErrCorruptStore)
	}
	return r, nil
}

// Root returns the current root hash of the map in s (EmptyRoot if s
// holds no map yet).
func Root(s Reader) (Hash, error) {
	r, err := loadRoot(s)
	if err != nil {
		return Hash{}, err
	}
	return r.hash(), nil
}

// Apply sets every update's index to its value (inserting absent indexes)
// and returns the new root. Updates may come in any order; an index may
// appear only once per batch (ErrDuplicateIndex, checked before any write).
// Apply visits each node on the updated paths once, so a batch of k updates
// in a map of N entries costs about k*(log2(N)-log2(k)) + 2k node writes.
func Apply(s Store, updates []Update) (Hash, error) {
	ups := slices.Clone(updates)
	slices.SortFunc(ups, func(a, b Update) int { return bytes.Compare(a.Index[:], b.Index[:]) })
	for i := 1; i < len(ups); i++ {
		if ups[i].Index == ups[i-1].Index {
			return Hash{}, fmt.Errorf("%w: %x", ErrDuplicateIndex, ups[i].Index)
		}
	}
	root, err := loadRoot(s)
	if err != nil {
		return Hash{}, err
	}
	if len(ups) == 0 {
		return root.hash(), nil
	}
	nr, err := update(s, root, ups)
	if err != nil {
		return Hash{}, err
	}
	if err := s.Put(rootKey, nr.append(nil)); err != nil {
		return Hash{}, err
	}
	return nr.hash(), nil
}

// splitAt returns the position of the first update whose bit d is 1; ups
// are sorted and share their first d bits.
func splitAt(ups []Update, d int) int {
	return sort.Search(len(ups), func(i int) bool { return bit(&ups[i].Index, d) == 1 })
}

// update applies sorted, distinct ups to the subtree r; all ups lie in
// the region r's parent assigned to r.
func update(s Store, r ref, ups []Update) (ref, error) {
	if len(ups) == 0 {
		return r, nil
	}
	if r.kind == refEmpty {
		return build(s, ups)
	}
	cp := min(commonPrefixLen(&r.key, &ups[0].Index), commonPrefixLen(&r.key, &ups[len(ups)-1].Index), r.bits())
	if cp == r.bits() {
		if r.kind == refLeaf {
			// cp == 256: the single update is for this leaf's index.
			return ref{kind: refLeaf, key: r.key, val: ups[0].Value}, nil
		}
		n, err := loadNode(s, &r)
		if err != nil {
			return ref{}, err
		}
		k := splitAt(ups, int(n.depth))
		for i, part := range [2][]Update{ups[:k], ups[k:]} {
			if n.children[i], err = update(s, n.children[i], part); err != nil {
				return ref{}, err
			}
		}
		return storeNode(s, n)
	}
	// Some updates leave r's prefix at bit cp: a new node branches there.
	n := &node{depth: uint8(cp), prefix: maskPrefix(r.key, cp)}
	k := splitAt(ups, cp)
	parts := [2][]Update{ups[:k], ups[k:]}
	rb := bit(&r.key, cp)
	var err error
	if n.children[rb], err = update(s, r, parts[rb]); err != nil {
		return ref{}, err
	}
	if n.children[1-rb], err = build(s, parts[1-rb]); err != nil {
		return ref{}, err
	}
	return storeNode(s, n)
}

// build stores the subtree holding exactly ups (sorted, distinct, non-empty).
func build(s Store, ups []Update) (ref, error) {
	if len(ups) == 1 {
		return ref{kind: refLeaf, key: ups[0].Index, val: ups[0].Value}, nil
	}
	d := commonPrefixLen(&ups[0].Index, &ups[len(ups)-1].Index)
	n := &node{depth: uint8(d), prefix: maskPrefix(ups[0].Index, d)}
	k := splitAt(ups, d)
	var err error
	if n.children[0], err = build(s, ups[:k]); err != nil {
		return ref{}, err
	}
	if n.children[1], err = build(s, ups[k:]); err != nil {
		return ref{}, err
	}
	return storeNode(s, n)
}

// Get returns the value at index, and whether index is in the map.
func Get(s Reader, index Index) (Value, bool, error) {
	p, err := Prove(s, index)
	if err != nil {
		return Value{}, false, err
	}
	return p.Value, p.Kind == Inclusion, nil
}

// Prove returns the inclusion or non-inclusion proof for index in the map
// held by s. Run it on a consistent snapshot (one read transaction) so the
// proof matches Root of the same snapshot.
func Prove(s Reader, index Index) (*Proof, error) {
	r, err := loadRoot(s)
	if err != nil {
		return nil, err
	}
	p := &Proof{}
	if r.kind == refEmpty {
		p.Kind = AbsentEmpty
		return p, nil
	}
	p.Siblings = make([]Sibling, 0, 32)
	for {
		if r.kind == refLeaf {
			if r.key == index {
				p.Kind, p.Value = Inclusion, r.val
			} else {
				p.Kind, p.LeafIndex, p.LeafValue = AbsentLeaf, r.key, r.val
			}
			return p, nil
		}
		n, err := loadNode(s, &r)
		if err != nil {
			return nil, err
		}
		if commonPrefixLen(&n.prefix, &index) < int(n.depth) {
			p.Kind = AbsentNode
			p.NodeDepth, p.NodePrefix = n.depth, n.prefix
			p.NodeLeft, p.NodeRight = n.children[0].hash(), n.children[1].hash()
			return p, nil
		}
		b := bit(&index, int(n.depth))
		p.Siblings = append(p.Siblings, Sibling{Depth: n.depth, Hash: n.children[1-b].hash()})
		r = n.children[b]
	}
}

// MemStore is an in-memory Store, safe for concurrent use. Apply on a
// MemStore is not atomic if the batch fails part way (which only a corrupt
// store can cause: input errors are caught before any write).
type MemStore struct {
	mu sync.RWMutex
	m  map[string][]byte
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{m: make(map[string][]byte)} }

// Get implements Reader.
func (m *MemStore) Get(key []byte) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.m[string(key)], nil
}

// Put implements Store.
func (m *MemStore) Put(key, value []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m[string(key)] = bytes.Clone(value)
	return nil
}

// Len returns the number of stored records (interior nodes plus the root).
func (m *MemStore) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.m)
}

// NodeRecordLeaves returns the leaves stored inline in one record (key,
// value) of the untiled Store layout, as updates: with those of every
// record, Apply to an empty map rebuilds it. Used to convert a Store to
// tiles.
func NodeRecordLeaves(key, value []byte) ([]Update, error) {
	var refs []ref
	rest := value
	for len(rest) > 0 {
		r, next, err := parseRef(rest)
		if err != nil {
			return nil, err
		}
		refs, rest = append(refs, r), next
	}
	switch {
	case bytes.Equal(key, rootKey):
		if len(refs) != 1 {
			return nil, fmt.Errorf("%w: root record with %d refs", ErrCorruptStore, len(refs))
		}
	case len(key) == 34 && key[0] == 'n':
		if len(refs) != 2 {
			return nil, fmt.Errorf("%w: node record with %d refs", ErrCorruptStore, len(refs))
		}
	default:
		return nil, fmt.Errorf("%w: unknown record key %x", ErrCorruptStore, key)
	}
	var ups []Update
	for _, r := range refs {
		if r.kind == refLeaf {
			ups = append(ups, Update{Index: r.key, Value: r.val})
		}
	}
	return ups, nil
}
