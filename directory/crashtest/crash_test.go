package crashtest

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory/apierr"
	"github.com/keyline/keyline/directory/client"
	"github.com/keyline/keyline/directory/loadgen"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/auditor"
)

// account is one synthetic account driven by one load worker.
type account struct {
	la    *loadgen.Account
	state *devices.AccountState // latest acknowledged state; nil before the create is acknowledged
	// pending is the encoding of an update sent but neither acknowledged
	// nor refused when the server was killed: it may or may not be in the
	// log.
	pending      []byte
	pendingState *devices.AccountState
}

// ack is one acknowledged update.
type ack struct {
	a       *account
	version uint64
	index   uint64
	leaf    []byte
}

// crashRun is the state of TestServeSIGKILL across trials.
type crashRun struct {
	t        *testing.T
	bin      string
	dir      string
	trust    *verifier.Trust
	auditDir string
	nextID   int

	mu       sync.Mutex
	accounts []*account
	acks     []ack             // acknowledged since the last restart's checks
	seen     map[uint64][]byte // tree size -> root of every checkpoint seen
	maxSize  uint64
	stats    struct {
		trials, startupKills, acks, creates, lookups, adopted, dropped uint64
		failures                                                       map[string]int // refused or unanswered updates by apierr reason
		lookupErrs                                                     map[string]int // failed lookups (not cancelled by the load's end) by error text
	}
}

func trials(t *testing.T) int {
	n := 200
	if v := os.Getenv("KEYLINE_CRASH_TRIALS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("KEYLINE_CRASH_TRIALS=%q: want a positive number", v)
		}
	}
	if testing.Short() {
		n = min(n, 20)
	}
	return n
}

// TestServeSIGKILL runs a real `keyline serve` child process under a load of
// creates, updates and lookups and kills it with SIGKILL at random points
// (also during its startup recovery), KEYLINE_CRASH_TRIALS times (default
// 200). After every restart it checks that
//   - every acknowledged update is in the log at its acknowledged index and
//     is (or was superseded by) the account's served state;
//   - an update whose answer was lost in the kill is either served exactly
//     or absent, never altered;
//   - the new checkpoint does not regress and is consistent with the largest
//     checkpoint ever seen, and no two checkpoints of one size differ;
//   - the real auditor, replaying the log incrementally, finds the map
//     matching the log (every EpochRecord's map root recomputed) and no
//     violation;
//   - the restarted server accepts a new account.
func TestServeSIGKILL(t *testing.T) {
	n := trials(t)
	r, s := newCrashRun(t, filepath.Join(t.TempDir(), "data"))
	defer func() { s.Kill() }()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 15))
	args := serveArgs
	for trial := 0; trial < n; trial++ {
		r.stats.trials++
		c, err := client.Dial(s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		r.afterRestart(c, trial)
		// Load, then SIGKILL at a random point.
		stop := r.startLoad(c, rng)
		time.Sleep(time.Duration(rng.IntN(100_000)) * time.Microsecond)
		s.Kill()
		stop()
		c.Close()
		if r.t.Failed() {
			t.Fatalf("trial %d failed; server stderr:\n%s", trial, tail(s.Stderr()))
		}
		// One time in ten, kill it again during its startup recovery.
		if rng.IntN(10) == 0 {
			r.stats.startupKills++
			s2, err := Start(r.bin, r.dir, false, args...)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Duration(rng.IntN(40_000)) * time.Microsecond)
			s2.Kill()
		}
		if s, err = Start(r.bin, r.dir, true, args...); err != nil {
			t.Fatalf("trial %d: restart: %v", trial, err)
		}
	}
	c, err := client.Dial(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r.afterRestart(c, n)
	st := r.stats
	t.Logf("%d SIGKILLs (%d during startup recovery), %d acknowledged updates (%d creates), %d lookups; in flight at a kill: %d published, %d not; log size %d, 0 acknowledged updates lost",
		st.trials, st.startupKills, st.acks, st.creates, st.lookups, st.adopted, st.dropped, r.maxSize)
	if st.acks == 0 {
		t.Fatal("no update was acknowledged: the test exercised nothing")
	}
}

// serveArgs are the serve flags of the tests: short epochs.
var serveArgs = []string{"--epoch-interval", "5ms"}

// newCrashRun builds keyline, starts `keyline serve` on dataDir and loads
// its trust file.
func newCrashRun(t *testing.T, dataDir string) (*crashRun, *Serve) {
	r := &crashRun{t: t, dir: dataDir, auditDir: t.TempDir(), seen: map[uint64][]byte{}}
	r.stats.failures = map[string]int{}
	r.stats.lookupErrs = map[string]int{}
	var err error
	if r.bin, err = Build(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	s, err := Start(r.bin, r.dir, true, serveArgs...)
	if err != nil {
		t.Fatal(err)
	}
	if r.trust, err = verifier.LoadTrust(filepath.Join(r.dir, "trust.json")); err != nil {
		s.Kill()
		t.Fatal(err)
	}
	return r, s
}

// startLoad starts the load workers on c (two readers, four writers); the
// returned function stops them and waits for them.
func (r *crashRun) startLoad(c *client.Client, rng *rand.Rand) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		wrng := rand.New(rand.NewPCG(rng.Uint64(), uint64(w)))
		go func() {
			defer wg.Done()
			r.worker(ctx, c, wrng, w < 2)
		}()
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

func tail(s string) string {
	if len(s) > 3000 {
		return "..." + s[len(s)-3000:]
	}
	return s
}

// worker creates accounts, updates its own accounts and looks them up
// until ctx ends (the server is killed). A reader only looks up accounts.
func (r *crashRun) worker(ctx context.Context, c *client.Client, rng *rand.Rand, reader bool) {
	var mine []*account
	for ctx.Err() == nil {
		if reader {
			r.mu.Lock()
			n := len(r.accounts)
			var uid string
			if n > 0 {
				uid = r.accounts[rng.IntN(n)].la.UserID
			}
			r.mu.Unlock()
			if n == 0 {
				return
			}
			r.lookup(ctx, c, uid)
			continue
		}
		switch x := rng.IntN(10); {
		case x < 3 || len(mine) == 0:
			r.mu.Lock()
			id := r.nextID
			r.nextID++
			r.mu.Unlock()
			la, err := loadgen.NewAccount("crash", id)
			if err != nil {
				r.t.Error(err)
				return
			}
			a := &account{la: la}
			st, err := la.Create(time.Now())
			if err != nil {
				r.t.Error(err)
				return
			}
			mine = append(mine, a)
			r.mu.Lock()
			r.accounts = append(r.accounts, a)
			r.mu.Unlock()
			r.send(ctx, c, a, st)
		case x < 7:
			a := mine[rng.IntN(len(mine))]
			if a.state == nil || a.pending != nil {
				continue
			}
			st, err := a.la.Touch(a.state, time.Now())
			if err != nil {
				r.t.Error(err)
				return
			}
			r.send(ctx, c, a, st)
		default:
			r.lookup(ctx, c, mine[rng.IntN(len(mine))].la.UserID)
		}
	}
}

// lookup looks uid up and counts the answer, or the error unless ctx
// ended (the load stopped; a killed server's errors are counted too, and
// only read by the fault tests, whose server is not killed under load).
func (r *crashRun) lookup(ctx context.Context, c *client.Client, uid string) {
	b, err := c.Lookup(ctx, uid, 0)
	if err != nil {
		if ctx.Err() == nil {
			r.mu.Lock()
			r.stats.lookupErrs[err.Error()]++
			r.mu.Unlock()
		}
		return
	}
	r.sawCheckpoint(b.Checkpoint)
	r.mu.Lock()
	r.stats.lookups++
	r.mu.Unlock()
}

// send submits st for a and records the acknowledgement, or marks st as
// pending if the answer is lost.
func (r *crashRun) send(ctx context.Context, c *client.Client, a *account, st *devices.AccountState) {
	b, err := st.MarshalBinary()
	if err != nil {
		r.t.Error(err)
		return
	}
	res, err := c.Update(ctx, b)
	if err != nil {
		// Killed (or cancelled, or refused) before the answer: it may be in
		// the log.
		a.pending, a.pendingState = b, st
		r.mu.Lock()
		r.stats.failures[apierr.Reason(err)]++
		r.mu.Unlock()
		return
	}
	r.sawCheckpoint(res.Checkpoint)
	r.mu.Lock()
	defer r.mu.Unlock()
	a.state = st
	r.acks = append(r.acks, ack{a: a, version: st.Version, index: res.LogIndex, leaf: res.Leaf})
	r.stats.acks++
	if st.Version == 1 {
		r.stats.creates++
	}
}

// sawCheckpoint verifies a checkpoint the server handed out and records
// its size and root: two checkpoints of one size must be identical.
func (r *crashRun) sawCheckpoint(note []byte) {
	vc, err := r.trust.OpenCheckpoint(note)
	if err != nil {
		r.t.Errorf("served checkpoint does not verify: %v", err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.seen[vc.Size]; ok && !bytes.Equal(old, vc.Hash[:]) {
		r.t.Errorf("fork: two checkpoints of size %d with roots %x and %x", vc.Size, old, vc.Hash[:])
	}
	r.seen[vc.Size] = bytes.Clone(vc.Hash[:])
	r.maxSize = max(r.maxSize, vc.Size)
}

// afterRestart runs the checks listed on TestServeSIGKILL.
func (r *crashRun) afterRestart(c *client.Client, trial int) {
	t := r.t
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	fail := func(f string, a ...any) { t.Fatalf("after restart %d: "+f, append([]any{trial}, a...)...) }

	// Checkpoint: no regression, consistent with the largest seen.
	note, err := c.Checkpoint(ctx)
	if err != nil {
		fail("checkpoint: %v", err)
	}
	vc, err := r.trust.OpenCheckpoint(note)
	if err != nil {
		fail("checkpoint: %v", err)
	}
	if vc.Size < r.maxSize {
		fail("checkpoint regressed from size %d to %d", r.maxSize, vc.Size)
	}
	if r.maxSize > 0 {
		p, err := c.ConsistencyProof(ctx, r.maxSize, vc.Size)
		if err != nil {
			fail("consistency proof: %v", err)
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, r.maxSize, vc.Size, p, r.seen[r.maxSize], vc.Hash[:]); err != nil {
			fail("fork: checkpoint of size %d is not consistent with the one of size %d seen before: %v", vc.Size, r.maxSize, err)
		}
	}
	r.sawCheckpoint(note)

	// Every acknowledged update is in the log where acknowledged, and the
	// account is served at that version or later.
	for _, k := range r.acks {
		leaves, err := c.Entries(ctx, k.index, k.index+1)
		if err != nil {
			fail("reading acknowledged leaf %d: %v", k.index, err)
		}
		if !bytes.Equal(leaves[0], k.leaf) {
			fail("LOST acknowledged update: %s v%d is not at log index %d", k.a.la.UserID, k.version, k.index)
		}
		if v, _ := r.served(ctx, c, k.a.la.UserID, fail); v < k.version {
			fail("LOST acknowledged update: %s served at v%d, v%d was acknowledged", k.a.la.UserID, v, k.version)
		}
	}
	r.acks = nil

	// Updates in flight at the kill: served exactly, or absent.
	for _, a := range r.accounts {
		if a.pending == nil {
			continue
		}
		v, payload := r.served(ctx, c, a.la.UserID, fail)
		var have uint64
		if a.state != nil {
			have = a.state.Version
		}
		switch {
		case v == have:
			r.stats.dropped++
		case v == have+1 && bytes.Equal(payload, a.pending):
			a.state = a.pendingState
			r.stats.adopted++
		default:
			fail("%s served at v%d: neither the acknowledged v%d nor the in-flight update", a.la.UserID, v, have)
		}
		a.pending, a.pendingState = nil, nil
	}

	// The real auditor replays the new leaves: map roots recomputed from the
	// log match every EpochRecord, and no rule is broken.
	// (Its state persists in auditDir; it reads through this trial's client.)
	au, err := auditor.Open(r.auditDir, r.trust, c, &auditor.Options{NoSync: true})
	if err != nil {
		fail("auditor: %v", err)
	}
	st, err := au.Run(ctx, nil)
	au.Close()
	if err != nil {
		fail("auditor: %v", err)
	}
	if st.Violation != nil || st.Checkpoint == nil || st.Replayed != st.Checkpoint.Size || st.Replayed < vc.Size {
		fail("auditor status %+v, checkpoint size %d", st, vc.Size)
	}

	// The restarted server accepts a new account.
	r.mu.Lock()
	id := r.nextID
	r.nextID++
	r.mu.Unlock()
	la, err := loadgen.NewAccount("crash", id)
	if err != nil {
		t.Fatal(err)
	}
	a := &account{la: la}
	stt, err := la.Create(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := stt.MarshalBinary()
	res, err := c.Update(ctx, b)
	if err != nil {
		fail("the restarted server refuses a new account: %v", err)
	}
	a.state = stt
	r.mu.Lock()
	r.accounts = append(r.accounts, a)
	r.acks = append(r.acks, ack{a: a, version: 1, index: res.LogIndex, leaf: res.Leaf})
	r.stats.acks++
	r.stats.creates++
	r.mu.Unlock()
	r.sawCheckpoint(res.Checkpoint)
}

// served looks uid up and returns the served version (0: absent) and
// AccountState payload, after checking the bundle's checkpoint and that
// the AccountUpdate is the log's leaf at its index.
func (r *crashRun) served(ctx context.Context, c *client.Client, uid string, fail func(string, ...any)) (uint64, []byte) {
	b, err := c.Lookup(ctx, uid, 0)
	if err != nil {
		fail("lookup %s: %v", uid, err)
	}
	r.sawCheckpoint(b.Checkpoint)
	if b.AccountUpdate == nil {
		return 0, nil
	}
	vc, err := r.trust.OpenCheckpoint(b.Checkpoint)
	if err != nil {
		fail("lookup %s: %v", uid, err)
	}
	if b.AccountUpdateIndex >= vc.Size-1 {
		fail("lookup %s: account update index %d is not before the epoch record of size %d", uid, b.AccountUpdateIndex, vc.Size)
	}
	leaves, err := c.Entries(ctx, b.AccountUpdateIndex, b.AccountUpdateIndex+1)
	if err != nil || len(leaves) != 1 || !bytes.Equal(leaves[0], b.AccountUpdate) {
		fail("lookup %s: account update is not the log's leaf %d: %v", uid, b.AccountUpdateIndex, err)
	}
	u, err := klog.ParseAccountUpdate(b.AccountUpdate)
	if err != nil {
		fail("lookup %s: %v", uid, err)
	}
	return u.Version, u.Payload
}
