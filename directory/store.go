package directory

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	klog "github.com/keyline/keyline/log"
)

// Buckets of directory.db (besides the map's top-level bucket "map").
var (
	bucketMap      = "map"
	bucketAccounts = []byte("accounts") // [32] VRF index -> accountRecord
	bucketHistory  = []byte("history")  // [32] VRF index || u64 version -> u64 log index
	bucketUsers    = []byte("users")    // user id -> [80] VRF proof || [32] VRF index
	bucketMeta     = []byte("meta")     // "applied" -> u64 log size the map and index cover
	keyApplied     = []byte("applied")
)

// errCorrupt is wrapped by every inconsistency between the log and the
// directory's databases.
var errCorrupt = errors.New("directory: stored state inconsistent")

// accountRecord is the latest entry of one VRF index:
//
//	u64 version || u64 log index || [32] entry hash || AccountUpdate leaf
type accountRecord struct {
	Version   uint64
	LogIndex  uint64
	EntryHash [32]byte
	Leaf      []byte
}

func (r *accountRecord) marshal() []byte {
	b := make([]byte, 48+len(r.Leaf))
	binary.BigEndian.PutUint64(b, r.Version)
	binary.BigEndian.PutUint64(b[8:], r.LogIndex)
	copy(b[16:48], r.EntryHash[:])
	copy(b[48:], r.Leaf)
	return b
}

func parseAccountRecord(b []byte) (*accountRecord, error) {
	if len(b) < 48 {
		return nil, fmt.Errorf("%w: account record of %d bytes", errCorrupt, len(b))
	}
	r := &accountRecord{
		Version:  binary.BigEndian.Uint64(b),
		LogIndex: binary.BigEndian.Uint64(b[8:]),
		Leaf:     bytes.Clone(b[48:]),
	}
	copy(r.EntryHash[:], b[16:48])
	if klog.EntryHash(r.Leaf) != r.EntryHash {
		return nil, fmt.Errorf("%w: account record entry hash mismatch", errCorrupt)
	}
	return r, nil
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func historyKey(index [32]byte, version uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), index[:]...), version)
}

func createBuckets(db *bbolt.DB) error {
	return db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketAccounts, bucketHistory, bucketUsers, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
}

func openBolt(path string, noSync bool) (*bbolt.DB, error) {
	return bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:        5 * time.Second,
		NoFreelistSync: true,
		FreelistType:   bbolt.FreelistMapType,
		NoSync:         noSync,
	})
}

// boltCheckpoints is a log.CheckpointStore in its own bbolt file, used with
// backends (Trillian) that do not store checkpoints themselves.
type boltCheckpoints struct{ db *bbolt.DB }

var (
	bucketCheckpoints = []byte("checkpoints")
	keyLatest         = []byte("latest")
)

func (c *boltCheckpoints) LatestCheckpoint(ctx context.Context) ([]byte, error) {
	var out []byte
	err := c.db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketCheckpoints); b != nil {
			out = bytes.Clone(b.Get(keyLatest))
		}
		return nil
	})
	return out, err
}

func (c *boltCheckpoints) StoreCheckpoint(ctx context.Context, prev, next []byte) error {
	return c.db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketCheckpoints)
		if err != nil {
			return err
		}
		if cur := b.Get(keyLatest); !bytes.Equal(cur, prev) || (cur == nil) != (prev == nil) {
			return fmt.Errorf("%w: stored checkpoint differs from the expected previous one", klog.ErrCheckpointConflict)
		}
		n, err := b.NextSequence()
		if err != nil {
			return err
		}
		if err := b.Put(u64(n), next); err != nil {
			return err
		}
		return b.Put(keyLatest, next)
	})
}

// committed returns the latest committed entry of index, or nil.
func (s *Server) committed(index [32]byte) (*entry, error) {
	var rec *accountRecord
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketAccounts).Get(index[:])
		if b == nil {
			return nil
		}
		var err error
		rec, err = parseAccountRecord(b)
		return err
	})
	if err != nil || rec == nil {
		return nil, err
	}
	return entryFromRecord(index, rec)
}

func entryFromRecord(index [32]byte, rec *accountRecord) (*entry, error) {
	u, err := klog.ParseAccountUpdate(rec.Leaf)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	st, ra, err := stateOf(u)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errCorrupt, err)
	}
	return &entry{index: index, version: rec.Version, prevHash: u.PrevHash, entryHash: rec.EntryHash, leaf: rec.Leaf, state: st, reset: ra, logIndex: rec.LogIndex}, nil
}
