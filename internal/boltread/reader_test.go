package boltread

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"go.etcd.io/bbolt"
)

// testDB opens a bbolt file with small pages (deep trees from few keys).
func testDB(t testing.TB, pageSize int) (*bbolt.DB, *Reader) {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "t.db"), 0o600, &bbolt.Options{PageSize: pageSize, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r, err := Open(db, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return db, r
}

func key(i int) []byte { return binary.BigEndian.AppendUint64([]byte("k"), uint64(i)*7919) }

// value returns a value of a length chosen by i: mostly small, some of
// several pages (overflow).
func value(i, gen int) []byte {
	n := 20 + i%50
	if i%97 == 0 {
		n = 9000 + i%3000
	}
	v := make([]byte, n)
	for j := range v {
		v[j] = byte(i*31 + j + gen)
	}
	return v
}

// compare checks that r reads every key in keys (and some absent ones) of
// the bucket at path as bbolt's Get does, in one read transaction.
func compare(t *testing.T, db *bbolt.DB, r *Reader, path [][]byte, keys [][]byte) {
	t.Helper()
	err := db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(path[0])
		for _, p := range path[1:] {
			b = b.Bucket(p)
		}
		src := r.Bucket(tx, b)
		for _, k := range keys {
			want := b.Get(k)
			got, err := src.Get(k)
			if err != nil {
				return fmt.Errorf("key %x: %v", k, err)
			}
			if !bytes.Equal(got, want) || (got == nil) != (want == nil) {
				return fmt.Errorf("key %x: got %d bytes, bbolt %d", k, len(got), len(want))
			}
			v, err := src.Value(k)
			if err != nil {
				return err
			}
			if (v == nil) != (want == nil) {
				return fmt.Errorf("key %x: Value nil %v, bbolt nil %v", k, v == nil, want == nil)
			}
			if v == nil {
				continue
			}
			if v.Len() != len(want) {
				return fmt.Errorf("key %x: Len %d, want %d", k, v.Len(), len(want))
			}
			off := rand.IntN(len(want) + 1)
			n := rand.IntN(len(want) - off + 1)
			part, err := v.Slice(off, n)
			if err != nil || !bytes.Equal(part, want[off:off+n]) {
				return fmt.Errorf("key %x: Slice(%d, %d) = %d bytes, %v", k, off, n, len(part), err)
			}
			if _, err := v.Slice(off, len(want)-off+1); err == nil {
				return fmt.Errorf("key %x: Slice past the end succeeded", k)
			}
			if rand.IntN(2) == 0 { // the next reads reuse the buffers
				Release(src)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestMatchesBbolt(t *testing.T) {
	db, r := testDB(t, 1024)
	const n = 20000
	err := db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket([]byte("big"))
		if err != nil {
			return err
		}
		for _, i := range rand.Perm(n) {
			if err := b.Put(key(i), value(i, 0)); err != nil {
				return err
			}
		}
		// A nested bucket among the keys reads as absent, as in bbolt.
		if _, err := b.CreateBucket(key(n + 1)); err != nil {
			return err
		}
		nested, err := b.CreateBucket([]byte("nested"))
		if err != nil {
			return err
		}
		for i := range 3000 {
			if err := nested.Put(key(i), value(i, 1)); err != nil {
				return err
			}
		}
		// Inline: small enough to live inside its parent's value.
		small, err := tx.CreateBucket([]byte("small"))
		if err != nil {
			return err
		}
		return small.Put(key(1), value(1, 2))
	})
	if err != nil {
		t.Fatal(err)
	}
	var keys [][]byte
	for range 3000 {
		keys = append(keys, key(rand.IntN(n+10)))
	}
	keys = append(keys, key(n+1), []byte{}, []byte("k"), []byte("zzz"), key(0), key(n-1))
	var depth int
	db.View(func(tx *bbolt.Tx) error {
		depth = tx.Bucket([]byte("big")).Stats().Depth
		if tx.Bucket([]byte("small")).Root() != 0 {
			t.Fatal("bucket small is not inline")
		}
		return nil
	})
	if depth < 3 {
		t.Fatalf("tree depth %d, want a deep tree", depth)
	}
	compare(t, db, r, [][]byte{[]byte("big")}, keys)
	compare(t, db, r, [][]byte{[]byte("big"), []byte("nested")}, keys)
	compare(t, db, r, [][]byte{[]byte("small")}, keys)
	if r.Stats().CacheHits == 0 {
		t.Fatal("no branch page cache hits")
	}
}

// TestAcrossWrites rewrites and deletes keys between read transactions
// while readers run: the branch page cache must never serve a page of
// another transaction.
func TestAcrossWrites(t *testing.T) {
	db, r := testDB(t, 1024)
	const n = 5000
	write := func(gen int) {
		err := db.Update(func(tx *bbolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("b"))
			if err != nil {
				return err
			}
			for range 400 {
				i := rand.IntN(n)
				if gen%3 == 2 && i%2 == 0 {
					if err := b.Delete(key(i)); err != nil {
						return err
					}
					continue
				}
				if err := b.Put(key(i), value(i, gen)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}
	for g := range 10 {
		write(g)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := db.View(func(tx *bbolt.Tx) error {
					b := tx.Bucket([]byte("b"))
					src := r.Bucket(tx, b)
					for range 200 {
						k := key(rand.IntN(n))
						got, err := src.Get(k)
						if err != nil {
							return err
						}
						if want := b.Get(k); !bytes.Equal(got, want) || (got == nil) != (want == nil) {
							return fmt.Errorf("tx %d key %x: got %d bytes, bbolt %d", tx.ID(), k, len(got), len(want))
						}
						Release(src)
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for g := 10; g < 60; g++ {
		write(g)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestCorruptFile overwrites pages of the file with garbage: reads must
// fail with ErrCorrupt or return a value, never panic or hang.
func TestCorruptFile(t *testing.T) {
	db, r := testDB(t, 1024)
	err := db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket([]byte("b"))
		if err != nil {
			return err
		}
		for i := range 3000 {
			if err := b.Put(key(i), value(i, 0)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var root uint64
	var txid int
	db.View(func(tx *bbolt.Tx) error {
		root, txid = uint64(tx.Bucket([]byte("b")).Root()), tx.ID()
		return nil
	})
	size, _ := os.Stat(db.Path())
	raw, err := os.ReadFile(db.Path())
	if err != nil {
		t.Fatal(err)
	}
	for trial := range 300 {
		bad := bytes.Clone(raw)
		for range 1 + trial%8 {
			at := rand.IntN(int(size.Size()))
			bad[at] ^= byte(1 + rand.IntN(255))
		}
		if trial%10 == 0 { // the root page points to itself
			p := bad[int(root)*1024:]
			if ne.Uint16(p[8:]) == branchFlag {
				ne.PutUint64(p[16+8:], root)
			}
		}
		rd, err := New(bytes.NewReader(bad), 1024, 0)
		if err != nil {
			t.Fatal(err)
		}
		src := &preadBucket{r: rd, txid: txid, root: root}
		for range 50 {
			k := key(rand.IntN(3100))
			v, err := src.Get(k)
			if err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("trial %d key %x: error %v does not wrap ErrCorrupt", trial, k, err)
			}
			_ = v
		}
	}
	// Pages past the end of the file.
	src := &preadBucket{r: r, txid: txid, root: uint64(size.Size()/1024) + 5}
	if _, err := src.Get(key(1)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("root past the end: %v", err)
	}
}

// FuzzPage decodes arbitrary bytes as a page and searches them: an error
// wrapping ErrCorrupt or a result within the page, never a panic.
func FuzzPage(f *testing.F) {
	db, _ := testDB(f, 512)
	err := db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket([]byte("b"))
		if err != nil {
			return err
		}
		for i := range 200 {
			if err := b.Put(key(i), value(i, 0)[:20]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		f.Fatal(err)
	}
	raw, err := os.ReadFile(db.Path())
	if err != nil {
		f.Fatal(err)
	}
	for id := 2; id*512 < len(raw); id++ {
		f.Add(raw[id*512:(id+1)*512], uint64(id), key(id))
	}
	f.Fuzz(func(t *testing.T, page []byte, id uint64, k []byte) {
		h, size, err := parseHeader(page, id, 512)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("parseHeader: %v", err)
			}
			return
		}
		if size < 512 {
			t.Fatalf("size %d", size)
		}
		if h.flags == branchFlag {
			child, err := searchBranch(page, h, k)
			if err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("searchBranch: %v", err)
			}
			if err == nil && child == id {
				t.Fatal("searchBranch returned the page itself")
			}
			return
		}
		m, err := searchLeaf(bytesPage(page), h, size, k)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("searchLeaf: %v", err)
			}
			return
		}
		if m.found && (m.off < 0 || m.len < 0 || m.off+m.len > size) {
			t.Fatalf("value [%d, +%d) outside the page of %d bytes", m.off, m.len, size)
		}
	})
}
