package embedded_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/keyline/keyline/log/embedded"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// benchLeaf returns a ~300-byte leaf for index i.
func benchLeaf(i uint64) []byte {
	b := make([]byte, 300)
	for j := 0; j < len(b); j += 8 {
		v := i*0x9E3779B97F4A7C15 + uint64(j)
		for k := 0; k < 8 && j+k < len(b); k++ {
			b[j+k] = byte(v >> (8 * k))
		}
	}
	return b
}

// BenchmarkAppend measures durable appends (fsync on every commit) of
// batches of 1000 leaves of 300 bytes to a store that grows during the run.
func BenchmarkAppend(b *testing.B) { benchAppend(b, nil) }

// BenchmarkAppendNoSync is BenchmarkAppend without fsync, to show its cost.
func BenchmarkAppendNoSync(b *testing.B) { benchAppend(b, &embedded.Options{NoSync: true}) }

func benchAppend(b *testing.B, opts *embedded.Options) {
	l, err := embedded.Open(filepath.Join(b.TempDir(), "log.db"), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	batch := make([][]byte, 1000)
	var next uint64
	for b.Loop() {
		for i := range batch {
			batch[i] = benchLeaf(next)
			next++
		}
		if err := l.Append(ctx, next-uint64(len(batch)), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(next)/b.Elapsed().Seconds(), "leaves/s")
	b.SetBytes(300 * 1000)
}

// benchLeaves is the size of the proof benchmark fixture: 1M leaves unless
// KEYLINE_BENCH_LEAVES says otherwise (e.g. 10000000).
func benchLeaves(b *testing.B) uint64 {
	if s := os.Getenv("KEYLINE_BENCH_LEAVES"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 {
			b.Fatalf("KEYLINE_BENCH_LEAVES=%q", s)
		}
		return n
	}
	return 1_000_000
}

// fixture opens a store of n 300-byte leaves, cached across runs in
// $TMPDIR/keyline-bench-<n>.db (or KEYLINE_BENCH_DIR). It is built once with
// NoSync and renamed into place only when complete.
func fixture(b *testing.B, n uint64) *embedded.Log {
	dir := os.Getenv("KEYLINE_BENCH_DIR")
	if dir == "" {
		dir = os.TempDir()
	}
	path := filepath.Join(dir, fmt.Sprintf("keyline-bench-%d.db", n))
	if _, err := os.Stat(path); err != nil {
		tmp := path + ".building"
		os.Remove(tmp)
		l, err := embedded.Open(tmp, &embedded.Options{NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		batch := make([][]byte, 0, 10000)
		for i := uint64(0); i < n; i++ {
			batch = append(batch, benchLeaf(i))
			if len(batch) == cap(batch) || i == n-1 {
				if err := l.Append(ctx, i+1-uint64(len(batch)), batch); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		if err := l.DB().Sync(); err != nil {
			b.Fatal(err)
		}
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			b.Fatal(err)
		}
	}
	l, err := embedded.Open(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	if size, err := l.Size(context.Background()); err != nil || size != n {
		b.Fatalf("fixture %s has size %d, %v; want %d (delete it)", path, size, err, n)
	}
	return l
}

// BenchmarkInclusionProof measures InclusionProof for a random leaf in the
// tree of the full fixture size, and checks each proof once outside the timer.
func BenchmarkInclusionProof(b *testing.B) {
	n := benchLeaves(b)
	l := fixture(b, n)
	defer l.Close()
	ctx := context.Background()
	root, _ := l.RootHash(ctx, n)
	rng := rand.New(rand.NewPCG(1, 2))
	i := rng.Uint64N(n)
	p, err := l.InclusionProof(ctx, i, n)
	if err != nil {
		b.Fatal(err)
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, n, rfc6962.DefaultHasher.HashLeaf(benchLeaf(i)), p, root); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := l.InclusionProof(ctx, rng.Uint64N(n), n); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n), "leaves")
}

// BenchmarkConsistencyProof measures ConsistencyProof from a random size to
// the full fixture size.
func BenchmarkConsistencyProof(b *testing.B) {
	n := benchLeaves(b)
	l := fixture(b, n)
	defer l.Close()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	old := 1 + rng.Uint64N(n-1)
	p, err := l.ConsistencyProof(ctx, old, n)
	if err != nil {
		b.Fatal(err)
	}
	r1, _ := l.RootHash(ctx, old)
	r2, _ := l.RootHash(ctx, n)
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, old, n, p, r1, r2); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := l.ConsistencyProof(ctx, 1+rng.Uint64N(n-1), n); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n), "leaves")
}

// BenchmarkRootHash measures RootHash at a random size.
func BenchmarkRootHash(b *testing.B) {
	n := benchLeaves(b)
	l := fixture(b, n)
	defer l.Close()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(5, 6))
	for b.Loop() {
		if _, err := l.RootHash(ctx, 1+rng.Uint64N(n)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConvert measures the conversion of a format-1 file of
// KEYLINE_BENCH_CONVERT leaves (default 100,000) of 600 bytes, the size of
// an AccountUpdate leaf, by Open; it reports leaves/s and MB/s of leaves.
func BenchmarkConvert(b *testing.B) {
	n := 100_000
	if s := os.Getenv("KEYLINE_BENCH_CONVERT"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	leaves := make([][]byte, n)
	for i := range leaves {
		leaves[i] = append(benchLeaf(uint64(i)), benchLeaf(uint64(i)+1<<40)...)
	}
	dir := b.TempDir()
	template := filepath.Join(dir, "format1.db")
	if err := embedded.WriteFormat1(template, leaves, nil, 10_000); err != nil {
		b.Fatal(err)
	}
	leaves = nil
	path := filepath.Join(dir, "log.db")
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		data, err := os.ReadFile(template)
		if err == nil {
			err = os.WriteFile(path, data, 0o600)
		}
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		l, err := embedded.Open(path, nil)
		if err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		l.Close()
	}
	per := total.Seconds() / float64(b.N)
	b.ReportMetric(float64(n)/per, "leaves/s")
	b.ReportMetric(float64(n)*600/per/1e6, "leaf-MB/s")
}
