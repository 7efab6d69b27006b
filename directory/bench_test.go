package directory

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory/loadgen"
	"github.com/keyline/keyline/internal/boltread"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/log/embedded"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/vrf"
)

// Benchmarks run against a directory of KEYLINE_DIR_BENCH_N accounts
// (default 1000) "bench-<i>", built once and cached in
// $TMPDIR/keyline-dir-bench-v2-<N> by bulkLoad (1M accounts take about 5-10
// minutes on 2 busy cores, 10M about ten times that).
// KEYLINE_DIR_BENCH_NOSYNC=1 disables fsync during the measured part.
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
// accounts "bench-<i>" made by loadgen.Bulk: $TMPDIR/keyline-dir-bench-v2-<N>,
// or KEYLINE_DIR_BENCH_DIR. A fixture is complete once the file "complete"
// exists in it; an incomplete one (an interrupted build) is resumed. A new
// fixture starts as a copy of the complete fixture in
// KEYLINE_DIR_BENCH_FROM, if set (a smaller N), and adds the accounts it
// lacks. The build cuts an epoch every N/16 accounts (at most 625,000), or
// every KEYLINE_DIR_BENCH_EPOCH.
func benchFixture(b *testing.B) string {
	n := benchN()
	dir := os.Getenv("KEYLINE_DIR_BENCH_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), fmt.Sprintf("keyline-dir-bench-v2-%d", n))
	}
	if _, err := os.Stat(filepath.Join(dir, "complete")); err == nil {
		return dir
	}
	start := time.Now()
	if from := os.Getenv("KEYLINE_DIR_BENCH_FROM"); from != "" {
		if _, err := os.Stat(dir); err == nil {
			b.Fatalf("KEYLINE_DIR_BENCH_FROM is set, but %s exists", dir)
		}
		if _, err := os.Stat(filepath.Join(from, "complete")); err != nil {
			b.Fatalf("KEYLINE_DIR_BENCH_FROM=%s is not a complete fixture: %v", from, err)
		}
		if out, err := exec.Command("cp", "-a", from, dir).CombinedOutput(); err != nil {
			b.Fatalf("copying %s: %v: %s", from, err, out)
		}
		os.Remove(filepath.Join(dir, "complete"))
	}
	batch := min(max(n/16, 1000), 625000)
	if v, err := strconv.Atoi(os.Getenv("KEYLINE_DIR_BENCH_EPOCH")); err == nil && v > 0 {
		batch = v
	}
	s, err := Open(Config{DataDir: dir, EpochInterval: time.Hour, MaxBatch: batch, QueueSize: 2 * batch, NoSync: true, Logf: benchLogf})
	if err != nil {
		b.Fatal(err)
	}
	if err := bulkLoad(s, n, func(done int) {
		fmt.Fprintf(os.Stderr, "fixture %s: %d accounts added, %v\n", dir, done, time.Since(start).Round(time.Second))
	}); err != nil {
		s.Close()
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.Logf("built %d-account fixture in %v (epochs of %d)", n, time.Since(start), batch)
	// The build's large epochs leave free pages (bbolt never shrinks a
	// file); a directory converted to layout 3 has none, and neither has
	// the fixture.
	if err := compactFixture(filepath.Join(dir, FileDirDB)); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "complete"), nil, 0o600); err != nil {
		b.Fatal(err)
	}
	return dir
}

// bulkLoad creates the bulk accounts "bench-<i>", i < n, that s lacks
// (s must have no other writers): GOMAXPROCS goroutines make and sign the
// states (loadgen.Bulk) and compute the VRF proofs, and queue the entries
// directly (the server's validation is skipped; one account in 1,000 is
// checked with devices.VerifyCreate here instead); the sequencer cuts an
// epoch whenever MaxBatch entries are queued, and one for the rest.
// progress is called about every 5% of n.
func bulkLoad(s *Server, n int, progress func(added int)) error {
	bulk, err := loadgen.NewBulk(benchPrefix)
	if err != nil {
		return err
	}
	acks := make(chan result, 1024)
	var queued atomic.Int64
	now := time.Now()
	generated := make(chan error, 1)
	go func() {
		generated <- loadgen.ForEach(context.Background(), runtime.GOMAXPROCS(0), n, func(i int) error {
			if e, err := s.committedHead(fmt.Sprintf("%s-%d", benchPrefix, i)); err != nil || e != nil {
				return err // e != nil: an earlier, interrupted build made it
			}
			e, err := bulkEntry(s, bulk, i, now, acks)
			if err != nil {
				return err
			}
			queued.Add(1)
			s.mu.Lock()
			s.queuedBytes += int64(len(e.leaf))
			s.mu.Unlock()
			s.queue <- e
			if len(s.queue) >= s.cfg.MaxBatch {
				s.kickSequencer()
			}
			return nil
		})
	}()
	step := max(n/20, 1)
	for done := 0; generated != nil || done < int(queued.Load()); {
		select {
		case r := <-acks:
			if r.err != nil {
				return r.err
			}
			done++
			if done%step == 0 {
				progress(done)
			}
		case err := <-generated:
			if err != nil {
				return err
			}
			generated = nil
			s.kickSequencer() // the last, partial epoch
		}
	}
	return nil
}

// bulkEntry returns the queued entry that creates bulk account i.
func bulkEntry(s *Server, bulk *loadgen.Bulk, i int, now time.Time, done chan result) (*entry, error) {
	st, err := bulk.Create(i, now)
	if err != nil {
		return nil, err
	}
	if i%1000 == 0 {
		if err := devices.VerifyCreate(st); err != nil {
			return nil, fmt.Errorf("bulk account %d: %w", i, err)
		}
	}
	payload, err := st.MarshalBinary()
	if err != nil {
		return nil, err
	}
	beta, pi := s.keys.vrf.Prove([]byte(st.UserID))
	index := vrf.Index(beta)
	leaf, err := (&klog.AccountUpdate{Index: index, Version: 1, Update: klog.UpdateCreate, Payload: payload}).Marshal()
	if err != nil {
		return nil, err
	}
	return &entry{index: index, userID: st.UserID, pi: pi, version: 1, entryHash: klog.EntryHash(leaf), leaf: leaf, done: done}, nil
}

// compactFixture rewrites the directory.db at path as a compacted copy,
// as the conversion to layout 3 writes it (compactDirDB).
func compactFixture(path string) error {
	db, err := openBolt(path, true)
	if err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err == nil {
		_, err = compactDirDB(db, path+suffixConverting, fi.Size(), false)
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(path+suffixConverting, path)
}

// benchLogf prints the directory's operational messages (a layout
// conversion of the fixture, with its time) to stderr.
func benchLogf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

func openBench(b *testing.B) *Server {
	dir := benchFixture(b)
	// The rate limits are lifted: one client process measures the server.
	// KEYLINE_DIR_BENCH_MAX_RESIDENT sets Config.MaxResident (bytes; -1
	// off; default DefaultMaxResident); the bound is on the RSS of the
	// whole benchmark process, client included.
	// KEYLINE_DIR_BENCH_PREAD sets Config.Pread (auto, on, off).
	maxRes, _ := strconv.ParseInt(os.Getenv("KEYLINE_DIR_BENCH_MAX_RESIDENT"), 10, 64)
	s, err := Open(Config{DataDir: dir, EpochInterval: 100 * time.Millisecond, MaxBatch: 10000, QueueSize: 200000, Logf: benchLogf,
		NoSync: os.Getenv("KEYLINE_DIR_BENCH_NOSYNC") == "1", Limits: Limits{Rate: 1e9, PeerRate: 1e9}, MaxResident: maxRes,
		Pread: os.Getenv("KEYLINE_DIR_BENCH_PREAD")})
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
	bulk, err := loadgen.NewBulk(benchPrefix)
	if err != nil {
		b.Fatal(err)
	}
	for k := range accounts {
		i := (first + k) % n
		a, err := bulk.Account(i)
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
	b.ResetTimer()
	err = loadgen.ForEach(ctx, min(2048, accounts), accounts, func(k int) error {
		for _, u := range work[k] {
			if _, err := s.Update(ctx, u); err != nil {
				return err
			}
		}
		return nil
	})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "updates/s")
}

// BenchmarkLookup measures lookups served in process and over gRPC on
// loopback, with the bundle size (without the AccountUpdate payload) and
// the payload size. A sample of bundles is fully verified first. It also
// reports, for the whole process (client included) during each run, the
// minor page faults, CPU and system CPU per lookup and the peak RSS (VmHWM,
// reset before the run) with its file-backed part at the end (RssFile).
func BenchmarkLookup(b *testing.B) {
	s := openBench(b)
	b.Logf("pread: %v (Config.Pread %s, MaxResident %d MiB)", s.pread.Load() != nil, s.cfg.Pread, s.cfg.MaxResident>>20)
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
		resetPeakRSS()
		ru0, pr0 := rusage(), preadStats(s)
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
		ru1, pr1 := rusage(), preadStats(s)
		b.ReportMetric(float64(pr1.Reads-pr0.Reads)/float64(b.N), "preads/lookup")
		b.ReportMetric(float64(pr1.CacheHits-pr0.CacheHits)/float64(b.N), "cached-pages/lookup")
		b.ReportMetric(float64(ru1.Minflt-ru0.Minflt)/float64(b.N), "minflt/lookup")
		b.ReportMetric(float64(ru1.Stime.Nano()-ru0.Stime.Nano())/1e3/float64(b.N), "sys-µs/lookup")
		b.ReportMetric(float64(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano())/1e3/float64(b.N), "cpu-µs/lookup")
		b.ReportMetric(float64(procStatusKB("VmHWM"))/1024, "VmHWM-MiB")
		b.ReportMetric(float64(procStatusKB("RssFile"))/1024, "RssFile-MiB")
		ref := ed25519PerSec()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/ref, "lookups/ed25519-verify")
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

// rusage returns this process's resource usage (zero if unavailable).
func rusage() syscall.Rusage {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru
}

// resetPeakRSS resets this process's VmHWM to its current RSS (Linux
// /proc/self/clear_refs; nothing elsewhere).
func resetPeakRSS() { os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// procStatusKB returns field (like "VmHWM") of /proc/self/status in KiB,
// -1 if unavailable.
func procStatusKB(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == field+":" {
			if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				return kb
			}
		}
	}
	return -1
}

// preadStats returns the counters of the readers of directory.db and
// log.db, summed (zero without pread).
func preadStats(s *Server) boltread.Stats {
	var st boltread.Stats
	if s.pread.Load() != nil {
		st = s.pread.Load().Stats()
	}
	if l, ok := s.backend.(*embedded.Log); ok {
		ls := l.PreadStats()
		st.Reads += ls.Reads
		st.CacheHits += ls.CacheHits
	}
	return st
}
