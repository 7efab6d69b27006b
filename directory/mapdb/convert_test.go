package mapdb

import (
	"testing"

	"github.com/keyline/keyline/verifier/vmap"
	"github.com/keyline/keyline/verifier/vmap/boltstore"
	"go.etcd.io/bbolt"
)

// TestConvertNodes opens a database in the untiled layout of older
// versions (node records in nodes/) and checks Open converts it to tiles
// with the same root and proofs, and removes the node records.
func TestConvertNodes(t *testing.T) {
	db, _ := openTemp(t)
	defer db.Close()
	mem := vmap.NewMemStore()
	var root vmap.Hash
	err := db.Update(func(tx *bbolt.Tx) error {
		top, _ := tx.CreateBucket([]byte("map"))
		nodes, _ := top.CreateBucket(nodesBucket)
		epochs, _ := top.CreateBucket(epochsBucket)
		meta, _ := top.CreateBucket(metaBucket)
		for e := 1; e <= 3; e++ {
			ups := batch((e-1)*300, e*300, e)
			if e > 1 {
				ups = append(ups, vmap.Update{Index: idx(5), Value: val(5, e)})
			}
			var err error
			if root, err = vmap.Apply(boltstore.New(nodes), ups); err != nil {
				return err
			}
			vmap.Apply(mem, ups)
			epochs.Put(u64(uint64(e)), root[:])
		}
		return meta.Put(latestKey, u64(3))
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err := Open(db, "map")
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket([]byte("map")).Bucket(nodesBucket) != nil {
			t.Error("node records kept after conversion")
		}
		return nil
	})
	for i := 0; i < 1000; i += 13 {
		l, err := m.Prove(idx(i))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := vmap.Prove(mem, idx(i))
		we, _ := want.MarshalBinary()
		ge, _ := l.Proof.MarshalBinary()
		if l.Root != root || string(we) != string(ge) {
			t.Fatalf("index %d: proof differs after conversion", i)
		}
	}
	if _, err := m.ApplyEpoch(4, batch(900, 950, 4)); err != nil {
		t.Fatal(err)
	}
}
