// Package embedded is a log.Backend kept in a single go.etcd.io/bbolt file.
//
// # Storage (format 2)
//
// The file holds five buckets:
//
//   - "meta": key "size" holds the number of leaves as a u64 (big-endian);
//     key "format" holds the storage format version, currently 2.
//   - "bundles": key u64 n (big-endian) holds the BundleWidth (256) leaves
//     [256n, 256n+256) once all of them are appended, encoded by
//     MarshalBundle (a header of the 16 group hashes, roots of 16 leaves
//     each, and of end offsets, then the leaves), so that a leaf is one Get
//     and a slice.
//   - "tail": key u64 index holds the 32-byte leaf hash, then the leaf
//     bytes, of each leaf of the last, incomplete bundle [size &^ 255,
//     size); the Append that completes the bundle moves the leaves into
//     "bundles". A leaf's hash is thus stored (as a tail hash, then inside
//     its group's hash and its bundle's root) from the Append that stores
//     it, and CheckStored compares them with the hashes of the stored bytes.
//   - "nodes": key u8 level || u64 index holds the 32-byte RFC 6962 hash of
//     the perfect subtree covering leaves [index<<level, (index+1)<<level),
//     for every complete node of level 8 (a bundle's root) and above. Nodes
//     of lower levels lie inside one bundle and are computed, when a root
//     or proof needs them, from its group hashes and at most 16 of its
//     leaves (in the tail, from the stored leaf hashes); nodes rooting
//     imperfect subtrees at the right edge are computed from at most
//     log2(size) complete nodes.
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
// Format 1 kept every leaf under its own key in "leaves" and every complete
// node, from level 0, in "nodes". Open converts a format-1 file (see
// convert.go) into a new file that replaces it atomically.
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
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyline/keyline/internal/boltread"
	"github.com/keyline/keyline/log"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	bolt "go.etcd.io/bbolt"
)

// formatVersion is the storage format written to meta/format.
const formatVersion = 2

var (
	bucketMeta        = []byte("meta")
	bucketBundles     = []byte("bundles")
	bucketTail        = []byte("tail")
	bucketNodes       = []byte("nodes")
	bucketCheckpoints = []byte("checkpoints")
	bucketLeavesV1    = []byte("leaves") // format 1
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
	db    *bolt.DB
	cache nodeCache
	pread atomic.Pointer[boltread.Reader] // set by SetPread

	mu       sync.Mutex
	oldPread []*boltread.Reader // replaced by SetPread, closed by Close
}

var factory = &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// Open opens or creates the log stored in the file at path. A file of
// format 1 is first converted to format 2 (see convert).
func Open(path string, opts *Options) (*Log, error) {
	if opts == nil {
		opts = &Options{}
	}
	// A conversion by another process replaces the file while this one
	// waits for its lock; open again then.
	for attempt := 0; ; attempt++ {
		l, retry, err := open(path, opts)
		if err != nil || !retry {
			return l, err
		}
		if attempt == 3 {
			return nil, fmt.Errorf("embedded: open %s: the file keeps being replaced", path)
		}
	}
}

// open opens path once. It returns retry if the file was converted or
// replaced and must be opened again.
func open(path string, opts *Options) (l *Log, retry bool, err error) {
	before, statErr := os.Stat(path)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.Timeout, NoSync: opts.NoSync, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, false, fmt.Errorf("embedded: open %s: %w", path, err)
	}
	if statErr == nil {
		// The lock is held on the file opened; the path must still name it.
		after, err := os.Stat(path)
		if err != nil || !os.SameFile(before, after) {
			db.Close()
			return nil, true, nil
		}
	}
	format, err := storedFormat(db)
	if err == nil && format == 1 {
		err = convert(db, path)
		db.Close()
		if err != nil {
			return nil, false, fmt.Errorf("embedded: open %s: %w", path, err)
		}
		return nil, true, nil
	}
	if err == nil {
		err = db.Update(func(tx *bolt.Tx) error {
			if err := createBuckets(tx); err != nil {
				return err
			}
			meta := tx.Bucket(bucketMeta)
			if format == 0 {
				if err := meta.Put(keyFormat, u64(formatVersion)); err != nil {
					return err
				}
				return meta.Put(keySize, u64(0))
			}
			_, err := readSize(tx)
			return err
		})
	}
	if err != nil {
		db.Close()
		return nil, false, fmt.Errorf("embedded: open %s: %w", path, err)
	}
	return &Log{db: db}, false, nil
}

func createBuckets(tx *bolt.Tx) error {
	for _, name := range [][]byte{bucketMeta, bucketBundles, bucketTail, bucketNodes, bucketCheckpoints} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return nil
}

// storedFormat returns the format of the file: 0 for a new, empty file, or
// a supported version (1 or 2).
func storedFormat(db *bolt.DB) (uint64, error) {
	var format uint64
	err := db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil
		}
		f := meta.Get(keyFormat)
		switch {
		case f == nil && meta.Get(keySize) != nil:
			return fmt.Errorf("%w: size present without format", log.ErrCorrupt)
		case f == nil:
			return nil
		case len(f) != 8 || (binary.BigEndian.Uint64(f) != 1 && binary.BigEndian.Uint64(f) != formatVersion):
			return fmt.Errorf("embedded: unsupported storage format %x", f)
		}
		format = binary.BigEndian.Uint64(f)
		return nil
	})
	return format, err
}

// Close closes the file.
func (l *Log) Close() error {
	err := l.db.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range append(l.oldPread, l.pread.Swap(nil)) {
		err = errors.Join(err, r.Close())
	}
	l.oldPread = nil
	return err
}

// PreadStats returns the counters of the reader SetPread turned on (zero
// if off).
func (l *Log) PreadStats() boltread.Stats {
	if r := l.pread.Load(); r != nil {
		return r.Stats()
	}
	return boltread.Stats{}
}

// SetPread sets whether Entries reads bundled leaves with pread
// (internal/boltread) instead of through bbolt's memory map: only the
// pages of the bundle's B+tree path, its header and the leaf are read,
// into the process's memory, and nothing is mapped. A process that bounds
// its resident memory while reading a log much larger than the bound
// turns it on (the directory does, see directory.Config.Pread); the map
// stays in use for everything else.
func (l *Log) SetPread(on bool) error {
	var r *boltread.Reader
	if on {
		var err error
		if r, err = boltread.Open(l.db, 0); err != nil {
			return fmt.Errorf("embedded: %w", err)
		}
	}
	// A reader replaced may be in use by an Entries call: Close closes it.
	if old := l.pread.Swap(r); old != nil {
		l.mu.Lock()
		l.oldPread = append(l.oldPread, old)
		l.mu.Unlock()
	}
	return nil
}

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
	type cachedNode struct {
		id   compact.NodeID
		hash []byte
	}
	var computed []cachedNode // cached only once committed
	err := l.db.Update(func(tx *bolt.Tx) error {
		computed = computed[:0]
		size, err := readSize(tx)
		if err != nil {
			return err
		}
		v := newView(tx, size, &l.cache)
		if size != expected {
			return fmt.Errorf("%w: append at %d to a log of size %d", log.ErrConflict, expected, size)
		}
		if len(leaves) == 0 {
			return nil
		}
		if size+uint64(len(leaves)) < size {
			return fmt.Errorf("embedded: append: size overflow")
		}
		rng, err := v.compactRange(size)
		if err != nil {
			return err
		}
		v.bundles.FillPercent, v.tail.FillPercent, v.nodes.FillPercent = 1.0, 1.0, 0.9
		var putErr error
		visit := func(id compact.NodeID, hash []byte) {
			switch {
			case putErr != nil:
			case id.Level >= bundleLevel:
				putErr = v.nodes.Put(nodeKey(id), bytes.Clone(hash))
			case id.Level > 0:
				computed = append(computed, cachedNode{id, bytes.Clone(hash)})
			}
		}
		hashes := make([][]byte, len(leaves))
		for i, leaf := range leaves {
			hashes[i] = rfc6962.DefaultHasher.HashLeaf(leaf)
			if err := rng.Append(hashes[i], visit); err != nil {
				return err
			}
			if putErr != nil {
				return putErr
			}
		}
		if err := storeLeaves(v, size, leaves, hashes); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keySize, u64(size+uint64(len(leaves))))
	})
	if err != nil {
		return fmt.Errorf("embedded: append: %w", err)
	}
	for _, n := range computed {
		l.cache.put(n.id, n.hash)
	}
	return nil
}

// storeLeaves stores leaves, whose leaf hashes are hashes, at size,
// size+1, ...: every bundle they complete goes to "bundles" (with the tail
// leaves before them, which are deleted), the rest to "tail".
func storeLeaves(v *view, size uint64, leaves, hashes [][]byte) error {
	end := size + uint64(len(leaves))
	for pos := size; pos < end; {
		first := pos &^ (BundleWidth - 1) // first leaf of pos's bundle
		next := min(end, first+BundleWidth)
		batch := leaves[pos-size : next-size]
		if next < first+BundleWidth {
			for i, leaf := range batch {
				if err := v.tail.Put(u64(pos+uint64(i)), tailValue(hashes[pos-size+uint64(i)], leaf)); err != nil {
					return err
				}
			}
			return nil
		}
		all := make([][]byte, 0, BundleWidth)
		allHashes := make([][]byte, 0, BundleWidth)
		for i := first; i < pos; i++ {
			t, err := v.tailValue(i)
			if err != nil {
				return err
			}
			all, allHashes = append(all, t[32:]), append(allHashes, t[:32])
		}
		all = append(all, batch...)
		allHashes = append(allHashes, hashes[pos-size:next-size]...)
		b, err := MarshalBundle(allHashes, all)
		if err != nil {
			return err
		}
		for i := first; i < pos; i++ {
			if err := v.tail.Delete(u64(i)); err != nil {
				return err
			}
		}
		if err := v.bundles.Put(bundleKey(first/BundleWidth), b); err != nil {
			return err
		}
		pos = next
	}
	return nil
}

// tailValue is the value of a leaf in the "tail" bucket: its leaf hash,
// then its bytes.
func tailValue(hash, leaf []byte) []byte {
	return append(append(make([]byte, 0, len(hash)+len(leaf)), hash...), leaf...)
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
		v := newView(tx, size, nil)
		if r := l.pread.Load(); r != nil {
			v.src = r.Bucket(tx, v.bundles)
		}
		if start > end || end > v.size {
			return fmt.Errorf("%w: entries [%d, %d) of a log of size %d", log.ErrRange, start, end, v.size)
		}
		out = make([][]byte, 0, end-start)
		for i := start; i < end; i++ {
			leaf, err := v.leaf(i)
			if err != nil {
				return err
			}
			out = append(out, bytes.Clone(leaf))
		}
		if v.src != nil {
			boltread.Release(v.src)
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
		root, err = rootAt(newView(tx, cur, &l.cache), size)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	return root, nil
}

func rootAt(v *view, size uint64) ([]byte, error) {
	if size == 0 {
		return rfc6962.DefaultHasher.EmptyRoot(), nil
	}
	rng, err := v.compactRange(size)
	if err != nil {
		return nil, err
	}
	return rng.GetRootHash(nil)
}

// proofFromNodes fetches and rehashes the nodes of a proof.
func proofFromNodes(v *view, n proof.Nodes) ([][]byte, error) {
	hashes, err := v.getNodes(n.IDs)
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
		p, err = proofFromNodes(newView(tx, cur, &l.cache), n)
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
		p, err = proofFromNodes(newView(tx, cur, &l.cache), n)
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
// leaf bytes of [start, end), every leaf hash and node hash completed by
// those leaves, and fails with an error wrapping log.ErrCorrupt if a stored
// hash (of a tail leaf, or of a node of level 8 and above) differs or is
// missing. The compact range [0, start) is taken
// from stored nodes and leaves; Publish authenticates it against the
// previous signed checkpoint.
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
			v := newView(tx, size, &l.cache)
			if rng == nil {
				if rng, err = v.compactRange(start); err != nil {
					return err
				}
			}
			var bad error
			visit := func(id compact.NodeID, hash []byte) {
				var stored []byte
				switch {
				case bad != nil:
					return
				case id.Level >= bundleLevel:
					stored = v.nodes.Get(nodeKey(id))
				case id.Level == groupLevel && !v.inTail(id.Index<<groupLevel):
					// The group's last leaf was just read: v.bundle is its bundle.
					stored, _ = BundleGroup(v.bundle, int((id.Index<<groupLevel)%BundleWidth)/GroupWidth)
				default:
					return
				}
				if !bytes.Equal(stored, hash) {
					bad = fmt.Errorf("%w: stored hash of node (level %d, index %d) is %x, recomputed from stored leaves %x", log.ErrCorrupt, id.Level, id.Index, stored, hash)
				}
			}
			for i := lo; i < hi; i++ {
				leaf, err := v.leaf(i)
				if err != nil {
					return err
				}
				h := rfc6962.DefaultHasher.HashLeaf(leaf)
				if i/BundleWidth >= size/BundleWidth {
					if t, _ := v.tailValue(i); !bytes.Equal(t[:32], h) {
						return fmt.Errorf("%w: stored hash of tail leaf %d is %x, recomputed from its stored bytes %x", log.ErrCorrupt, i, t[:32], h)
					}
				}
				if err := rng.Append(h, visit); err != nil {
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
