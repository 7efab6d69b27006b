package directory

import (
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"database/sql"
	"fmt"
	mrand "math/rand"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keyline/keyline/directory/loadgen"
	"github.com/keyline/keyline/directory/sqlstate"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/log/embedded"
	"github.com/keyline/keyline/verifier/vrf"
)

// Benchmarks of the shared (MySQL) state against the embedded (bolt) one,
// in one run, on the same embedded log (docs/scaling.md has the numbers):
//
//	BenchmarkSharedLookup/{uniform,zipf}/{bolt,mysql,mysql-db,
//	  mysql-2frontends,mysql-db-2frontends}/{inproc,grpc}: lookups/s of
//	  existing accounts drawn uniformly or from a Zipf distribution (s 1.1),
//	  in process and over gRPC on loopback driven by directory/loadgen (what
//	  `keyline bench` runs; the load generator runs in this process);
//	  "mysql" serves from the frontend's hash-checked tile and account
//	  caches when it can, "-db" reads the database for every lookup; each
//	  run reports the share of lookups served from memory, this process's
//	  and MariaDB's CPU per lookup (mysqld's from /proc, when the server is
//	  local) and the rate per single-core Ed25519 verification measured
//	  just before it;
//	BenchmarkSharedEpoch/{bolt,mysql}/{1000,10000}: one epoch of that many
//	  new accounts (state commit + log append + checkpoint + view);
//	both report the state's bytes per account.
//
// The directory is prefilled with KEYLINE_MYSQL_BENCH_ACCOUNTS synthetic
// accounts (default 20000; leaves with a 600-byte opaque payload, not
// signed states: only the lookup and epoch paths are measured) in epochs of
// 10,000. For the lookups every account is a user "bench-<i>" with its VRF
// proof (both stores use the same fixed benchmark VRF key; the proofs are
// computed once and kept in $TMPDIR/keyline-bench-vrf-<N>.bin). Needs
// KEYLINE_MYSQL_DSN (scripts/integration-mysql.sh with KEYLINE_MYSQL_BENCH=1):
//
//	KEYLINE_MYSQL_DSN=... go test -run '^$' -bench SharedLookup -benchtime 40000x ./directory/
//	KEYLINE_MYSQL_DSN=... go test -run '^$' -bench SharedEpoch -benchtime 2x ./directory/

func benchSharedAccounts() int {
	if v, err := strconv.Atoi(os.Getenv("KEYLINE_MYSQL_BENCH_ACCOUNTS")); err == nil && v > 0 {
		return v
	}
	return 20000
}

// benchVRFSeed is the fixed VRF key of the benchmark directories, so that
// the users' VRF proofs are computed once for both stores (and runs).
var benchVRFSeed = [32]byte{'k', 'e', 'y', 'l', 'i', 'n', 'e', ' ', 'b', 'e', 'n', 'c', 'h'}

// benchUser is a prefilled user with its VRF proof and index.
type benchUser struct {
	pi    []byte
	index [32]byte
}

func benchUID(i int) string { return "bench-" + strconv.Itoa(i) }

// benchUsers returns the VRF proofs of users bench-0 .. bench-(n-1) under
// benchVRFSeed, from $TMPDIR/keyline-bench-vrf-<n>.bin if it is there, else
// computed on every core and stored there.
func benchUsers(b *testing.B, n int) []benchUser {
	sk, err := vrf.NewKeyFromSeed(benchVRFSeed[:])
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(os.TempDir(), fmt.Sprintf("keyline-bench-vrf-%d.bin", n))
	out := make([]benchUser, n)
	if raw, err := os.ReadFile(path); err == nil && len(raw) == n*112 {
		for i := range out {
			r := raw[i*112:]
			out[i] = benchUser{pi: r[:80:80]}
			copy(out[i].index[:], r[80:112])
		}
		// Spot-check the file against the key.
		for _, i := range []int{0, n / 2, n - 1} {
			if _, pi := sk.Prove([]byte(benchUID(i))); string(pi) != string(out[i].pi) {
				b.Fatalf("%s does not hold this key's proofs: delete it", path)
			}
		}
		return out
	}
	start := time.Now()
	loadgen.ForEach(context.Background(), runtime.NumCPU(), n, func(i int) error {
		beta, pi := sk.Prove([]byte(benchUID(i)))
		out[i] = benchUser{pi: pi, index: vrf.Index(beta)}
		return nil
	})
	raw := make([]byte, 0, n*112)
	for _, u := range out {
		raw = append(append(raw, u.pi...), u.index[:]...)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		b.Logf("not caching the VRF proofs: %v", err)
	}
	b.Logf("VRF proofs of %d users in %v", n, time.Since(start).Round(time.Millisecond))
	return out
}

type benchDir struct {
	servers []*Server // servers[0] sequences (runEpoch/runEpochShared called by the benchmark)
	users   []benchUser
	size    func() int64 // state bytes
	next    int          // next synthetic account number
}

// openBenchDir opens a directory on backend ("bolt" or "mysql") with
// frontends extra frontend servers (mysql only), prefilled with n accounts,
// which are the users bench-<i> if users is not nil (their VRF proofs), else
// random indexes. Its own sequencers stay idle: the benchmark cuts every
// epoch itself.
func openBenchDir(b *testing.B, backend string, frontends, n int, users []benchUser) *benchDir {
	ctx := context.Background()
	d := &benchDir{users: users}
	dir := b.TempDir()
	sk, err := vrf.NewKeyFromSeed(benchVRFSeed[:])
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, FileVRFSeed), sk.MarshalSeedFile(), 0o600); err != nil {
		b.Fatal(err)
	}
	switch backend {
	case "bolt":
		// The rate limits are lifted: one client process measures the server.
		// MaxResident -1: the embedded store at its fastest, its files'
		// pages left mapped (the MySQL frontend's memory is its bounded
		// caches; the bound would also count them, as it is on the
		// whole process).
		s, err := Open(Config{DataDir: dir, EpochInterval: time.Hour, NoSync: true, MaxResident: -1, Limits: Limits{Rate: 1e9, PeerRate: 1e9}})
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
			// LeaseDuration: an epoch renews the lease it commits under
			// for this long, and a 10,000-account epoch at 1M accounts
			// on a loaded machine can take longer than the default.
			s, err := Open(Config{DataDir: dir, EpochInterval: time.Hour, NoSync: true, StateBackend: StateMySQL, MySQLDSN: dsn,
				Role: role, LeaseHolder: fmt.Sprintf("bench-server-%d", i), LeaseDuration: time.Hour, sharedLog: nopCloseLog{l},
				Limits: Limits{Rate: 1e9, PeerRate: 1e9}})
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
		d.epoch(b, min(10000, n-d.next))
	}
	if n > 0 {
		b.Logf("%s: prefilled %d accounts in %v", backend, n, time.Since(start).Round(time.Millisecond))
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

// epoch runs one epoch of k new synthetic accounts: users bench-<i> while
// d.users has them, else random indexes.
func (d *benchDir) epoch(b *testing.B, k int) {
	s := d.servers[0]
	batch := make([]*entry, 0, k)
	payload := make([]byte, 600)
	for range k {
		e := &entry{version: 1}
		if d.next < len(d.users) {
			e.userID = benchUID(d.next)
			e.pi, e.index = d.users[d.next].pi, d.users[d.next].index
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

// mysqldCPU returns a reader of the database server's cumulative CPU time
// (from /proc, via the server's pid file), or nil if the server is not a
// local process this one can read.
func mysqldCPU(dsn string) func() (time.Duration, error) {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return nil
	}
	defer db.Close()
	var pidFile string
	if err := db.QueryRow("SELECT @@pid_file").Scan(&pidFile); err != nil {
		return nil
	}
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		return nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return nil
	}
	f := loadgen.ProcessCPU(pid)
	if _, err := f(); err != nil {
		return nil
	}
	return f
}

// mysqldPid returns the database server's pid if it is a local process
// (from its pid file), else 0.
func mysqldPid(dsn string) int {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return 0
	}
	defer db.Close()
	var pidFile string
	if err := db.QueryRow("SELECT @@pid_file").Scan(&pidFile); err != nil {
		return 0
	}
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	return pid
}

// benchProfile, when KEYLINE_BENCH_PROFILE names a directory, writes a CPU
// profile of this process for the timed part of benchmark b there
// (<name>.pprof) and, when dbPid is a local database server and perf is
// installed, perf's samples of that server (<name>.mysqld.perf); it returns
// the function that stops them.
func benchProfile(b *testing.B, dbPid int) func() {
	dir := os.Getenv("KEYLINE_BENCH_PROFILE")
	if dir == "" {
		return func() {}
	}
	name := filepath.Join(dir, strings.NewReplacer("/", "_", "^", "", "$", "").Replace(b.Name()))
	f, err := os.Create(name + ".pprof")
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	var perf *exec.Cmd
	if dbPid > 0 {
		perf = exec.Command("perf", "record", "-g", "-F", "499", "-p", strconv.Itoa(dbPid), "-o", name+".mysqld.perf")
		if err := perf.Start(); err != nil {
			b.Logf("not sampling the database server: %v", err)
			perf = nil
		}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		if perf != nil {
			perf.Process.Signal(os.Interrupt)
			perf.Wait()
		}
	}
}

// processCPU returns this process's cumulative CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchZipf is the exponent of the skewed workload: account i is looked up
// with probability proportional to 1/(i+1)^1.1 (at 1M accounts the 1,000
// hottest get about half the lookups).
const benchZipf = 1.1

func BenchmarkSharedLookup(b *testing.B) {
	n := benchSharedAccounts()
	users := benchUsers(b, n)
	bolt := openBenchDir(b, "bolt", 0, n, users)
	my := openBenchDir(b, "mysql", 1, n, users)
	b.ReportMetric(float64(bolt.size())/float64(n), "bolt-state-B/account")
	b.ReportMetric(float64(my.size())/float64(n), "mysql-state-B/account")
	dbCPU := mysqldCPU(os.Getenv("KEYLINE_MYSQL_DSN"))
	dbPid := mysqldPid(os.Getenv("KEYLINE_MYSQL_DSN"))
	addrs := map[*Server]string{}
	addr := func(s *Server) string {
		if a, ok := addrs[s]; ok {
			return a
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go s.Serve(lis)
		addrs[s] = lis.Addr().String()
		return addrs[s]
	}
	cases := []struct {
		name     string
		servers  []*Server
		noMemory bool
	}{
		{"bolt", bolt.servers, false},
		{"mysql", my.servers[1:], false},
		{"mysql-db", my.servers[1:], true},
		{"mysql-2frontends", my.servers, false},
		{"mysql-db-2frontends", my.servers, true},
	}
	for _, wl := range []struct {
		name string
		zipf float64
	}{{"uniform", 0}, {"zipf", benchZipf}} {
		for _, c := range cases {
			for _, via := range []string{"inproc", "grpc"} {
				b.Run(wl.name+"/"+c.name+"/"+via, func(b *testing.B) {
					for _, s := range my.servers {
						s.sh.noMemory.Store(c.noMemory)
					}
					if via == "grpc" {
						// Warm up (untimed): the connections, the
						// servers' goroutines, what each store keeps
						// in memory.
						benchLookupsGRPC(b, c.servers, addr, n, wl.zipf, benchWarmup)
					}
					var mem0, db0, st0, pt0 uint64
					for _, s := range c.servers {
						if s.sh != nil {
							mem0, db0 = mem0+s.sh.memLookups.Load(), db0+s.sh.dbLookups.Load()
							st0, pt0 = st0+s.sh.batchStmts.Load(), pt0+s.sh.batchPoints.Load()
						}
					}
					ref := ed25519PerSec()
					var dbStart time.Duration
					if dbCPU != nil {
						dbStart, _ = dbCPU()
					}
					procStart := processCPU()
					stopProfile := benchProfile(b, dbPid)
					b.ResetTimer()
					if via == "inproc" {
						benchLookupsInProcess(b, c.servers, n, wl.zipf)
					} else {
						benchLookupsGRPC(b, c.servers, addr, n, wl.zipf, b.N)
					}
					b.StopTimer()
					stopProfile()
					rate := float64(b.N) / b.Elapsed().Seconds()
					b.ReportMetric(rate, "lookups/s")
					b.ReportMetric(rate/ref, "lookups/ed25519-verify")
					b.ReportMetric(float64(processCPU()-procStart)/float64(b.N)/1000, "proc-us/lookup")
					if dbCPU != nil {
						dbEnd, _ := dbCPU()
						b.ReportMetric(float64(dbEnd-dbStart)/float64(b.N)/1000, "mysqld-us/lookup")
					}
					var mem1, db1, st1, pt1, tileBytes, acctBytes uint64
					for _, s := range c.servers {
						if s.sh != nil {
							mem1, db1 = mem1+s.sh.memLookups.Load(), db1+s.sh.dbLookups.Load()
							st1, pt1 = st1+s.sh.batchStmts.Load(), pt1+s.sh.batchPoints.Load()
							tileBytes += uint64(s.sh.m.(tileMap).cache.Stats().Bytes)
							acctBytes += uint64(s.sh.accounts.bytes())
						}
					}
					if c.servers[0].sh != nil {
						if total := (mem1 - mem0) + (db1 - db0); total > 0 {
							b.ReportMetric(float64(mem1-mem0)/float64(total), "from-memory")
						}
						if st1 > st0 {
							b.ReportMetric(float64(pt1-pt0)/float64(st1-st0), "points/statement")
						}
						b.ReportMetric(float64(tileBytes)/(1<<20)/float64(len(c.servers)), "tile-cache-MiB")
						b.ReportMetric(float64(acctBytes)/(1<<20)/float64(len(c.servers)), "account-cache-MiB")
					}
				})
			}
		}
	}
}

// benchPicker returns a source of account numbers in [0, n): uniform, or
// Zipf with exponent zipf if it is above 1.
func benchPicker(seed uint64, n int, zipf float64) func() int {
	if zipf > 1 {
		z := mrand.NewZipf(mrand.New(mrand.NewSource(int64(seed))), zipf, 1, uint64(n-1))
		return func() int { return int(z.Uint64()) }
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	return func() int { return rng.IntN(n) }
}

// benchLookupsInProcess runs b.N lookups on servers (spread evenly), 16
// goroutines.
func benchLookupsInProcess(b *testing.B, servers []*Server, n int, zipf float64) {
	var ctr atomic.Int64
	ctx := context.Background()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		i := int(ctr.Add(1))
		s := servers[i%len(servers)]
		pick := benchPicker(uint64(i), n, zipf)
		for pb.Next() {
			uid := benchUID(pick())
			bl, err := s.Lookup(ctx, uid, 0)
			if err != nil || bl.AccountUpdate == nil {
				b.Fatalf("lookup %s: %v", uid, err)
			}
		}
	})
}

// benchWarmup is how many lookups warm up a gRPC case before it is timed.
const benchWarmup = 2000

// benchLookupsGRPC runs total lookups over gRPC on loopback with the load
// generator, one per server (16 concurrent lookups in all).
func benchLookupsGRPC(b *testing.B, servers []*Server, addr func(*Server) string, n int, zipf float64, total int) {
	var wg sync.WaitGroup
	errs := make([]error, len(servers))
	for i, s := range servers {
		a := addr(s)
		k := total / len(servers)
		if i == 0 {
			k += total % len(servers)
		}
		if k == 0 {
			continue // (loadgen's Lookups 0 means no bound)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := loadgen.Run(context.Background(), loadgen.Options{
				Addr: a, Accounts: n, NoCreate: true, Prefix: "bench", Zipf: zipf,
				Concurrency: 16 / len(servers), Duration: time.Hour, Lookups: k,
			})
			if err == nil && r.Lookups != k {
				err = fmt.Errorf("%d lookups of %d", r.Lookups, k)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSharedEpoch(b *testing.B) {
	n := benchSharedAccounts()
	ref := ed25519PerSec()
	for _, backend := range []string{"bolt", "mysql"} {
		d := openBenchDir(b, backend, 0, n, nil)
		b.Run(backend, func(b *testing.B) {
			for _, k := range []int{1000, 10000} {
				b.Run(strconv.Itoa(k), func(b *testing.B) {
					b.ResetTimer()
					for range b.N {
						d.epoch(b, k)
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
