package vmap

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// TileCache keeps decoded top tiles of a TiledMap in memory, so a lookup
// reads only the tiles below them. An entry is keyed by tile id and the
// hash of its top node, which the parent ref (or the epoch's root) names:
// a stale entry is never used, only replaced, so the cache needs no
// invalidation when an epoch rewrites a tile. It holds tiles whose depth is
// below MaxDepth, up to MaxBytes of decoded nodes (new ids are not added
// past that; existing ids are still replaced). Safe for concurrent use.
type TileCache struct {
	maxDepth int
	maxBytes int

	mu     sync.RWMutex
	m      map[TileID]cacheEntry
	bytes  int
	full   bool // a new id was refused for the byte bound
	hits   atomic.Uint64
	misses atomic.Uint64
}

type cacheEntry struct {
	hash Hash
	top  *tnode
	size int
}

// NewTileCache returns a cache of the tiles at depths below maxDepth bits,
// bounded to maxBytes of decoded nodes.
func NewTileCache(maxDepth, maxBytes int) *TileCache {
	return &TileCache{maxDepth: maxDepth, maxBytes: maxBytes, m: make(map[TileID]cacheEntry)}
}

// CacheStats is a snapshot of a TileCache's counters.
type CacheStats struct {
	Tiles        int    // tiles held
	Bytes        int    // decoded bytes held (estimate: nodes x node size)
	Hits, Misses uint64 // lookups of cacheable tiles
}

// Stats returns the cache's current size and hit counters.
func (c *TileCache) Stats() CacheStats {
	if c == nil {
		return CacheStats{}
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return CacheStats{Tiles: len(c.m), Bytes: c.bytes, Hits: c.hits.Load(), Misses: c.misses.Load()}
}

// holds reports whether tiles like id are cached (by depth).
func (c *TileCache) holds(id TileID) bool { return c != nil && int(id.Depth) < c.maxDepth }

func (c *TileCache) get(id TileID, h Hash) *tnode {
	if c == nil || int(id.Depth) >= c.maxDepth {
		return nil
	}
	c.mu.RLock()
	e, ok := c.m[id]
	c.mu.RUnlock()
	if ok && e.hash == h {
		c.hits.Add(1)
		return e.top
	}
	c.misses.Add(1)
	return nil
}

// peek returns the cached top of tile id for hash h, like get without
// counting a hit or a miss.
func (c *TileCache) peek(id TileID, h Hash) *tnode {
	if c == nil || int(id.Depth) >= c.maxDepth {
		return nil
	}
	c.mu.RLock()
	e, ok := c.m[id]
	c.mu.RUnlock()
	if ok && e.hash == h {
		return e.top
	}
	return nil
}

// has reports whether tile id is cached (for any hash), and whether the
// cache refused a new tile for its byte bound.
func (c *TileCache) has(id TileID) (held, full bool) {
	if c == nil {
		return false, true
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	_, held = c.m[id]
	return held, c.full
}

// put caches tile id (top, encoding enc) for hash h and reports whether it
// is held (false: not cacheable, or a new id past the byte bound).
func (c *TileCache) put(id TileID, h Hash, top *tnode, enc []byte) bool {
	if c == nil || int(id.Depth) >= c.maxDepth {
		return false
	}
	size := countRefs(enc) * int(unsafe.Sizeof(tnode{}))
	c.mu.Lock()
	defer c.mu.Unlock()
	old, ok := c.m[id]
	if !ok && c.bytes+size > c.maxBytes {
		c.full = true
		return false
	}
	c.bytes += size - old.size
	c.m[id] = cacheEntry{hash: h, top: top, size: size}
	return true
}
