// Package boltstore adapts a go.etcd.io/bbolt bucket to vmap.Store, so a
// verifiable map can live in a bbolt database and be updated atomically with
// other records in the same read-write transaction.
package boltstore

import (
	"github.com/keyline/keyline/verifier/vmap"
	"go.etcd.io/bbolt"
)

// Store is a vmap.Store over one bbolt bucket. It is valid only for the life
// of the bucket's transaction; Put needs a writable transaction. Apply over a
// Store is atomic with everything else the transaction writes.
type Store struct{ b *bbolt.Bucket }

var _ vmap.Store = Store{}

// New returns the Store over bucket b.
func New(b *bbolt.Bucket) Store { return Store{b: b} }

// Get implements vmap.Reader: it returns nil for an absent key. The slice is
// bbolt's and is valid until the transaction ends (vmap copies it).
func (s Store) Get(key []byte) ([]byte, error) { return s.b.Get(key), nil }

// Put implements vmap.Store.
func (s Store) Put(key, value []byte) error { return s.b.Put(key, value) }

// Tiles is a vmap.TileStore over one bbolt bucket, keyed by TileID.Key.
// It is valid only for the life of the bucket's transaction; WriteTiles
// needs a writable transaction and is atomic with everything else it
// writes.
type Tiles struct{ b *bbolt.Bucket }

var _ vmap.TileStore = Tiles{}

// NewTiles returns the TileStore over bucket b.
func NewTiles(b *bbolt.Bucket) Tiles { return Tiles{b: b} }

// ReadTiles implements vmap.TileReader. The slices are bbolt's, valid until
// the transaction ends or writes.
func (s Tiles) ReadTiles(ids []vmap.TileID) ([][]byte, error) {
	out := make([][]byte, len(ids))
	var k [vmap.HashSize + 1]byte
	for i, id := range ids {
		out[i] = s.b.Get(id.AppendKey(k[:0]))
	}
	return out, nil
}

// WriteTiles implements vmap.TileStore.
func (s Tiles) WriteTiles(tiles []vmap.Tile) error {
	for _, t := range tiles {
		if err := s.b.Put(t.ID.Key(), t.Data); err != nil {
			return err
		}
	}
	return nil
}
