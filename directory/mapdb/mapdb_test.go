package mapdb

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"path/filepath"
	"reflect"
	"sync"
	"testing"

	"github.com/keyline/keyline/internal/boltread"
	"github.com/keyline/keyline/verifier/vmap"
	"go.etcd.io/bbolt"
)

func idx(i int) vmap.Index {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	return sha256.Sum256(append([]byte("mapdb index "), b[:]...))
}

func val(i, v int) vmap.Value {
	return vmap.MapValue(uint64(v), uint64(i), sha256.Sum256([]byte{byte(i), byte(i >> 8), byte(v)}))
}

func openTemp(t testing.TB) (*bbolt.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "map.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	return db, path
}

func batch(from, to, version int) []vmap.Update {
	var ups []vmap.Update
	for i := from; i < to; i++ {
		ups = append(ups, vmap.Update{Index: idx(i), Value: val(i, version)})
	}
	return ups
}

func TestEpochsMatchMemStore(t *testing.T) {
	db, path := openTemp(t)
	m, err := Open(db, "map")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Prove(idx(0)); !errors.Is(err, ErrNoEpoch) {
		t.Fatalf("Prove before first epoch: %v", err)
	}
	if _, _, err := m.LatestEpoch(); !errors.Is(err, ErrNoEpoch) {
		t.Fatalf("LatestEpoch before first epoch: %v", err)
	}
	mem := vmap.NewMemStore()
	var roots []vmap.Hash
	for e := 0; e < 6; e++ {
		ups := batch(e*50, e*50+80, e+1) // overlapping: inserts and updates
		if e == 3 {
			ups = nil // an epoch with no updates
		}
		root, err := m.ApplyEpoch(uint64(e+1), ups)
		if err != nil {
			t.Fatal(err)
		}
		want, err := vmap.Apply(mem, ups)
		if err != nil {
			t.Fatal(err)
		}
		if root != want {
			t.Fatalf("epoch %d: bbolt root %x, memory root %x", e+1, root, want)
		}
		roots = append(roots, root)
	}
	if _, err := m.ApplyEpoch(9, batch(0, 1, 9)); !errors.Is(err, ErrEpochOrder) {
		t.Fatalf("skipped epoch: %v", err)
	}
	if _, err := m.ApplyEpoch(6, batch(0, 1, 9)); !errors.Is(err, ErrEpochOrder) {
		t.Fatalf("repeated epoch: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopen: everything persisted.
	db, err = bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	m, err = Open(db, "map")
	if err != nil {
		t.Fatal(err)
	}
	for e, want := range roots {
		if got, err := m.Root(uint64(e + 1)); err != nil || got != want {
			t.Fatalf("Root(%d) = %x, %v", e+1, got, err)
		}
	}
	if _, err := m.Root(99); !errors.Is(err, ErrUnknownEpoch) {
		t.Fatalf("Root(99): %v", err)
	}
	epoch, root, err := m.LatestEpoch()
	if err != nil || epoch != 6 || root != roots[5] {
		t.Fatalf("LatestEpoch = %d %x %v", epoch, root, err)
	}
	for i := 0; i < 400; i += 7 {
		l, err := m.Prove(idx(i))
		if err != nil {
			t.Fatal(err)
		}
		if l.Epoch != 6 || l.Root != roots[5] {
			t.Fatalf("lookup epoch %d root %x", l.Epoch, l.Root)
		}
		v, found, err := vmap.Verify(l.Root, idx(i), l.Proof)
		if err != nil {
			t.Fatal(err)
		}
		wantV, wantFound, _ := vmap.Get(mem, idx(i))
		if found != wantFound || v != wantV || l.Found != found || l.Value != v {
			t.Fatalf("index %d: proof (%v,%x) memory (%v,%x)", i, found, v[:4], wantFound, wantV[:4])
		}
	}
}

// TestEpochAtomic checks that a failed epoch leaves no trace.
func TestEpochAtomic(t *testing.T) {
	db, _ := openTemp(t)
	defer db.Close()
	m, _ := Open(db, "map")
	r1, err := m.ApplyEpoch(1, batch(0, 100, 1))
	if err != nil {
		t.Fatal(err)
	}
	// Duplicate index: rejected before any write.
	dup := append(batch(100, 150, 2), vmap.Update{Index: idx(120), Value: val(120, 3)})
	if _, err := m.ApplyEpoch(2, dup); !errors.Is(err, vmap.ErrDuplicateIndex) {
		t.Fatalf("duplicate: %v", err)
	}
	// A caller transaction that fails after the map was updated.
	boom := errors.New("log append failed")
	err = db.Update(func(tx *bbolt.Tx) error {
		if _, err := m.ApplyEpochTx(tx, 2, batch(50, 300, 2)); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	epoch, root, err := m.LatestEpoch()
	if err != nil || epoch != 1 || root != r1 {
		t.Fatalf("after rollback: epoch %d root %x err %v", epoch, root, err)
	}
	if _, err := m.Root(2); !errors.Is(err, ErrUnknownEpoch) {
		t.Fatalf("rolled-back epoch has a root: %v", err)
	}
	l, err := m.Prove(idx(200))
	if err != nil || l.Found {
		t.Fatalf("rolled-back insert visible: %+v %v", l, err)
	}
	if err := vmap.VerifyNonInclusion(r1, idx(200), l.Proof); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ApplyEpoch(2, batch(50, 300, 2)); err != nil {
		t.Fatal(err)
	}
}

// TestSnapshotConsistency runs lookups while epochs are applied: every
// proof must verify under the root recorded for the epoch it reports.
func TestSnapshotConsistency(t *testing.T) {
	db, _ := openTemp(t)
	defer db.Close()
	m, _ := Open(db, "map")
	if _, err := m.ApplyEpoch(0, batch(0, 200, 1)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errc := make(chan error, 4)
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			for i := r; ; i += 3 {
				select {
				case <-stop:
					return
				default:
				}
				l, err := m.Prove(idx(i % 1000))
				if err == nil {
					var rec vmap.Hash
					if rec, err = m.Root(l.Epoch); err == nil && rec != l.Root {
						err = errors.New("lookup root differs from recorded epoch root")
					}
					if err == nil {
						_, _, err = vmap.Verify(l.Root, idx(i%1000), l.Proof)
					}
				}
				if err != nil {
					errc <- err
					return
				}
			}
		}(r)
	}
	for e := 1; e <= 20; e++ {
		if _, err := m.ApplyEpoch(uint64(e), batch(e*40, e*40+60, e)); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
}

// TestProvePread checks that proofs read with pread (SetPread) equal those
// read through bbolt's map, across epochs that rewrite tiles, with and
// without the top-tile cache.
func TestProvePread(t *testing.T) {
	for _, depth := range []int{-1, 0} {
		db, _ := openTemp(t)
		m, err := OpenOptions(db, "map", Options{CacheDepth: depth})
		if err != nil {
			t.Fatal(err)
		}
		r, err := boltread.Open(db, 0)
		if err != nil {
			t.Fatal(err)
		}
		for e := 1; e <= 5; e++ {
			if _, err := m.ApplyEpoch(uint64(e), batch((e-1)*1500, e*1500+300, e)); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < e*1500+600; i += 37 {
				m.SetPread(nil)
				want, err := m.Prove(idx(i))
				if err != nil {
					t.Fatal(err)
				}
				m.SetPread(r)
				got, err := m.Prove(idx(i))
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("epoch %d index %d: pread proof differs from the map's", e, i)
				}
			}
		}
		if r.Stats().Reads == 0 {
			t.Fatal("no page read with pread")
		}
		r.Close()
		db.Close()
	}
}
