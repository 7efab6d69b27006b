package mapdb

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/keyline/keyline/verifier/vmap"
	"go.etcd.io/bbolt"
)

// Benchmarks run against a fixture map of N accounts, N from the
// KEYLINE_MAP_BENCH_N environment variable (default 20000; use 1000000 for
// the product-size numbers). The fixture is built once and cached in
// $TMPDIR/keyline-mapdb-tiles-S-N.db for later runs; delete it to rebuild.
// KEYLINE_MAP_BENCH_STRIDE sets the tile stride (default DefaultStride).
// BenchmarkEd25519Verify is the reference for ratios (docs/performance.md).
//
//	KEYLINE_MAP_BENCH_N=1000000 go test -run='^$' -bench=. -benchtime=20x ./directory/mapdb

var (
	benchOnce sync.Once
	benchMap  *Map
	benchN    int
	benchErr  error
)

var benchBucket = []byte("bench")

func benchFixture(b *testing.B) (*Map, int) {
	benchOnce.Do(func() {
		benchN = 20000
		if s := os.Getenv("KEYLINE_MAP_BENCH_N"); s != "" {
			if benchN, benchErr = strconv.Atoi(s); benchErr != nil {
				return
			}
		}
		stride := DefaultStride
		if s := os.Getenv("KEYLINE_MAP_BENCH_STRIDE"); s != "" {
			if stride, benchErr = strconv.Atoi(s); benchErr != nil {
				return
			}
		}
		path := filepath.Join(os.TempDir(), fmt.Sprintf("keyline-mapdb-tiles-%d-%d.db", stride, benchN))
		benchMap, benchErr = openFixture(path, benchN, stride)
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchMap, benchN
}

// nextKey returns the fixture's count of inserted keys idx(0..n-1).
func nextKey(tx *bbolt.Tx) int {
	bk := tx.Bucket(benchBucket)
	if bk == nil {
		return 0
	}
	v := bk.Get([]byte("n"))
	if len(v) != 8 {
		return 0
	}
	return int(binary.BigEndian.Uint64(v))
}

func setNextKey(tx *bbolt.Tx, n int) error {
	bk, err := tx.CreateBucketIfNotExists(benchBucket)
	if err != nil {
		return err
	}
	return bk.Put([]byte("n"), binary.BigEndian.AppendUint64(nil, uint64(n)))
}

func openFixture(path string, n, stride int) (*Map, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		InitialMmapSize: 1 << 30,
		// Recommended for the directory's database: without these bbolt
		// rewrites the whole freelist on every commit.
		NoFreelistSync: true,
		FreelistType:   bbolt.FreelistMapType,
	})
	if err != nil {
		return nil, err
	}
	m, err := OpenOptions(db, "map", Options{Stride: stride})
	if err != nil {
		return nil, err
	}
	var have int
	db.View(func(tx *bbolt.Tx) error { have = nextKey(tx); return nil })
	if have >= n {
		return m, nil
	}
	start := time.Now()
	db.NoSync = true
	// Large chunks keep the build near-linear: an epoch rewrites every tile it
	// touches, and 100k updates touch most depth-16 tiles.
	chunk := max(100000, n/8)
	for have < n {
		to := min(have+chunk, n)
		err := db.Update(func(tx *bbolt.Tx) error {
			epoch := uint64(0)
			if e, ok, _ := func() (uint64, bool, error) { b, _ := m.buckets(tx); return latest(b) }(); ok {
				epoch = e + 1
			}
			if _, err := m.ApplyEpochTx(tx, epoch, batch(have, to, 1)); err != nil {
				return err
			}
			return setNextKey(tx, to)
		})
		if err != nil {
			return nil, err
		}
		have = to
	}
	db.NoSync = false
	if err := db.Sync(); err != nil {
		return nil, err
	}
	st, _ := os.Stat(path)
	fmt.Fprintf(os.Stderr, "mapdb bench: built %d-key fixture %s (stride %d) in %v, %d bytes\n",
		n, path, stride, time.Since(start).Round(time.Millisecond), st.Size())
	return m, nil
}

// benchApply applies epochs of k updates, half to existing accounts and half
// new accounts, each epoch one durable (fsynced) bbolt transaction.
func benchApply(b *testing.B, k int) {
	m, n := benchFixture(b)
	rng := rand.New(rand.NewPCG(uint64(k), 7))
	var total int
	var written int64
	for b.Loop() {
		b.StopTimer()
		var next int
		m.db.View(func(tx *bbolt.Tx) error { next = nextKey(tx); return nil })
		seen := make(map[int]bool, k)
		ups := make([]vmap.Update, 0, k)
		for len(ups) < k/2 {
			i := rng.IntN(n)
			if !seen[i] {
				seen[i] = true
				ups = append(ups, vmap.Update{Index: idx(i), Value: val(i, 2+rng.IntN(1000))})
			}
		}
		ups = append(ups, batch(next, next+k-len(ups), 1)...)
		newNext := next + k - k/2
		allocBefore := pageAlloc(m.db)
		b.StartTimer()
		err := m.db.Update(func(tx *bbolt.Tx) error {
			bk, _ := m.buckets(tx)
			e, _, _ := latest(bk)
			if _, err := m.ApplyEpochTx(tx, e+1, ups); err != nil {
				return err
			}
			if err := setNextKey(tx, newNext); err != nil {
				return err
			}
			return nil
		})
		written += pageAlloc(m.db) - allocBefore
		if err != nil {
			b.Fatal(err)
		}
		total += k
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "updates/s")
	// Bytes of bbolt pages the epochs rewrote, per update: the I/O cost
	// that dominates Apply on disk.
	b.ReportMetric(float64(written)/float64(total), "page-bytes/update")
	b.ReportMetric(float64(n), "accounts")
}

func BenchmarkApplyEpoch1000(b *testing.B)  { benchApply(b, 1000) }
func BenchmarkApplyEpoch5000(b *testing.B)  { benchApply(b, 5000) }
func BenchmarkApplyEpoch10000(b *testing.B) { benchApply(b, 10000) }

// BenchmarkProve measures one lookup proof (read transaction + proof),
// with the top tiles cached (warmed before timing), and reports the cache's
// size and the stored tile bytes per account.
func BenchmarkProve(b *testing.B) {
	m, n := benchFixture(b)
	rng := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 2000; i++ {
		m.Prove(idx(rng.IntN(n)))
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.Prove(idx(rng.IntN(n))); err != nil {
			b.Fatal(err)
		}
	}
	st := m.CacheStats()
	b.ReportMetric(float64(st.Bytes), "cache-bytes")
	b.ReportMetric(float64(st.Tiles), "cache-tiles")
	b.ReportMetric(float64(n), "accounts")
	var tileBytes int
	m.db.View(func(tx *bbolt.Tx) error {
		bk, _ := m.buckets(tx)
		return bk.tiles.ForEach(func(k, v []byte) error { tileBytes += len(k) + len(v); return nil })
	})
	b.ReportMetric(float64(tileBytes)/float64(n), "tile-bytes/account")
}

// BenchmarkEd25519Verify is the reference every ratio in
// docs/performance.md divides by: single-core ed25519 verifications.
func BenchmarkEd25519Verify(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	msg := make([]byte, 200)
	sig := ed25519.Sign(priv, msg)
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("signature does not verify")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifies/s")
}

// BenchmarkProveParallel measures lookup proofs on all GOMAXPROCS cores.
func BenchmarkProveParallel(b *testing.B) {
	m, n := benchFixture(b)
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
		for pb.Next() {
			if _, err := m.Prove(idx(rng.IntN(n))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(n), "accounts")
}

// BenchmarkVerify measures client-side decoding and verification of an
// encoded map proof, and reports the mean and max proof size.
func BenchmarkVerify(b *testing.B) {
	m, n := benchFixture(b)
	rng := rand.New(rand.NewPCG(2, 2))
	type sample struct {
		index vmap.Index
		root  vmap.Hash
		enc   []byte
	}
	samples := make([]sample, 1000)
	var sum, maxSize int
	for i := range samples {
		k := idx(rng.IntN(n))
		if i%10 == 0 {
			k = idx(n + 1000000 + i) // absent
		}
		l, err := m.Prove(k)
		if err != nil {
			b.Fatal(err)
		}
		enc, err := l.Proof.MarshalBinary()
		if err != nil {
			b.Fatal(err)
		}
		samples[i] = sample{k, l.Root, enc}
		sum += len(enc)
		maxSize = max(maxSize, len(enc))
	}
	i := 0
	for b.Loop() {
		s := &samples[i%len(samples)]
		i++
		p, err := vmap.ParseProof(s.enc)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := vmap.Verify(s.root, s.index, p); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(sum)/float64(len(samples)), "proof-bytes-mean")
	b.ReportMetric(float64(maxSize), "proof-bytes-max")
	b.ReportMetric(float64(n), "accounts")
}

func pageAlloc(db *bbolt.DB) int64 {
	st := db.Stats()
	return st.TxStats.GetPageAlloc()
}
