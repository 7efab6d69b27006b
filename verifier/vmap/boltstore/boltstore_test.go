package boltstore

import (
	"crypto/sha256"
	"encoding/binary"
	"path/filepath"
	"testing"

	"github.com/keyline/keyline/verifier/vmap"
	"go.etcd.io/bbolt"
)

// TestMatchesMemStore applies the same batches to a bbolt-backed map and a
// MemStore and checks roots and proofs agree, across reopen, and that a
// failed transaction leaves the map unchanged.
func TestMatchesMemStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	mem := vmap.NewMemStore()
	idx := func(i int) vmap.Index { return sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i))) }
	var want vmap.Hash
	for b := 0; b < 5; b++ {
		var ups []vmap.Update
		for i := 0; i < 50; i++ {
			ups = append(ups, vmap.Update{Index: idx(b*30 + i), Value: vmap.MapValue(uint64(b+1), uint64(i), idx(-i))})
		}
		if want, err = vmap.Apply(mem, ups); err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bbolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("map"))
			if err != nil {
				return err
			}
			got, err := vmap.Apply(New(bk), ups)
			if err != nil {
				return err
			}
			if got != want {
				t.Fatalf("batch %d: root %x, MemStore %x", b, got[:8], want[:8])
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// A rolled-back Apply changes nothing.
	_ = db.Update(func(tx *bbolt.Tx) error {
		vmap.Apply(New(tx.Bucket([]byte("map"))), []vmap.Update{{Index: idx(1000), Value: idx(1)}})
		return bbolt.ErrTxClosed
	})
	db.Close()
	db, err = bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bbolt.Tx) error {
		s := New(tx.Bucket([]byte("map")))
		root, err := vmap.Root(s)
		if err != nil || root != want {
			t.Fatalf("after reopen: root %x, %v; want %x", root[:8], err, want[:8])
		}
		p, err := vmap.Prove(s, idx(7))
		if err != nil {
			t.Fatal(err)
		}
		if _, found, err := vmap.Verify(root, idx(7), p); err != nil || !found {
			t.Fatalf("proof: %v %v", found, err)
		}
		return nil
	})
}
