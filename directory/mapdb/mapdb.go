// Package mapdb keeps the directory's verifiable map (verifier/vmap) in a
// bbolt database, with the map root of every epoch recorded.
//
// Bucket layout, inside the top-level bucket named at Open:
//
//	tiles/   the map as tiles (vmap.TiledMap): TileID.Key -> tile encoding
//	         (docs/protocol.md §5.2.5)
//	epochs/  u64 epoch (big-endian) -> [32] map root after that epoch
//	meta/    "latest" -> u64 latest applied epoch
//	         "stride" -> u8 tile stride in bits (fixed when the map is created)
//
// A database written by an older version keeps its map as one record per
// node in nodes/; Open converts it to tiles once, in one transaction.
//
// All updates of one epoch are applied in one bbolt read-write transaction,
// together with its epochs/ and meta/ records: either the whole epoch is
// stored or none of it. Lookups run in one read transaction, so a proof
// always matches the root recorded for the epoch it reports. Only the latest
// epoch's tree is kept: tiles are rewritten in place, so proofs are available
// for the latest epoch only (the only proofs the API serves); roots stay
// available for every epoch. The top tiles are cached in memory (Options).
package mapdb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/keyline/keyline/internal/boltread"
	"github.com/keyline/keyline/verifier/vmap"
	"github.com/keyline/keyline/verifier/vmap/boltstore"
	"go.etcd.io/bbolt"
)

var (
	nodesBucket  = []byte("nodes") // untiled layout of older versions
	tilesBucket  = []byte("tiles")
	epochsBucket = []byte("epochs")
	metaBucket   = []byte("meta")
	latestKey    = []byte("latest")
	strideKey    = []byte("stride")
)

// DefaultStride is the tile stride of a new map: 8 bits, so at 1M accounts
// a lookup crosses 3 tiles, of which the top 2 levels are cached
// (docs/performance.md has the measurements of other strides).
const DefaultStride = 8

// Options tune a Map. The zero value means the defaults.
type Options struct {
	// Stride is the tile stride in bits for a new map (DefaultStride if
	// 0); an existing map keeps the stride it was created with.
	Stride int
	// CacheDepth caches the tiles above this depth in bits (default 16:
	// the top two levels at stride 8, 257 tiles); -1 disables the cache.
	CacheDepth int
	// CacheBytes bounds the cache's decoded size (default 64 MiB).
	CacheBytes int
}

// Errors returned by Map. Callers match with errors.Is.
var (
	// ErrNoEpoch means no epoch has been applied yet.
	ErrNoEpoch = errors.New("mapdb: no epoch applied yet")
	// ErrUnknownEpoch means the requested epoch has no recorded root.
	ErrUnknownEpoch = errors.New("mapdb: unknown epoch")
	// ErrEpochOrder means ApplyEpoch was called with an epoch other than
	// latest+1.
	ErrEpochOrder = errors.New("mapdb: epoch out of order")
	// ErrCorrupt means the stored records are inconsistent.
	ErrCorrupt = errors.New("mapdb: corrupt map database")
)

// Map is a persistent vmap in one top-level bbolt bucket. It is safe for
// concurrent use (bbolt serializes writers and snapshots readers).
type Map struct {
	db     *bbolt.DB
	bucket []byte
	tm     *vmap.TiledMap
	cache  *vmap.TileCache
	pread  atomic.Pointer[boltread.Reader] // set by SetPread
}

// SetPread sets the reader of db's file with which Prove and ProveTx read
// the tiles (nil: through bbolt's memory map, the default): a process
// that bounds its resident memory while the map is much larger than the
// bound reads them with pread instead of faulting pages into its map
// (internal/boltread). The caller owns r and closes it after the Map's
// last use. Writes always go through bbolt.
func (m *Map) SetPread(r *boltread.Reader) { m.pread.Store(r) }

// Open returns the map stored in the top-level bucket named bucket of db,
// creating the buckets if needed, with the default Options.
func Open(db *bbolt.DB, bucket string) (*Map, error) {
	return OpenOptions(db, bucket, Options{})
}

// OpenOptions is Open with options.
func OpenOptions(db *bbolt.DB, bucket string, o Options) (*Map, error) {
	if bucket == "" {
		return nil, errors.New("mapdb: empty bucket name")
	}
	if o.Stride == 0 {
		o.Stride = DefaultStride
	}
	if o.CacheDepth == 0 {
		o.CacheDepth = 16
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = 64 << 20
	}
	m := &Map{db: db, bucket: []byte(bucket)}
	err := db.Update(func(tx *bbolt.Tx) error {
		top, err := tx.CreateBucketIfNotExists(m.bucket)
		if err != nil {
			return err
		}
		for _, name := range [][]byte{tilesBucket, epochsBucket, metaBucket} {
			if _, err := top.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := top.Bucket(metaBucket)
		if v := meta.Get(strideKey); v != nil {
			if len(v) != 1 {
				return fmt.Errorf("%w: stride record is %d bytes", ErrCorrupt, len(v))
			}
			o.Stride = int(v[0])
		} else if err := meta.Put(strideKey, []byte{byte(o.Stride)}); err != nil {
			return err
		}
		if m.tm, err = vmap.NewTiledMap(o.Stride, nil); err != nil {
			return fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		if nodes := top.Bucket(nodesBucket); nodes != nil {
			return m.convertNodes(top, nodes)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mapdb: opening: %w", err)
	}
	if o.CacheDepth > 0 {
		m.cache = vmap.NewTileCache(o.CacheDepth, o.CacheBytes)
	}
	m.tm, _ = vmap.NewTiledMap(m.tm.Stride(), m.cache)
	return m, nil
}

// convertNodes rebuilds the tiles from the untiled node records of an
// older version, checks the root is unchanged, and deletes the nodes.
func (m *Map) convertNodes(top, nodes *bbolt.Bucket) error {
	var ups []vmap.Update
	err := nodes.ForEach(func(k, v []byte) error {
		leaves, err := vmap.NodeRecordLeaves(k, v)
		ups = append(ups, leaves...)
		return err
	})
	if err != nil {
		return fmt.Errorf("%w: converting the node records to tiles: %v", ErrCorrupt, err)
	}
	b, err := m.buckets(top.Tx())
	if err != nil {
		return err
	}
	tiles := boltstore.NewTiles(b.tiles)
	if r, err := m.tm.Root(tiles); err != nil || r != vmap.EmptyRoot {
		return fmt.Errorf("%w: both node records and tiles present", ErrCorrupt)
	}
	want, err := vmap.Root(boltstore.New(nodes))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	got, err := m.tm.Apply(tiles, ups)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("%w: tiles rebuilt from the node records have root %x, the nodes %x", ErrCorrupt, got[:8], want[:8])
	}
	return top.DeleteBucket(nodesBucket)
}

// CacheStats returns the tile cache's size and hit counters.
func (m *Map) CacheStats() vmap.CacheStats { return m.cache.Stats() }

// Stride returns the map's tile stride in bits.
func (m *Map) Stride() int { return m.tm.Stride() }

// DB returns the underlying database.
func (m *Map) DB() *bbolt.DB { return m.db }

type buckets struct {
	tiles, epochs, meta *bbolt.Bucket
}

func (m *Map) buckets(tx *bbolt.Tx) (buckets, error) {
	top := tx.Bucket(m.bucket)
	if top == nil {
		return buckets{}, fmt.Errorf("%w: bucket %q missing", ErrCorrupt, m.bucket)
	}
	b := buckets{top.Bucket(tilesBucket), top.Bucket(epochsBucket), top.Bucket(metaBucket)}
	if b.tiles == nil || b.epochs == nil || b.meta == nil {
		return buckets{}, fmt.Errorf("%w: sub-bucket of %q missing", ErrCorrupt, m.bucket)
	}
	return b, nil
}

func u64(x uint64) []byte { return binary.BigEndian.AppendUint64(nil, x) }

func latest(b buckets) (uint64, bool, error) {
	v := b.meta.Get(latestKey)
	if v == nil {
		return 0, false, nil
	}
	if len(v) != 8 {
		return 0, false, fmt.Errorf("%w: latest epoch record is %d bytes", ErrCorrupt, len(v))
	}
	return binary.BigEndian.Uint64(v), true, nil
}

func rootOf(b buckets, epoch uint64) (vmap.Hash, error) {
	v := b.epochs.Get(u64(epoch))
	if v == nil {
		return vmap.Hash{}, fmt.Errorf("%w: %d", ErrUnknownEpoch, epoch)
	}
	if len(v) != vmap.HashSize {
		return vmap.Hash{}, fmt.Errorf("%w: root of epoch %d is %d bytes", ErrCorrupt, epoch, len(v))
	}
	return vmap.Hash(v), nil
}

// ApplyEpoch applies updates as epoch in one transaction and returns the
// new map root, which it records for epoch. The first epoch applied may
// have any number; every later one must be latest+1 (ErrEpochOrder). An
// epoch with no updates records the unchanged root.
func (m *Map) ApplyEpoch(epoch uint64, updates []vmap.Update) (root vmap.Hash, err error) {
	err = m.db.Update(func(tx *bbolt.Tx) error {
		root, err = m.ApplyEpochTx(tx, epoch, updates)
		return err
	})
	return root, err
}

// ApplyEpochTx is ApplyEpoch inside the caller's read-write transaction, so
// the directory can commit the map epoch atomically with other records
// (for example the log's EpochRecord). If it returns an error the caller
// must roll the transaction back.
func (m *Map) ApplyEpochTx(tx *bbolt.Tx, epoch uint64, updates []vmap.Update) (vmap.Hash, error) {
	if !tx.Writable() {
		return vmap.Hash{}, errors.New("mapdb: ApplyEpochTx needs a writable transaction")
	}
	b, err := m.buckets(tx)
	if err != nil {
		return vmap.Hash{}, err
	}
	last, ok, err := latest(b)
	if err != nil {
		return vmap.Hash{}, err
	}
	if ok && (last == ^uint64(0) || epoch != last+1) {
		return vmap.Hash{}, fmt.Errorf("%w: got %d, latest is %d", ErrEpochOrder, epoch, last)
	}
	root, err := m.tm.Apply(boltstore.NewTiles(b.tiles), updates)
	if err != nil {
		return vmap.Hash{}, err
	}
	if err := b.epochs.Put(u64(epoch), bytes.Clone(root[:])); err != nil {
		return vmap.Hash{}, err
	}
	if err := b.meta.Put(latestKey, u64(epoch)); err != nil {
		return vmap.Hash{}, err
	}
	return root, nil
}

// Root returns the map root recorded for epoch (ErrUnknownEpoch if none).
func (m *Map) Root(epoch uint64) (root vmap.Hash, err error) {
	err = m.db.View(func(tx *bbolt.Tx) error {
		b, err := m.buckets(tx)
		if err != nil {
			return err
		}
		root, err = rootOf(b, epoch)
		return err
	})
	return root, err
}

// LatestEpoch returns the latest applied epoch and its root, or ErrNoEpoch.
func (m *Map) LatestEpoch() (epoch uint64, root vmap.Hash, err error) {
	err = m.db.View(func(tx *bbolt.Tx) error {
		epoch, root, err = m.LatestEpochTx(tx)
		return err
	})
	return epoch, root, err
}

// LatestEpochTx is LatestEpoch within the caller's transaction, so that the
// answer matches every other read made in tx.
func (m *Map) LatestEpochTx(tx *bbolt.Tx) (epoch uint64, root vmap.Hash, err error) {
	b, err := m.buckets(tx)
	if err != nil {
		return 0, vmap.Hash{}, err
	}
	epoch, ok, err := latest(b)
	if err != nil {
		return 0, vmap.Hash{}, err
	} else if !ok {
		return 0, vmap.Hash{}, ErrNoEpoch
	}
	root, err = rootOf(b, epoch)
	return epoch, root, err
}

// Lookup is the map's answer for one index at the latest epoch.
type Lookup struct {
	Epoch uint64      // epoch the proof is for
	Root  vmap.Hash   // map root recorded for Epoch
	Found bool        // index is in the map
	Value vmap.Value  // value at index if Found
	Proof *vmap.Proof // inclusion or non-inclusion proof under Root
}

// Prove returns the value and proof for index at the latest epoch, all
// read from one snapshot. It returns ErrNoEpoch before the first epoch.
func (m *Map) Prove(index vmap.Index) (l *Lookup, err error) {
	err = m.db.View(func(tx *bbolt.Tx) error {
		l, err = m.ProveTx(tx, index)
		return err
	})
	return l, err
}

// ProveTx is Prove inside the caller's transaction.
func (m *Map) ProveTx(tx *bbolt.Tx, index vmap.Index) (*Lookup, error) {
	b, err := m.buckets(tx)
	if err != nil {
		return nil, err
	}
	epoch, ok, err := latest(b)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNoEpoch
	}
	root, err := rootOf(b, epoch)
	if err != nil {
		return nil, err
	}
	// The tiled map checks tile 0 hashes to root (vmap.ErrCorruptStore)
	// and copies what it keeps of the tiles it read (vmap.TileReader).
	src := m.pread.Load().Bucket(tx, b.tiles)
	p, err := m.tm.Prove(tileSource{src}, root, index)
	boltread.Release(src)
	if err != nil {
		return nil, fmt.Errorf("%w: epoch %d: %w", ErrCorrupt, epoch, err)
	}
	return &Lookup{Epoch: epoch, Root: root, Found: p.Kind == vmap.Inclusion, Value: p.Value, Proof: p}, nil
}

// tileSource reads tiles from the tiles bucket through a boltread.Source:
// bbolt's map or pread.
type tileSource struct{ src boltread.Source }

func (t tileSource) ReadTiles(ids []vmap.TileID) ([][]byte, error) {
	out := make([][]byte, len(ids))
	var k [vmap.HashSize + 1]byte
	for i, id := range ids {
		v, err := t.src.Get(id.AppendKey(k[:0]))
		if err != nil {
			return nil, fmt.Errorf("%w: tile %x: %w", ErrCorrupt, id.AppendKey(k[:0]), err)
		}
		out[i] = v
	}
	return out, nil
}
