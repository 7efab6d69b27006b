package sqlstate

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier/vmap"
)

// EnvDSN names the environment variable with the DSN of a MySQL/MariaDB
// server (any database; the user must be able to create databases) that the
// tests use. scripts/integration-mysql.sh sets it; without it the tests
// that need the server skip.
const EnvDSN = "KEYLINE_MYSQL_DSN"

// TestDSN returns a DSN of a fresh, empty database on the server in
// $KEYLINE_MYSQL_DSN, dropped when t ends; it skips t without the variable.
func testDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvDSN)
	if base == "" {
		t.Skipf("%s not set (scripts/integration-mysql.sh runs this test against a private MariaDB)", EnvDSN)
	}
	cfg, err := mysql.ParseDSN(base)
	if err != nil {
		t.Fatal(err)
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	name := "kltest_" + hex.EncodeToString(rnd[:])
	cfg.DBName = ""
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Exec("DROP DATABASE " + name)
		db.Close()
	})
	cfg.DBName = name
	return cfg.FormatDSN()
}

func openTest(t testing.TB) (*Store, string) {
	dsn := testDSN(t)
	s, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dsn
}

func idx(b byte) [32]byte {
	var i [32]byte
	i[0], i[31] = b, b
	return i
}

func TestMigrateIdempotent(t *testing.T) {
	s, dsn := openTest(t)
	s2, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s2.Close()
	var n, v int
	if err := s.db.QueryRow(`SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	if n != SchemaVersion || v != SchemaVersion {
		t.Fatalf("schema_migrations has %d rows up to %d, want %d", n, v, SchemaVersion)
	}
	// A database from a newer binary is refused.
	if _, err := s.db.Exec(`INSERT INTO schema_migrations (version) VALUES (?)`, SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), dsn); !errors.Is(err, ErrSchema) {
		t.Fatalf("Open of a newer schema: %v, want ErrSchema", err)
	}
}

func TestLeaseAndFencing(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	a, ok, err := s.AcquireLease(ctx, SequencerLease, "a", 300*time.Millisecond)
	if err != nil || !ok || a.Token != 1 {
		t.Fatalf("first acquire: %+v %v %v", a, ok, err)
	}
	if _, ok, err := s.AcquireLease(ctx, SequencerLease, "b", time.Second); err != nil || ok {
		t.Fatalf("b acquired a held lease: ok=%v err=%v", ok, err)
	}
	if err := s.RenewLease(ctx, a, 300*time.Millisecond); err != nil {
		t.Fatalf("renew: %v", err)
	}
	// a's transaction starts while a holds the lease...
	tx, err := s.Begin(ctx, a.Token)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.PutEpoch(Epoch{Epoch: 0, LogSize: 1, Checkpoint: []byte("cp-a")}); err != nil {
		t.Fatal(err)
	}
	// ... and a is paused past its lease: b takes over.
	time.Sleep(400 * time.Millisecond)
	b, ok, err := s.AcquireLease(ctx, SequencerLease, "b", time.Second)
	if err != nil || !ok || b.Token != 2 {
		t.Fatalf("takeover: %+v %v %v", b, ok, err)
	}
	if err := tx.Commit(); !errors.Is(err, ErrFenced) {
		t.Fatalf("commit with a lost lease: %v, want ErrFenced", err)
	}
	if e, err := s.Latest(ctx); err != nil || e != nil {
		t.Fatalf("fenced commit wrote epoch %+v (err %v)", e, err)
	}
	if err := s.RenewLease(ctx, a, time.Second); !errors.Is(err, ErrFenced) {
		t.Fatalf("renew of a lost lease: %v", err)
	}
	cps := &Checkpoints{S: s, Token: func() uint64 { return a.Token }}
	if err := cps.StoreCheckpoint(ctx, nil, []byte("old")); !errors.Is(err, ErrFenced) {
		t.Fatalf("store checkpoint with a lost lease: %v", err)
	}
	cpsB := &Checkpoints{S: s, Token: func() uint64 { return b.Token }}
	if err := cpsB.StoreCheckpoint(ctx, nil, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := cpsB.StoreCheckpoint(ctx, nil, []byte("two")); !errors.Is(err, klog.ErrCheckpointConflict) {
		t.Fatalf("CAS with a wrong prev: %v", err)
	}
	if got, _ := cpsB.LatestCheckpoint(ctx); string(got) != "one" {
		t.Fatalf("latest checkpoint %q", got)
	}
	tx, _ = s.Begin(ctx, b.Token)
	tx.PutEpoch(Epoch{Epoch: 0, LogSize: 1, Checkpoint: []byte("cp-b")})
	if err := tx.Commit(); err != nil {
		t.Fatalf("commit by the holder: %v", err)
	}
	// Release lets a standby in at once, with a new token.
	if err := s.ReleaseLease(ctx, b); err != nil {
		t.Fatal(err)
	}
	c, ok, err := s.AcquireLease(ctx, SequencerLease, "c", time.Second)
	if err != nil || !ok || c.Token != 3 {
		t.Fatalf("acquire after release: %+v %v %v", c, ok, err)
	}
	info, ok, err := s.LeaseState(ctx, SequencerLease)
	if err != nil || !ok || info.Holder != "c" || info.Token != 3 || info.Remaining <= 0 {
		t.Fatalf("lease state %+v %v %v", info, ok, err)
	}
}

func TestEpochAndSnapshot(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	l, _, err := s.AcquireLease(ctx, SequencerLease, "seq", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	commit := func(epoch uint64, ver uint64) {
		t.Helper()
		tx, err := s.Begin(ctx, l.Token)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		must(t, tx.PutAccounts([]AccountRow{{Index: idx(1), Account: Account{Version: ver, LogIndex: 10 + ver, EntryHash: idx(byte(ver)), Leaf: []byte{byte(ver)}}}}))
		must(t, tx.PutHistory([]HistoryRow{{Index: idx(1), Version: ver, LogIndex: 10 + ver}}))
		must(t, tx.PutUsers([]UserRow{{UserID: "alice@example.com", Proof: make([]byte, 80), Index: idx(1)}}))
		must(t, tx.PutMany([]KV{{Key: []byte("root"), Value: []byte{byte(epoch)}}}))
		must(t, tx.PutEpoch(Epoch{Epoch: epoch, MapRoot: idx(byte(epoch)), LogSize: 20 + epoch, Checkpoint: []byte{byte(epoch)}}))
		must(t, tx.Commit())
	}
	commit(0, 1)
	snap, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	e, err := snap.Latest()
	if err != nil || e == nil || e.Epoch != 0 {
		t.Fatalf("snapshot latest %+v %v", e, err)
	}
	commit(1, 2) // after the snapshot's first read: invisible to it
	a, err := snap.Account(idx(1))
	if err != nil || a == nil || a.Version != 1 {
		t.Fatalf("snapshot account %+v %v", a, err)
	}
	vs, err := snap.GetMany([][]byte{[]byte("root"), []byte("absent"), []byte("root")})
	if err != nil || !bytes.Equal(vs[0], []byte{0}) || vs[1] != nil || !bytes.Equal(vs[2], []byte{0}) {
		t.Fatalf("snapshot map %v %v", vs, err)
	}
	h, err := snap.History(idx(1), 1, 10)
	if err != nil || len(h) != 1 {
		t.Fatalf("snapshot history %v %v", h, err)
	}
	if e, _ := snap.Latest(); e.Epoch != 0 {
		t.Fatalf("snapshot moved to epoch %d", e.Epoch)
	}
	// Outside the snapshot the new epoch is visible.
	if e, _ := s.Latest(ctx); e.Epoch != 1 || e.LogSize != 21 {
		t.Fatalf("latest %+v", e)
	}
	h, err = s.r(ctx).History(idx(1), 2, 10)
	if err != nil || len(h) != 1 || h[0] != 12 {
		t.Fatalf("history from 2: %v %v", h, err)
	}
	if pi, ix, ok, err := s.User(ctx, "alice@example.com"); err != nil || !ok || ix != idx(1) || len(pi) != 80 {
		t.Fatalf("user: %v %v %v", ix, ok, err)
	}
	if err := s.SetCheckpoint(ctx, l.Token, 1, []byte("cp1")); err != nil {
		t.Fatal(err)
	}
	if e, _ := s.EpochRow(ctx, 1); string(e.Checkpoint) != "cp1" {
		t.Fatalf("checkpoint %q", e.Checkpoint)
	}
	if err := s.SetCheckpoint(ctx, l.Token+1, 1, []byte("x")); !errors.Is(err, ErrFenced) {
		t.Fatalf("SetCheckpoint with a wrong token: %v", err)
	}
}

func TestQueue(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	l, _, _ := s.AcquireLease(ctx, SequencerLease, "seq", time.Minute)
	u := func(i byte, ver uint64) *Queued {
		return &Queued{Index: idx(i), Version: ver, EntryHash: idx(byte(ver) + 100), UserID: "u", Leaf: []byte("leaf")}
	}
	id1, err := s.Enqueue(ctx, u(1, 1), 3)
	must(t, err)
	if _, err := s.Enqueue(ctx, u(1, 1), 3); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("duplicate: %v", err)
	}
	id2, err := s.Enqueue(ctx, u(2, 1), 3)
	must(t, err)
	id3, err := s.Enqueue(ctx, u(1, 2), 3)
	must(t, err)
	if _, err := s.Enqueue(ctx, u(3, 1), 3); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("full: %v", err)
	}
	p, err := s.Pending(ctx, 10)
	if err != nil || len(p) != 3 || p[0].ID != id1 || p[2].ID != id3 || p[0].Index != idx(1) || p[0].VRFProof != nil {
		t.Fatalf("pending %+v %v", p, err)
	}
	lq, err := s.LatestQueued(ctx, idx(1))
	if err != nil || lq.ID != id3 {
		t.Fatalf("latest queued %+v %v", lq, err)
	}
	tx, _ := s.Begin(ctx, l.Token)
	must(t, tx.PutHistory([]HistoryRow{{Index: idx(1), Version: 1, LogIndex: 7}}))
	must(t, tx.PutEpoch(Epoch{Epoch: 5, LogSize: 9, Checkpoint: []byte("cp5")}))
	// A wrong entry hash does not complete the row.
	wrong := QueueKey{Index: idx(2), Version: 1, EntryHash: idx(9)}
	must(t, tx.MarkDone(5, []QueueKey{{Index: idx(1), Version: 1, EntryHash: idx(101)}, wrong}))
	must(t, tx.MarkFailed([]Rejection{{ID: id3, Code: 10, Reason: "CONCURRENT_UPDATE", Message: "no"}}))
	must(t, tx.Commit())
	res, err := s.Results(ctx, []uint64{id1, id2, id3})
	must(t, err)
	if r := res[id1]; r.Status != StatusDone || r.Epoch != 5 || r.LogIndex != 7 || string(r.Checkpoint) != "cp5" {
		t.Fatalf("done result %+v", r)
	}
	if _, ok := res[id2]; ok {
		t.Fatalf("id2 still queued but has a result")
	}
	if r := res[id3]; r.Status != StatusFailed || r.Code != 10 || r.Reason != "CONCURRENT_UPDATE" {
		t.Fatalf("failed result %+v", r)
	}
	// The failed version is free again.
	if _, err := s.Enqueue(ctx, u(1, 2), 0); err != nil {
		t.Fatalf("re-enqueue after failure: %v", err)
	}
	if n, err := s.QueueLen(ctx); err != nil || n != 2 {
		t.Fatalf("queue len %d %v", n, err)
	}
	if n, err := s.PruneQueue(ctx, 0); err != nil || n != 2 {
		t.Fatalf("pruned %d %v", n, err)
	}
}

func TestTilesMatchMemory(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	l, _, _ := s.AcquireLease(ctx, SequencerLease, "seq", time.Minute)
	tm, err := vmap.NewTiledMap(4, nil)
	must(t, err)
	mem := vmap.NewMemTileStore()
	var want vmap.Hash
	for epoch := range 3 {
		var ups []vmap.Update
		for i := range 50 {
			var ix vmap.Index
			rand.Read(ix[:])
			if i < 5 && epoch > 0 {
				ix = idx(byte(i)) // updates of existing indexes
			}
			var v vmap.Value
			rand.Read(v[:])
			ups = append(ups, vmap.Update{Index: ix, Value: v})
		}
		if want, err = tm.Apply(mem, ups); err != nil {
			t.Fatal(err)
		}
		tx, _ := s.Begin(ctx, l.Token)
		got, err := tm.Apply(NewTileStore(tx, tx), ups)
		must(t, err)
		must(t, tx.Commit())
		if got != want {
			t.Fatalf("epoch %d: root %x, in memory %x", epoch, got[:4], want[:4])
		}
	}
	snap, _ := s.Snapshot(ctx)
	defer snap.Close()
	ts := NewTileStore(snap, nil)
	if r, err := tm.Root(ts); err != nil || r != want {
		t.Fatalf("root from the database %x %v", r[:4], err)
	}
	p, err := tm.Prove(ts, want, idx(3))
	must(t, err)
	if _, found, err := vmap.Verify(want, idx(3), p); err != nil || !found {
		t.Fatalf("proof from the database: %v %v", found, err)
	}
	if ts.Deepest < 4 {
		t.Fatalf("deepest tile read at depth %d", ts.Deepest)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestReadPoint reads every statement shape of ReadPoint (with and without
// the epoch row, by index and by user id, tiles present and absent) and
// checks each returns the committed rows of one epoch.
func TestReadPoint(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	if p, err := s.ReadPoint(ctx, PointQuery{Index: idx(1), Depths: []uint8{16}}); err != nil || p.Epoch != nil {
		t.Fatalf("before the first epoch: %+v %v", p, err)
	}
	l, _, err := s.AcquireLease(ctx, SequencerLease, "seq", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	pi := bytes.Repeat([]byte{7}, 80)
	commit := func(epoch, ver uint64) {
		t.Helper()
		tx, err := s.Begin(ctx, l.Token)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		must(t, tx.PutAccounts([]AccountRow{{Index: idx(1), Account: Account{Version: ver, LogIndex: 10 + ver, EntryHash: idx(byte(ver)), Leaf: []byte{byte(ver)}}}}))
		must(t, tx.PutUsers([]UserRow{{UserID: "alice@example.com", Proof: pi, Index: idx(1)}}))
		must(t, tx.PutMany([]KV{{Key: TileKey(idx(1), 16), Value: []byte{16, byte(epoch)}}, {Key: TileKey(idx(1), 24), Value: []byte{24, byte(epoch)}}}))
		must(t, tx.PutEpoch(Epoch{Epoch: epoch, MapRoot: idx(byte(epoch)), LogSize: 20 + epoch, Checkpoint: []byte{byte(epoch)}}))
		must(t, tx.Commit())
	}
	commit(1, 1)
	commit(2, 2)
	for _, q := range []PointQuery{
		{Index: idx(1), Depths: []uint8{16, 24, 32}},
		{Index: idx(1), Depths: []uint8{16, 24, 32}, NoEpoch: true},
		{ByUser: true, UserID: "alice@example.com", Depths: []uint8{16, 24, 32}},
		{ByUser: true, UserID: "alice@example.com", Depths: []uint8{16, 24, 32}, NoEpoch: true},
		{Index: idx(1), NoEpoch: true},
	} {
		p, err := s.ReadPoint(ctx, q)
		if err != nil {
			t.Fatalf("%+v: %v", q, err)
		}
		if q.NoEpoch != (p.Epoch == nil) || p.Epoch != nil && (p.Epoch.Epoch != 2 || p.Epoch.MapRoot != idx(2) || p.Epoch.LogSize != 22 || !bytes.Equal(p.Epoch.Checkpoint, []byte{2})) {
			t.Fatalf("%+v: epoch %+v", q, p.Epoch)
		}
		if p.Account == nil || p.Account.Version != 2 || p.Account.LogIndex != 12 || p.Account.EntryHash != idx(2) || !bytes.Equal(p.Account.Leaf, []byte{2}) {
			t.Fatalf("%+v: account %+v", q, p.Account)
		}
		if q.ByUser && (!p.User || p.Index != idx(1) || !bytes.Equal(p.VRFProof, pi)) {
			t.Fatalf("%+v: user %v %x", q, p.User, p.Index[:4])
		}
		if len(p.Records) != len(q.Depths) {
			t.Fatalf("%+v: %d records", q, len(p.Records))
		}
		for i, d := range q.Depths {
			want := []byte{d, 2}
			if d == 32 {
				want = nil
			}
			if !bytes.Equal(p.Records[i], want) {
				t.Fatalf("%+v: tile at depth %d is %x, want %x", q, d, p.Records[i], want)
			}
		}
	}
	// Absent: an unknown user, an unknown index, a missing first tile.
	for _, q := range []PointQuery{
		{ByUser: true, UserID: "bob@example.com", Depths: []uint8{16}},
		{ByUser: true, UserID: "bob@example.com", Depths: []uint8{16}, NoEpoch: true},
	} {
		if p, err := s.ReadPoint(ctx, q); err != nil || p.User || p.Account != nil || q.NoEpoch != (p.Epoch == nil) {
			t.Fatalf("%+v: %+v %v", q, p, err)
		}
	}
	if p, err := s.ReadPoint(ctx, PointQuery{Index: idx(3), NoEpoch: true}); err != nil || p.Account != nil || p.Incomplete {
		t.Fatalf("unknown index: %+v %v", p, err)
	}
	if p, err := s.ReadPoint(ctx, PointQuery{Index: idx(3), Depths: []uint8{16}, NoEpoch: true}); err != nil || !p.Incomplete {
		t.Fatalf("missing first tile without the epoch row: %+v %v, want Incomplete", p, err)
	}
	if p, err := s.ReadPoint(ctx, PointQuery{Index: idx(3), Depths: []uint8{16}}); err != nil || p.Incomplete || p.Epoch == nil || p.Account != nil || p.Records[0] != nil {
		t.Fatalf("missing tile with the epoch row: %+v %v", p, err)
	}
	if _, err := s.ReadPoint(ctx, PointQuery{Index: idx(1), Depths: []uint8{12}}); err == nil {
		t.Fatal("a tile depth that is not a multiple of 8 was accepted")
	}
	// Several indexes in one statement (3 rounded up to 4: the last repeated).
	ds := []uint8{16, 24}
	ps, err := s.ReadPoints(ctx, []PointQuery{{Index: idx(1), Depths: ds, NoEpoch: true}, {Index: idx(3), Depths: ds, NoEpoch: true}, {Index: idx(1), Depths: ds, NoEpoch: true}})
	if err != nil || len(ps) != 3 {
		t.Fatalf("ReadPoints: %d points, %v", len(ps), err)
	}
	for i, p := range ps {
		if i == 1 {
			if p.Account != nil || p.Records[0] != nil || p.Records[1] != nil {
				t.Fatalf("ReadPoints of an unknown index: %+v", p)
			}
			continue
		}
		if p.Account == nil || p.Account.Version != 2 || !bytes.Equal(p.Records[0], []byte{16, 2}) || !bytes.Equal(p.Records[1], []byte{24, 2}) {
			t.Fatalf("ReadPoints point %d: %+v", i, p)
		}
	}
	if _, err := s.ReadPoints(ctx, []PointQuery{{Index: idx(1), Depths: ds}}); err == nil {
		t.Fatal("ReadPoints accepted a query with the epoch row")
	}
	// By user id and by index in one statement (users rounded up to 4,
	// indexes to 2, tiles to 2 x 2).
	ps, err = s.ReadPoints(ctx, []PointQuery{
		{ByUser: true, UserID: "alice@example.com", NoEpoch: true},
		{Index: idx(3), Depths: ds, NoEpoch: true},
		{ByUser: true, UserID: "bob@example.com", NoEpoch: true},
		{ByUser: true, UserID: "alice@example.com", NoEpoch: true},
		{Index: idx(1), Depths: ds, NoEpoch: true},
	})
	if err != nil || len(ps) != 5 {
		t.Fatalf("ReadPoints by user and index: %d points, %v", len(ps), err)
	}
	for _, i := range []int{0, 3} {
		p := ps[i]
		if !p.User || p.Index != idx(1) || !bytes.Equal(p.VRFProof, pi) || p.Account == nil || p.Account.Version != 2 || !bytes.Equal(p.Account.Leaf, []byte{2}) || len(p.Records) != 0 {
			t.Fatalf("ReadPoints point %d (alice by user id): %+v", i, p)
		}
	}
	if p := ps[2]; p.User || p.Account != nil {
		t.Fatalf("ReadPoints of an unknown user: %+v", p)
	}
	if p := ps[1]; p.Account != nil || len(p.Records) != 2 || p.Records[0] != nil {
		t.Fatalf("ReadPoints of an unknown index beside users: %+v", p)
	}
	if p := ps[4]; p.User || p.Account == nil || p.Account.Version != 2 || !bytes.Equal(p.Records[0], []byte{16, 2}) || !bytes.Equal(p.Records[1], []byte{24, 2}) {
		t.Fatalf("ReadPoints by index beside users: %+v", p)
	}
	if ps, err = s.ReadPoints(ctx, []PointQuery{{ByUser: true, UserID: "alice@example.com", NoEpoch: true}}); err != nil || !ps[0].User || ps[0].Account == nil {
		t.Fatalf("ReadPoints of one user: %+v, %v", ps, err)
	}
	// Tiles by user id (keys computed from the users row).
	uq := PointQuery{ByUser: true, UserID: "alice@example.com", Depths: []uint8{16, 24, 32}, NoEpoch: true}
	ps, err = s.ReadPoints(ctx, []PointQuery{uq, {ByUser: true, UserID: "bob@example.com", Depths: uq.Depths, NoEpoch: true}, uq, {Index: idx(1), NoEpoch: true}})
	if err != nil || len(ps) != 4 {
		t.Fatalf("ReadPoints with tiles by user id: %d points, %v", len(ps), err)
	}
	for _, i := range []int{0, 2} {
		p := ps[i]
		if !p.User || p.Index != idx(1) || p.Account == nil || p.Account.Version != 2 || len(p.Records) != 3 ||
			!bytes.Equal(p.Records[0], []byte{16, 2}) || !bytes.Equal(p.Records[1], []byte{24, 2}) || p.Records[2] != nil {
			t.Fatalf("ReadPoints point %d (alice with tiles): %+v", i, p)
		}
	}
	if ps[1].User || ps[3].Account == nil || len(ps[3].Records) != 0 {
		t.Fatalf("ReadPoints with tiles by user id: bob %+v, index %+v", ps[1], ps[3])
	}
	if _, err := s.ReadPoints(ctx, []PointQuery{uq, {ByUser: true, UserID: "bob@example.com", Depths: ds, NoEpoch: true}}); err == nil {
		t.Fatal("ReadPoints accepted two tile shapes by user id")
	}
	if _, err := s.ReadPoints(ctx, []PointQuery{{Index: idx(1), Depths: ds, NoEpoch: true}, {Index: idx(3), Depths: ds[:1], NoEpoch: true}}); err == nil {
		t.Fatal("ReadPoints accepted two tile shapes")
	}
}
