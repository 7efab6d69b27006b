package logtest

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/keyline/keyline/log"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// memBackend is a minimal in-memory Backend that recomputes everything from
// leaves, to run the suite against an implementation independent of the
// embedded one.
type memBackend struct {
	mu     sync.RWMutex
	leaves [][]byte
}

func (m *memBackend) Append(_ context.Context, expected uint64, leaves [][]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if expected != uint64(len(m.leaves)) {
		return fmt.Errorf("%w: at %d, size %d", log.ErrConflict, expected, len(m.leaves))
	}
	for _, l := range leaves {
		m.leaves = append(m.leaves, append([]byte{}, l...))
	}
	return nil
}

func (m *memBackend) Size(context.Context) (uint64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return uint64(len(m.leaves)), nil
}

func (m *memBackend) Entries(_ context.Context, start, end uint64) ([][]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if start > end || end > uint64(len(m.leaves)) {
		return nil, fmt.Errorf("%w: [%d, %d)", log.ErrRange, start, end)
	}
	return append([][]byte{}, m.leaves[start:end]...), nil
}

// node returns the hash of node id, computed from leaves.
func (m *memBackend) node(id compact.NodeID) []byte {
	begin, end := id.Coverage()
	r := factory.NewEmptyRange(0)
	for i := begin; i < end; i++ {
		r.Append(rfc6962.DefaultHasher.HashLeaf(m.leaves[i]), nil)
	}
	h, _ := r.GetRootHash(nil)
	return h
}

func (m *memBackend) RootHash(_ context.Context, size uint64) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if size > uint64(len(m.leaves)) {
		return nil, fmt.Errorf("%w: size %d", log.ErrRange, size)
	}
	r := factory.NewEmptyRange(0)
	for _, l := range m.leaves[:size] {
		r.Append(rfc6962.DefaultHasher.HashLeaf(l), nil)
	}
	if size == 0 {
		return rfc6962.DefaultHasher.EmptyRoot(), nil
	}
	return r.GetRootHash(nil)
}

func (m *memBackend) build(n proof.Nodes) ([][]byte, error) {
	h := make([][]byte, len(n.IDs))
	for i, id := range n.IDs {
		h[i] = m.node(id)
	}
	return n.Rehash(h, rfc6962.DefaultHasher.HashChildren)
}

func (m *memBackend) InclusionProof(_ context.Context, index, size uint64) ([][]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if index >= size || size > uint64(len(m.leaves)) {
		return nil, fmt.Errorf("%w: index %d size %d", log.ErrRange, index, size)
	}
	n, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, err
	}
	return m.build(n)
}

func (m *memBackend) ConsistencyProof(_ context.Context, s1, s2 uint64) ([][]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if s1 > s2 || s2 > uint64(len(m.leaves)) {
		return nil, fmt.Errorf("%w: sizes %d %d", log.ErrRange, s1, s2)
	}
	n, err := proof.Consistency(s1, s2)
	if err != nil {
		return nil, err
	}
	return m.build(n)
}

func (m *memBackend) Close() error { return nil }

func TestConformanceMemory(t *testing.T) {
	RunConformance(t, func(*testing.T) log.Backend { return &memBackend{} })
}

// TestProbesAllShapes checks, for every (index, size) and (size1, size2) up
// to 48, that the real proof verifies and every probe is rejected.
func TestProbesAllShapes(t *testing.T) {
	ctx := t.Context()
	m := &memBackend{}
	ref := newReference()
	for i := uint64(0); i < 48; i++ {
		m.Append(ctx, i, [][]byte{Leaf(i)})
		ref.add(Leaf(i))
	}
	total := 0
	for size := uint64(1); size <= 48; size++ {
		for i := uint64(0); i < size; i++ {
			p, _ := m.InclusionProof(ctx, i, size)
			total += CheckInclusionProbes(t, InclusionClaim{i, size, rfc6962.DefaultHasher.HashLeaf(ref.leaves[i]), p, ref.roots[size]})
		}
		for s1 := uint64(1); s1 < size; s1++ {
			p, _ := m.ConsistencyProof(ctx, s1, size)
			total += CheckConsistencyProbes(t, ConsistencyClaim{s1, size, p, ref.roots[s1], ref.roots[size]})
		}
	}
	t.Logf("%d probes rejected", total)
}

// TestProbesCoverMutationClasses checks that the generator emits every class
// of mutation the package documents.
func TestProbesCoverMutationClasses(t *testing.T) {
	ctx := t.Context()
	m := &memBackend{}
	ref := newReference()
	for i := uint64(0); i < 13; i++ {
		m.Append(ctx, i, [][]byte{Leaf(i)})
		ref.add(Leaf(i))
	}
	ip, _ := m.InclusionProof(ctx, 5, 13)
	cp, _ := m.ConsistencyProof(ctx, 6, 13)
	names := map[string]bool{}
	for _, p := range InclusionProbes(InclusionClaim{5, 13, rfc6962.DefaultHasher.HashLeaf(ref.leaves[5]), ip, ref.roots[13]}) {
		names[p.Name] = true
	}
	for _, p := range ConsistencyProbes(ConsistencyClaim{6, 13, cp, ref.roots[6], ref.roots[13]}) {
		names[p.Name] = true
	}
	for _, want := range []string{
		"flip proof[0] byte 0 mask 0x01", "flip proof[2] byte -1 mask 0x80", "short proof[1]", "long proof[1]",
		"drop proof[0]", "duplicate proof[1]", "truncate last", "truncate first", "empty proof",
		"extend with garbage hash", "swap proof[0] and proof[1]", "flip leaf hash byte 15 mask 0x08",
		"flip root byte 0 mask 0x80", "index 6 size 13 (was 5, 13)", "index 5 size 26 (was 5, 13)",
		"swap old and new roots", "flip old root byte -1 mask 0x01", "sizes 13, 6 (was 6, 13)", "sizes 7, 13 (was 6, 13)",
	} {
		if !names[want] {
			t.Errorf("no probe %q", want)
		}
	}
}
