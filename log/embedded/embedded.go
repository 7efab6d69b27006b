// Package embedded is a log.Backend kept in a single go.etcd.io/bbolt file.
//
// # Storage
//
// The file holds four buckets:
//
//   - "meta": key "size" holds the number of leaves as a u64 (big-endian);
//     key "format" holds the storage format version, currently 1.
//   - "leaves": key u64 index (big-endian) holds the leaf bytes as appended.
//   - "nodes": key u8 level || u64 index holds the 32-byte RFC 6962 hash of
//     the perfect subtree covering leaves [index<<level, (index+1)<<level).
//     Every such node of the tree is stored once it is complete (level 0 is
//     the leaf hashes), about 2 hashes per leaf. Nodes rooting imperfect
//     subtrees at the right edge of the tree are never stored: RootHash and
//     proofs recompute them from at most log2(size) stored nodes.
//   - "checkpoints": key "latest" holds the latest signed checkpoint note;
//     key u64 n (big-endian, from 1) holds the n-th checkpoint ever stored,
//     so that every published checkpoint remains available.
//
// Append writes the leaves, their node hashes and the new size in one bbolt
// read-write transaction and returns after it commits; bbolt fsyncs the file
// on commit unless Options.NoSync is set. A leaf is thus either durable with
// all its hashes, or absent. Readers use read-only transactions and see a
// consistent snapshot.
//
// A Log also implements log.CheckpointStore (checkpoint compare-and-swap in
// the same file) and log.StoredChecker (recomputing stored hashes from stored
// leaf bytes), which log.Publish uses to verify before signing.
package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/keyline/keyline/log"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	bolt "go.etcd.io/bbolt"
)

// formatVersion is the storage format written to meta/format.
const formatVersion = 1

var (
	bucketMeta        = []byte("meta")
	bucketLeaves      = []byte("leaves")
	bucketNodes       = []byte("nodes")
	bucketCheckpoints = []byte("checkpoints")
	keySize           = []byte("size")
	keyFormat         = []byte("format")
	keyLatest         = []byte("latest")
)

// MaxLeafSize bounds the size of one appended leaf (1 MiB).
const MaxLeafSize = 1 << 20

// Options configures Open. The zero value is the safe default.
type Options struct {
	// NoSync disables fsync on commit. Only for benchmarks and tests:
	// acknowledged leaves may then be lost on power failure.
	NoSync bool
	// Timeout bounds the wait for the file lock held by another process
	// (0 waits forever).
	Timeout time.Duration
}

// Log is an embedded log backend. It is safe for concurrent use; bbolt
// serializes writers and lets readers proceed concurrently.
type Log struct {
	db *bolt.DB
}

var factory = &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// Open opens or creates the log stored in the file at path.
func Open(path string, opts *Options) (*Log, error) {
	if opts == nil {
		opts = &Options{}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.Timeout, NoSync: opts.NoSync, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("embedded: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketLeaves, bucketNodes, bucketCheckpoints} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if f := meta.Get(keyFormat); f == nil {
			if meta.Get(keySize) != nil {
				return fmt.Errorf("%w: size present without format", log.ErrCorrupt)
			}
			if err := meta.Put(keyFormat, u64(formatVersion)); err != nil {
				return err
			}
			return meta.Put(keySize, u64(0))
		} else if len(f) != 8 || binary.BigEndian.Uint64(f) != formatVersion {
			return fmt.Errorf("embedded: unsupported storage format %x", f)
		}
		_, err := readSize(tx)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("embedded: open %s: %w", path, err)
	}
	return &Log{db: db}, nil
}

// Close closes the file.
func (l *Log) Close() error { return l.db.Close() }

// DB returns the underlying bbolt database, for tests and tools that need
// to inspect the stored values, and for the directory's bound on resident
// memory, which releases pages of its memory map (internal/resident).
func (l *Log) DB() *bolt.DB { return l.db }

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func nodeKey(id compact.NodeID) []byte {
	k := make([]byte, 9)
	k[0] = byte(id.Level)
	binary.BigEndian.PutUint64(k[1:], id.Index)
	return k
}

func readSize(tx *bolt.Tx) (uint64, error) {
	v := tx.Bucket(bucketMeta).Get(keySize)
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: meta/size is %d bytes, want 8", log.ErrCorrupt, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// getNodes returns the stored hashes of ids, copied out of the transaction.
func getNodes(tx *bolt.Tx, ids []compact.NodeID) ([][]byte, error) {
	b := tx.Bucket(bucketNodes)
	out := make([][]byte, len(ids))
	for i, id := range ids {
		v := b.Get(nodeKey(id))
		if len(v) != 32 {
			return nil, fmt.Errorf("%w: node (level %d, index %d) is %d bytes, want 32", log.ErrCorrupt, id.Level, id.Index, len(v))
		}
		out[i] = bytes.Clone(v)
	}
	return out, nil
}

// compactRange returns the compact range [0, size) from stored nodes.
func compactRange(tx *bolt.Tx, size uint64) (*compact.Range, error) {
	hashes, err := getNodes(tx, compact.RangeNodes(0, size, nil))
	if err != nil {
		return nil, err
	}
	return factory.NewRange(0, size, hashes)
}

// Append implements log.Backend: it appends leaves at expected in one
// transaction, or fails with log.ErrConflict if the log's size is not
// expected.
func (l *Log) Append(ctx context.Context, expected uint64, leaves [][]byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for i, leaf := range leaves {
		if len(leaf) > MaxLeafSize {
			return fmt.Errorf("embedded: append: leaf %d is %d bytes, over the %d limit", i, len(leaf), MaxLeafSize)
		}
	}
	err := l.db.Update(func(tx *bolt.Tx) error {
		size, err := readSize(tx)
		if err != nil {
			return err
		}
		if size != expected {
			return fmt.Errorf("%w: append at %d to a log of size %d", log.ErrConflict, expected, size)
		}
		if len(leaves) == 0 {
			return nil
		}
		if size+uint64(len(leaves)) < size {
			return fmt.Errorf("embedded: append: size overflow")
		}
		rng, err := compactRange(tx, size)
		if err != nil {
			return err
		}
		lb, nb := tx.Bucket(bucketLeaves), tx.Bucket(bucketNodes)
		lb.FillPercent, nb.FillPercent = 1.0, 0.9
		var putErr error
		visit := func(id compact.NodeID, hash []byte) {
			if putErr == nil {
				putErr = nb.Put(nodeKey(id), bytes.Clone(hash))
			}
		}
		for i, leaf := range leaves {
			if err := lb.Put(u64(size+uint64(i)), bytes.Clone(leaf)); err != nil {
				return err
			}
			if err := rng.Append(rfc6962.DefaultHasher.HashLeaf(leaf), visit); err != nil {
				return err
			}
			if putErr != nil {
				return putErr
			}
		}
		return tx.Bucket(bucketMeta).Put(keySize, u64(size+uint64(len(leaves))))
	})
	if err != nil {
		return fmt.Errorf("embedded: append: %w", err)
	}
	return nil
}

// Size implements log.Backend.
func (l *Log) Size(ctx context.Context) (uint64, error) {
	var size uint64
	err := l.db.View(func(tx *bolt.Tx) error {
		var err error
		size, err = readSize(tx)
		return err
	})
	return size, err
}

// Entries implements log.Backend.
func (l *Log) Entries(ctx context.Context, start, end uint64) ([][]byte, error) {
	var out [][]byte
	err := l.db.View(func(tx *bolt.Tx) error {
		size, err := readSize(tx)
		if err != nil {
			return err
		}
		if start > end || end > size {
			return fmt.Errorf("%w: entries [%d, %d) of a log of size %d", log.ErrRange, start, end, size)
		}
		out = make([][]byte, 0, end-start)
		if start == end {
			return nil
		}
		c := tx.Bucket(bucketLeaves).Cursor()
		i := start
		for k, v := c.Seek(u64(start)); i < end; k, v = c.Next() {
			if len(k) != 8 || binary.BigEndian.Uint64(k) != i {
				return fmt.Errorf("%w: leaf %d missing", log.ErrCorrupt, i)
			}
			out = append(out, bytes.Clone(v))
			i++
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	return out, nil
}

// RootHash implements log.Backend.
func (l *Log) RootHash(ctx context.Context, size uint64) ([]byte, error) {
	var root []byte
	err := l.db.View(func(tx *bolt.Tx) error {
		cur, err := readSize(tx)
		if err != nil {
			return err
		}
		if size > cur {
			return fmt.Errorf("%w: root of size %d in a log of size %d", log.ErrRange, size, cur)
		}
		root, err = rootAt(tx, size)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	return root, nil
}

func rootAt(tx *bolt.Tx, size uint64) ([]byte, error) {
	if size == 0 {
		return rfc6962.DefaultHasher.EmptyRoot(), nil
	}
	rng, err := compactRange(tx, size)
	if err != nil {
		return nil, err
	}
	return rng.GetRootHash(nil)
}

// proofFromNodes fetches and rehashes the nodes of a proof.
func proofFromNodes(tx *bolt.Tx, n proof.Nodes) ([][]byte, error) {
	hashes, err := getNodes(tx, n.IDs)
	if err != nil {
		return nil, err
	}
	return n.Rehash(hashes, rfc6962.DefaultHasher.HashChildren)
}

// InclusionProof implements log.Backend.
func (l *Log) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	var p [][]byte
	err := l.db.View(func(tx *bolt.Tx) error {
		cur, err := readSize(tx)
		if err != nil {
			return err
		}
		if index >= size || size > cur {
			return fmt.Errorf("%w: inclusion proof for index %d in size %d of a log of size %d", log.ErrRange, index, size, cur)
		}
		n, err := proof.Inclusion(index, size)
		if err != nil {
			return err
		}
		p, err = proofFromNodes(tx, n)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	return p, nil
}

// ConsistencyProof implements log.Backend.
func (l *Log) ConsistencyProof(ctx context.Context, oldSize, newSize uint64) ([][]byte, error) {
	var p [][]byte
	err := l.db.View(func(tx *bolt.Tx) error {
		cur, err := readSize(tx)
		if err != nil {
			return err
		}
		if oldSize > newSize || newSize > cur {
			return fmt.Errorf("%w: consistency proof from size %d to %d in a log of size %d", log.ErrRange, oldSize, newSize, cur)
		}
		n, err := proof.Consistency(oldSize, newSize)
		if err != nil {
			return err
		}
		p, err = proofFromNodes(tx, n)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	return p, nil
}

// checkChunk is how many leaves CheckStored reads per transaction.
const checkChunk = 4096

// CheckStored implements log.StoredChecker: it recomputes, from the stored
// leaf bytes of [start, end), every leaf hash and every node hash completed
// by those leaves, and fails with an error wrapping log.ErrCorrupt if a
// stored hash differs or is missing. The compact range [0, start) is taken
// from stored nodes; Publish authenticates it against the previous signed
// checkpoint.
func (l *Log) CheckStored(ctx context.Context, start, end uint64) error {
	if start > end {
		return fmt.Errorf("embedded: check: %w: [%d, %d)", log.ErrRange, start, end)
	}
	var rng *compact.Range
	for lo := start; lo < end || rng == nil; {
		if err := ctx.Err(); err != nil {
			return err
		}
		hi := min(end, lo+checkChunk)
		err := l.db.View(func(tx *bolt.Tx) error {
			size, err := readSize(tx)
			if err != nil {
				return err
			}
			if end > size {
				return fmt.Errorf("%w: check [%d, %d) in a log of size %d", log.ErrRange, start, end, size)
			}
			if rng == nil {
				if rng, err = compactRange(tx, start); err != nil {
					return err
				}
			}
			lb, nb := tx.Bucket(bucketLeaves), tx.Bucket(bucketNodes)
			var bad error
			visit := func(id compact.NodeID, hash []byte) {
				if bad != nil {
					return
				}
				if v := nb.Get(nodeKey(id)); !bytes.Equal(v, hash) {
					bad = fmt.Errorf("%w: stored hash of node (level %d, index %d) is %x, recomputed from stored leaves %x", log.ErrCorrupt, id.Level, id.Index, v, hash)
				}
			}
			for i := lo; i < hi; i++ {
				leaf := lb.Get(u64(i))
				if leaf == nil {
					return fmt.Errorf("%w: leaf %d missing", log.ErrCorrupt, i)
				}
				if err := rng.Append(rfc6962.DefaultHasher.HashLeaf(leaf), visit); err != nil {
					return err
				}
				if bad != nil {
					return bad
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("embedded: check: %w", err)
		}
		lo = hi
	}
	return nil
}

// LatestCheckpoint implements log.CheckpointStore. It returns nil, nil if
// no checkpoint was ever stored.
func (l *Log) LatestCheckpoint(ctx context.Context) ([]byte, error) {
	var out []byte
	err := l.db.View(func(tx *bolt.Tx) error {
		out = bytes.Clone(tx.Bucket(bucketCheckpoints).Get(keyLatest))
		return nil
	})
	return out, err
}

// StoreCheckpoint implements log.CheckpointStore: if the latest checkpoint
// equals prev (nil meaning none), it durably records next as the latest and
// appends it to the checkpoint history, in one fsynced transaction.
// Otherwise it fails with an error wrapping log.ErrCheckpointConflict.
func (l *Log) StoreCheckpoint(ctx context.Context, prev, next []byte) error {
	if len(next) == 0 {
		return errors.New("embedded: store checkpoint: empty checkpoint")
	}
	return l.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCheckpoints)
		if cur := b.Get(keyLatest); !bytes.Equal(cur, prev) {
			return fmt.Errorf("embedded: store checkpoint: %w", log.ErrCheckpointConflict)
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		if err := b.Put(u64(seq), bytes.Clone(next)); err != nil {
			return err
		}
		return b.Put(keyLatest, bytes.Clone(next))
	})
}

// Checkpoints returns every checkpoint ever stored, oldest first.
func (l *Log) Checkpoints(ctx context.Context) ([][]byte, error) {
	var out [][]byte
	err := l.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCheckpoints).ForEach(func(k, v []byte) error {
			if len(k) == 8 {
				out = append(out, bytes.Clone(v))
			}
			return nil
		})
	})
	return out, err
}

var (
	_ log.Backend         = (*Log)(nil)
	_ log.CheckpointStore = (*Log)(nil)
	_ log.StoredChecker   = (*Log)(nil)
)
