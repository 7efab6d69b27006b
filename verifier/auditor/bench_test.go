package auditor_test

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"

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
			for b.Loop() {
				b.StopTimer()
				dir := b.TempDir()
				a, err := auditor.Open(dir, d.Trust(), d.Log, &auditor.Options{Workers: w})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				st, err := a.Run(ctx, nil)
				if err != nil || st.Replayed != size {
					b.Fatal(err)
				}
				b.StopTimer()
				fi, _ := os.Stat(dir + "/" + auditor.StateFile)
				b.ReportMetric(float64(fi.Size())/float64(size), "state-bytes/entry")
				a.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(size)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
			b.ReportMetric(float64(size), "entries")
		})
	}
}
