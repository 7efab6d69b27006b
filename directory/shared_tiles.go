package directory

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/keyline/keyline/directory/mapdb"
	"github.com/keyline/keyline/directory/sqlstate"
	"github.com/keyline/keyline/verifier/vmap"
)

// tileMap stores the map as tiles (vmap.TiledMap, the layout of
// directory/mapdb, stride mapdb.DefaultStride) in map_kv. An epoch reads
// the tiles it changes with one query per tile level and writes them in one
// batch, in its transaction. A process keeps decoded tiles in a cache keyed
// by tile and hash (checked against the ref leading to them on every
// proof), bounded by tileCacheBytes: its warmLoop loads every tile of the
// published map that fits and, after each epoch, the tiles the epoch
// rewrote (vmap.TiledMap.Warm), so when the map fits (1,000,000 accounts
// take about 180 MiB) a lookup reads no tile. Otherwise a lookup reads the
// tiles of its path below what is cached, with its account record, in one
// statement; the deepest level it reads grows with what proofs have needed
// (a deeper path falls back to a snapshot read).
type tileMap struct {
	tm     *vmap.TiledMap
	levels *atomic.Int32 // a lookup reads the path's tiles of levels [cached, levels)
	cached int           // levels below this are served from the cache
	cache  *vmap.TileCache
}

// tileCacheDepth: the top two levels are always read from the cache (a
// lookup's statement does not ask for them).
const tileCacheDepth = 16

// tileCacheBytes bounds the decoded tiles a process caches (every level:
// a lookup whose whole path is cached needs no tile read). A decoded map
// takes about 180 bytes per account: 256 MiB holds every tile up to about
// 1.4 million accounts; at 100 million it holds the top two levels (257
// tiles) and a small part of the third.
const tileCacheBytes = 256 << 20

func newTileMap() (tileMap, error) {
	cache := vmap.NewTileCache(256, tileCacheBytes)
	tm, err := vmap.NewTiledMap(mapdb.DefaultStride, cache)
	if err != nil {
		return tileMap{}, err
	}
	if mapdb.DefaultStride%8 != 0 {
		return tileMap{}, fmt.Errorf("directory: tile stride %d: the shared state reads tiles by whole key bytes (a multiple of 8)", mapdb.DefaultStride)
	}
	m := tileMap{tm: tm, levels: new(atomic.Int32), cached: tileCacheDepth / mapdb.DefaultStride, cache: cache}
	// Start with no uncached level: the first proof that needs one
	// (misses it, reads in a snapshot) raises the bound for all.
	m.levels.Store(int32(m.cached))
	return m, nil
}

func (m tileMap) layout() string { return fmt.Sprintf("vmap-tiles-%d-v1", m.tm.Stride()) }

func (m tileMap) apply(tx *sqlstate.Tx, ups []vmap.Update) (vmap.Hash, error) {
	return m.tm.Apply(sqlstate.NewTileStore(tx, tx), ups)
}

func (m tileMap) warm(r sqlstate.MapReader, root vmap.Hash, full bool) (vmap.WarmStats, error) {
	return m.tm.Warm(sqlstate.NewTileStore(r, nil), root, full)
}

func (m tileMap) pathDepths() []uint8 {
	var ds []uint8
	for l := m.cached; l < int(m.levels.Load()) && l*m.tm.Stride() < 256; l++ {
		ds = append(ds, uint8(l*m.tm.Stride()))
	}
	return ds
}

func (m tileMap) prove(r sqlstate.MapReader, root vmap.Hash, index vmap.Index) (*vmap.Proof, error) {
	ts := sqlstate.NewTileStore(r, nil)
	p, err := m.tm.Prove(ts, root, index)
	if err == nil || errors.Is(err, errNotPrefetched) {
		want := int32(ts.Deepest/m.tm.Stride() + 1)
		for cur := m.levels.Load(); want > cur && !m.levels.CompareAndSwap(cur, want); cur = m.levels.Load() {
		}
	}
	return p, err
}
