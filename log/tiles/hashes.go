package tiles

import (
	"fmt"
	"sync"

	"github.com/transparency-dev/merkle/rfc6962"
)

// Hash is a SHA-256 RFC 6962 hash.
type Hash = [32]byte

// Hashes holds what a tiles server needs besides the leaves: every
// complete tile hash at level 1 and above and the leaf hashes of the last,
// partial level-0 tile. Level-0 tiles other than the last are computed from
// the leaves (LeafTile). It is safe for concurrent use; only Append
// changes it.
type Hashes struct {
	mu     sync.RWMutex
	size   uint64
	levels [][]Hash // levels[l], l >= 1: hash i is the root of leaves [i*256^l, (i+1)*256^l)
	tail   []Hash   // leaf hashes of leaves [size &^ 255, size)
}

// Size returns the number of leaves appended.
func (h *Hashes) Size() uint64 {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.size
}

// Append adds leaves (canonical leaf encodings) at the end of the tree.
func (h *Hashes) Append(leaves [][]byte) {
	hs := make([]Hash, len(leaves))
	for i, l := range leaves {
		hs[i] = Hash(rfc6962.DefaultHasher.HashLeaf(l))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, lh := range hs {
		h.tail = append(h.tail, lh)
		h.size++
		if len(h.tail) == Width {
			h.push(1, perfectRoot(h.tail))
			h.tail = h.tail[:0]
		}
	}
}

func (h *Hashes) push(l int, x Hash) {
	for len(h.levels) <= l {
		h.levels = append(h.levels, nil)
	}
	h.levels[l] = append(h.levels[l], x)
	if n := len(h.levels[l]); n%Width == 0 {
		h.push(l+1, perfectRoot(h.levels[l][n-Width:]))
	}
}

// perfectRoot is the Merkle tree hash over hs, whose length is a power of two.
func perfectRoot(hs []Hash) Hash {
	buf := append([]Hash(nil), hs...)
	for len(buf) > 1 {
		for i := 0; i < len(buf)/2; i++ {
			buf[i] = Hash(rfc6962.DefaultHasher.HashChildren(buf[2*i][:], buf[2*i+1][:]))
		}
		buf = buf[:len(buf)/2]
	}
	return buf[0]
}

// Root returns the RFC 6962 root hash of the whole tree (the hash of the
// empty string for an empty tree).
func (h *Hashes) Root() Hash {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.size == 0 {
		return Hash(rfc6962.DefaultHasher.EmptyRoot())
	}
	// The tree is the complete subtrees of the binary decomposition of
	// size, largest first; the root folds them from the right.
	var nodes []Hash
	var start uint64
	for b := 63; b >= 0; b-- {
		if h.size&(1<<uint(b)) == 0 {
			continue
		}
		nodes = append(nodes, h.node(b, start>>uint(b)))
		start += 1 << uint(b)
	}
	root := nodes[len(nodes)-1]
	for i := len(nodes) - 2; i >= 0; i-- {
		root = Hash(rfc6962.DefaultHasher.HashChildren(nodes[i][:], root[:]))
	}
	return root
}

// node returns the root of the complete subtree of height ht with index i,
// one of the decomposition of size: built from stored hashes at level
// ht/8 (or the tail's leaf hashes).
func (h *Hashes) node(ht int, i uint64) Hash {
	l, r := ht/8, uint(ht%8)
	if l == 0 {
		off := i<<r - (h.size &^ (Width - 1))
		return perfectRoot(h.tail[off : off+1<<r])
	}
	return perfectRoot(h.levels[l][i<<r : (i+1)<<r])
}

// Tile returns the contents of tile t, level 1 or above, or an error if
// the tree does not (yet) have all of its hashes. Level-0 tiles come from
// LeafTile.
func (h *Hashes) Tile(t Tile) ([]byte, error) {
	if t.L < 1 || t.W < 1 || t.W > Width {
		return nil, fmt.Errorf("tiles: Hashes.Tile: level %d width %d", t.L, t.W)
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	var lvl []Hash
	if t.L < len(h.levels) {
		lvl = h.levels[t.L]
	}
	if t.N >= uint64(len(lvl))/Width+1 || t.N*Width+uint64(t.W) > uint64(len(lvl)) {
		return nil, fmt.Errorf("tiles: tile %s is beyond the tree of size %d", t.Path(), h.size)
	}
	out := make([]byte, 0, 32*t.W)
	for _, x := range lvl[t.N*Width : t.N*Width+uint64(t.W)] {
		out = append(out, x[:]...)
	}
	return out, nil
}

// LeafTile returns the level-0 tile of leaves: their leaf hashes, concatenated.
func LeafTile(leaves [][]byte) []byte {
	out := make([]byte, 0, 32*len(leaves))
	for _, l := range leaves {
		out = append(out, rfc6962.DefaultHasher.HashLeaf(l)...)
	}
	return out
}
