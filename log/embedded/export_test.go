package embedded

import (
	"bytes"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	bolt "go.etcd.io/bbolt"
)

// WriteFormat1 creates a format-1 log file at path (as the previous
// version of this package wrote it) holding leaves and the checkpoint
// notes cps (the last one latest), for conversion tests. It appends in
// transactions of batch leaves.
func WriteFormat1(path string, leaves [][]byte, cps [][]byte, batch int) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return err
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketLeavesV1, bucketNodes, bucketCheckpoints} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketMeta).Put(keyFormat, u64(1)); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keySize, u64(0))
	})
	if err != nil {
		return err
	}
	rng := factory.NewEmptyRange(0)
	for lo := 0; lo < len(leaves); lo += batch {
		hi := min(len(leaves), lo+batch)
		err := db.Update(func(tx *bolt.Tx) error {
			lb, nb := tx.Bucket(bucketLeavesV1), tx.Bucket(bucketNodes)
			var putErr error
			visit := func(id compact.NodeID, hash []byte) {
				if putErr == nil {
					putErr = nb.Put(nodeKey(id), bytes.Clone(hash))
				}
			}
			for i := lo; i < hi; i++ {
				if err := lb.Put(u64(uint64(i)), bytes.Clone(leaves[i])); err != nil {
					return err
				}
				if err := rng.Append(rfc6962.DefaultHasher.HashLeaf(leaves[i]), visit); err != nil {
					return err
				}
				if putErr != nil {
					return putErr
				}
			}
			return tx.Bucket(bucketMeta).Put(keySize, u64(uint64(hi)))
		})
		if err != nil {
			return err
		}
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCheckpoints)
		for _, cp := range cps {
			seq, err := b.NextSequence()
			if err != nil {
				return err
			}
			if err := b.Put(u64(seq), cp); err != nil {
				return err
			}
			if err := b.Put(keyLatest, cp); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return db.Sync()
}
