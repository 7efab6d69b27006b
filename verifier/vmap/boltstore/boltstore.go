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
