package witness

import (
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Store durably keeps the latest cosigned checkpoint of every log.
type Store interface {
	// Latest returns the latest cosigned signed checkpoint note for
	// origin, or nil if none.
	Latest(origin string) ([]byte, error)
	// Update calls f with the latest note for origin (nil if none) and
	// stores the note f returns, atomically: no other Update of the store
	// runs between the read and the write, and the new note is durable
	// (fsynced) before Update returns. If f fails nothing is stored and
	// f's error is returned.
	Update(origin string, f func(latest []byte) ([]byte, error)) error
	Close() error
}

// BoltStore is a Store in a bbolt file: bucket "witness/latest", key origin,
// value the signed checkpoint note as submitted. Every Update is one bbolt
// read-write transaction, fsynced on commit.
type BoltStore struct {
	db *bolt.DB
}

var latestBucket = []byte("witness/latest")

// OpenBoltStore opens (creating if needed, mode 0600) the store at path.
func OpenBoltStore(path string) (*BoltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("witness: opening store %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(latestBucket)
		return err
	}); err != nil {
		db.Close()
		return nil, err
	}
	return &BoltStore{db: db}, nil
}

// Latest implements Store.
func (s *BoltStore) Latest(origin string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(latestBucket).Get([]byte(origin)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	return out, err
}

// Update implements Store.
func (s *BoltStore) Update(origin string, f func(latest []byte) ([]byte, error)) error {
	if origin == "" {
		return errors.New("witness: empty origin")
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(latestBucket)
		var cur []byte
		if v := b.Get([]byte(origin)); v != nil {
			cur = append([]byte(nil), v...)
		}
		next, err := f(cur)
		if err != nil {
			return err
		}
		return b.Put([]byte(origin), next)
	})
}

// Close closes the file.
func (s *BoltStore) Close() error { return s.db.Close() }
