package embedded_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/keyline/keyline/log"
	"github.com/keyline/keyline/log/embedded"
	"github.com/keyline/keyline/log/logtest"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	bolt "go.etcd.io/bbolt"
)

// roots returns the RFC 6962 root of the first n leaves of leaves, for
// every n from 0.
func roots(t testing.TB, leaves [][]byte) [][]byte {
	t.Helper()
	f := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	rng := f.NewEmptyRange(0)
	out := [][]byte{rfc6962.DefaultHasher.EmptyRoot()}
	for _, l := range leaves {
		if err := rng.Append(rfc6962.DefaultHasher.HashLeaf(l), nil); err != nil {
			t.Fatal(err)
		}
		r, err := rng.GetRootHash(nil)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// checkTree checks every leaf, and roots and proofs at sizes around bundle
// boundaries and at random, against the reference roots of leaves.
func checkTree(t *testing.T, l log.Backend, leaves [][]byte, ref [][]byte, rng *rand.Rand) {
	t.Helper()
	ctx := t.Context()
	n := uint64(len(leaves))
	got, err := l.Entries(ctx, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if !bytes.Equal(got[i], leaves[i]) {
			t.Fatalf("leaf %d differs", i)
		}
	}
	sizes := []uint64{n}
	var boundaries []uint64
	for b := uint64(0); b <= n; b += embedded.BundleWidth {
		boundaries = append(boundaries, b)
	}
	if len(boundaries) > 12 { // the first, the last and 10 at random
		last := boundaries[len(boundaries)-1]
		rng.Shuffle(len(boundaries), func(i, j int) { boundaries[i], boundaries[j] = boundaries[j], boundaries[i] })
		boundaries = append(boundaries[:10], 0, last)
	}
	for _, b := range boundaries {
		for _, s := range []uint64{b - 1, b, b + 1} {
			if s >= 1 && s <= n {
				sizes = append(sizes, s)
			}
		}
	}
	for range 8 {
		sizes = append(sizes, 1+rng.Uint64N(n))
	}
	for _, size := range sizes {
		root, err := l.RootHash(ctx, size)
		if err != nil || !bytes.Equal(root, ref[size]) {
			t.Fatalf("RootHash(%d) = %x, %v; want %x", size, root, err, ref[size])
		}
		for _, i := range []uint64{0, size - 1, rng.Uint64N(size), size &^ (embedded.BundleWidth - 1)} {
			if i >= size {
				continue
			}
			p, err := l.InclusionProof(ctx, i, size)
			if err != nil {
				t.Fatalf("InclusionProof(%d, %d): %v", i, size, err)
			}
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, size, rfc6962.DefaultHasher.HashLeaf(leaves[i]), p, ref[size]); err != nil {
				t.Fatalf("InclusionProof(%d, %d): %v", i, size, err)
			}
		}
		old := rng.Uint64N(size + 1)
		p, err := l.ConsistencyProof(ctx, old, size)
		if err != nil {
			t.Fatalf("ConsistencyProof(%d, %d): %v", old, size, err)
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, old, size, p, ref[old], ref[size]); err != nil {
			t.Fatalf("ConsistencyProof(%d, %d): %v", old, size, err)
		}
	}
	if sc, ok := l.(log.StoredChecker); ok {
		if err := sc.CheckStored(ctx, 0, n); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBundles appends batches of random sizes (1 leaf to several bundles)
// and checks leaves, roots and proofs after each, then after reopening.
func TestBundles(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	path := filepath.Join(t.TempDir(), "log.db")
	l := open(t, path)
	var leaves [][]byte
	for len(leaves) < 3000 {
		k := 1 + rng.IntN(300)
		if rng.IntN(4) == 0 {
			k = embedded.BundleWidth - len(leaves)%embedded.BundleWidth // end exactly on a bundle
		}
		from := uint64(len(leaves))
		for i := range k {
			leaves = append(leaves, logtest.Leaf(from+uint64(i)))
		}
		if err := l.Append(t.Context(), from, leaves[from:]); err != nil {
			t.Fatal(err)
		}
		// Half the batches read the leaves with pread (SetPread).
		if err := l.SetPread(rng.IntN(2) == 0); err != nil {
			t.Fatal(err)
		}
		checkTree(t, l, leaves, roots(t, leaves), rng)
		for range 20 {
			i := rng.Uint64N(uint64(len(leaves)))
			got, err := l.Entries(t.Context(), i, i+1)
			if err != nil || len(got) != 1 || !bytes.Equal(got[0], leaves[i]) {
				t.Fatalf("Entries(%d, %d): %v", i, i+1, err)
			}
		}
	}
	l.Close()
	l = open(t, path)
	defer l.Close()
	checkTree(t, l, leaves, roots(t, leaves), rng)
	// Complete bundles are in "bundles", the rest in "tail", nothing else.
	err := l.DB().View(func(tx *bolt.Tx) error {
		if got, want := tx.Bucket([]byte("bundles")).Stats().KeyN, len(leaves)/embedded.BundleWidth; got != want {
			t.Errorf("%d bundles stored, want %d", got, want)
		}
		if got, want := tx.Bucket([]byte("tail")).Stats().KeyN, len(leaves)%embedded.BundleWidth; got != want {
			t.Errorf("%d tail leaves stored, want %d", got, want)
		}
		return tx.Bucket([]byte("nodes")).ForEach(func(k, v []byte) error {
			if k[0] < 8 {
				t.Errorf("node of level %d stored", k[0])
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkpointNotes signs a checkpoint of the first n leaves for each n of
// sizes.
func checkpointNotes(t *testing.T, ref [][]byte, sizes ...uint64) [][]byte {
	signer, _ := keys(t, "convert")
	var out [][]byte
	for _, n := range sizes {
		msg, err := log.SignCheckpoint(log.Checkpoint{Origin: origin, Size: n, Hash: [32]byte(ref[n])}, signer)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, msg)
	}
	return out
}

func testLeaves(n int) [][]byte {
	leaves := make([][]byte, n)
	for i := range leaves {
		leaves[i] = logtest.Leaf(uint64(i))
	}
	return leaves
}

// TestConvert converts format-1 files of sizes around bundle boundaries and
// checks the leaves, roots, proofs, checkpoint history and the layout, and
// that the log then appends and publishes.
func TestConvert(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	ctx := t.Context()
	signer, verifier := keys(t, "convert")
	for _, n := range []int{0, 1, 255, 256, 257, 700, 1024, 2100} {
		leaves := testLeaves(n)
		ref := roots(t, leaves)
		cps := checkpointNotes(t, ref, 0, uint64(n/2), uint64(n))
		path := filepath.Join(t.TempDir(), "log.db")
		if err := embedded.WriteFormat1(path, leaves, cps, 100); err != nil {
			t.Fatal(err)
		}
		l := open(t, path)
		if _, err := os.Stat(path + embedded.ConvertingSuffix); !os.IsNotExist(err) {
			t.Errorf("size %d: the conversion file is left: %v", n, err)
		}
		if size, err := l.Size(ctx); err != nil || size != uint64(n) {
			t.Fatalf("size %d: converted Size = %d, %v", n, size, err)
		}
		if n > 0 {
			checkTree(t, l, leaves, ref, rng)
		}
		hist, err := l.Checkpoints(ctx)
		if err != nil || len(hist) != len(cps) {
			t.Fatalf("size %d: %d checkpoints after conversion, %v", n, len(hist), err)
		}
		for i := range cps {
			if !bytes.Equal(hist[i], cps[i]) {
				t.Fatalf("size %d: checkpoint %d differs after conversion", n, i)
			}
		}
		if latest, _ := l.LatestCheckpoint(ctx); !bytes.Equal(latest, cps[len(cps)-1]) {
			t.Fatalf("size %d: latest checkpoint differs after conversion", n)
		}
		if err := l.DB().View(func(tx *bolt.Tx) error {
			if tx.Bucket([]byte("leaves")) != nil {
				t.Errorf("size %d: the format-1 leaves bucket is left", n)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		// It grows, publishes (numbering the checkpoint after the copied
		// ones) and reopens.
		more := testLeaves(n + 300)
		if err := l.Append(ctx, uint64(n), more[n:]); err != nil {
			t.Fatal(err)
		}
		msg, err := log.Publish(ctx, l, l, signer, verifier, origin)
		if err != nil {
			t.Fatalf("size %d: Publish after conversion: %v", n, err)
		}
		l.Close()
		l = open(t, path)
		hist, _ = l.Checkpoints(ctx)
		if len(hist) != len(cps)+1 || !bytes.Equal(hist[len(cps)], msg) {
			t.Fatalf("size %d: checkpoint history after conversion and publish has %d entries", n, len(hist))
		}
		checkTree(t, l, more, roots(t, more), rng)
		l.Close()
	}
}

// TestConvertRefusesCorruption checks that a format-1 file whose leaves do
// not hash to its stored nodes is not converted, and is left unchanged.
func TestConvertRefusesCorruption(t *testing.T) {
	leaves := testLeaves(600)
	path := filepath.Join(t.TempDir(), "log.db")
	if err := embedded.WriteFormat1(path, leaves, nil, 1000); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("leaves"))
		k := []byte{0, 0, 0, 0, 0, 0, 1, 44}
		return b.Put(k, flipBit(3)(b.Get(k)))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if l, err := embedded.Open(path, nil); !errors.Is(err, log.ErrCorrupt) {
		if l != nil {
			l.Close()
		}
		t.Fatalf("Open of a corrupt format-1 file = %v; want an error wrapping log.ErrCorrupt", err)
	}
	after, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("the format-1 file changed (%v)", err)
	}
	if _, err := os.Stat(path + embedded.ConvertingSuffix); !os.IsNotExist(err) {
		t.Errorf("the conversion file is left: %v", err)
	}
}

// TestConvertReplacesPartialConversion checks that a conversion file left
// by an interrupted conversion is discarded and the conversion redone.
func TestConvertReplacesPartialConversion(t *testing.T) {
	leaves := testLeaves(1000)
	path := filepath.Join(t.TempDir(), "log.db")
	if err := embedded.WriteFormat1(path, leaves, nil, 1000); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+embedded.ConvertingSuffix, []byte("partial garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := open(t, path)
	defer l.Close()
	checkTree(t, l, leaves, roots(t, leaves), rand.New(rand.NewPCG(1, 1)))
}

func FuzzBundle(f *testing.F) {
	leaves := make([][]byte, embedded.BundleWidth)
	hashes := make([][]byte, embedded.BundleWidth)
	for i := range leaves {
		leaves[i] = bytes.Repeat([]byte{byte(i)}, i%5)
		hashes[i] = rfc6962.DefaultHasher.HashLeaf(leaves[i])
	}
	b, err := embedded.MarshalBundle(hashes, leaves)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b, 3)
	f.Add(b[:len(b)-1], 255)
	f.Add(b[:1536], 0)
	f.Add([]byte{}, 0)
	f.Fuzz(func(t *testing.T, b []byte, j int) {
		groups, all, perr := embedded.ParseBundle(b)
		if j < 0 || j >= embedded.BundleWidth {
			if _, err := embedded.BundleLeaf(b, j); err == nil {
				t.Fatalf("BundleLeaf(%d) accepted", j)
			}
			j = 0
		}
		leaf, lerr := embedded.BundleLeaf(b, j)
		group, gerr := embedded.BundleGroup(b, j%embedded.GroupWidth)
		if perr != nil {
			for _, err := range []error{perr, lerr, gerr} {
				if err != nil && !errors.Is(err, embedded.ErrBundle) {
					t.Fatalf("error %v does not wrap ErrBundle", err)
				}
			}
			return
		}
		// A valid bundle: every leaf and group hash reads the same both ways.
		if lerr != nil || !bytes.Equal(leaf, all[j]) {
			t.Fatalf("BundleLeaf(%d) = %x, %v; ParseBundle has %x", j, leaf, lerr, all[j])
		}
		if gerr != nil || !bytes.Equal(group, groups[j%embedded.GroupWidth]) {
			t.Fatalf("BundleGroup(%d) = %x, %v", j%embedded.GroupWidth, group, gerr)
		}
		// Re-encoding with the leaves' own hashes reproduces b exactly if
		// its group hashes are right, and the offsets and leaves always.
		hs := make([][]byte, len(all))
		for i, l := range all {
			hs[i] = rfc6962.DefaultHasher.HashLeaf(l)
		}
		again, err := embedded.MarshalBundle(hs, all)
		if err != nil || !bytes.Equal(again[512:], b[512:]) {
			t.Fatalf("MarshalBundle(ParseBundle(b)) differs: %v", err)
		}
	})
}
