// Package logtest holds tests that every log.Backend must pass, and a
// generator of mutated Merkle proofs (probes) that every verifier must reject.
//
// RunConformance checks a backend against a reference tree computed here with
// github.com/transparency-dev/merkle/compact and rfc6962, and verifies every
// proof it returns with github.com/transparency-dev/merkle/proof.
package logtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/keyline/keyline/log"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
)

// reference is an in-memory RFC 6962 tree: leaves and the root at every size.
type reference struct {
	leaves [][]byte
	roots  [][]byte // roots[n] is the root of the first n leaves
	rng    *compact.Range
}

var factory = &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

func newReference() *reference {
	return &reference{roots: [][]byte{rfc6962.DefaultHasher.EmptyRoot()}, rng: factory.NewEmptyRange(0)}
}

func (r *reference) add(leaves ...[]byte) {
	for _, l := range leaves {
		r.leaves = append(r.leaves, bytes.Clone(l))
		if err := r.rng.Append(rfc6962.DefaultHasher.HashLeaf(l), nil); err != nil {
			panic(err)
		}
		root, err := r.rng.GetRootHash(nil)
		if err != nil {
			panic(err)
		}
		r.roots = append(r.roots, root)
	}
}

// Leaf returns the deterministic test leaf number i (varying lengths, 1 to
// 300 bytes), as used by RunConformance.
func Leaf(i uint64) []byte {
	n := 1 + int(i*37%300)
	out := make([]byte, n)
	seed := sha256.Sum256(fmt.Appendf(nil, "keyline logtest leaf %d", i))
	for j := range out {
		out[j] = seed[j%32] ^ byte(j/32)
	}
	return out
}

// RunConformance runs the Backend conformance suite. open must return a new,
// empty backend each time it is called; the suite closes it.
//
// The suite requires: Append stores leaves at the index the caller expects
// and accepts duplicate leaves; an Append whose expected index is not the
// log's size fails with an error wrapping log.ErrConflict and changes
// nothing; Size, Entries, RootHash, InclusionProof and
// ConsistencyProof agree with a reference tree at every size; out-of-range
// requests fail with an error wrapping log.ErrRange; and readers running
// concurrently with the writer only ever observe prefixes of the log.
func RunConformance(t *testing.T, open func(t *testing.T) log.Backend) {
	t.Run("Empty", func(t *testing.T) { testEmpty(t, open(t)) })
	t.Run("AppendAndProofs", func(t *testing.T) { testAppendAndProofs(t, open(t)) })
	t.Run("OutOfRange", func(t *testing.T) { testOutOfRange(t, open(t)) })
	t.Run("Duplicates", func(t *testing.T) { testDuplicates(t, open(t)) })
	t.Run("Conflict", func(t *testing.T) { testConflict(t, open(t)) })
	t.Run("ConcurrentReaders", func(t *testing.T) { testConcurrent(t, open(t)) })
}

func closeBackend(t *testing.T, b log.Backend) {
	t.Helper()
	if err := b.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func testEmpty(t *testing.T, b log.Backend) {
	defer closeBackend(t, b)
	ctx := t.Context()
	if n, err := b.Size(ctx); err != nil || n != 0 {
		t.Fatalf("Size of new log = %d, %v; want 0, nil", n, err)
	}
	root, err := b.RootHash(ctx, 0)
	if err != nil || !bytes.Equal(root, rfc6962.DefaultHasher.EmptyRoot()) {
		t.Errorf("RootHash(0) = %x, %v; want SHA-256(\"\")", root, err)
	}
	if e, err := b.Entries(ctx, 0, 0); err != nil || len(e) != 0 {
		t.Errorf("Entries(0, 0) = %d entries, %v; want 0, nil", len(e), err)
	}
	if p, err := b.ConsistencyProof(ctx, 0, 0); err != nil || len(p) != 0 {
		t.Errorf("ConsistencyProof(0, 0) = %d hashes, %v; want 0, nil", len(p), err)
	}
	if err := b.Append(ctx, 0, nil); err != nil {
		t.Errorf("Append(0, nil) = %v; want nil", err)
	}
	if err := b.Append(ctx, 1, nil); !errors.Is(err, log.ErrConflict) {
		t.Errorf("Append(1, nil) on an empty log = %v; want an error wrapping log.ErrConflict", err)
	}
	expectRange(t, "Entries(0, 1)", func() error { _, err := b.Entries(ctx, 0, 1); return err })
	expectRange(t, "RootHash(1)", func() error { _, err := b.RootHash(ctx, 1); return err })
	expectRange(t, "InclusionProof(0, 0)", func() error { _, err := b.InclusionProof(ctx, 0, 0); return err })
	expectRange(t, "InclusionProof(0, 1)", func() error { _, err := b.InclusionProof(ctx, 0, 1); return err })
	expectRange(t, "ConsistencyProof(0, 1)", func() error { _, err := b.ConsistencyProof(ctx, 0, 1); return err })
}

func expectRange(t *testing.T, what string, f func() error) {
	t.Helper()
	err := f()
	if err == nil {
		t.Errorf("%s succeeded; want error wrapping log.ErrRange", what)
	} else if !errors.Is(err, log.ErrRange) {
		t.Errorf("%s = %v; want error wrapping log.ErrRange", what, err)
	}
}

// appendChecked appends leaves to b and ref at the reference's size.
func appendChecked(t *testing.T, b log.Backend, ref *reference, leaves [][]byte) {
	t.Helper()
	want := uint64(len(ref.leaves))
	if err := b.Append(t.Context(), want, leaves); err != nil {
		t.Fatalf("Append(%d leaves) at size %d: %v", len(leaves), want, err)
	}
	ref.add(leaves...)
}

// testConflict checks that Appends naming another index than the log's size
// fail with log.ErrConflict and store nothing, and that the log then still
// accepts an Append at its size.
func testConflict(t *testing.T, b log.Backend) {
	defer closeBackend(t, b)
	ctx := t.Context()
	ref := newReference()
	appendChecked(t, b, ref, [][]byte{Leaf(7000), Leaf(7001), Leaf(7002)})
	for _, expected := range []uint64{0, 2, 4, 100} {
		err := b.Append(ctx, expected, [][]byte{Leaf(7100 + expected), Leaf(7200 + expected)})
		if !errors.Is(err, log.ErrConflict) {
			t.Fatalf("Append at %d to a log of size 3 = %v; want an error wrapping log.ErrConflict", expected, err)
		}
		if n, err := b.Size(ctx); err != nil || n != 3 {
			t.Fatalf("after a refused Append at %d: Size = %d, %v; want 3", expected, n, err)
		}
	}
	checkEntries(t, b, ref, 0, 3)
	appendChecked(t, b, ref, [][]byte{Leaf(7003)})
	checkEntries(t, b, ref, 0, 4)
	checkRoot(t, b, ref, 4)
	if err := b.Append(ctx, 3, [][]byte{Leaf(7003)}); !errors.Is(err, log.ErrConflict) {
		t.Fatalf("repeating the Append at 3 after it succeeded = %v; want an error wrapping log.ErrConflict", err)
	}
	checkEntries(t, b, ref, 0, 4)
}

func checkRoot(t *testing.T, b log.Backend, ref *reference, size uint64) {
	t.Helper()
	root, err := b.RootHash(t.Context(), size)
	if err != nil {
		t.Fatalf("RootHash(%d): %v", size, err)
	}
	if !bytes.Equal(root, ref.roots[size]) {
		t.Fatalf("RootHash(%d) = %x; reference %x", size, root, ref.roots[size])
	}
}

func checkInclusion(t *testing.T, b log.Backend, ref *reference, index, size uint64, probes bool) {
	t.Helper()
	p, err := b.InclusionProof(t.Context(), index, size)
	if err != nil {
		t.Fatalf("InclusionProof(%d, %d): %v", index, size, err)
	}
	c := InclusionClaim{index, size, rfc6962.DefaultHasher.HashLeaf(ref.leaves[index]), p, ref.roots[size]}
	if err := c.Verify(); err != nil {
		t.Fatalf("InclusionProof(%d, %d) does not verify: %v", index, size, err)
	}
	if probes {
		CheckInclusionProbes(t, c)
	}
}

func checkConsistency(t *testing.T, b log.Backend, ref *reference, s1, s2 uint64, probes bool) {
	t.Helper()
	p, err := b.ConsistencyProof(t.Context(), s1, s2)
	if err != nil {
		t.Fatalf("ConsistencyProof(%d, %d): %v", s1, s2, err)
	}
	c := ConsistencyClaim{s1, s2, p, ref.roots[s1], ref.roots[s2]}
	if err := c.Verify(); err != nil {
		t.Fatalf("ConsistencyProof(%d, %d) does not verify: %v", s1, s2, err)
	}
	if probes && s1 > 0 && s1 < s2 {
		CheckConsistencyProbes(t, c)
	}
}

func checkEntries(t *testing.T, b log.Backend, ref *reference, start, end uint64) {
	t.Helper()
	got, err := b.Entries(t.Context(), start, end)
	if err != nil {
		t.Fatalf("Entries(%d, %d): %v", start, end, err)
	}
	if uint64(len(got)) != end-start {
		t.Fatalf("Entries(%d, %d) returned %d entries", start, end, len(got))
	}
	for i, e := range got {
		if !bytes.Equal(e, ref.leaves[start+uint64(i)]) {
			t.Fatalf("Entries(%d, %d)[%d] = %x; want %x", start, end, i, e, ref.leaves[start+uint64(i)])
		}
	}
}

// batchSizes exercises single leaves, perfect-subtree boundaries and larger batches.
var batchSizes = []int{1, 1, 2, 3, 1, 8, 16, 5, 31, 1, 64, 7, 100, 2, 13, 257}

func testAppendAndProofs(t *testing.T, b log.Backend) {
	defer closeBackend(t, b)
	ctx := t.Context()
	ref := newReference()
	var sizes []uint64
	next := uint64(0)
	for _, n := range batchSizes {
		leaves := make([][]byte, n)
		for i := range leaves {
			leaves[i] = Leaf(next)
			next++
		}
		appendChecked(t, b, ref, leaves)
		size := uint64(len(ref.leaves))
		sizes = append(sizes, size)
		if got, err := b.Size(ctx); err != nil || got != size {
			t.Fatalf("Size after appending to %d = %d, %v", size, got, err)
		}
		checkRoot(t, b, ref, size)
	}
	total := uint64(len(ref.leaves))

	// Roots at every size, including sizes between batches.
	for s := uint64(0); s <= total; s++ {
		checkRoot(t, b, ref, s)
	}
	// Entries: whole log, every batch, and assorted ranges.
	checkEntries(t, b, ref, 0, total)
	prev := uint64(0)
	for _, s := range sizes {
		checkEntries(t, b, ref, prev, s)
		prev = s
	}
	for _, r := range [][2]uint64{{0, 0}, {total, total}, {3, 4}, {5, 77}, {100, total}, {total - 1, total}} {
		checkEntries(t, b, ref, r[0], r[1])
	}
	// Inclusion: every (index, size) for sizes up to 40; then a spread.
	for size := uint64(1); size <= 40; size++ {
		for i := uint64(0); i < size; i++ {
			checkInclusion(t, b, ref, i, size, size <= 20)
		}
	}
	for _, size := range append(sizes, total-1, 255, 256, 257, 300, 511) {
		for _, i := range []uint64{0, 1, size / 3, size / 2, size - 2, size - 1} {
			if i < size {
				checkInclusion(t, b, ref, i, size, true)
			}
		}
	}
	// Consistency: all pairs up to 33; then between batch sizes and a spread.
	for s2 := uint64(0); s2 <= 33; s2++ {
		for s1 := uint64(0); s1 <= s2; s1++ {
			checkConsistency(t, b, ref, s1, s2, s2 <= 17)
		}
	}
	for _, s1 := range sizes {
		for _, s2 := range sizes {
			if s1 <= s2 {
				checkConsistency(t, b, ref, s1, s2, true)
			}
		}
	}
	for _, p := range [][2]uint64{{1, total}, {255, 256}, {256, 257}, {127, total}, {total - 1, total}, {total, total}} {
		checkConsistency(t, b, ref, p[0], p[1], true)
	}
}

func testOutOfRange(t *testing.T, b log.Backend) {
	defer closeBackend(t, b)
	ctx := t.Context()
	ref := newReference()
	leaves := make([][]byte, 10)
	for i := range leaves {
		leaves[i] = Leaf(uint64(i))
	}
	appendChecked(t, b, ref, leaves)
	for _, r := range [][2]uint64{{0, 11}, {10, 11}, {11, 11}, {5, 4}, {11, 12}, {0, 1 << 63}, {^uint64(0), ^uint64(0)}} {
		expectRange(t, fmt.Sprintf("Entries(%d, %d)", r[0], r[1]), func() error { _, err := b.Entries(ctx, r[0], r[1]); return err })
	}
	for _, s := range []uint64{11, 1 << 40, ^uint64(0)} {
		expectRange(t, fmt.Sprintf("RootHash(%d)", s), func() error { _, err := b.RootHash(ctx, s); return err })
	}
	for _, p := range [][2]uint64{{10, 10}, {0, 11}, {10, 11}, {3, 2}, {0, 0}, {^uint64(0), ^uint64(0)}} {
		expectRange(t, fmt.Sprintf("InclusionProof(%d, %d)", p[0], p[1]), func() error { _, err := b.InclusionProof(ctx, p[0], p[1]); return err })
	}
	for _, p := range [][2]uint64{{5, 4}, {0, 11}, {10, 11}, {11, 11}, {11, 10}, {^uint64(0), ^uint64(0)}} {
		expectRange(t, fmt.Sprintf("ConsistencyProof(%d, %d)", p[0], p[1]), func() error { _, err := b.ConsistencyProof(ctx, p[0], p[1]); return err })
	}
	// Errors must not have changed anything.
	if n, err := b.Size(ctx); err != nil || n != 10 {
		t.Fatalf("Size after failed calls = %d, %v; want 10", n, err)
	}
	checkRoot(t, b, ref, 10)
}

func testDuplicates(t *testing.T, b log.Backend) {
	defer closeBackend(t, b)
	ref := newReference()
	l := []byte("the same leaf")
	appendChecked(t, b, ref, [][]byte{l, l})
	appendChecked(t, b, ref, [][]byte{l})
	appendChecked(t, b, ref, [][]byte{[]byte("other"), l})
	checkEntries(t, b, ref, 0, 5)
	for s := uint64(1); s <= 5; s++ {
		checkRoot(t, b, ref, s)
		for i := uint64(0); i < s; i++ {
			checkInclusion(t, b, ref, i, s, false)
		}
	}
}

// testConcurrent runs readers while a writer appends. Every size a reader
// observes must have the reference root, verifiable proofs and the right
// entries.
func testConcurrent(t *testing.T, b log.Backend) {
	defer closeBackend(t, b)
	const batches, per, readers = 20, 25, 4
	ref := newReference()
	all := make([][]byte, batches*per)
	for i := range all {
		all[i] = Leaf(uint64(i) + 1000)
	}
	ref.add(all...) // reference roots for every prefix, computed up front
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, readers+1)
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		for i := 0; i < batches; i++ {
			if err := b.Append(ctx, uint64(i*per), all[i*per:(i+1)*per]); err != nil {
				errs <- fmt.Errorf("writer: Append batch %d: %w", i, err)
				return
			}
		}
	}()
	for r := 0; r < readers; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for iter := 0; ; iter++ {
				select {
				case <-done:
					if iter > 0 {
						return
					}
				default:
				}
				if err := readOnce(ctx, b, ref, uint64(r+iter)); err != nil {
					errs <- fmt.Errorf("reader %d: %w", r, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n, err := b.Size(t.Context()); err != nil || n != uint64(len(all)) {
		t.Fatalf("final Size = %d, %v; want %d", n, err, len(all))
	}
	checkRoot(t, b, ref, uint64(len(all)))
}

func readOnce(ctx context.Context, b log.Backend, ref *reference, salt uint64) error {
	size, err := b.Size(ctx)
	if err != nil {
		return fmt.Errorf("Size: %w", err)
	}
	if size > uint64(len(ref.leaves)) {
		return fmt.Errorf("Size = %d beyond the %d leaves written", size, len(ref.leaves))
	}
	root, err := b.RootHash(ctx, size)
	if err != nil {
		return fmt.Errorf("RootHash(%d): %w", size, err)
	}
	if !bytes.Equal(root, ref.roots[size]) {
		return fmt.Errorf("RootHash(%d) = %x; want %x", size, root, ref.roots[size])
	}
	if size == 0 {
		return nil
	}
	i := salt * 7919 % size
	p, err := b.InclusionProof(ctx, i, size)
	if err != nil {
		return fmt.Errorf("InclusionProof(%d, %d): %w", i, size, err)
	}
	if err := (InclusionClaim{i, size, rfc6962.DefaultHasher.HashLeaf(ref.leaves[i]), p, root}).Verify(); err != nil {
		return fmt.Errorf("InclusionProof(%d, %d): %w", i, size, err)
	}
	old := salt * 104729 % (size + 1)
	cp, err := b.ConsistencyProof(ctx, old, size)
	if err != nil {
		return fmt.Errorf("ConsistencyProof(%d, %d): %w", old, size, err)
	}
	if err := (ConsistencyClaim{old, size, cp, ref.roots[old], root}).Verify(); err != nil {
		return fmt.Errorf("ConsistencyProof(%d, %d): %w", old, size, err)
	}
	e, err := b.Entries(ctx, i, size)
	if err != nil {
		return fmt.Errorf("Entries(%d, %d): %w", i, size, err)
	}
	if uint64(len(e)) != size-i || !bytes.Equal(e[0], ref.leaves[i]) || !bytes.Equal(e[len(e)-1], ref.leaves[size-1]) {
		return fmt.Errorf("Entries(%d, %d) wrong contents", i, size)
	}
	return nil
}
