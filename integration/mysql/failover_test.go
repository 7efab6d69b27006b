// Package mysqlit tests the scale-out deployment as real processes: two
// sequencers and two frontends (`keyline serve --state-backend mysql`) on
// one MariaDB and one Trillian log, run by scripts/integration-mysql.sh.
package mysqlit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory/client"
	"github.com/keyline/keyline/directory/loadgen"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/auditor"
)

// Environment set by scripts/integration-mysql.sh.
const (
	envDSN      = "KEYLINE_MYSQL_DSN"     // MariaDB server (the test creates its database)
	envTrillian = "KEYLINE_TRILLIAN_ADDR" // trillian_log_server host:port
	envTBin     = "KEYLINE_TRILLIAN_BIN"  // directory with createtree
	envBin      = "KEYLINE_BIN"           // keyline binary (built if unset)
	envKills    = "KEYLINE_MYSQL_KILLS"   // SIGKILL rounds (default 3)
)

// lease is the sequencers' lease in the test: short, so takeovers are quick.
const lease = 2 * time.Second

type cluster struct {
	t       testing.TB
	bin     string
	dataDir string
	dsn     string
	db      *sql.DB
	treeID  int64
	procs   []*proc
}

func newCluster(t testing.TB) *cluster {
	for _, v := range []string{envDSN, envTrillian, envTBin} {
		if os.Getenv(v) == "" {
			t.Skipf("%s not set: run scripts/integration-mysql.sh", v)
		}
	}
	c := &cluster{t: t, dataDir: t.TempDir()}
	cfg, err := mysql.ParseDSN(os.Getenv(envDSN))
	if err != nil {
		t.Fatal(err)
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	name := "klit_" + hex.EncodeToString(rnd[:])
	cfg.DBName = ""
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	cfg.DBName = name
	c.dsn = cfg.FormatDSN()
	if c.db, err = sql.Open("mysql", c.dsn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, p := range c.procs {
			p.stop()
		}
		c.db.Close()
		admin.Exec("DROP DATABASE " + name)
		admin.Close()
	})
	out, err := exec.Command(filepath.Join(os.Getenv(envTBin), "createtree"), "--admin_server="+os.Getenv(envTrillian),
		"--tree_type=PREORDERED_LOG", "--display_name=keyline-mysql-it", "--max_root_duration=0").Output()
	if err != nil {
		t.Fatalf("createtree: %v", err)
	}
	if c.treeID, err = strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err != nil {
		t.Fatalf("createtree printed %q", out)
	}
	c.bin = os.Getenv(envBin)
	if c.bin == "" {
		c.bin = filepath.Join(t.TempDir(), "keyline")
		if out, err := exec.Command("go", "build", "-o", c.bin, "github.com/keyline/keyline/cmd/keyline").CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
	}
	return c
}

// proc is one `keyline serve` process.
type proc struct {
	c    *cluster
	name string
	role string
	cmd  *exec.Cmd
	addr string
	errb syncBuf
	done chan struct{}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var listenRE = regexp.MustCompile(`listening on (\S+)`)

func (c *cluster) start(name, role string) *proc {
	p := &proc{c: c, name: name, role: role}
	c.procs = append(c.procs, p)
	p.start()
	return p
}

func (p *proc) start() {
	t := p.c.t
	p.cmd = exec.Command(p.c.bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", p.c.dataDir,
		"--role", p.role, "--state-backend", "mysql",
		"--log-backend", "trillian", "--trillian-addr", os.Getenv(envTrillian), "--trillian-tree-id", strconv.FormatInt(p.c.treeID, 10),
		"--epoch-interval", "100ms", "--lease-duration", lease.String())
	p.cmd.Env = append(os.Environ(), "KEYLINE_MYSQL_DSN="+p.c.dsn)
	p.cmd.Stderr = &p.errb
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.done = make(chan struct{})
	go func() { p.cmd.Wait(); close(p.done) }()
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case p.addr = <-addrc:
	case <-p.done:
		t.Fatalf("%s exited during startup:\n%s", p.name, p.errb.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not listen within 60s:\n%s", p.name, p.errb.String())
	}
}

func (p *proc) signal(sig syscall.Signal) { p.cmd.Process.Signal(sig) }

func (p *proc) kill() {
	p.signal(syscall.SIGKILL)
	<-p.done
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.signal(syscall.SIGCONT)
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.kill()
	}
}

func (p *proc) client() *client.Client {
	c, err := client.Dial(p.addr)
	if err != nil {
		p.c.t.Fatal(err)
	}
	p.c.t.Cleanup(func() { c.Close() })
	return c
}

func (c *cluster) trust() *verifier.Trust {
	tr, err := verifier.LoadTrust(filepath.Join(c.dataDir, "trust.json"))
	if err != nil {
		c.t.Fatal(err)
	}
	return tr
}

// holder returns the process holding the sequencer lease (nil if none
// holds an unexpired lease) and the fencing token.
func (c *cluster) holder() (*proc, uint64) {
	var h string
	var token uint64
	var live bool
	if err := c.db.QueryRow(`SELECT holder, token, expires_at > NOW(6) FROM leases WHERE name = 'sequencer'`).Scan(&h, &token, &live); err != nil || !live {
		return nil, token
	}
	for _, p := range c.procs {
		if p.cmd != nil && p.cmd.Process != nil && strings.Contains(h, fmt.Sprintf(":%d:", p.cmd.Process.Pid)) {
			return p, token
		}
	}
	return nil, token
}

// waitHolder waits until a process other than old holds the lease with a
// token above oldToken, and returns it.
func (c *cluster) waitHolder(t testing.TB, old *proc, oldToken uint64, within time.Duration) (*proc, uint64) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		p, token := c.holder()
		if p != nil && p != old && token > oldToken {
			return p, token
		}
		if time.Now().After(deadline) {
			name := "none"
			if p != nil {
				name = p.name
			}
			t.Fatalf("no takeover from %s within %v: holder %s, token %d (was %d)", old.name, within, name, token, oldToken)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// monitor is a client that keeps verifying lookups on every frontend and
// the consistency of every checkpoint it is served with the largest one it
// verified before, on either frontend: a fork or a rollback fails it.
type monitor struct {
	mu       sync.Mutex
	size     uint64
	root     []byte
	ok, errs atomic.Int64
	lastErr  atomic.Value
	fatal    atomic.Value
}

func (m *monitor) check(ctx context.Context, c *client.Client, trust *verifier.Trust, uid string) error {
	m.mu.Lock()
	size, root := m.size, m.root
	m.mu.Unlock()
	b, err := c.Lookup(ctx, uid, size)
	if err != nil {
		return err
	}
	if b.Held() {
		// The frontend serves the size verified before and omitted the
		// checkpoint: ask for the full bundle to compare the checkpoint
		// (and fetch the consistency proof if it grew meanwhile).
		if b, err = c.Lookup(ctx, uid, 0); err != nil {
			return err
		}
		if cp, err := trust.OpenCheckpoint(b.Checkpoint); err == nil && cp.Size > size {
			if b.Consistency, err = c.ConsistencyProof(ctx, size, cp.Size); err != nil {
				return err
			}
		}
	}
	if _, err := loadgen.VerifyLookup(trust, uid, b); err != nil {
		m.fatal.Store(fmt.Sprintf("lookup does not verify: %v", err))
		return err
	}
	cp, err := trust.OpenCheckpoint(b.Checkpoint)
	if err != nil {
		return err
	}
	if cp.Size < size {
		m.fatal.Store(fmt.Sprintf("checkpoint regressed from %d to %d", size, cp.Size))
		return fmt.Errorf("regressed")
	}
	if size > 0 {
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, size, cp.Size, b.Consistency, root, cp.Hash[:]); err != nil {
			m.fatal.Store(fmt.Sprintf("checkpoint %d not consistent with %d: %v", cp.Size, size, err))
			return err
		}
	}
	m.mu.Lock()
	if cp.Size > m.size {
		m.size, m.root = cp.Size, cp.Hash[:]
	}
	m.mu.Unlock()
	return nil
}

// ledger records acknowledged updates.
type ledger struct {
	mu    sync.Mutex
	acked map[string]uint64
}

func (l *ledger) ack(uid string, v uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if v > l.acked[uid] {
		l.acked[uid] = v
	}
}

func (l *ledger) snapshot() map[string]uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]uint64, len(l.acked))
	for k, v := range l.acked {
		out[k] = v
	}
	return out
}

func lookupState(ctx context.Context, c *client.Client, trust *verifier.Trust, uid string) (*devices.AccountState, error) {
	b, err := c.Lookup(ctx, uid, 0)
	if err != nil {
		return nil, err
	}
	return loadgen.VerifyLookup(trust, uid, b)
}

// load runs writers through the frontends and the monitor on each.
type load struct {
	stopc         chan struct{}
	wg            sync.WaitGroup
	updOK, updErr atomic.Int64
	led           *ledger
	mon           *monitor
}

func startLoad(t testing.TB, fes []*client.Client, trust *verifier.Trust) *load {
	l := &load{stopc: make(chan struct{}), led: &ledger{acked: map[string]uint64{}}, mon: &monitor{}}
	for w := range 4 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			rng := mrand.New(mrand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			states := map[string]*devices.AccountState{}
			uncertain := map[string]bool{}
			var mine []*loadgen.Account
			for n := 0; ; n++ {
				select {
				case <-l.stopc:
					return
				default:
				}
				c := fes[n%len(fes)]
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				var a *loadgen.Account
				if len(mine) == 0 || rng.IntN(3) == 0 {
					a, _ = loadgen.NewAccount(fmt.Sprintf("w%d", w), len(mine))
					mine = append(mine, a)
					states[a.UserID] = nil
				} else {
					a = mine[rng.IntN(len(mine))]
				}
				if uncertain[a.UserID] {
					st, err := lookupState(ctx, c, trust, a.UserID)
					if err != nil {
						cancel()
						time.Sleep(50 * time.Millisecond)
						continue
					}
					states[a.UserID] = st
					delete(uncertain, a.UserID)
				}
				var next *devices.AccountState
				var err error
				if prev := states[a.UserID]; prev == nil {
					next, err = a.Create(time.Now())
				} else {
					next, err = a.Touch(prev, time.Now())
				}
				if err != nil {
					panic(err)
				}
				raw, _ := next.MarshalBinary()
				_, err = c.Update(ctx, raw)
				cancel()
				if err != nil {
					l.updErr.Add(1)
					uncertain[a.UserID] = true
					time.Sleep(20 * time.Millisecond)
					continue
				}
				l.updOK.Add(1)
				states[a.UserID] = next
				l.led.ack(a.UserID, next.Version)
			}
		}()
	}
	for i, c := range fes {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for n := 0; ; n++ {
				select {
				case <-l.stopc:
					return
				case <-time.After(30 * time.Millisecond):
				}
				uid := fmt.Sprintf("w%d-0", (n+i)%4)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if err := l.mon.check(ctx, c, trust, uid); err != nil {
					l.mon.errs.Add(1)
					l.mon.lastErr.Store(err.Error())
				} else {
					l.mon.ok.Add(1)
				}
				cancel()
			}
		}()
	}
	return l
}

func (l *load) stop(t testing.TB) {
	close(l.stopc)
	l.wg.Wait()
	t.Logf("load: %d updates acknowledged, %d failed; monitor: %d lookups verified, %d failed (last: %v)",
		l.updOK.Load(), l.updErr.Load(), l.mon.ok.Load(), l.mon.errs.Load(), l.mon.lastErr.Load())
	if f := l.mon.fatal.Load(); f != nil {
		t.Fatalf("a client saw a bad checkpoint: %v", f)
	}
	// Frontends keep serving while sequencers fail over: lookups and
	// updates (queued until a sequencer publishes them) keep succeeding.
	if ok, bad := l.mon.ok.Load(), l.mon.errs.Load(); ok == 0 || bad*20 > ok {
		t.Fatalf("clients stopped verifying: %d lookups verified, %d failed", ok, bad)
	}
	if ok, bad := l.updOK.Load(), l.updErr.Load(); ok == 0 || bad*10 > ok {
		t.Fatalf("updates failed during failover: %d acknowledged, %d failed", ok, bad)
	}
}

// published waits until the cluster publishes a checkpoint larger than size
// (through fe) and returns its size.
func published(t testing.TB, fe *client.Client, trust *verifier.Trust, size uint64, within time.Duration) uint64 {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		b, err := fe.Lookup(ctx, "probe", 0)
		cancel()
		if err == nil {
			if cp, err := trust.OpenCheckpoint(b.Checkpoint); err == nil && cp.Size > size {
				return cp.Size
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint beyond size %d within %v (last error %v)", size, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFailover: two sequencers and two frontends under load; the active
// sequencer is SIGKILLed repeatedly (restarted as a standby each time), then
// one is SIGSTOPped past its lease and resumed: no acknowledged update is
// lost, clients on either frontend keep verifying, checkpoints never fork or
// regress, the stopped sequencer publishes nothing after it resumes, and a
// full audit of the log passes.
func TestFailover(t *testing.T) {
	c := newCluster(t)
	seqs := []*proc{c.start("seq1", "sequencer")}
	trust := c.trust()
	seqs = append(seqs, c.start("seq2", "sequencer"))
	fes := []*proc{c.start("fe1", "frontend"), c.start("fe2", "frontend")}
	fc := []*client.Client{fes[0].client(), fes[1].client()}
	size := published(t, fc[0], trust, 0, 30*time.Second)
	l := startLoad(t, fc, trust)
	time.Sleep(2 * time.Second)

	kills := 3
	if v, err := strconv.Atoi(os.Getenv(envKills)); err == nil && v > 0 {
		kills = v
	}
	for round := range kills {
		active, token := c.holder()
		if active == nil {
			t.Fatalf("round %d: no sequencer holds the lease", round)
		}
		size = published(t, fc[round%2], trust, size, 10*time.Second)
		start := time.Now()
		active.kill()
		next, token2 := c.waitHolder(t, active, token, lease+20*time.Second)
		// The new holder publishes: a checkpoint beyond the one served
		// after the takeover.
		size = published(t, fc[(round+1)%2], trust, published(t, fc[round%2], trust, 0, 10*time.Second), 20*time.Second)
		t.Logf("round %d: killed %s (token %d); %s took over (token %d) and published size %d after %v",
			round, active.name, token, next.name, token2, size, time.Since(start).Round(time.Millisecond))
		active.start() // back as a standby
		time.Sleep(time.Second)
	}

	// SIGSTOP the active sequencer past its lease, then resume it.
	active, token := c.holder()
	if active == nil {
		t.Fatal("no sequencer holds the lease before SIGSTOP")
	}
	active.signal(syscall.SIGSTOP)
	time.Sleep(lease + time.Second)
	c.waitHolder(t, active, token, 20*time.Second)
	size = published(t, fc[0], trust, size, 20*time.Second)
	active.signal(syscall.SIGCONT)
	time.Sleep(2 * lease)
	// Nothing with the old token after the new holder's first checkpoint
	// (a commit the old holder sent before SIGSTOP may land before that).
	var stale int
	if err := c.db.QueryRow(`SELECT COUNT(*) FROM checkpoints WHERE token <= ? AND seq > (SELECT MIN(seq) FROM checkpoints WHERE token > ?)`, token, token).Scan(&stale); err != nil {
		t.Fatal(err)
	}
	if stale != 0 {
		t.Fatalf("the resumed sequencer %s stored %d checkpoints with its old token %d after the new holder's first", active.name, stale, token)
	}
	var fresh int
	c.db.QueryRow(`SELECT COUNT(*) FROM checkpoints WHERE token > ?`, token).Scan(&fresh)
	if fresh == 0 {
		t.Fatalf("the new holder stored no checkpoint after the takeover")
	}
	if !strings.Contains(active.errb.String(), "stepped down") {
		t.Logf("%s stderr:\n%s", active.name, active.errb.String())
		t.Fatalf("the resumed sequencer %s did not step down", active.name)
	}
	size = published(t, fc[1], trust, size, 20*time.Second)
	l.stop(t)

	// Stored checkpoints: sizes strictly grow, tokens never go back.
	rows, err := c.db.Query(`SELECT note, token FROM checkpoints ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var prevSize, prevToken uint64
	var prevRoot []byte
	n := 0
	for rows.Next() {
		var note []byte
		var tok uint64
		rows.Scan(&note, &tok)
		cp, err := trust.OpenCheckpoint(note)
		if err != nil {
			t.Fatal(err)
		}
		if cp.Size <= prevSize || tok < prevToken {
			t.Fatalf("stored checkpoint %d: size %d token %d after size %d token %d", n, cp.Size, tok, prevSize, prevToken)
		}
		if prevSize > 0 {
			p, err := fc[0].ConsistencyProof(context.Background(), prevSize, cp.Size)
			if err != nil {
				t.Fatal(err)
			}
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, prevSize, cp.Size, p, prevRoot, cp.Hash[:]); err != nil {
				t.Fatalf("stored checkpoints %d and %d fork: %v", prevSize, cp.Size, err)
			}
		}
		prevSize, prevToken, prevRoot = cp.Size, tok, cp.Hash[:]
		n++
	}
	rows.Close()
	t.Logf("%d stored checkpoints, sizes growing, consistent, tokens non-decreasing", n)

	// No acknowledged update is lost, on either frontend.
	acked := l.led.snapshot()
	for _, fe := range fc {
		for uid, v := range acked {
			st, err := lookupState(context.Background(), fe, trust, uid)
			if err != nil {
				t.Fatalf("lookup %s: %v", uid, err)
			}
			if st == nil || st.Version < v {
				t.Errorf("acknowledged update lost: %s version %d acknowledged, served %v", uid, v, st)
			}
		}
	}
	t.Logf("%d accounts with acknowledged updates checked on both frontends", len(acked))
	if l.updOK.Load() == 0 {
		t.Fatal("no update was acknowledged during the test")
	}

	// A full audit of the log passes.
	a, err := auditor.Open(t.TempDir(), trust, fc[1], &auditor.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	st, err := a.Run(context.Background(), nil)
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	if st.Violation != nil {
		t.Fatalf("audit found a violation: %+v", st.Violation)
	}
	t.Logf("audit: replayed %d leaves, %d accounts", st.Replayed, st.Accounts)
	for _, p := range append(seqs, fes...) {
		if strings.Contains(p.errb.String(), "panic") {
			t.Fatalf("%s panicked:\n%s", p.name, p.errb.String())
		}
	}
}
