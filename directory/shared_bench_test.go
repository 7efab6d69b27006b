package directory

import (
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyline/keyline/directory/sqlstate"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/log/embedded"
)

// Benchmarks of the shared (MySQL) state against the embedded (bolt) one,
// in one run, on the same embedded log (docs/scaling.md has the numbers):
//
//	BenchmarkSharedLookup/{bolt,mysql,mysql-db,mysql-2frontends,
//	  mysql-db-2frontends}: lookups/s, in process (no gRPC), of 5,000
//	  existing accounts, VRF proofs cached; "mysql" serves from the
//	  frontend's hash-checked tile and account caches when it can, "-db"
//	  reads the database for every lookup;
//	BenchmarkSharedEpoch/{bolt,mysql}/{1000,10000}: one epoch of that many
//	  new accounts (state commit + log append + checkpoint + view);
//	both report the state's bytes per account.
//
// The directory is prefilled with KEYLINE_MYSQL_BENCH_ACCOUNTS synthetic
// accounts (default 20000; leaves with a 600-byte opaque payload, not
// signed states: only the lookup and epoch paths are measured) in epochs of
// 10,000. Needs KEYLINE_MYSQL_DSN (scripts/integration-mysql.sh with
// KEYLINE_MYSQL_BENCH=1):
//
//	KEYLINE_MYSQL_DSN=... go test -run '^$' -bench Shared -benchtime 2000x ./directory/

func benchSharedAccounts() int {
	if v, err := strconv.Atoi(os.Getenv("KEYLINE_MYSQL_BENCH_ACCOUNTS")); err == nil && v > 0 {
		return v
	}
	return 20000
}

// benchRealUsers is how many prefilled accounts have real user ids (VRF
// proved) to look up; the rest have random indexes.
const benchRealUsers = 5000

type benchDir struct {
	servers []*Server // servers[0] sequences (runEpoch/runEpochShared called by the benchmark)
	uids    []string
	size    func() int64 // state bytes
	next    int          // next synthetic account number
}

// openBenchDir opens a directory on backend ("bolt" or "mysql") with
// frontends extra frontend servers (mysql only), prefilled with n accounts.
// Its own sequencers stay idle: the benchmark cuts every epoch itself.
func openBenchDir(b *testing.B, backend string, frontends, n int) *benchDir {
	ctx := context.Background()
	d := &benchDir{}
	dir := b.TempDir()
	switch backend {
	case "bolt":
		s, err := Open(Config{DataDir: dir, EpochInterval: time.Hour, NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		d.servers = []*Server{s}
		d.size = func() int64 {
			st, _ := os.Stat(filepath.Join(dir, FileDirDB))
			return st.Size()
		}
	case "mysql":
		dsn, db := sharedDSN(b)
		l, err := openBenchLog(b)
		if err != nil {
			b.Fatal(err)
		}
		st, err := sqlstate.Open(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		// The benchmark holds the lease: the servers' sequencers stay standby.
		lease, ok, err := st.AcquireLease(ctx, sqlstate.SequencerLease, "bench", time.Hour)
		if err != nil || !ok {
			b.Fatal(err)
		}
		for i := 0; i <= frontends; i++ {
			role := RoleFrontend
			if i == 0 {
				role = RoleAll
			}
			s, err := Open(Config{DataDir: dir, EpochInterval: time.Hour, NoSync: true, StateBackend: StateMySQL, MySQLDSN: dsn,
				Role: role, LeaseHolder: fmt.Sprintf("bench-server-%d", i), sharedLog: nopCloseLog{l}})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			d.servers = append(d.servers, s)
		}
		d.servers[0].sh.lease.Store(&lease)
		if err := d.servers[0].recoverShared(ctx); err != nil {
			b.Fatal(err)
		}
		d.size = func() int64 {
			db.Exec("ANALYZE TABLE accounts, history, users, map_kv, epochs")
			sz, err := st.Size(ctx)
			if err != nil {
				b.Fatal(err)
			}
			var sum int64
			for _, v := range sz {
				sum += v
			}
			return sum
		}
	}
	start := time.Now()
	for d.next < n {
		k := min(10000, n-d.next)
		d.epoch(b, k, n-benchRealUsers)
	}
	if n > 0 {
		b.Logf("%s: prefilled %d accounts in %v", backend, n, time.Since(start).Round(time.Millisecond))
	}
	for _, s := range d.servers[1:] {
		for _, u := range d.uids {
			s.vrf.get(nil, u) // warm the VRF cache like the sequencer's
		}
	}
	return d
}

func openBenchLog(b *testing.B) (klog.Backend, error) {
	l, err := embedded.Open(filepath.Join(b.TempDir(), FileLogDB), &embedded.Options{NoSync: true})
	if err != nil {
		return nil, err
	}
	b.Cleanup(func() { l.Close() })
	return l, nil
}

// epoch runs one epoch of k new synthetic accounts; those numbered from
// realFrom on get user ids that can be looked up.
func (d *benchDir) epoch(b *testing.B, k, realFrom int) {
	s := d.servers[0]
	batch := make([]*entry, 0, k)
	payload := make([]byte, 600)
	for range k {
		e := &entry{version: 1}
		if d.next >= realFrom {
			e.userID = fmt.Sprintf("bench-%d", d.next)
			pi, index, err := s.vrf.get(s.db, e.userID)
			if err != nil {
				b.Fatal(err)
			}
			e.pi, e.index = pi, index
			d.uids = append(d.uids, e.userID)
		} else {
			crand.Read(e.index[:])
			// The bolt state keys accounts by user id: a synthetic id
			// and proof (never looked up).
			e.userID, e.pi = fmt.Sprintf("synthetic-%d", d.next), make([]byte, vrfProofSize)
		}
		crand.Read(payload[:32])
		leaf, err := (&klog.AccountUpdate{Index: e.index, Version: 1, Update: klog.UpdateCreate, Payload: payload}).Marshal()
		if err != nil {
			b.Fatal(err)
		}
		e.leaf, e.entryHash = leaf, klog.EntryHash(leaf)
		batch = append(batch, e)
		d.next++
	}
	var err error
	if s.sh != nil {
		_, err = s.runEpochShared(context.Background(), batch, nil, false)
	} else {
		_, err = s.runEpoch(context.Background(), batch, false)
	}
	if err != nil {
		b.Fatal(err)
	}
}

// ed25519PerSec measures single-core Ed25519 verifications per second, the
// reference the other rates are divided by.
func ed25519PerSec() float64 {
	pub, priv, _ := ed25519.GenerateKey(crand.Reader)
	msg := []byte("keyline reference")
	sig := ed25519.Sign(priv, msg)
	start := time.Now()
	n := 0
	for time.Since(start) < 200*time.Millisecond {
		for range 100 {
			ed25519.Verify(pub, msg, sig)
		}
		n += 100
	}
	return float64(n) / time.Since(start).Seconds()
}

func BenchmarkSharedLookup(b *testing.B) {
	n := benchSharedAccounts()
	ref := ed25519PerSec()
	dirs := map[string]*benchDir{}
	for _, c := range []struct {
		name      string
		backend   string
		frontends int
		noMemory  bool
	}{{"bolt", "bolt", 0, false}, {"mysql", "mysql", 0, false}, {"mysql-db", "mysql", 0, true}, {"mysql-2frontends", "mysql", 1, false}, {"mysql-db-2frontends", "mysql", 1, true}} {
		d := dirs[c.backend+strconv.Itoa(c.frontends)]
		if d == nil {
			d = openBenchDir(b, c.backend, c.frontends, n)
			dirs[c.backend+strconv.Itoa(c.frontends)] = d
		}
		for _, s := range d.servers {
			if s.sh != nil {
				s.sh.noMemory.Store(c.noMemory)
			}
		}
		b.Run(c.name, func(b *testing.B) {
			servers := d.servers
			if c.frontends > 0 {
				servers = servers[1:] // the frontends only
				servers = append(servers, d.servers[0])
			}
			var ctr atomic.Int64
			ctx := context.Background()
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(ctr.Add(1))
				s := servers[i%len(servers)]
				rng := rand.New(rand.NewPCG(uint64(i), 1))
				for pb.Next() {
					uid := d.uids[rng.IntN(len(d.uids))]
					bl, err := s.Lookup(ctx, uid, 0)
					if err != nil || bl.AccountUpdate == nil {
						b.Fatalf("lookup %s: %v", uid, err)
					}
				}
			})
			rate := float64(b.N) / b.Elapsed().Seconds()
			b.ReportMetric(rate, "lookups/s")
			b.ReportMetric(rate/ref, "lookups/ed25519-verify")
			b.ReportMetric(float64(d.size())/float64(n), "state-B/account")
		})
	}
}

func BenchmarkSharedEpoch(b *testing.B) {
	n := benchSharedAccounts()
	ref := ed25519PerSec()
	for _, backend := range []string{"bolt", "mysql"} {
		d := openBenchDir(b, backend, 0, n)
		b.Run(backend, func(b *testing.B) {
			for _, k := range []int{1000, 10000} {
				b.Run(strconv.Itoa(k), func(b *testing.B) {
					b.ResetTimer()
					for range b.N {
						d.epoch(b, k, math.MaxInt)
					}
					per := b.Elapsed().Seconds() / float64(b.N)
					b.ReportMetric(per*1000, "ms/epoch")
					b.ReportMetric(float64(k)/per, "updates/s")
					b.ReportMetric(float64(k)/per/ref, "updates/ed25519-verify")
				})
			}
			b.ReportMetric(float64(d.size())/float64(d.next), "state-B/account")
		})
	}
}
