package directory

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/keyline/keyline/directory/loadgen"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/log/embedded"
)

// BenchmarkDisk reports the disk per account of the benchmark fixture
// (building it if needed): the pages bbolt allocates to each top-level
// bucket of directory.db and log.db (bbolt.Bucket.Stats, branch + leaf +
// overflow pages, nested buckets included) and both files' sizes, divided by
// the number of accounts. It measures nothing per iteration.
//
//	KEYLINE_DIR_BENCH_N=1000000 go test -run='^$' -bench=Disk -benchtime=1x ./directory
func BenchmarkDisk(b *testing.B) {
	s := openBench(b)
	n := float64(benchN())
	for b.Loop() {
	}
	report := func(prefix string, db *bbolt.DB) {
		if err := db.View(func(tx *bbolt.Tx) error {
			return tx.ForEach(func(name []byte, bk *bbolt.Bucket) error {
				st := bk.Stats()
				alloc := st.BranchAlloc + st.LeafAlloc
				inuse := st.BranchInuse + st.LeafInuse
				b.ReportMetric(float64(alloc)/n, prefix+"-"+string(name)+"-B/account")
				if alloc > 0 {
					b.Logf("%s %s: %d keys, %d B allocated (%.1f B/account), %.0f%% in use", prefix, name, st.KeyN, alloc, float64(alloc)/n, 100*float64(inuse)/float64(alloc))
				}
				return nil
			})
		}); err != nil {
			b.Fatal(err)
		}
		if fi, err := os.Stat(db.Path()); err == nil {
			b.ReportMetric(float64(fi.Size())/n, prefix+"-file-B/account")
		}
	}
	report("dir", s.db)
	if l, ok := s.backend.(*embedded.Log); ok {
		report("log", l.DB())
	}
}

// BenchmarkEpoch measures the publish time of one epoch of 1,000 or 10,000
// updates (timestamp-only successors of distinct random fixture accounts,
// prepared and signed beforehand and queued without validation): from
// queueing to every acknowledgement, i.e. dropStale, the map and index
// transaction, the log append, publishing, commit and installing the view,
// with fsync (unless KEYLINE_DIR_BENCH_NOSYNC=1). Reports ms/epoch,
// updates/s and the page bytes bbolt allocated (wrote) per update
// (directory.db + log.db).
//
//	KEYLINE_DIR_BENCH_N=10000000 go test -run='^$' -bench=Epoch -benchtime=3x -timeout 2h ./directory
func BenchmarkEpoch(b *testing.B) {
	for _, k := range []int{1000, 10000} {
		b.Run(fmt.Sprint(k), func(b *testing.B) {
			if k > benchN() {
				b.Skipf("an epoch of %d distinct accounts needs KEYLINE_DIR_BENCH_N >= %d", k, k)
			}
			dir := benchFixture(b)
			s, err := Open(Config{DataDir: dir, EpochInterval: time.Hour, MaxBatch: k, QueueSize: k, Logf: benchLogf,
				NoSync: os.Getenv("KEYLINE_DIR_BENCH_NOSYNC") == "1"})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			n := benchN()
			bulk, err := loadgen.NewBulk(benchPrefix)
			if err != nil {
				b.Fatal(err)
			}
			ref := ed25519PerSec()
			var logDB *bbolt.DB
			if l, ok := s.backend.(*embedded.Log); ok {
				logDB = l.DB()
			}
			written := func() int64 {
				st := s.db.Stats()
				w := st.TxStats.GetPageAlloc()
				if logDB != nil {
					lst := logDB.Stats()
					w += lst.TxStats.GetPageAlloc()
				}
				return w
			}
			var total time.Duration
			var bytes int64
			for b.Loop() {
				b.StopTimer()
				acks := make(chan result, k)
				entries := make([]*entry, 0, k)
				seen := map[int]bool{}
				for len(entries) < k {
					i := rand.IntN(n)
					if seen[i] {
						continue
					}
					seen[i] = true
					e, err := bulkTouchEntry(s, bulk, i, acks)
					if err != nil {
						b.Fatal(err)
					}
					entries = append(entries, e)
				}
				w0 := written()
				b.StartTimer()
				start := time.Now()
				for _, e := range entries {
					s.mu.Lock()
					s.queuedBytes += int64(len(e.leaf))
					s.mu.Unlock()
					s.queue <- e
				}
				s.kickSequencer()
				for range k {
					if r := <-acks; r.err != nil {
						b.Fatal(r.err)
					}
				}
				total += time.Since(start)
				b.StopTimer()
				bytes += written() - w0
				b.StartTimer()
			}
			per := total.Seconds() / float64(b.N)
			b.ReportMetric(per*1000, "ms/epoch")
			b.ReportMetric(float64(k)/per, "updates/s")
			b.ReportMetric(float64(k)/per/ref, "updates/ed25519-verify")
			b.ReportMetric(float64(bytes)/float64(k*b.N), "page-B/update")
			b.Logf("ed25519 reference %.0f verifies/s", ref)
		})
	}
}

// bulkTouchEntry returns the queued entry that extends bulk account i's
// latest committed version by a timestamp-only successor.
func bulkTouchEntry(s *Server, bulk *loadgen.Bulk, i int, done chan result) (*entry, error) {
	a, err := bulk.Account(i)
	if err != nil {
		return nil, err
	}
	prev, err := s.committed(context.Background(), a.UserID)
	if err != nil || prev == nil {
		return nil, fmt.Errorf("bulk account %d: %v (found: %v)", i, err, prev != nil)
	}
	next, err := a.Touch(prev.state, time.Now())
	if err != nil {
		return nil, err
	}
	payload, err := next.MarshalBinary()
	if err != nil {
		return nil, err
	}
	leaf, err := (&klog.AccountUpdate{Index: prev.index, Version: prev.version + 1, PrevHash: prev.entryHash, Update: klog.UpdateUpdate, Payload: payload}).Marshal()
	if err != nil {
		return nil, err
	}
	return &entry{index: prev.index, userID: a.UserID, pi: prev.pi, version: prev.version + 1, prevHash: prev.entryHash,
		entryHash: klog.EntryHash(leaf), leaf: leaf, state: next, done: done}, nil
}
