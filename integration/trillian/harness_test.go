package trillianit

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory/client"
	"github.com/keyline/keyline/directory/loadgen"
	"github.com/keyline/keyline/log/trillian"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/auditor"
)

// Environment set by scripts/integration-trillian.sh.
const (
	envAddr  = "KEYLINE_TRILLIAN_ADDR"  // trillian_log_server host:port
	envBin   = "KEYLINE_BIN"            // keyline binary (built by the test if unset)
	envCtl   = "KEYLINE_TRILLIAN_CTL"   // the script, run as `ctl STATE kill|start mariadb|signer`
	envState = "KEYLINE_TRILLIAN_STATE" // the script's state directory
)

func trillianAddr(t testing.TB) string {
	t.Helper()
	addr := os.Getenv(envAddr)
	if addr == "" {
		t.Skipf("%s not set: run scripts/integration-trillian.sh", envAddr)
	}
	return addr
}

// needCtl skips unless the script can stop and start the services.
func needCtl(t testing.TB) {
	t.Helper()
	trillianAddr(t)
	if os.Getenv(envCtl) == "" || os.Getenv(envState) == "" {
		t.Skipf("%s and %s not set: run scripts/integration-trillian.sh", envCtl, envState)
	}
}

// ctl kills or starts a service of the script ("mariadb", "signer").
func ctl(t testing.TB, action, service string) {
	t.Helper()
	start := time.Now()
	out, err := exec.Command(os.Getenv(envCtl), "ctl", os.Getenv(envState), action, service).CombinedOutput()
	if err != nil {
		t.Fatalf("ctl %s %s: %v\n%s", action, service, err, out)
	}
	t.Logf("ctl %s %s (%v)", action, service, time.Since(start).Round(time.Millisecond))
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// keylineBin returns the keyline binary: $KEYLINE_BIN, or one built once.
func keylineBin(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(envBin); p != "" {
		return p
	}
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "keyline-it-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "keyline")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/keyline/keyline/cmd/keyline").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// newTree creates a fresh PREORDERED_LOG tree.
func newTree(t testing.TB) int64 {
	t.Helper()
	conn, err := grpc.NewClient(trillianAddr(t), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	name := fmt.Sprintf("kl-it-%d", time.Now().UnixNano()%1e12)
	id, err := trillian.CreateTree(context.Background(), conn, name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// syncBuf is a goroutine-safe buffer.
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

// serveProc is a `keyline serve --log-backend trillian` child process.
type serveProc struct {
	t       testing.TB
	dataDir string
	args    []string
	cmd     *exec.Cmd
	out     *syncBuf
	errb    *syncBuf
	addr    string
	exited  chan struct{}
}

// startServe starts keyline serve on a free port with the data dir and tree
// (extra flags override the defaults).
func startServe(t testing.TB, dataDir string, treeID int64, extra ...string) *serveProc {
	t.Helper()
	p := &serveProc{t: t, dataDir: dataDir, args: append([]string{
		"serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir,
		"--log-backend", "trillian", "--trillian-addr", trillianAddr(t), "--trillian-tree-id", fmt.Sprint(treeID),
		"--epoch-interval", "50ms", "--trillian-integration-timeout", "5s",
	}, extra...)}
	p.start()
	t.Cleanup(p.stop)
	return p
}

var listenRe = regexp.MustCompile(`listening on (\S+)`)

func (p *serveProc) start() {
	p.t.Helper()
	p.out, p.errb = &syncBuf{}, &syncBuf{}
	p.cmd = exec.Command(keylineBin(p.t), p.args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.errb
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.exited = make(chan struct{})
	go func() { p.cmd.Wait(); close(p.exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if m := listenRe.FindStringSubmatch(p.out.String()); m != nil {
			p.addr = m[1]
			return
		}
		select {
		case <-p.exited:
			p.t.Fatalf("serve exited before listening (%v):\n%s\n%s", p.cmd.ProcessState, p.out, p.errb)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.cmd.Process.Kill()
			p.t.Fatalf("serve did not listen within 60s:\n%s\n%s", p.out, p.errb)
		}
	}
}

// kill SIGKILLs serve and waits for it to exit.
func (p *serveProc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// running fails the test if serve exited.
func (p *serveProc) running() {
	p.t.Helper()
	select {
	case <-p.exited:
		p.t.Fatalf("serve exited (%v):\n%s", p.cmd.ProcessState, p.errb)
	default:
	}
}

// stop stops serve with SIGTERM (SIGKILL after 10 s).
func (p *serveProc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
	if s := p.errb.String(); strings.Contains(s, "sequencer stopped") || strings.Contains(s, "stored state inconsistent") {
		p.t.Errorf("serve log reports a failure:\n%s", s)
	}
}

func (p *serveProc) client() *client.Client {
	p.t.Helper()
	c, err := client.Dial(p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { c.Close() })
	return c
}

func (p *serveProc) trust() *verifier.Trust {
	p.t.Helper()
	tr, err := verifier.LoadTrust(filepath.Join(p.dataDir, "trust.json"))
	if err != nil {
		p.t.Fatal(err)
	}
	return tr
}

// ledger records what the directory acknowledged.
type ledger struct {
	mu    sync.Mutex
	acked map[string]uint64 // user id -> highest acknowledged version
	accts map[string]*loadgen.Account
}

func newLedger() *ledger {
	return &ledger{acked: map[string]uint64{}, accts: map[string]*loadgen.Account{}}
}

func (l *ledger) ack(a *loadgen.Account, version uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.accts[a.UserID] = a
	if version > l.acked[a.UserID] {
		l.acked[a.UserID] = version
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

// lookupState returns the verified state of uid (nil if absent).
func lookupState(ctx context.Context, c *client.Client, trust *verifier.Trust, uid string) (*devices.AccountState, error) {
	b, err := c.Lookup(ctx, uid, 0)
	if err != nil {
		return nil, err
	}
	return loadgen.VerifyLookup(trust, uid, b)
}

// load runs writers (creates and updates of their own accounts) and readers
// (verified lookups) against a directory until stop is called.
type load struct {
	led              *ledger
	stopc            chan struct{}
	wg               sync.WaitGroup
	updOK, updErr    atomic.Int64
	lookOK, lookErr  atomic.Int64
	lastErrMu        sync.Mutex
	lastErr          error
	prefix           string
	writers, readers int
	client           *client.Client
	trust            *verifier.Trust
}

func startLoad(t testing.TB, p *serveProc, led *ledger, prefix string) *load {
	l := &load{led: led, stopc: make(chan struct{}), prefix: prefix, writers: 4, readers: 4,
		client: p.client(), trust: p.trust()}
	for w := range l.writers {
		l.wg.Add(1)
		go l.writer(w)
	}
	for r := range l.readers {
		l.wg.Add(1)
		go l.reader(r)
	}
	return l
}

func (l *load) noteErr(err error) {
	l.lastErrMu.Lock()
	l.lastErr = err
	l.lastErrMu.Unlock()
}

func (l *load) writer(w int) {
	defer l.wg.Done()
	rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
	states := map[string]*devices.AccountState{}
	uncertain := map[string]bool{}
	var mine []*loadgen.Account
	next := 0
	for {
		select {
		case <-l.stopc:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var a *loadgen.Account
		if len(mine) == 0 || rng.IntN(3) == 0 {
			var err error
			a, err = loadgen.NewAccount(fmt.Sprintf("%s-w%d", l.prefix, w), next)
			if err != nil {
				panic(err)
			}
			next++
			mine = append(mine, a)
			uncertain[a.UserID] = true // unknown until created or looked up
			states[a.UserID] = nil
		} else {
			a = mine[rng.IntN(len(mine))]
		}
		if uncertain[a.UserID] {
			st, err := lookupState(ctx, l.client, l.trust, a.UserID)
			if err != nil {
				cancel()
				l.noteErr(err)
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
		raw, err := next.MarshalBinary()
		if err != nil {
			panic(err)
		}
		_, err = l.client.Update(ctx, raw)
		cancel()
		if err != nil {
			l.updErr.Add(1)
			l.noteErr(err)
			uncertain[a.UserID] = true
			time.Sleep(20 * time.Millisecond)
			continue
		}
		l.updOK.Add(1)
		states[a.UserID] = next
		l.led.ack(a, next.Version)
	}
}

func (l *load) reader(r int) {
	defer l.wg.Done()
	rng := rand.New(rand.NewPCG(uint64(r)+100, uint64(time.Now().UnixNano())))
	for {
		select {
		case <-l.stopc:
			return
		default:
		}
		acked := l.led.snapshot()
		if len(acked) == 0 {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		n := rng.IntN(len(acked))
		var uid string
		for k := range acked {
			if n == 0 {
				uid = k
				break
			}
			n--
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := lookupState(ctx, l.client, l.trust, uid)
		cancel()
		if err != nil || st == nil {
			l.lookErr.Add(1)
			if err != nil {
				l.noteErr(err)
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		l.lookOK.Add(1)
	}
}

func (l *load) stop(t testing.TB) {
	close(l.stopc)
	l.wg.Wait()
	l.lastErrMu.Lock()
	defer l.lastErrMu.Unlock()
	t.Logf("load: %d updates acknowledged, %d failed; %d lookups verified, %d failed (last error: %v)",
		l.updOK.Load(), l.updErr.Load(), l.lookOK.Load(), l.lookErr.Load(), l.lastErr)
}

// eventually retries f until it succeeds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkDirectory asserts what every fault test requires afterwards: every
// acknowledged update is served (a verified lookup at that version or
// later), a full audit of the log passes, and the directory accepts a new
// update — all without any manual step.
func checkDirectory(t *testing.T, p *serveProc, led *ledger, tag string) {
	t.Helper()
	p.running()
	c, trust := p.client(), p.trust()
	ctx := context.Background()
	acked := led.snapshot()
	eventually(t, 60*time.Second, "a lookup after the fault", func() error {
		_, err := lookupState(ctx, c, trust, "nobody-"+tag)
		return err
	})
	// A new update is accepted (and so the sequencer is past recovery).
	a, err := loadgen.NewAccount("after-"+tag, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, err := a.Create(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := st.MarshalBinary()
	eventually(t, 90*time.Second, "a new update after the fault", func() error {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err := c.Update(ctx, raw)
		if err != nil {
			// It may have landed in an epoch whose acknowledgement failed.
			if got, lerr := lookupState(ctx, c, trust, a.UserID); lerr == nil && got != nil {
				return nil
			}
		}
		return err
	})
	lost := 0
	for uid, v := range acked {
		got, err := lookupState(ctx, c, trust, uid)
		if err != nil {
			t.Fatalf("lookup %s: %v", uid, err)
		}
		if got == nil || got.Version < v {
			lost++
			var have uint64
			if got != nil {
				have = got.Version
			}
			t.Errorf("acknowledged update lost: %s version %d acknowledged, directory has %d", uid, v, have)
		}
	}
	t.Logf("%s: %d acknowledged accounts checked, %d lost", tag, len(acked), lost)
	a2, err := auditor.Open(t.TempDir(), trust, c, &auditor.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Close()
	ast, err := a2.Run(ctx, nil)
	if err != nil {
		t.Fatalf("audit after %s: %v", tag, err)
	}
	if ast.Violation != nil {
		t.Fatalf("audit after %s found a violation: %+v", tag, ast.Violation)
	}
	t.Logf("%s: audit replayed %d leaves, %d accounts", tag, ast.Replayed, ast.Accounts)
	if strings.Contains(p.errb.String(), "sequencer stopped") {
		t.Fatalf("the sequencer stopped:\n%s", p.errb)
	}
	p.logRecovery(tag)
}

// logRecovery logs serve's messages about failed epochs and recovery.
func (p *serveProc) logRecovery(tag string) {
	var lines []string
	for _, l := range strings.Split(p.errb.String(), "\n") {
		if strings.Contains(l, "failed") || strings.Contains(l, "recover") || strings.Contains(l, "replaying") || strings.Contains(l, "not ready") {
			lines = append(lines, l)
		}
	}
	const max = 12
	if len(lines) > max {
		lines = append(lines[:max/2], append([]string{fmt.Sprintf("... (%d more)", len(lines)-max)}, lines[len(lines)-max/2:]...)...)
	}
	p.t.Logf("%s: serve's recovery messages since its last start:\n  %s", tag, strings.Join(lines, "\n  "))
}
