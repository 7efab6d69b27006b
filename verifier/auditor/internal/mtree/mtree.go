// Package mtree computes RFC 6962 roots, compact ranges and proofs from the
// hashes of perfect subtrees (compact.NodeID), wherever they are stored.
package mtree

import (
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// Factory builds RFC 6962 compact ranges.
var Factory = &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// Getter returns the hash of a perfect subtree, or an error if it is not
// known.
type Getter func(id compact.NodeID) ([]byte, error)

// RangeHashes returns the hashes of the compact range [begin, end).
func RangeHashes(get Getter, begin, end uint64) ([][]byte, error) {
	ids := compact.RangeNodes(begin, end, nil)
	out := make([][]byte, len(ids))
	for i, id := range ids {
		h, err := get(id)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

// Root returns the root of the tree of the first size leaves.
func Root(get Getter, size uint64) ([]byte, error) {
	if size == 0 {
		return rfc6962.DefaultHasher.EmptyRoot(), nil
	}
	hs, err := RangeHashes(get, 0, size)
	if err != nil {
		return nil, err
	}
	r, err := Factory.NewRange(0, size, hs)
	if err != nil {
		return nil, err
	}
	return r.GetRootHash(nil)
}

func fetch(get Getter, n proof.Nodes) ([][]byte, error) {
	hs := make([][]byte, len(n.IDs))
	for i, id := range n.IDs {
		h, err := get(id)
		if err != nil {
			return nil, err
		}
		hs[i] = h
	}
	return n.Rehash(hs, rfc6962.DefaultHasher.HashChildren)
}

// Consistency returns the RFC 9162 consistency proof from size m to size n.
func Consistency(get Getter, m, n uint64) ([][]byte, error) {
	nodes, err := proof.Consistency(m, n)
	if err != nil {
		return nil, err
	}
	return fetch(get, nodes)
}

// Inclusion returns the RFC 9162 inclusion proof of leaf i in the tree of size n.
func Inclusion(get Getter, i, n uint64) ([][]byte, error) {
	nodes, err := proof.Inclusion(i, n)
	if err != nil {
		return nil, err
	}
	return fetch(get, nodes)
}

// Mem is an in-memory store of perfect-subtree hashes filled by appending
// leaf hashes to a compact range.
type Mem struct {
	Nodes map[compact.NodeID][]byte
	Range *compact.Range
}

// NewMem returns a Mem whose range continues rng (nil: an empty range at 0).
// rng is not modified, and shares nothing with the Mem: both may be used
// concurrently.
func NewMem(rng *compact.Range) (*Mem, error) {
	m := &Mem{Nodes: map[compact.NodeID][]byte{}}
	if rng == nil {
		m.Range = Factory.NewEmptyRange(0)
		return m, nil
	}
	hs := make([][]byte, len(rng.Hashes()))
	for i, h := range rng.Hashes() {
		hs[i] = append([]byte(nil), h...)
	}
	r, err := Factory.NewRange(rng.Begin(), rng.End(), hs)
	if err != nil {
		return nil, err
	}
	m.Range = r
	return m, nil
}

// Append appends a leaf hash, recording every completed subtree.
func (m *Mem) Append(leafHash []byte) error {
	return m.Range.Append(leafHash, func(id compact.NodeID, h []byte) { m.Nodes[id] = h })
}

// Get returns a stored hash.
func (m *Mem) Get(id compact.NodeID) ([]byte, error) {
	if h, ok := m.Nodes[id]; ok {
		return h, nil
	}
	return nil, fmt.Errorf("mtree: node %d/%d unknown", id.Level, id.Index)
}

// Chain returns a Getter that tries each getter in turn.
func Chain(gets ...Getter) Getter {
	return func(id compact.NodeID) ([]byte, error) {
		var err error
		for _, g := range gets {
			var h []byte
			if h, err = g(id); err == nil {
				return h, nil
			}
		}
		return nil, err
	}
}
