package directory

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"google.golang.org/grpc/codes"

	"github.com/keyline/keyline/directory/apierr"
	"github.com/keyline/keyline/directory/mapdb"
	"github.com/keyline/keyline/directory/sqlstate"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/log/embedded"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/vmap"
)

// sharedDSN returns the DSN of a fresh database on the MySQL/MariaDB server
// in $KEYLINE_MYSQL_DSN (scripts/integration-mysql.sh), dropped when t
// ends; without the variable it skips t.
func sharedDSN(t testing.TB) (string, *sql.DB) {
	t.Helper()
	base := os.Getenv("KEYLINE_MYSQL_DSN")
	if base == "" {
		t.Skip("KEYLINE_MYSQL_DSN not set (scripts/integration-mysql.sh runs the shared-state tests against a private MariaDB)")
	}
	cfg, err := mysql.ParseDSN(base)
	if err != nil {
		t.Fatal(err)
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	name := "kldir_" + hex.EncodeToString(rnd[:])
	cfg.DBName = ""
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	cfg.DBName = name
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Close()
		admin.Exec("DROP DATABASE " + name)
		admin.Close()
	})
	return cfg.FormatDSN(), db
}

// nopCloseLog is a log shared by in-process servers: Close is the test's.
type nopCloseLog struct{ klog.Backend }

func (nopCloseLog) Close() error { return nil }

// sharedEnv is one shared log and state database with servers on them.
type sharedEnv struct {
	t   *testing.T
	dir string // keys and trust.json, shared by the servers
	dsn string
	db  *sql.DB
	log klog.Backend
}

func newSharedEnv(t *testing.T) *sharedEnv {
	dsn, db := sharedDSN(t)
	dir := t.TempDir()
	l, err := embedded.Open(filepath.Join(t.TempDir(), FileLogDB), &embedded.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &sharedEnv{t: t, dir: dir, dsn: dsn, db: db, log: l}
}

// seqAndFrontend opens a sequencer (RoleAll, holder "seq") and a
// frontend ("fe") on e, waits for each one's first view, and returns them
// with the frontend's trust.
func (e *sharedEnv) seqAndFrontend() (seq, fe *Server, trust *verifier.Trust) {
	e.t.Helper()
	seq = e.open(RoleAll, "seq", nil)
	waitView(e.t, seq)
	fe = e.open(RoleFrontend, "fe", nil)
	waitView(e.t, fe)
	return seq, fe, trustOf(e.t, fe)
}

func (e *sharedEnv) open(role, holder string, mod func(*Config)) *Server {
	e.t.Helper()
	cfg := Config{
		DataDir: e.dir, EpochInterval: 10 * time.Millisecond, NoSync: true,
		StateBackend: StateMySQL, MySQLDSN: e.dsn, Role: role, LeaseDuration: time.Second, LeaseHolder: holder,
		sharedLog: nopCloseLog{e.log},
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := Open(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { s.Close() })
	return s
}

// waitView waits until s serves a view.
func waitView(t *testing.T, s *Server) {
	t.Helper()
	for i := 0; s.view.Load() == nil; i++ {
		if i > 500 {
			t.Fatal("no view within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSharedConfig(t *testing.T) {
	for _, c := range []Config{
		{DataDir: "d", Role: RoleFrontend},
		{DataDir: "d", StateBackend: StateMySQL},
		{DataDir: "d", StateBackend: StateMySQL, MySQLDSN: "u:p@tcp(h)/db", Role: RoleFrontend},
		{DataDir: "d", StateBackend: "pg"},
		{DataDir: "d", Role: "leader"},
		{DataDir: "d", MySQLDSN: "u:p@tcp(h)/db"},
	} {
		if _, err := c.withDefaults(); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: %v, want ErrConfig", c, err)
		}
	}
	c := Config{DataDir: "d", StateBackend: StateMySQL, MySQLDSN: "u:p@tcp(h)/db", Role: RoleFrontend, LogBackend: BackendTrillian, TrillianAddr: "h:1", TrillianTreeID: 1}
	got, err := c.withDefaults()
	if err != nil || got.LeaseDuration != DefaultLeaseDuration || got.LeaseHolder == "" {
		t.Fatalf("%+v %v", got, err)
	}
}

// TestSharedEndToEnd runs a sequencer and a frontend on one state database
// and log: updates through either are published, lookups and history from
// either verify, racing updates of one account through different
// processes are decided once, and a restart serves the same state.
func TestSharedEndToEnd(t *testing.T) {
	ctx := context.Background()
	env := newSharedEnv(t)
	seq := env.open(RoleAll, "seq", nil)
	fe := env.open(RoleFrontend, "fe", nil)
	waitView(t, seq)
	waitView(t, fe)
	trust := trustOf(t, seq)

	if v := mustLookup(t, fe.Source(), trust, "nobody@example.com"); v.found {
		t.Fatal("unknown user found")
	}
	alice := newTestAccount(t, "alice@example.com")
	res, err := fe.Update(ctx, alice.bytes(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := trust.OpenCheckpoint(res.Checkpoint); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Server{fe, seq} {
		v := mustLookup(t, s.Source(), trust, "alice@example.com")
		if !v.found || v.version != 1 || v.cp.Size <= res.LogIndex {
			t.Fatalf("after create: found=%v version=%d size=%d", v.found, v.version, v.cp.Size)
		}
	}
	// A second create of the same account is refused by validation.
	if _, err := fe.Update(ctx, newTestAccount(t, "alice@example.com").bytes(t)); apierr.Reason(err) != apierr.AccountExists {
		t.Fatalf("second create: %v", err)
	}

	const accounts, versions = 8, 3
	var wg sync.WaitGroup
	errs := make(chan error, accounts*versions)
	for i := range accounts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			servers := []*Server{fe, seq}
			a := newTestAccount(t, fmt.Sprintf("user%d", i))
			if _, err := servers[i%2].Update(ctx, a.bytes(t)); err != nil {
				errs <- err
				return
			}
			for j := range versions - 1 {
				next := a.addDevice(t, fmt.Sprintf("d%d", j))
				if _, err := servers[(i+j+1)%2].Update(ctx, mustMarshal(t, next)); err != nil {
					errs <- err
					return
				}
				a.state = next
			}
		}()
	}
	// Racing updates of one account through the two processes: one wins.
	z := newTestAccount(t, "zed")
	if _, err := seq.Update(ctx, z.bytes(t)); err != nil {
		t.Fatal(err)
	}
	n1, n2 := z.addDevice(t, "x"), z.addDevice(t, "y")
	var mu sync.Mutex
	var ok, rejected int
	for i, n := range [][]byte{mustMarshal(t, n1), mustMarshal(t, n2)} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := []*Server{fe, seq}[i].Update(ctx, n)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case apierr.Reason(err) == apierr.ConcurrentUpdate || apierr.Reason(err) == apierr.VersionNotNext:
				rejected++
			default:
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if ok != 1 || rejected != 1 {
		t.Fatalf("racing updates: %d accepted, %d rejected", ok, rejected)
	}
	for i := range accounts {
		for _, s := range []*Server{fe, seq} {
			if v := mustLookup(t, s.Source(), trust, fmt.Sprintf("user%d", i)); v.version != versions {
				t.Fatalf("user%d at version %d", i, v.version)
			}
		}
	}
	h, err := fe.History(ctx, "user3", 1)
	if err != nil {
		t.Fatal(err)
	}
	checkHistory(t, trust, h, versions)

	// Restart everything: the state is served as it was.
	before := mustLookup(t, fe.Source(), trust, "user5")
	seq.Close()
	fe.Close()
	seq2 := env.open(RoleSequencer, "seq2", nil)
	fe2 := env.open(RoleFrontend, "fe2", nil)
	waitView(t, fe2)
	waitView(t, seq2)
	after := mustLookup(t, fe2.Source(), trust, "user5")
	if after.version != before.version || after.cp.Size < before.cp.Size {
		t.Fatalf("after restart: version %d size %d, before %d %d", after.version, after.cp.Size, before.version, before.cp.Size)
	}
	b := fullBundle(t, fe2, "user5", before.cp.Size)
	if _, err := verifyLookup(trust, "user5", b, before.cp.Size, before.cp.Hash[:]); err != nil {
		t.Fatalf("consistency across the restart: %v", err)
	}
	phone := alice.addDevice(t, "tablet")
	if _, err := fe2.Update(ctx, mustMarshal(t, phone)); err != nil {
		t.Fatal(err)
	}
	alice.state = phone

	// A reset through a frontend (signed with the shared reset key).
	rs := resetStateFor(t, alice.state, "new phone")
	res, err = fe2.Reset(ctx, fe2.AdminToken(), "alice@example.com", mustMarshal(t, rs), "lost")
	if err != nil {
		t.Fatalf("reset through a frontend: %v", err)
	}
	if v := mustLookup(t, seq2.Source(), trust, "alice@example.com"); v.version != 3 || v.update.Update != klog.UpdateReset || v.state.IdentityKey != rs.IdentityKey || v.cp.Size <= res.LogIndex {
		t.Fatalf("after reset: version %d kind %v", v.version, v.update.Update)
	}

	// A process with other keys is refused by the state database.
	cfg := Config{DataDir: t.TempDir(), NoSync: true, StateBackend: StateMySQL, MySQLDSN: env.dsn, Role: RoleAll, sharedLog: nopCloseLog{env.log}}
	if s, err := Open(cfg); !errors.Is(err, ErrKeyFile) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open with other keys: %v, want ErrKeyFile", err)
	}
}

// TestSharedFencing: a sequencer whose lease was taken over cannot publish
// (its epoch commit and checkpoint store are refused by the fencing token);
// queued updates wait, durable, and are published once a sequencer holds
// the lease again; two sequencers never both publish.
func TestSharedFencing(t *testing.T) {
	ctx := context.Background()
	env := newSharedEnv(t)
	seqA := env.open(RoleSequencer, "A", nil)
	waitView(t, seqA)
	fe := env.open(RoleFrontend, "fe", nil)
	waitView(t, fe)
	trust := trustOf(t, fe)
	a := newTestAccount(t, "a@example.com")
	if _, err := fe.Update(ctx, a.bytes(t)); err != nil {
		t.Fatal(err)
	}
	base := mustLookup(t, fe.Source(), trust, "a@example.com")

	// Another holder takes the lease (as a standby would after A's lease
	// expired while A was paused): A's token is stale from now on.
	if _, err := env.db.Exec(`UPDATE leases SET holder = 'thief', token = token + 1, expires_at = NOW(6) + INTERVAL 1 HOUR WHERE name = 'sequencer'`); err != nil {
		t.Fatal(err)
	}
	b := newTestAccount(t, "b@example.com")
	wctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	_, err := fe.Update(wctx, b.bytes(t))
	cancel()
	if apierr.Reason(err) != apierr.Canceled {
		t.Fatalf("update without a lease holder: %v, want a timeout while queued", err)
	}
	if v := mustLookup(t, fe.Source(), trust, "b@example.com"); v.found || v.cp.Size != base.cp.Size {
		t.Fatalf("published without the lease: found=%v size %d (was %d)", v.found, v.cp.Size, base.cp.Size)
	}
	var n int
	env.db.QueryRow(`SELECT COUNT(*) FROM checkpoints WHERE token = (SELECT token FROM leases WHERE name = 'sequencer') - 1 AND stored_at > NOW(6) - INTERVAL 1 SECOND`).Scan(&n)
	if n != 0 {
		t.Fatalf("%d checkpoints stored with the stale token after the takeover", n)
	}
	// A standby B joins; the "thief" dies (its lease expires): A or B takes
	// over and publishes the queued update.
	seqB := env.open(RoleSequencer, "B", nil)
	if _, err := env.db.Exec(`UPDATE leases SET expires_at = NOW(6) WHERE name = 'sequencer'`); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		v := mustLookup(t, fe.Source(), trust, "b@example.com")
		if v.found {
			bl := fullBundle(t, fe, "b@example.com", base.cp.Size)
			if _, err := verifyLookup(trust, "b@example.com", bl, base.cp.Size, base.cp.Hash[:]); err != nil {
				t.Fatalf("not consistent with the checkpoint before the takeover: %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("queued update not published after the takeover")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var holder string
	var token uint64
	if err := env.db.QueryRow(`SELECT holder, token FROM leases WHERE name = 'sequencer'`).Scan(&holder, &token); err != nil {
		t.Fatal(err)
	}
	if (holder != "A" && holder != "B") || token < 3 {
		t.Fatalf("lease held by %q with token %d", holder, token)
	}
	// Every stored checkpoint extends the previous one.
	rows, err := env.db.Query(`SELECT note FROM checkpoints ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var prevSize uint64
	for rows.Next() {
		var note []byte
		rows.Scan(&note)
		c, err := trust.OpenCheckpoint(note)
		if err != nil {
			t.Fatal(err)
		}
		if c.Size <= prevSize {
			t.Fatalf("stored checkpoints regress: %d after %d", c.Size, prevSize)
		}
		prevSize = c.Size
	}
	_ = seqB
}

// TestSharedUnfinishedEpoch: a sequencer appended a queued update's leaf
// and died before its epoch committed; the next sequencer closes the epoch
// over that leaf and the waiting frontend acknowledges the update with the
// leaf's log index (it is not sequenced twice).
func TestSharedUnfinishedEpoch(t *testing.T) {
	ctx := context.Background()
	env := newSharedEnv(t)
	seqA := env.open(RoleSequencer, "A", nil)
	waitView(t, seqA)
	fe := env.open(RoleFrontend, "fe", nil)
	waitView(t, fe)
	trust := trustOf(t, fe)
	a := newTestAccount(t, "una@example.com")
	if _, err := fe.Update(ctx, a.bytes(t)); err != nil {
		t.Fatal(err)
	}
	seqA.Close()

	v2 := a.addDevice(t, "two")
	type res struct {
		r   *UpdateResult
		err error
	}
	done := make(chan res, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		r, err := fe.Update(wctx, mustMarshal(t, v2))
		done <- res{r, err}
	}()
	var leaf []byte
	for i := 0; ; i++ {
		if err := env.db.QueryRow(`SELECT leaf FROM update_queue WHERE status = 0`).Scan(&leaf); err == nil {
			break
		}
		if i > 500 {
			t.Fatal("update not queued")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The dead sequencer's append.
	size, err := env.log.Size(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := appendAt(ctx, env.log, size, leaf); err != nil {
		t.Fatal(err)
	}
	env.open(RoleSequencer, "B", nil)
	r := <-done
	if r.err != nil {
		t.Fatalf("update whose leaf the dead sequencer appended: %v", r.err)
	}
	if r.r.LogIndex != size {
		t.Fatalf("acknowledged at log index %d, the leaf is at %d", r.r.LogIndex, size)
	}
	v := mustLookup(t, fe.Source(), trust, "una@example.com")
	if v.version != 2 || v.cp.Size <= size {
		t.Fatalf("after recovery: version %d, size %d", v.version, v.cp.Size)
	}
	var n int
	env.db.QueryRow(`SELECT COUNT(*) FROM history WHERE version = 2`).Scan(&n)
	if n != 1 {
		t.Fatalf("version 2 recorded %d times", n)
	}
}

// TestSharedStaleRecords: map records read after a later epoch committed
// are never served under the earlier epoch's checkpoint: the lookup reads
// again in a snapshot.
func TestSharedStaleRecords(t *testing.T) {
	ctx := context.Background()
	env := newSharedEnv(t)
	seq := env.open(RoleAll, "seq", nil)
	waitView(t, seq)
	trust := trustOf(t, seq)
	a := newTestAccount(t, "sam@example.com")
	if _, err := seq.Update(ctx, a.bytes(t)); err != nil {
		t.Fatal(err)
	}
	v1 := seq.view.Load()
	pi, index, err := seq.vrf.get(nil, "sam@example.com")
	if err != nil {
		t.Fatal(err)
	}
	next := a.addDevice(t, "two")
	if _, err := seq.Update(ctx, mustMarshal(t, next)); err != nil {
		t.Fatal(err)
	}
	// Without the tile cache every tile of the path is read with the
	// point, so the old view meets the new epoch's tiles. (Swapped once
	// the warm loop, which reads seq.sh.m after each new epoch, is done.)
	waitWarm(t, seq)
	tm, err := vmap.NewTiledMap(mapdb.DefaultStride, nil)
	if err != nil {
		t.Fatal(err)
	}
	cached := seq.sh.m
	seq.sh.m = tileMap{tm: tm, levels: new(atomic.Int32), cached: 0}
	seq.sh.m.(tileMap).levels.Store(4)
	defer func() { seq.sh.m = cached }()
	depths := seq.sh.m.pathDepths()
	p, err := seq.sh.st.ReadPoint(ctx, sqlstate.PointQuery{Index: index, Depths: depths})
	if err != nil {
		t.Fatal(err)
	}
	recs := prefetched{}
	for i, d := range depths {
		recs[string(sqlstate.TileKey(index, d))] = p.Records[i]
	}
	_, err = seq.lookupBundle(ctx, v1, recs, func() (*sqlstate.Account, error) { return p.Account, nil }, pi, index, 0)
	if !errors.Is(err, errStaleRecords) {
		t.Fatalf("records of a later epoch under an older view: %v, want errStaleRecords", err)
	}
	// The view of the epoch row read in the same statement verifies with
	// the same reads (one statement is one read view).
	v2, err := seq.sharedView(ctx, p.Epoch)
	if err != nil {
		t.Fatalf("view of the point's epoch: %v", err)
	}
	if v2.epoch <= v1.epoch {
		t.Fatalf("the point's epoch %d is not after %d", v2.epoch, v1.epoch)
	}
	if _, err := seq.lookupBundle(ctx, v2, recs, func() (*sqlstate.Account, error) { return p.Account, nil }, pi, index, 0); err != nil {
		t.Fatalf("records of the point's own epoch: %v", err)
	}
	if v := mustLookup(t, seq.Source(), trust, "sam@example.com"); v.version != 2 {
		t.Fatalf("version %d", v.version)
	}
}

// TestSharedMemoryPath: a frontend that served an account from memory
// serves its next version once the epoch holding it is installed, and a
// client that knows a newer checkpoint than the frontend's view gets it.
func TestSharedMemoryPath(t *testing.T) {
	ctx := context.Background()
	env := newSharedEnv(t)
	seq := env.open(RoleAll, "seq", nil)
	waitView(t, seq)
	fe := env.open(RoleFrontend, "fe", func(c *Config) { c.EpochInterval = time.Second }) // slow follower
	waitView(t, fe)
	trust := trustOf(t, fe)
	a := newTestAccount(t, "mem@example.com")
	if _, err := seq.Update(ctx, a.bytes(t)); err != nil {
		t.Fatal(err)
	}
	for range 3 { // the first from the database, then from memory
		if v := mustLookup(t, fe.Source(), trust, "mem@example.com"); v.version != 1 {
			t.Fatalf("version %d", v.version)
		}
	}
	next := a.addDevice(t, "two")
	res, err := seq.Update(ctx, mustMarshal(t, next))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := trust.OpenCheckpoint(res.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	// The client learnt the new checkpoint elsewhere: the frontend must not
	// answer from its older view.
	if _, err := fe.Lookup(ctx, "mem@example.com", cp.Size); err != nil {
		t.Fatalf("lookup with a known size beyond the frontend's view: %v", err)
	}
	b := fullBundle(t, fe, "mem@example.com", cp.Size)
	v, err := verifyLookup(trust, "mem@example.com", b, cp.Size, cp.Hash[:])
	if err != nil || v.version != 2 {
		t.Fatalf("version %d, %v", v.version, err)
	}
	for range 3 {
		if v := mustLookup(t, fe.Source(), trust, "mem@example.com"); v.version != 2 {
			t.Fatalf("after the new epoch: version %d", v.version)
		}
	}
}

// TestSharedDatabaseDown: with the state database unreachable, reads and
// updates fail with Unavailable, not Internal.
func TestSharedDatabaseDown(t *testing.T) {
	ctx := context.Background()
	env := newSharedEnv(t)
	seq := env.open(RoleAll, "seq", nil)
	waitView(t, seq)
	fe := env.open(RoleFrontend, "fe", nil)
	waitView(t, fe)
	fe.sh.noMemory.Store(true)
	fe.sh.st.DB().Close()
	if _, err := fe.Lookup(ctx, "nobody@example.com", 0); apierr.Code(err) != codes.Unavailable {
		t.Fatalf("lookup: %v, want Unavailable", err)
	}
	if _, err := fe.History(ctx, "nobody@example.com", 1); apierr.Code(err) != codes.Unavailable {
		t.Fatalf("history: %v, want Unavailable", err)
	}
	if _, err := fe.Update(ctx, newTestAccount(t, "down@example.com").bytes(t)); apierr.Code(err) != codes.Unavailable {
		t.Fatalf("update: %v, want Unavailable", err)
	}
}

// TestSharedLookupByUser: a frontend without the user's VRF proof in
// memory reads it from the users row in the lookup's one statement (it
// does not prove it), and an unknown user gets a verifiable non-inclusion
// proof.
func TestSharedLookupByUser(t *testing.T) {
	ctx := context.Background()
	env := newSharedEnv(t)
	seq, fe, trust := env.seqAndFrontend()
	if _, err := seq.Update(ctx, newTestAccount(t, "ann@example.com").bytes(t)); err != nil {
		t.Fatal(err)
	}
	wantPi, wantIndex, err := seq.vrf.get(nil, "ann@example.com")
	if err != nil {
		t.Fatal(err)
	}
	fe.sh.noMemory.Store(true)
	if _, _, ok := fe.vrf.cached("ann@example.com"); ok {
		t.Fatal("the frontend has ann's VRF proof before any lookup")
	}
	// A frontend whose VRF key is unusable would fail if it proved.
	sk := fe.vrf.sk
	fe.vrf.sk = nil
	if v := mustLookup(t, fe.Source(), trust, "ann@example.com"); v.version != 1 {
		t.Fatalf("version %d", v.version)
	}
	fe.vrf.sk = sk
	pi, index, ok := fe.vrf.cached("ann@example.com")
	if !ok || index != wantIndex || string(pi) != string(wantPi) {
		t.Fatalf("VRF proof from the users row: cached %v, index %x, want %x", ok, index[:4], wantIndex[:4])
	}
	// By index now (the proof is in memory), still from the database.
	if v := mustLookup(t, fe.Source(), trust, "ann@example.com"); v.version != 1 {
		t.Fatalf("version %d", v.version)
	}
	if v := mustLookup(t, fe.Source(), trust, "nobody@example.com"); v.version != 0 {
		t.Fatalf("unknown user: version %d", v.version)
	}
}

// waitWarm waits until s's warm loop has brought its tile cache to the
// latest epoch of the database, and returns that epoch.
func waitWarm(t *testing.T, s *Server) uint64 {
	t.Helper()
	e, err := s.sh.st.Latest(context.Background())
	if err != nil || e == nil {
		t.Fatalf("latest epoch: %+v, %v", e, err)
	}
	for i := 0; s.sh.warmEpoch.Load() < e.Epoch; i++ {
		if i > 500 {
			t.Fatalf("tiles of epoch %d not loaded within 10s (loaded: epoch %d)", e.Epoch, s.sh.warmEpoch.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return e.Epoch
}

// TestSharedWarmTiles: a frontend keeps every tile of the published map
// in memory (reading after an epoch only the tiles it rewrote), so a lookup
// whose VRF proof or account record is not in memory reads them from the
// database and no tile, and serves the new epoch's records after an
// update.
func TestSharedWarmTiles(t *testing.T) {
	ctx := context.Background()
	env := newSharedEnv(t)
	seq, fe, trust := env.seqAndFrontend()
	var accts []*testAccount
	for i := range 12 {
		a := newTestAccount(t, fmt.Sprintf("warm%d@example.com", i))
		if _, err := seq.Update(ctx, a.bytes(t)); err != nil {
			t.Fatal(err)
		}
		accts = append(accts, a)
	}
	warm := func() {
		t.Helper()
		want := waitWarm(t, fe)
		if !fe.sh.tilesWarm.Load() {
			t.Fatalf("the tiles of epoch %d do not all fit the cache", want)
		}
		for fe.view.Load().epoch < want {
			time.Sleep(10 * time.Millisecond)
		}
	}
	warm()
	cache := fe.sh.m.(tileMap).cache
	misses, db := cache.Stats().Misses, fe.sh.dbLookups.Load()
	for i, a := range accts {
		if v := mustLookup(t, fe.Source(), trust, a.uid); v.version != 1 {
			t.Fatalf("%s: version %d", a.uid, v.version)
		}
		if got := fe.sh.dbLookups.Load() - db; got != uint64(i+1) {
			t.Fatalf("%d lookups read the database %d times", i+1, got)
		}
	}
	if m := cache.Stats().Misses - misses; m != 0 {
		t.Fatalf("lookups with every tile in memory missed the tile cache %d times", m)
	}
	mem := fe.sh.memLookups.Load()
	mustLookup(t, fe.Source(), trust, accts[0].uid)
	if fe.sh.memLookups.Load() != mem+1 {
		t.Fatal("a second lookup of an account was not served from memory")
	}
	// A new epoch: the changed tiles are read once, then lookups of the
	// changed account serve its new version without reading tiles.
	next := accts[3].addDevice(t, "two")
	if _, err := seq.Update(ctx, mustMarshal(t, next)); err != nil {
		t.Fatal(err)
	}
	warm()
	misses = cache.Stats().Misses
	if v := mustLookup(t, fe.Source(), trust, accts[3].uid); v.version != 2 {
		t.Fatalf("after the update: version %d", v.version)
	}
	if v := mustLookup(t, fe.Source(), trust, "nobody@example.com"); v.version != 0 {
		t.Fatalf("unknown user: version %d", v.version)
	}
	if m := cache.Stats().Misses - misses; m != 0 {
		t.Fatalf("lookups after the warmed epoch missed the tile cache %d times", m)
	}
}

// TestAccountCacheBound: the account cache holds at most its byte bound,
// keeps the recently used generation, and replaces a record in place.
func TestAccountCacheBound(t *testing.T) {
	const leaf = 1000
	c := newAccountCache(100 * (leaf + accountEntryOverhead))
	var first [32]byte
	for i := range 1000 {
		var idx [32]byte
		idx[0], idx[1] = byte(i>>8), byte(i)
		if i == 0 {
			first = idx
		}
		c.put(idx, &sqlstate.Account{Version: 1, Leaf: make([]byte, leaf)})
		if got := c.bytes(); got > 100*(leaf+accountEntryOverhead) {
			t.Fatalf("after %d puts: %d bytes, bound %d", i+1, got, 100*(leaf+accountEntryOverhead))
		}
	}
	if c.get(first) != nil {
		t.Fatal("the first record survived 1000 puts into a 100-record cache")
	}
	var last [32]byte
	last[0], last[1] = byte(999>>8), byte(999%256)
	if c.get(last) == nil {
		t.Fatal("the latest record is not cached")
	}
	before := c.bytes()
	c.put(last, &sqlstate.Account{Version: 2, Leaf: make([]byte, leaf)})
	if a := c.get(last); a == nil || a.Version != 2 || c.bytes() != before {
		t.Fatalf("replacing a record: %+v, %d bytes, was %d", a, c.bytes(), before)
	}
}

// TestSharedConcurrentLookups: many concurrent lookups from the database
// (grouped into shared statements by the point readers) each get their own
// account's verifiable bundle.
func TestSharedConcurrentLookups(t *testing.T) {
	ctx := context.Background()
	env := newSharedEnv(t)
	seq, fe, trust := env.seqAndFrontend()
	const users = 12
	for i := range users {
		if _, err := seq.Update(ctx, newTestAccount(t, fmt.Sprintf("c%d@example.com", i)).bytes(t)); err != nil {
			t.Fatal(err)
		}
	}
	fe.sh.noMemory.Store(true)
	for i := range users { // VRF proofs in memory: the by-index (batched) form
		if v := mustLookup(t, fe.Source(), trust, fmt.Sprintf("c%d@example.com", i)); v.version != 1 {
			t.Fatalf("version %d", v.version)
		}
	}
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 10 {
				uid := fmt.Sprintf("c%d@example.com", (g+j)%users)
				if g%8 == 0 {
					uid = fmt.Sprintf("absent%d@example.com", j)
				}
				b, err := fe.Lookup(ctx, uid, 0)
				if err != nil {
					t.Error(err)
					return
				}
				v, err := verifyLookup(trust, uid, b, 0, nil)
				if err != nil {
					t.Errorf("%s: %v", uid, err)
					return
				}
				if v.found != (g%8 != 0) {
					t.Errorf("%s: found %v", uid, v.found)
					return
				}
			}
		}()
	}
	wg.Wait()
}
