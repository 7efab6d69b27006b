package vmap

import "fmt"

// WarmStats says what one Warm call did.
type WarmStats struct {
	// Complete: every tile of the map is now cached for the root (none
	// was left out for the cache's depth or byte bound).
	Complete bool
	Read     int // tiles read from the reader
}

// Warm loads into the cache the tiles of the tiled map in r whose root is
// root, level by level (one ReadTiles call per tile level and warmChunk tiles), so that proofs
// under root read nothing. A tile whose cached entry matches the ref that
// leads to it is unchanged with its whole subtree (the ref is its hash), so
// after an epoch Warm reads only the tiles the epoch rewrote, provided the
// previous Warm was Complete; with full set it also walks the unchanged
// tiles' subtrees to load what is still missing (the first call, or after
// an incomplete one). Every tile read is checked against its parent's ref
// (tile 0 against root) as Prove checks it; the cache's bounds are kept
// (tiles past them are left out and Complete is false; once the cache is
// full only new versions of the tiles it holds are read). Without a cache
// Warm does nothing and reports Complete false.
func (t *TiledMap) Warm(r TileReader, root Hash, full bool) (WarmStats, error) {
	var st WarmStats
	if t.cache == nil {
		return st, nil
	}
	top, err := t.rootTile(r, &root)
	if err != nil {
		return st, err
	}
	st.Complete = true
	if top == nil {
		return st, nil
	}
	frontier := []*tnode{top}
	if t.cache.peek(TileID{}, root) == nil {
		st.Complete = false // tile 0 not held: the walk still loads below it
	}
	for len(frontier) > 0 {
		var refs []*tnode
		for _, n := range frontier {
			lowerRefs(n, &refs)
		}
		var next []*tnode
		var ids []TileID
		var miss []*tnode
		for _, n := range refs {
			id := t.tileOf(int(n.depth), &n.key)
			if !t.cache.holds(id) {
				st.Complete = false
				continue
			}
			if c := t.cache.peek(id, n.val); c != nil {
				if full {
					next = append(next, c)
				}
				continue
			}
			ids, miss = append(ids, id), append(miss, n)
		}
		for len(ids) > 0 {
			k := min(len(ids), warmChunk)
			cids, cmiss := ids[:k], miss[:k]
			ids, miss = ids[k:], miss[k:]
			// Once the cache is full, read only tiles it holds (an
			// older version): a new one would not be kept.
			w := 0
			for i, id := range cids {
				if held, full := t.cache.has(id); full && !held {
					st.Complete = false
					continue
				}
				cids[w], cmiss[w] = id, cmiss[i]
				w++
			}
			cids, cmiss = cids[:w], cmiss[:w]
			if len(cids) == 0 {
				continue
			}
			bs, err := r.ReadTiles(cids)
			if err != nil {
				return st, err
			}
			if len(bs) != len(cids) {
				return st, fmt.Errorf("vmap: tile reader returned %d tiles for %d ids", len(bs), len(cids))
			}
			st.Read += len(cids)
			for i, b := range bs {
				id, n := cids[i], cmiss[i]
				if b == nil {
					return st, fmt.Errorf("%w: tile (depth %d, prefix %x) missing", ErrCorruptStore, id.Depth, id.Prefix[:4])
				}
				c, err := t.decodeLower(id, n, b)
				if err != nil {
					return st, err
				}
				if !t.cache.put(id, n.val, c, b) {
					st.Complete = false
					continue
				}
				next = append(next, c)
			}
		}
		frontier = next
	}
	return st, nil
}

// warmChunk bounds the tiles Warm reads with one ReadTiles call (and holds
// encoded at once).
const warmChunk = 1024

// lowerRefs appends the lower-tile refs of the decoded tile whose top is n.
func lowerRefs(n *tnode, out *[]*tnode) {
	if n == nil || n.kind != refNode {
		return
	}
	if !n.loaded {
		*out = append(*out, n)
		return
	}
	for _, c := range n.kids {
		lowerRefs(c, out)
	}
}
