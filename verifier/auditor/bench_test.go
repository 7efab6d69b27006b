package auditor_test

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/verifier/auditor"
	"github.com/keyline/keyline/verifier/auditor/audittest"
)

// BenchmarkReplay measures a full replay of a log of N accounts with two
// devices each (create entries, then one device-add update for every other
// account), epochs of 1000 entries, from an empty state directory (fsync
// on). N is KEYLINE_AUDIT_BENCH_N (default 2000). The same log is replayed
// sequentially (workers=1, no pre-check) and with the parallel pre-check
// on runtime.GOMAXPROCS goroutines (the default).
//
// Besides entries/s it reports the signature floor measured in the same
// run: sigs/entry is counted during the replay (devices.SignaturesVerified),
// ed25519/s is single-core crypto/ed25519 verification measured for 1 s
// right before and right after the replay (their mean), floor-entries/s =
// workers x ed25519/s / sigs/entry, and floor-fraction = entries/s over
// it. par-ed25519/s is ed25519 verification measured on `workers`
// goroutines at once (what the cores actually delivered, other load
// included) and par-floor-fraction the fraction of the floor computed
// from it.
//
// Wall-clock rates on a machine shared with other work vary from run to
// run, so the same is also reported in process CPU time (getrusage: user +
// system, every thread, GC included), which other load barely changes:
// cpu-µs/entry for the replay, ed25519-cpu-µs per single-core
// verification, and cpu-floor-fraction = sigs/entry x ed25519-cpu-µs /
// cpu-µs/entry, the share of the replay's CPU that is signature
// verification: the fraction of the floor the replay reaches when it keeps
// `workers` cores busy. busy-cores = replay CPU time / wall time says how
// many cores it kept busy.
//
//	KEYLINE_AUDIT_BENCH_N=100000 go test -run='^$' -bench=Replay -benchtime=1x ./verifier/auditor
func BenchmarkReplay(b *testing.B) {
	n := 2000
	if s := os.Getenv("KEYLINE_AUDIT_BENCH_N"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	d, err := audittest.NewDirectory(7)
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Populate(n, 2, 1000); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i += 2 {
		if err := d.AddDevice(d.Accounts["user"+strconv.Itoa(i)]); err != nil {
			b.Fatal(err)
		}
		if (i/2+1)%1000 == 0 {
			if _, err := d.CloseEpoch(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if _, err := d.CloseEpoch(); err != nil {
		b.Fatal(err)
	}
	size := d.Log.Size()
	for _, w := range []int{1, runtime.GOMAXPROCS(0)} {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) {
			var sigs uint64
			var edRate, parRate, edCPU, cpu float64
			for b.Loop() {
				b.StopTimer()
				dir := b.TempDir()
				a, err := auditor.Open(dir, d.Trust(), d.Log, &auditor.Options{Workers: w})
				if err != nil {
					b.Fatal(err)
				}
				r, c := ed25519Rate(1, time.Second)
				edRate, edCPU = edRate+r/2, edCPU+c/2
				r, _ = ed25519Rate(w, time.Second)
				parRate += r / 2
				s0 := devices.SignaturesVerified()
				c0 := cpuTime()
				b.StartTimer()
				st, err := a.Run(ctx, nil)
				if err != nil || st.Replayed != size {
					b.Fatal(err)
				}
				b.StopTimer()
				cpu += cpuTime() - c0
				sigs += devices.SignaturesVerified() - s0
				r, c = ed25519Rate(1, time.Second)
				edRate, edCPU = edRate+r/2, edCPU+c/2
				r, _ = ed25519Rate(w, time.Second)
				parRate += r / 2
				fi, _ := os.Stat(dir + "/" + auditor.StateFile)
				b.ReportMetric(float64(fi.Size())/float64(size), "state-bytes/entry")
				a.Close()
				b.StartTimer()
			}
			runs := float64(b.N)
			rate := float64(size) * runs / b.Elapsed().Seconds()
			perEntry := float64(sigs) / (float64(size) * runs)
			edRate, parRate, edCPU = edRate/runs, parRate/runs, edCPU/runs
			cpuPerEntry := cpu / (float64(size) * runs)
			floor := float64(w) * edRate / perEntry
			b.ReportMetric(rate, "entries/s")
			b.ReportMetric(float64(size), "entries")
			b.ReportMetric(perEntry, "sigs/entry")
			b.ReportMetric(edRate, "ed25519/s")
			b.ReportMetric(floor, "floor-entries/s")
			b.ReportMetric(rate/floor, "floor-fraction")
			b.ReportMetric(parRate, "par-ed25519/s")
			b.ReportMetric(rate/(parRate/perEntry), "par-floor-fraction")
			b.ReportMetric(cpuPerEntry*1e6, "cpu-µs/entry")
			b.ReportMetric(edCPU*1e6, "ed25519-cpu-µs")
			b.ReportMetric(perEntry*edCPU/cpuPerEntry, "cpu-floor-fraction")
			b.ReportMetric(cpu/b.Elapsed().Seconds(), "busy-cores")
		})
	}
}

// cpuTime returns the process's CPU time so far (user + system, all
// threads), in seconds.
func cpuTime() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// ed25519Rate returns the crypto/ed25519 verifications per second of
// workers goroutines verifying for about d, and the process CPU time per
// verification (seconds).
func ed25519Rate(workers int, d time.Duration) (rate, cpu float64) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	msg := make([]byte, 200)
	sig := ed25519.Sign(priv, msg)
	var wg sync.WaitGroup
	counts := make([]int, workers)
	c0 := cpuTime()
	start := time.Now()
	for i := range workers {
		wg.Go(func() {
			for time.Since(start) < d {
				for range 64 {
					if !ed25519.Verify(pub, msg, sig) {
						panic("ed25519 reference signature does not verify")
					}
				}
				counts[i] += 64
			}
		})
	}
	wg.Wait()
	elapsed, cpu := time.Since(start).Seconds(), cpuTime()-c0
	total := 0
	for _, c := range counts {
		total += c
	}
	return float64(total) / elapsed, cpu / float64(total)
}
