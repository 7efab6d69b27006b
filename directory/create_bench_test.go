package directory

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/keyline/keyline/directory/apierr"
	"github.com/keyline/keyline/directory/loadgen"
	"github.com/keyline/keyline/verifier/vrf"
)

// BenchmarkCreate measures account creates sequenced by the server, every
// signature and the VRF checked, with the load generator's key generation
// and signing done before the timer: b.N signed version-1 AccountStates
// (1 device: 4 ed25519 signatures) are generated on all cores, then
// submitted from many goroutines, in process (Server.Update) and over gRPC
// on loopback (client in this process), fsync on, against a copy of the
// KEYLINE_DIR_BENCH_N-account fixture (so the cached fixture does not
// grow), with the default epochs (1 s, at most 5,000 updates); 4096 creates
// in flight (a create waits for its epoch, so the rate is at most the
// creates in flight / the time to the epoch):
//
//	KEYLINE_DIR_BENCH_N=100000 go test -run='^$' -bench=Create -benchtime=20000x ./directory
//
// Reported per sub-benchmark: creates/s (wall); ed25519/s, single-core
// ed25519 verifies/s measured just before (wall), and x-ed25519, creates/s
// divided by it; cpu-µs/create, the process's CPU (getrusage) during the
// timed phase per create (over gRPC it includes the in-process client's
// gRPC cost, so it is an upper bound of the server's), and
// cpu-ed25519/create, the same in single-core ed25519 verifications (CPU
// time of one measured just before, ed25519-cpu-µs: CPU-time ratios do not
// depend on how many other processes share the cores); cpu-bound-creates/s,
// GOMAXPROCS / cpu-µs/create, the rate if the process had the cores to
// itself; of-floor, the floor's CPU per create (4 ed25519 verifies + 1 VRF
// prove, vrf-prove-cpu-µs, both measured in the same run) divided by
// cpu-µs/create: 1 means the server does nothing but the checks it must.
func BenchmarkCreate(b *testing.B) {
	s := openBenchCopy(b)
	run := func(b *testing.B, conc int, update func(ctx context.Context, state []byte) error) {
		ref, verify, prove := ed25519Rate(), loadgen.Ed25519CPU(300*time.Millisecond), vrfProveCPU()
		reqs := pregenerateCreates(b, b.N)
		ctx := context.Background()
		runtime.GC()
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := loadgen.SelfCPU()
		err := loadgen.ForEach(ctx, min(conc, b.N), len(reqs), func(i int) error {
			err := update(ctx, reqs[i])
			for attempt := 0; apierr.Code(err) == codes.ResourceExhausted && attempt < 100; attempt++ {
				time.Sleep(10 * time.Millisecond)
				err = update(ctx, reqs[i])
			}
			if err != nil {
				return fmt.Errorf("create %d: %w", i, err)
			}
			return nil
		})
		cpu := loadgen.SelfCPU() - cpu0
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		rate := float64(b.N) / b.Elapsed().Seconds()
		perCreate := cpu / time.Duration(b.N)
		floor := 4*verify + prove
		b.ReportMetric(rate, "creates/s")
		b.ReportMetric(ref, "ed25519/s")
		b.ReportMetric(rate/ref, "x-ed25519")
		if perCreate <= 0 || verify <= 0 {
			return // process CPU is not measured on this platform
		}
		b.ReportMetric(float64(perCreate.Nanoseconds())/1e3, "cpu-µs/create")
		b.ReportMetric(float64(perCreate)/float64(verify), "cpu-ed25519/create")
		b.ReportMetric(float64(verify.Nanoseconds())/1e3, "ed25519-cpu-µs")
		b.ReportMetric(float64(prove.Nanoseconds())/1e3, "vrf-prove-cpu-µs")
		b.ReportMetric(float64(runtime.GOMAXPROCS(0))/perCreate.Seconds(), "cpu-bound-creates/s")
		b.ReportMetric(float64(floor)/float64(perCreate), "of-floor")
	}
	b.Run("inproc", func(b *testing.B) {
		run(b, 4096, func(ctx context.Context, st []byte) error { _, err := s.Update(ctx, st); return err })
	})
	b.Run("grpc", func(b *testing.B) {
		c := serveTest(b, s)
		run(b, 4096, func(ctx context.Context, st []byte) error { _, err := c.Update(ctx, st); return err })
	})
}

// createRun numbers the benchmark runs of this process, so that every run
// creates new user ids.
var createRun atomic.Int64

// pregenerateCreates returns n signed version-1 AccountStates of new
// synthetic accounts (1 device each), generated on all cores.
func pregenerateCreates(b *testing.B, n int) [][]byte {
	prefix := "create-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.FormatInt(createRun.Add(1), 10)
	reqs, err := loadgen.GenerateCreates(context.Background(), prefix, 0, n)
	if err != nil {
		b.Fatal(err)
	}
	return reqs
}

// ed25519Rate measures single-core ed25519 verifies/s for 300 ms.
func ed25519Rate() float64 { return loadgen.Ed25519Rate(300 * time.Millisecond) }

// vrfProveCPU measures the process CPU time of one VRF prove (of a fresh
// user id each time) on one core, proving for about 300 ms of wall time.
func vrfProveCPU() time.Duration {
	sk, err := vrf.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	c0, start := loadgen.SelfCPU(), time.Now()
	n := 0
	for time.Since(start) < 300*time.Millisecond {
		sk.Prove([]byte("vrf-bench-" + strconv.Itoa(n)))
		n++
	}
	return (loadgen.SelfCPU() - c0) / time.Duration(n)
}

// openBenchCopy opens a copy of the benchmark fixture (fsync on) in a
// temporary directory.
func openBenchCopy(b *testing.B) *Server {
	src := benchFixture(b)
	dst := filepath.Join(b.TempDir(), "data")
	start := time.Now()
	if err := copyTree(src, dst); err != nil {
		b.Fatal(err)
	}
	b.Logf("copied the %d-account fixture in %v", benchN(), time.Since(start).Round(time.Millisecond))
	s, err := Open(Config{DataDir: dst, EpochInterval: DefaultEpochInterval, MaxBatch: DefaultMaxBatch, QueueSize: 200000,
		Limits: Limits{MaxStreamsPerPeer: 8192}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// copyTree copies the regular files and directories under src to dst.
func copyTree(src, dst string) error {
	return filepath.Walk(src, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(to, 0o700)
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, fi.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
