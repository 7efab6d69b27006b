package directory

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory/loadgen"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
)

// Benchmarks run against a directory of KEYLINE_DIR_BENCH_N accounts
// (default 1000), built once and cached in $TMPDIR/keyline-dir-bench-v1-<N>
// (building 100k accounts takes about a minute). KEYLINE_DIR_BENCH_NOSYNC=1
// disables fsync during the measured part.
//
//	KEYLINE_DIR_BENCH_N=100000 go test -run='^$' -bench=. -benchtime=20000x ./directory

func benchN() int {
	if v, err := strconv.Atoi(os.Getenv("KEYLINE_DIR_BENCH_N")); err == nil && v > 0 {
		return v
	}
	return 1000
}

const benchPrefix = "bench"

// benchFixture returns the data dir of a directory holding benchN()
// accounts "bench-<i>".
func benchFixture(b *testing.B) string {
	n := benchN()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("keyline-dir-bench-v1-%d", n))
	if _, err := os.Stat(filepath.Join(dir, "complete")); err == nil {
		return dir
	}
	os.RemoveAll(dir)
	start := time.Now()
	s, err := Open(Config{DataDir: dir, EpochInterval: 200 * time.Millisecond, MaxBatch: 5000, QueueSize: 100000, NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	for range 2048 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				a, err := loadgen.NewAccount(benchPrefix, i)
				if err == nil {
					var st *devices.AccountState
					if st, err = a.Create(time.Now()); err == nil {
						var sb []byte
						sb, _ = st.MarshalBinary()
						_, err = s.Update(context.Background(), sb)
					}
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	s.Close()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	b.Logf("built %d-account fixture in %v", n, time.Since(start))
	if err := os.WriteFile(filepath.Join(dir, "complete"), nil, 0o600); err != nil {
		b.Fatal(err)
	}
	return dir
}

func openBench(b *testing.B) *Server {
	dir := benchFixture(b)
	s, err := Open(Config{DataDir: dir, EpochInterval: 100 * time.Millisecond, MaxBatch: 10000, QueueSize: 200000,
		NoSync: os.Getenv("KEYLINE_DIR_BENCH_NOSYNC") == "1"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkUpdate measures sequenced updates per second: b.N signed
// updates (timestamp-only successors of 1-device accounts), submitted by
// 2048 concurrent callers, each fully validated (parse, VRF index,
// VerifyTransition with every signature) and acknowledged after its
// epoch is appended, committed and published.
func BenchmarkUpdate(b *testing.B) {
	s := openBench(b)
	n := benchN()
	accounts := min(n, b.N)
	per := (b.N + accounts - 1) / accounts
	work := make([][][]byte, accounts)
	ctx := context.Background()
	first := rand.IntN(n)
	for k := range accounts {
		i := (first + k) % n
		a, err := loadgen.NewAccount(benchPrefix, i)
		if err != nil {
			b.Fatal(err)
		}
		lb, err := s.Lookup(ctx, a.UserID, 0)
		if err != nil {
			b.Fatal(err)
		}
		u, err := klog.ParseAccountUpdate(lb.AccountUpdate)
		if err != nil {
			b.Fatal(err)
		}
		st, err := devices.ParseAccountState(u.Payload)
		if err != nil {
			b.Fatal(err)
		}
		for range per {
			if st, err = a.Touch(st, time.Now()); err != nil {
				b.Fatal(err)
			}
			sb, _ := st.MarshalBinary()
			work[k] = append(work[k], sb)
		}
	}
	total := accounts * per
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	b.ResetTimer()
	for range min(2048, accounts) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1) - 1)
				if k >= accounts {
					return
				}
				for _, u := range work[k] {
					if _, err := s.Update(ctx, u); err != nil {
						select {
						case errs <- err:
						default:
						}
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "updates/s")
}

// BenchmarkLookup measures lookups served in process and over gRPC on
// loopback, with the bundle size (without the AccountUpdate payload) and
// the payload size. A sample of bundles is fully verified first.
func BenchmarkLookup(b *testing.B) {
	s := openBench(b)
	n := benchN()
	trust := trustOf(b, s)
	ctx := context.Background()
	for range 50 {
		uid := fmt.Sprintf("%s-%d", benchPrefix, rand.IntN(n))
		lb, err := s.Lookup(ctx, uid, 0)
		if err != nil {
			b.Fatal(err)
		}
		if st, err := loadgen.VerifyLookup(trust, uid, lb); err != nil || st == nil {
			b.Fatalf("%s: %v", uid, err)
		}
	}
	c := serveTest(b, s)
	run := func(b *testing.B, lookup func(uid string) (*verifier.LookupBundle, error)) {
		var proofBytes, payloadBytes atomic.Int64
		b.SetParallelism(8)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var pr, pl int64
			for pb.Next() {
				lb, err := lookup(fmt.Sprintf("%s-%d", benchPrefix, rand.IntN(n)))
				if err != nil {
					b.Error(err)
					return
				}
				p, q := loadgen.BundleSize(lb)
				pr, pl = pr+int64(p), pl+int64(q)
			}
			proofBytes.Add(pr)
			payloadBytes.Add(pl)
		})
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
		b.ReportMetric(float64(proofBytes.Load())/float64(b.N), "proof-bytes/lookup")
		b.ReportMetric(float64(payloadBytes.Load())/float64(b.N), "payload-bytes/lookup")
	}
	b.Run("inproc", func(b *testing.B) {
		run(b, func(uid string) (*verifier.LookupBundle, error) { return s.Lookup(ctx, uid, 0) })
	})
	b.Run("grpc", func(b *testing.B) {
		run(b, func(uid string) (*verifier.LookupBundle, error) { return c.Lookup(ctx, uid, 0) })
	})
}
