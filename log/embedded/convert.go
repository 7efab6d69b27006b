package embedded

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	"github.com/keyline/keyline/log"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	bolt "go.etcd.io/bbolt"
)

// convertTxBytes is about how many leaf bytes a conversion transaction
// writes.
const convertTxBytes = 32 << 20

// ConvertingSuffix names the file a conversion writes next to the log
// file (path + ConvertingSuffix) before it renames it over the log file.
const ConvertingSuffix = ".converting"

// convert writes the format-1 log open in old, whose file is path, as a
// format-2 file path+ConvertingSuffix, fsyncs it, and renames it over path.
// It only reads old: if it is interrupted, old is intact and the next Open
// starts the conversion again from scratch (removing the partial file).
//
// Every leaf is read once, in order, and every node hash of level 8 and
// above is recomputed from the leaves; the root of the converted tree must
// equal the root computed from old's stored nodes, else nothing is
// replaced and the error wraps log.ErrCorrupt. The checkpoints are copied
// with their numbering.
func convert(old *bolt.DB, path string) error {
	tmp := path + ConvertingSuffix
	if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("convert: removing the partial conversion %s: %w", tmp, err)
	}
	// The new file is about as large as the old one: map it at once rather
	// than remapping as it grows.
	mmapSize := 0
	if fi, err := os.Stat(path); err == nil && fi.Size() < 1<<40 {
		mmapSize = int(fi.Size())
	}
	nw, err := bolt.Open(tmp, 0o600, &bolt.Options{NoSync: true, FreelistType: bolt.FreelistMapType, InitialMmapSize: mmapSize})
	if err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	err = old.View(func(otx *bolt.Tx) error { return convertTx(otx, nw) })
	if err == nil {
		err = nw.Sync()
	}
	if cerr := nw.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("convert: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("convert: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("convert: syncing the directory of %s: %w", path, err)
		}
	}
	return nil
}

func convertTx(otx *bolt.Tx, nw *bolt.DB) error {
	size, err := readSize(otx)
	if err != nil {
		return err
	}
	oldLeaves, oldNodes := otx.Bucket(bucketLeavesV1), otx.Bucket(bucketNodes)
	if oldLeaves == nil || oldNodes == nil || otx.Bucket(bucketCheckpoints) == nil {
		return fmt.Errorf("%w: format-1 file without its buckets", log.ErrCorrupt)
	}
	if err := nw.Update(createBuckets); err != nil {
		return err
	}
	rng := factory.NewEmptyRange(0)
	c := oldLeaves.Cursor()
	k, leaf := c.First()
	next := func(i uint64) ([]byte, error) {
		if len(k) != 8 || binary.BigEndian.Uint64(k) != i {
			return nil, fmt.Errorf("%w: leaf %d missing", log.ErrCorrupt, i)
		}
		out := leaf
		k, leaf = c.Next()
		return out, nil
	}
	for pos := uint64(0); pos < size; {
		err := nw.Update(func(tx *bolt.Tx) error {
			bundles, tail, nodes := tx.Bucket(bucketBundles), tx.Bucket(bucketTail), tx.Bucket(bucketNodes)
			bundles.FillPercent, tail.FillPercent, nodes.FillPercent = 1.0, 1.0, 1.0
			var putErr error
			visit := func(id compact.NodeID, hash []byte) {
				if putErr == nil && id.Level >= bundleLevel {
					putErr = nodes.Put(nodeKey(id), bytes.Clone(hash))
				}
			}
			batch := make([][]byte, 0, BundleWidth)
			hashes := make([][]byte, 0, BundleWidth)
			for written := 0; pos < size && written < convertTxBytes; {
				end := min(size, pos+BundleWidth)
				batch, hashes = batch[:0], hashes[:0]
				for i := pos; i < end; i++ {
					l, err := next(i)
					if err != nil {
						return err
					}
					h := rfc6962.DefaultHasher.HashLeaf(l)
					if err := rng.Append(h, visit); err != nil {
						return err
					}
					hashes = append(hashes, h)
					if putErr != nil {
						return putErr
					}
					batch = append(batch, l)
					written += len(l)
				}
				if len(batch) == BundleWidth {
					b, err := MarshalBundle(hashes, batch)
					if err != nil {
						return err
					}
					if err := bundles.Put(bundleKey(pos/BundleWidth), b); err != nil {
						return err
					}
				} else {
					for j, l := range batch {
						if err := tail.Put(u64(pos+uint64(j)), tailValue(hashes[j], l)); err != nil {
							return err
						}
					}
				}
				pos = end
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if k != nil {
		return fmt.Errorf("%w: leaf key %x beyond the size %d", log.ErrCorrupt, k, size)
	}
	var root []byte
	if root, err = rng.GetRootHash(nil); size == 0 {
		root, err = rfc6962.DefaultHasher.EmptyRoot(), nil
	}
	if err != nil {
		return err
	}
	oldRoot, err := rootV1(oldNodes, size)
	if err != nil {
		return err
	}
	if !bytes.Equal(root, oldRoot) {
		return fmt.Errorf("%w: the leaves hash to root %x at size %d, the stored nodes to %x", log.ErrCorrupt, root, size, oldRoot)
	}
	return nw.Update(func(tx *bolt.Tx) error {
		ocp, cp := otx.Bucket(bucketCheckpoints), tx.Bucket(bucketCheckpoints)
		if err := ocp.ForEach(func(k, v []byte) error { return cp.Put(k, v) }); err != nil {
			return err
		}
		if err := cp.SetSequence(ocp.Sequence()); err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keySize, u64(size)); err != nil {
			return err
		}
		return meta.Put(keyFormat, u64(formatVersion))
	})
}

// rootV1 returns the root of the first size leaves from the format-1 nodes
// bucket (every complete node from level 0).
func rootV1(nodes *bolt.Bucket, size uint64) ([]byte, error) {
	if size == 0 {
		return rfc6962.DefaultHasher.EmptyRoot(), nil
	}
	ids := compact.RangeNodes(0, size, nil)
	hashes := make([][]byte, len(ids))
	for i, id := range ids {
		h := nodes.Get(nodeKey(id))
		if len(h) != 32 {
			return nil, fmt.Errorf("%w: format-1 node (level %d, index %d) is %d bytes, want 32", log.ErrCorrupt, id.Level, id.Index, len(h))
		}
		hashes[i] = h
	}
	rng, err := factory.NewRange(0, size, hashes)
	if err != nil {
		return nil, err
	}
	return rng.GetRootHash(nil)
}
