package trillian

import (
	"testing"

	"github.com/keyline/keyline/log/logtest"
)

// Benchmarks against a real Trillian (KEYLINE_TRILLIAN_ADDR; skipped
// otherwise). scripts/integration-trillian.sh runs them when
// KEYLINE_TRILLIAN_BENCH=1.

func benchBackend(b *testing.B, size int) *Backend {
	conn := realTrillian(b)
	ctx := b.Context()
	id, err := CreateTree(ctx, conn, treeName(b))
	if err != nil {
		b.Fatal(err)
	}
	be, err := New(ctx, conn, id, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { be.Close() })
	for done := 0; done < size; {
		n := min(size-done, 1000)
		leaves := make([][]byte, n)
		for i := range leaves {
			leaves[i] = logtest.Leaf(uint64(done + i))
		}
		if err := be.Append(ctx, uint64(done), leaves); err != nil {
			b.Fatal(err)
		}
		done += n
	}
	return be
}

// BenchmarkAppend1 measures an acknowledged single-leaf Append: store, wait
// for the signer (its --sequencer_interval dominates), verify the new root.
func BenchmarkAppend1(b *testing.B) {
	be := benchBackend(b, 0)
	i := uint64(0)
	for b.Loop() {
		if err := be.Append(b.Context(), i, [][]byte{logtest.Leaf(i)}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkAppend100 measures Appends of 100 leaves (an epoch's worth).
func BenchmarkAppend100(b *testing.B) {
	be := benchBackend(b, 0)
	i := uint64(0)
	for b.Loop() {
		leaves := make([][]byte, 100)
		first := i
		for j := range leaves {
			leaves[j] = logtest.Leaf(i)
			i++
		}
		if err := be.Append(b.Context(), first, leaves); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInclusionProof measures a verified inclusion proof at a past size
// of a 10000-leaf log (root at that size cached after the first call).
func BenchmarkInclusionProof(b *testing.B) {
	be := benchBackend(b, 10000)
	i := uint64(0)
	for b.Loop() {
		if _, err := be.InclusionProof(b.Context(), i*7919%9000, 9000); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkRootHashPast measures deriving an uncached root at a past size of
// a 10000-leaf log (2 RPCs, verified inclusion proof).
func BenchmarkRootHashPast(b *testing.B) {
	be := benchBackend(b, 10000)
	i := uint64(0)
	for b.Loop() {
		be.mu.Lock()
		clear(be.roots)
		be.mu.Unlock()
		if _, err := be.RootHash(b.Context(), 1+i*7919%9999); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
