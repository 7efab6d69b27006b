package embedded

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/keyline/keyline/log"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	bolt "go.etcd.io/bbolt"
)

// view reads the leaves and node hashes stored in one transaction (format
// 2); size is the stored size, which decides where a leaf is stored. It remembers the last bundle it
// read and the leaf hashes it computed, so that a proof or a range read
// reads a bundle once and hashes each leaf at most once. Slices it returns alias the
// transaction unless said otherwise.
type view struct {
	size                 uint64
	bundles, tail, nodes *bolt.Bucket
	bundleN              uint64 // index of bundle, if bundle != nil
	bundle               []byte // the last bundle read
	leafHashes           map[uint64][]byte
}

func newView(tx *bolt.Tx, size uint64) *view {
	return &view{size: size, bundles: tx.Bucket(bucketBundles), tail: tx.Bucket(bucketTail), nodes: tx.Bucket(bucketNodes)}
}

func bundleKey(n uint64) []byte { return u64(n) }

// leaf returns leaf i, which must be below the stored size.
func (v *view) leaf(i uint64) ([]byte, error) {
	if i >= v.size {
		return nil, fmt.Errorf("%w: leaf %d of a log of size %d", log.ErrRange, i, v.size)
	}
	n := i / BundleWidth
	if n >= v.size/BundleWidth {
		t, err := v.tailValue(i)
		if err != nil {
			return nil, err
		}
		return t[32:], nil
	}
	if v.bundle == nil || v.bundleN != n {
		b := v.bundles.Get(bundleKey(n))
		if b == nil {
			return nil, fmt.Errorf("%w: bundle %d (leaf %d) missing", log.ErrCorrupt, n, i)
		}
		v.bundle, v.bundleN = b, n
	}
	l, err := BundleLeaf(v.bundle, int(i%BundleWidth))
	if err != nil {
		return nil, fmt.Errorf("%w: bundle %d: %v", log.ErrCorrupt, n, err)
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

// leafHash returns the RFC 6962 hash of leaf i: stored for a tail leaf,
// else computed from the bundle.
func (v *view) leafHash(i uint64) ([]byte, error) {
	if h, ok := v.leafHashes[i]; ok {
		return h, nil
	}
	if i < v.size && i/BundleWidth >= v.size/BundleWidth {
		t, err := v.tailValue(i)
		if err != nil {
			return nil, err
		}
		return t[:32], nil
	}
	l, err := v.leaf(i)
	if err != nil {
		return nil, err
	}
	h := rfc6962.DefaultHasher.HashLeaf(l)
	if v.leafHashes == nil {
		v.leafHashes = map[uint64][]byte{}
	}
	v.leafHashes[i] = h
	return h, nil
}

// node returns the hash of the perfect subtree id, which must lie within the
// stored size: from the nodes bucket at level bundleLevel and above, else
// recomputed from the leaves (not aliasing the transaction).
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
	return v.subtree(id.Level, id.Index<<id.Level)
}

// subtree returns the root of the perfect subtree of height level over the
// leaves from first.
func (v *view) subtree(level uint, first uint64) ([]byte, error) {
	if level == 0 {
		return v.leafHash(first)
	}
	l, err := v.subtree(level-1, first)
	if err != nil {
		return nil, err
	}
	r, err := v.subtree(level-1, first+1<<(level-1))
	if err != nil {
		return nil, err
	}
	return rfc6962.DefaultHasher.HashChildren(l, r), nil
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

// readView returns the view of tx at its stored size.
func readView(tx *bolt.Tx) (*view, error) {
	size, err := readSize(tx)
	if err != nil {
		return nil, err
	}
	return newView(tx, size), nil
}
