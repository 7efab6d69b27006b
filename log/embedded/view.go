package embedded

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/keyline/keyline/internal/boltread"
	"github.com/keyline/keyline/log"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	bolt "go.etcd.io/bbolt"
)

// view reads the leaves and node hashes stored in one transaction (format
// 2); size is the stored size, which decides where a leaf is stored. It
// remembers the last bundle it read. Slices it returns alias the
// transaction unless said otherwise.
type view struct {
	size                 uint64
	bundles, tail, nodes *bolt.Bucket
	cache                *nodeCache      // nodes of levels 1-7 already computed; may be nil
	bundleN              uint64          // index of bundle, if bundle != nil
	bundle               []byte          // the last bundle read
	src                  boltread.Source // if set, bundled leaves are read from it (pread) instead of the map
	srcN                 uint64          // index of srcBundle, if srcBundle != nil
	srcBundle            boltread.Value  // the last bundle read from src
	buf                  []byte          // for hashing a leaf
}

// cachedBundles is how many of the newest bundles (the tail included) have
// their computed nodes cached.
const cachedBundles = 16

func newView(tx *bolt.Tx, size uint64, cache *nodeCache) *view {
	return &view{size: size, bundles: tx.Bucket(bucketBundles), tail: tx.Bucket(bucketTail), nodes: tx.Bucket(bucketNodes), cache: cache}
}

func bundleKey(n uint64) []byte { return u64(n) }

// inTail reports whether leaf i (< size) is in the tail.
func (v *view) inTail(i uint64) bool { return i/BundleWidth >= v.size/BundleWidth }

// bundleOf returns the stored bundle holding leaf i, which must be complete.
func (v *view) bundleOf(i uint64) ([]byte, error) {
	n := i / BundleWidth
	if v.bundle == nil || v.bundleN != n {
		b := v.bundles.Get(bundleKey(n))
		if b == nil {
			return nil, fmt.Errorf("%w: bundle %d (leaf %d) missing", log.ErrCorrupt, n, i)
		}
		v.bundle, v.bundleN = b, n
	}
	return v.bundle, nil
}

// leaf returns leaf i, which must be below the stored size.
func (v *view) leaf(i uint64) ([]byte, error) {
	if i >= v.size {
		return nil, fmt.Errorf("%w: leaf %d of a log of size %d", log.ErrRange, i, v.size)
	}
	if v.inTail(i) {
		t, err := v.tailValue(i)
		if err != nil {
			return nil, err
		}
		return t[32:], nil
	}
	var b boltread.Value
	if n := i / BundleWidth; v.src != nil {
		if v.srcBundle == nil || v.srcN != n {
			val, err := v.src.Value(bundleKey(n))
			if err != nil {
				return nil, fmt.Errorf("%w: bundle %d (leaf %d): %v", log.ErrCorrupt, n, i, err)
			}
			if val == nil {
				return nil, fmt.Errorf("%w: bundle %d (leaf %d) missing", log.ErrCorrupt, n, i)
			}
			v.srcBundle, v.srcN = val, n
		}
		b = v.srcBundle
	} else {
		bundle, err := v.bundleOf(i)
		if err != nil {
			return nil, err
		}
		b = boltread.Bytes(bundle)
	}
	l, err := bundleLeaf(b, int(i%BundleWidth))
	if err != nil {
		return nil, fmt.Errorf("%w: bundle %d: %v", log.ErrCorrupt, i/BundleWidth, err)
	}
	return l, nil
}

// tailValue returns the stored tail value of leaf i: its leaf hash, then
// its bytes.
func (v *view) tailValue(i uint64) ([]byte, error) {
	t := v.tail.Get(u64(i))
	if len(t) < 32 {
		return nil, fmt.Errorf("%w: leaf %d missing from the tail (value of %d bytes)", log.ErrCorrupt, i, len(t))
	}
	return t, nil
}

// node returns the hash of the perfect subtree id, which must lie within the
// stored size: from the nodes bucket at level 8 and above, else computed
// inside one bundle or the tail (see subtree).
func (v *view) node(id compact.NodeID) ([]byte, error) {
	if id.Level >= 64 || id.Index >= (v.size>>id.Level) {
		return nil, fmt.Errorf("%w: node (level %d, index %d) of a log of size %d", log.ErrRange, id.Level, id.Index, v.size)
	}
	if id.Level >= bundleLevel {
		h := v.nodes.Get(nodeKey(id))
		if len(h) != 32 {
			return nil, fmt.Errorf("%w: node (level %d, index %d) is %d bytes, want 32", log.ErrCorrupt, id.Level, id.Index, len(h))
		}
		return h, nil
	}
	return v.subtree(id)
}

// subtree returns the hash of node id of level 0-7: a tail leaf's stored
// hash, the hash of a bundled leaf, a group hash stored in its bundle, or
// the hash of its two children; nodes of levels 1-7 are cached.
func (v *view) subtree(id compact.NodeID) ([]byte, error) {
	first := id.Index << id.Level
	switch {
	case id.Level == 0 && v.inTail(first):
		t, err := v.tailValue(first)
		if err != nil {
			return nil, err
		}
		return t[:32], nil
	case id.Level == 0:
		l, err := v.leaf(first)
		if err != nil {
			return nil, err
		}
		v.buf = append(append(v.buf[:0], rfc6962.RFC6962LeafHashPrefix), l...)
		h := sha256.Sum256(v.buf)
		return h[:], nil
	}
	// Only nodes of the newest bundles are cached: the right edge of the
	// tree and of recent checkpoints, which roots and proofs keep asking
	// for; a proof for an old leaf would only churn the cache.
	cached := first/BundleWidth+cachedBundles >= v.size/BundleWidth
	if cached {
		if h := v.cache.get(id); h != nil {
			return h, nil
		}
	}
	var h []byte
	if id.Level >= groupLevel && !v.inTail(first) {
		b, err := v.bundleOf(first)
		if err != nil {
			return nil, err
		}
		g := int(first%BundleWidth) / GroupWidth
		groups := make([][]byte, 1<<(id.Level-groupLevel))
		for k := range groups {
			if groups[k], err = BundleGroup(b, g+k); err != nil {
				return nil, fmt.Errorf("%w: bundle %d: %v", log.ErrCorrupt, first/BundleWidth, err)
			}
		}
		h = bytes.Clone(perfectRoot(groups))
	} else {
		l, err := v.subtree(compact.NewNodeID(id.Level-1, 2*id.Index))
		if err != nil {
			return nil, err
		}
		r, err := v.subtree(compact.NewNodeID(id.Level-1, 2*id.Index+1))
		if err != nil {
			return nil, err
		}
		var in [65]byte
		in[0] = rfc6962.RFC6962NodeHashPrefix
		copy(in[1:], l)
		copy(in[33:], r)
		sum := sha256.Sum256(in[:])
		h = sum[:]
	}
	if cached {
		v.cache.put(id, h)
	}
	return h, nil
}

// getNodes returns the hashes of ids, copied out of the transaction.
func (v *view) getNodes(ids []compact.NodeID) ([][]byte, error) {
	out := make([][]byte, len(ids))
	for i, id := range ids {
		h, err := v.node(id)
		if err != nil {
			return nil, err
		}
		out[i] = bytes.Clone(h)
	}
	return out, nil
}

// compactRange returns the compact range [0, size), size <= v.size.
func (v *view) compactRange(size uint64) (*compact.Range, error) {
	hashes, err := v.getNodes(compact.RangeNodes(0, size, nil))
	if err != nil {
		return nil, err
	}
	return factory.NewRange(0, size, hashes)
}

func readSize(tx *bolt.Tx) (uint64, error) {
	v := tx.Bucket(bucketMeta).Get(keySize)
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: meta/size is %d bytes, want 8", log.ErrCorrupt, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// nodeCacheSize bounds the nodes a nodeCache holds (about 100 bytes each).
const nodeCacheSize = 1 << 15

// nodeCache holds hashes of complete nodes of levels 1-7 computed from
// committed leaves. A complete node never changes, so an entry never goes
// stale; the cache is emptied when full. The nil cache holds nothing.
type nodeCache struct {
	mu sync.Mutex
	m  map[compact.NodeID][]byte
}

func (c *nodeCache) get(id compact.NodeID) []byte {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[id]
}

// put caches h (which must not alias a transaction) as the hash of id.
func (c *nodeCache) put(id compact.NodeID, h []byte) {
	if c == nil || id.Level == 0 || id.Level >= bundleLevel {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= nodeCacheSize {
		c.m = make(map[compact.NodeID][]byte)
	}
	c.m[id] = h
}
