package vmap

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
)

// Tiled storage (docs/protocol.md §5.2.5).
//
// A tiled map stores the same tree as Store/Apply, with the same hashes,
// roots and proofs, but groups the interior nodes into tiles: the tile
// (level L, prefix P) of stride S holds every interior node whose branching
// depth d has L*S <= d < (L+1)*S and whose entries start with P's first
// L*S bits. Those nodes form one connected subtree, so a tile is encoded as
// that subtree in preorder, down to its boundary: leaves (stored inline)
// and refs to the top nodes of lower tiles (with their hashes). A lookup
// reads one record per tile level its path crosses (about log2(N)/S), and an
// epoch rewrites each tile it touches once.
//
// Tile 0 (level 0, empty prefix) always exists for a non-empty map: it is
// the ref of the root, expanded if the root's depth is below S. Tiles are
// never deleted, because nodes never are (inserts and updates only).

// MinStride and MaxStride bound the tile stride in bits.
const (
	MinStride = 1
	MaxStride = 16
)

// TileID names a tile: the tiles at Depth = level*stride bits, under the
// first Depth bits of Prefix (the rest cleared).
type TileID struct {
	Depth  uint8
	Prefix Index
}

// Key is the tile's storage key: the first ceil(Depth/8) bytes of the
// prefix followed by u8 Depth. Keys sort by prefix, so every subtree's
// tiles are one contiguous key range and the first prefix byte is a
// sharding key.
func (id TileID) Key() []byte {
	return id.AppendKey(make([]byte, 0, (int(id.Depth)+7)/8+1))
}

// AppendKey appends the tile's storage key (see Key) to b.
func (id TileID) AppendKey(b []byte) []byte {
	b = append(b, id.Prefix[:(int(id.Depth)+7)/8]...)
	return append(b, id.Depth)
}

// ParseTileKey decodes a tile storage key.
func ParseTileKey(k []byte) (TileID, error) {
	var id TileID
	if len(k) < 1 {
		return id, fmt.Errorf("%w: empty tile key", ErrCorruptStore)
	}
	id.Depth = k[len(k)-1]
	if len(k) != (int(id.Depth)+7)/8+1 {
		return id, fmt.Errorf("%w: tile key of %d bytes for depth %d", ErrCorruptStore, len(k), id.Depth)
	}
	copy(id.Prefix[:], k[:len(k)-1])
	if maskPrefix(id.Prefix, int(id.Depth)) != id.Prefix {
		return id, fmt.Errorf("%w: tile key has prefix bits set past depth %d", ErrCorruptStore, id.Depth)
	}
	return id, nil
}

// Tile is one tile's ID and canonical encoding.
type Tile struct {
	ID   TileID
	Data []byte
}

// TileReader reads tiles. ReadTiles returns the encoding of each id's tile,
// in order, nil for an absent tile, in one call (one round trip for a
// networked backend). The slices may be used only until the next call on the
// reader or the end of its transaction; vmap copies what it keeps.
type TileReader interface {
	ReadTiles(ids []TileID) ([][]byte, error)
}

// TileStore is read-write tile storage. WriteTiles stores one epoch's tiles
// in one batch; it must be atomic with the rest of the epoch (run it inside
// the epoch's transaction).
type TileStore interface {
	TileReader
	WriteTiles(tiles []Tile) error
}

// Tile ref tags.
const (
	tagEmpty = 0x00 // empty map (tile 0 only)
	tagLeaf  = 0x01 // [32] index || [32] value
	tagLower = 0x02 // u8 depth || [32] prefix || [32] hash: top of a lower tile
	tagInner = 0x03 // u8 depth || [32] hash || ref(left) || ref(right)
)

// tnode is one ref of a decoded tile: a leaf, the top of a lower tile
// (kids not loaded), or a node of the tile (kids set).
type tnode struct {
	kind   uint8 // refLeaf or refNode
	depth  uint8 // refNode: branching bit
	loaded bool  // refNode: kids are set
	dirty  bool  // Apply: hash (val) must be recomputed
	key    Index // refLeaf: index; refNode: masked prefix
	val    Hash  // refLeaf: value; refNode: node hash
	kids   [2]*tnode
}

func (n *tnode) hash() Hash {
	if n == nil {
		return EmptyRoot
	}
	if n.kind == refLeaf {
		return LeafHash(n.key, n.val)
	}
	return n.val
}

func (n *tnode) bits() int {
	if n.kind == refLeaf {
		return 256
	}
	return int(n.depth)
}

// tileDecoder decodes one tile into a slab of tnodes.
type tileDecoder struct {
	b      []byte
	lo, hi int // depth range of the tile's own nodes: [lo, hi)
	slab   []tnode
}

func (d *tileDecoder) alloc() *tnode {
	if len(d.slab) == cap(d.slab) {
		d.slab = make([]tnode, 0, 16)
	}
	d.slab = append(d.slab, tnode{})
	return &d.slab[len(d.slab)-1]
}

// countRefs returns the number of refs in b, as an allocation hint.
func countRefs(b []byte) int {
	n := 0
	for len(b) > 0 {
		n++
		var l int
		switch b[0] {
		case tagLeaf:
			l = 65
		case tagLower:
			l = 66
		case tagInner:
			l = 34
		default:
			l = 1
		}
		if len(b) < l {
			break
		}
		b = b[l:]
	}
	return n
}

// ref decodes one ref whose parent (if any, depth pd) is in this tile.
func (d *tileDecoder) ref(pd int) (*tnode, error) {
	if len(d.b) < 1 {
		return nil, fmt.Errorf("%w: truncated tile", ErrCorruptStore)
	}
	tag := d.b[0]
	b := d.b[1:]
	n := d.alloc()
	switch tag {
	case tagLeaf:
		if len(b) < 64 {
			return nil, fmt.Errorf("%w: truncated leaf in tile", ErrCorruptStore)
		}
		n.kind = refLeaf
		copy(n.key[:], b[:32])
		copy(n.val[:], b[32:64])
		d.b = b[64:]
	case tagLower:
		if len(b) < 65 {
			return nil, fmt.Errorf("%w: truncated lower-tile ref", ErrCorruptStore)
		}
		n.kind, n.depth = refNode, b[0]
		copy(n.key[:], b[1:33])
		copy(n.val[:], b[33:65])
		d.b = b[65:]
		if int(n.depth) < d.hi || int(n.depth) <= pd {
			return nil, fmt.Errorf("%w: lower-tile ref at depth %d inside tile depths [%d,%d)", ErrCorruptStore, n.depth, d.lo, d.hi)
		}
		if maskPrefix(n.key, int(n.depth)) != n.key {
			return nil, fmt.Errorf("%w: lower-tile ref prefix has bits set past depth %d", ErrCorruptStore, n.depth)
		}
	case tagInner:
		if len(b) < 33 {
			return nil, fmt.Errorf("%w: truncated tile node", ErrCorruptStore)
		}
		n.kind, n.depth, n.loaded = refNode, b[0], true
		copy(n.val[:], b[1:33])
		d.b = b[33:]
		if int(n.depth) < d.lo || int(n.depth) >= d.hi || int(n.depth) <= pd {
			return nil, fmt.Errorf("%w: tile node at depth %d outside tile depths [%d,%d)", ErrCorruptStore, n.depth, d.lo, d.hi)
		}
		for i := range n.kids {
			c, err := d.ref(int(n.depth))
			if err != nil {
				return nil, err
			}
			n.kids[i] = c
		}
		n.key = maskPrefix(n.kids[0].key, int(n.depth))
		for i, c := range n.kids {
			if commonPrefixLen(&c.key, &n.key) < int(n.depth) || bit(&c.key, int(n.depth)) != i {
				return nil, fmt.Errorf("%w: tile node (depth %d) has misplaced child %d", ErrCorruptStore, n.depth, i)
			}
		}
	case tagEmpty:
		return nil, fmt.Errorf("%w: empty ref inside a tile", ErrCorruptStore)
	default:
		return nil, fmt.Errorf("%w: unknown tile ref tag %d", ErrCorruptStore, tag)
	}
	return n, nil
}

// CheckTile checks that b is a valid encoding of tile id for the stride
// (the structure decodeTile checks on every read) and that every node hash
// stored in it is the hash of its children. It returns the hash of the
// tile's top (EmptyRoot for the empty map's tile 0), which the parent's
// lower-tile ref (or the map root) must equal.
func CheckTile(id TileID, stride int, b []byte) (Hash, error) {
	top, err := decodeTile(id, stride, b)
	if err != nil {
		return Hash{}, err
	}
	if err := verifyTileHashes(top); err != nil {
		return Hash{}, err
	}
	return top.hash(), nil
}

// decodeTile checks the structure of the encoding of tile id (stride bits
// per level) and returns its top ref: nil for the empty map's tile 0. It
// does not hash: the stored node hashes are trusted on the lookup path (as
// the records of the untiled Store are); CheckTile recomputes them.
func decodeTile(id TileID, stride int, b []byte) (*tnode, error) {
	if stride < MinStride || stride > MaxStride || int(id.Depth)%stride != 0 {
		return nil, fmt.Errorf("%w: tile depth %d is not a multiple of stride %d", ErrCorruptStore, id.Depth, stride)
	}
	if maskPrefix(id.Prefix, int(id.Depth)) != id.Prefix {
		return nil, fmt.Errorf("%w: tile id prefix has bits set past depth %d", ErrCorruptStore, id.Depth)
	}
	if id.Depth == 0 && len(b) == 1 && b[0] == tagEmpty {
		return nil, nil
	}
	d := &tileDecoder{b: b, lo: int(id.Depth), hi: int(id.Depth) + stride}
	d.slab = make([]tnode, 0, countRefs(b))
	if id.Depth != 0 && (len(b) == 0 || b[0] != tagInner) {
		return nil, fmt.Errorf("%w: tile (depth %d) does not start with one of its nodes", ErrCorruptStore, id.Depth)
	}
	top, err := d.ref(-1)
	if err != nil {
		return nil, err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes in tile", ErrCorruptStore, len(d.b))
	}
	if commonPrefixLen(&top.key, &id.Prefix) < int(id.Depth) {
		return nil, fmt.Errorf("%w: tile content is not under the tile's prefix", ErrCorruptStore)
	}
	return top, nil
}

// verifyTileHashes recomputes the hash of every node stored in the tile
// whose top is top and compares it with the stored one.
func verifyTileHashes(top *tnode) error {
	var rec func(n *tnode) error
	rec = func(n *tnode) error {
		if n == nil || !n.loaded {
			return nil
		}
		for _, c := range n.kids {
			if err := rec(c); err != nil {
				return err
			}
		}
		if h := NodeHash(n.depth, n.key, n.kids[0].hash(), n.kids[1].hash()); h != n.val {
			return fmt.Errorf("%w: tile node (depth %d, prefix %x) has a wrong stored hash", ErrCorruptStore, n.depth, n.key[:4])
		}
		return nil
	}
	return rec(top)
}

// appendTile appends the encoding of the tile whose top is n; lo and hi
// are the tile's depth range.
func appendTile(b []byte, n *tnode, hi int) []byte {
	if n == nil {
		return append(b, tagEmpty)
	}
	switch {
	case n.kind == refLeaf:
		b = append(b, tagLeaf)
		b = append(b, n.key[:]...)
		return append(b, n.val[:]...)
	case int(n.depth) >= hi:
		b = append(b, tagLower, n.depth)
		b = append(b, n.key[:]...)
		return append(b, n.val[:]...)
	}
	b = append(b, tagInner, n.depth)
	b = append(b, n.val[:]...)
	b = appendTile(b, n.kids[0], hi)
	return appendTile(b, n.kids[1], hi)
}

// TiledMap is a map stored as tiles of a fixed stride. The zero value is
// not usable; use NewTiledMap.
type TiledMap struct {
	stride int
	cache  *TileCache
}

// NewTiledMap returns the tiled layout of stride bits per level, with a
// cache of decoded top tiles (may be nil).
func NewTiledMap(stride int, cache *TileCache) (*TiledMap, error) {
	if stride < MinStride || stride > MaxStride {
		return nil, fmt.Errorf("vmap: tile stride %d outside [%d,%d]", stride, MinStride, MaxStride)
	}
	return &TiledMap{stride: stride, cache: cache}, nil
}

// Stride returns the tile stride in bits.
func (t *TiledMap) Stride() int { return t.stride }

// tileOf returns the id of the tile holding the node (depth, prefix).
func (t *TiledMap) tileOf(depth int, prefix *Index) TileID {
	d := depth / t.stride * t.stride
	return TileID{Depth: uint8(d), Prefix: maskPrefix(*prefix, d)}
}

// readTile reads one tile that must exist.
func readTile(r TileReader, id TileID) ([]byte, error) {
	bs, err := r.ReadTiles([]TileID{id})
	if err != nil {
		return nil, err
	}
	if len(bs) != 1 {
		return nil, fmt.Errorf("vmap: tile reader returned %d tiles for 1 id", len(bs))
	}
	if bs[0] == nil {
		return nil, fmt.Errorf("%w: tile (depth %d, prefix %x) missing", ErrCorruptStore, id.Depth, id.Prefix[:4])
	}
	return bs[0], nil
}

// rootTile returns tile 0's top (nil for an empty map), from the cache when
// it holds the tile for root.
func (t *TiledMap) rootTile(r TileReader, root *Hash) (*tnode, error) {
	id := TileID{}
	if root != nil {
		if n := t.cache.get(id, *root); n != nil {
			return n, nil
		}
	}
	bs, err := r.ReadTiles([]TileID{id})
	if err != nil {
		return nil, err
	}
	if len(bs) != 1 {
		return nil, fmt.Errorf("vmap: tile reader returned %d tiles for 1 id", len(bs))
	}
	if bs[0] == nil {
		if root != nil && *root != EmptyRoot {
			return nil, fmt.Errorf("%w: root tile missing", ErrCorruptStore)
		}
		return nil, nil
	}
	top, err := decodeTile(id, t.stride, bs[0])
	if err != nil {
		return nil, err
	}
	if root != nil {
		if h := top.hash(); h != *root {
			return nil, fmt.Errorf("%w: root tile hash %x differs from the epoch's root %x", ErrCorruptStore, h[:4], root[:4])
		}
		if top != nil {
			t.cache.put(id, *root, top, bs[0])
		}
	}
	return top, nil
}

// lower returns the decoded tile whose top is the lower-tile ref n, checking
// it matches n. Apply passes its prefetched tiles (pre) and never uses the
// cache, because it modifies what it decodes; Prove passes nil.
func (t *TiledMap) lower(r TileReader, n *tnode, pre map[TileID][]byte) (*tnode, error) {
	id := t.tileOf(int(n.depth), &n.key)
	if pre == nil {
		if top := t.cache.get(id, n.val); top != nil {
			return top, nil
		}
	}
	b, ok := pre[id]
	if !ok {
		var err error
		if b, err = readTile(r, id); err != nil {
			return nil, err
		}
	}
	top, err := t.decodeLower(id, n, b)
	if err != nil {
		return nil, err
	}
	if pre == nil {
		t.cache.put(id, n.val, top, b)
	}
	return top, nil
}

// decodeLower decodes b, the encoding of tile id, which the lower-tile ref
// n leads to, and checks that its top is n (depth, prefix and hash):
// ErrCorruptStore if it is not.
func (t *TiledMap) decodeLower(id TileID, n *tnode, b []byte) (*tnode, error) {
	top, err := decodeTile(id, t.stride, b)
	if err != nil {
		return nil, err
	}
	if top.kind != refNode || top.depth != n.depth || top.key != n.key || top.val != n.val {
		return nil, fmt.Errorf("%w: tile (depth %d, prefix %x) does not match its parent's ref", ErrCorruptStore, id.Depth, id.Prefix[:4])
	}
	return top, nil
}

// Root returns the root hash of the tiled map in r (EmptyRoot if empty).
func (t *TiledMap) Root(r TileReader) (Hash, error) {
	top, err := t.rootTile(r, nil)
	if err != nil {
		return Hash{}, err
	}
	return top.hash(), nil
}

// Prove returns the proof for index in the tiled map in r, whose root the
// caller knows (the epoch's recorded root): tile 0 must hash to it
// (ErrCorruptStore otherwise). Cached tiles are used when their hash matches
// the ref that leads to them, so a proof always matches root.
func (t *TiledMap) Prove(r TileReader, root Hash, index Index) (*Proof, error) {
	n, err := t.rootTile(r, &root)
	if err != nil {
		return nil, err
	}
	p := &Proof{}
	if n == nil {
		p.Kind = AbsentEmpty
		return p, nil
	}
	for {
		if n.kind == refLeaf {
			if n.key == index {
				p.Kind, p.Value = Inclusion, n.val
			} else {
				p.Kind, p.LeafIndex, p.LeafValue = AbsentLeaf, n.key, n.val
			}
			return p, nil
		}
		if !n.loaded {
			id := t.tileOf(int(n.depth), &n.key)
			if t.cache.holds(id) {
				if n, err = t.lower(r, n, nil); err != nil {
					return nil, err
				}
			} else {
				// Not cached: walk the encoding along the path
				// instead of decoding the whole tile.
				b, err := readTile(r, id)
				if err != nil {
					return nil, err
				}
				next, err := walkTile(id, t.stride, b, n, &index, p)
				if err != nil || next == nil {
					return p, err
				}
				n = next
				continue
			}
		}
		if commonPrefixLen(&n.key, &index) < int(n.depth) {
			p.Kind = AbsentNode
			p.NodeDepth, p.NodePrefix = n.depth, n.key
			p.NodeLeft, p.NodeRight = n.kids[0].hash(), n.kids[1].hash()
			return p, nil
		}
		b := bit(&index, int(n.depth))
		if p.Siblings == nil {
			p.Siblings = make([]Sibling, 0, 32)
		}
		p.Siblings = append(p.Siblings, Sibling{Depth: n.depth, Hash: n.kids[1-b].hash()})
		n = n.kids[b]
	}
}

// walkTile continues proof p for index through the encoded tile b (tile
// id, whose top must match the lower-tile ref n) without decoding the
// whole tile: it reads the nodes on the path and skips the subtrees beside
// it. It returns the ref where the path leaves the tile (a leaf or a
// lower-tile ref), or nil when p is complete (an AbsentNode terminal). It
// checks what it reads (tags, bounds, depth ranges, the top against n);
// damage elsewhere in the tile cannot change the proof.
func walkTile(id TileID, stride int, b []byte, n *tnode, index *Index, p *Proof) (*tnode, error) {
	lo, hi := int(id.Depth), int(id.Depth)+stride
	bad := func(what string) error {
		return fmt.Errorf("%w: tile (depth %d, prefix %x): %s", ErrCorruptStore, id.Depth, id.Prefix[:4], what)
	}
	refLen := func(q int) int {
		if q >= len(b) {
			return 0
		}
		var l int
		switch b[q] {
		case tagLeaf:
			l = 65
		case tagLower:
			l = 66
		case tagInner:
			l = 34
		}
		if q+l > len(b) {
			return 0
		}
		return l
	}
	skip := func(q int) (int, error) {
		for pending := 1; pending > 0; {
			l := refLen(q)
			if l == 0 {
				return 0, bad("truncated or unknown ref")
			}
			if b[q] == tagInner {
				pending++
			} else {
				pending--
			}
			q += l
		}
		return q, nil
	}
	childHash := func(q int) (Hash, error) {
		var h Hash
		switch refLen(q) {
		case 34:
			copy(h[:], b[q+2:q+34])
		case 65:
			h = LeafHash(Index(b[q+1:q+33]), Value(b[q+33:q+65]))
		case 66:
			copy(h[:], b[q+34:q+66])
		default:
			return h, bad("truncated or unknown ref")
		}
		return h, nil
	}
	leftKey := func(q int) (Index, error) {
		for {
			switch refLen(q) {
			case 34:
				q += 34
			case 65:
				return Index(b[q+1 : q+33]), nil
			case 66:
				return Index(b[q+2 : q+34]), nil
			default:
				return Index{}, bad("truncated or unknown ref")
			}
		}
	}
	pos, pd := 0, -1
	for {
		switch refLen(pos) {
		case 65:
			return &tnode{kind: refLeaf, key: Index(b[pos+1 : pos+33]), val: Value(b[pos+33 : pos+65])}, nil
		case 66:
			next := &tnode{kind: refNode, depth: b[pos+1], key: Index(b[pos+2 : pos+34]), val: Hash(b[pos+34 : pos+66])}
			if int(next.depth) < hi || int(next.depth) <= pd || pd < 0 {
				return nil, bad("lower-tile ref out of place")
			}
			return next, nil
		case 34:
		default:
			return nil, bad("truncated or unknown ref")
		}
		d := int(b[pos+1])
		if d < lo || d >= hi || d <= pd {
			return nil, bad("node depth out of range")
		}
		lk, err := leftKey(pos + 34)
		if err != nil {
			return nil, err
		}
		prefix := maskPrefix(lk, d)
		if pd < 0 && (d != int(n.depth) || prefix != n.key || Hash(b[pos+2:pos+34]) != n.val) {
			return nil, bad("does not match its parent's ref")
		}
		rpos, err := skip(pos + 34)
		if err != nil {
			return nil, err
		}
		if commonPrefixLen(&prefix, index) < d {
			p.Kind, p.NodeDepth, p.NodePrefix = AbsentNode, uint8(d), prefix
			if p.NodeLeft, err = childHash(pos + 34); err != nil {
				return nil, err
			}
			if p.NodeRight, err = childHash(rpos); err != nil {
				return nil, err
			}
			return nil, nil
		}
		next, sib := pos+34, rpos
		if bit(index, d) == 1 {
			next, sib = rpos, pos+34
		}
		h, err := childHash(sib)
		if err != nil {
			return nil, err
		}
		if p.Siblings == nil {
			p.Siblings = make([]Sibling, 0, 32)
		}
		p.Siblings = append(p.Siblings, Sibling{Depth: uint8(d), Hash: h})
		pos, pd = next, d
	}
}

// Apply sets every update's index to its value in the tiled map in s and
// returns the new root. It reads the tiles on the updated paths (one
// ReadTiles call per tile level), applies the batch in memory, and writes
// every changed tile once with one WriteTiles call. Updates may come in any
// order; an index may appear only once (ErrDuplicateIndex, checked before
// any read). It never uses the cache (tiles it decodes are modified).
func (t *TiledMap) Apply(s TileStore, updates []Update) (Hash, error) {
	ups := slices.Clone(updates)
	slices.SortFunc(ups, func(a, b Update) int { return bytes.Compare(a.Index[:], b.Index[:]) })
	for i := 1; i < len(ups); i++ {
		if ups[i].Index == ups[i-1].Index {
			return Hash{}, fmt.Errorf("%w: %x", ErrDuplicateIndex, ups[i].Index)
		}
	}
	root, err := t.rootTile(s, nil)
	if err != nil {
		return Hash{}, err
	}
	if len(ups) == 0 {
		return root.hash(), nil
	}
	pre, err := t.prefetch(s, ups)
	if err != nil {
		return Hash{}, err
	}
	a := &applier{t: t, s: s, pre: pre}
	nr, err := a.update(root, ups)
	if err != nil {
		return Hash{}, err
	}
	rehash(nr)
	var tiles []Tile
	tiles = append(tiles, Tile{ID: TileID{}, Data: appendTile(nil, nr, t.stride)})
	t.collect(nr, -1, &tiles)
	if err := s.WriteTiles(tiles); err != nil {
		return Hash{}, err
	}
	return nr.hash(), nil
}

// prefetch reads, level by level in one ReadTiles call each, the tiles on
// the updates' paths, until a level where none exists. Apply reads any
// deeper tile it needs individually.
func (t *TiledMap) prefetch(s TileReader, ups []Update) (map[TileID][]byte, error) {
	pre := make(map[TileID][]byte)
	for d := t.stride; d < 256; d += t.stride {
		var ids []TileID
		var last Index
		for i := range ups {
			p := maskPrefix(ups[i].Index, d)
			if i > 0 && p == last {
				continue
			}
			last = p
			ids = append(ids, TileID{Depth: uint8(d), Prefix: p})
		}
		bs, err := s.ReadTiles(ids)
		if err != nil {
			return nil, err
		}
		if len(bs) != len(ids) {
			return nil, fmt.Errorf("vmap: tile reader returned %d tiles for %d ids", len(bs), len(ids))
		}
		found := false
		for i, b := range bs {
			if b != nil {
				// Valid for the transaction: Apply writes only after
				// decoding everything it reads.
				pre[ids[i]] = b
				found = true
			}
		}
		if !found {
			break
		}
	}
	return pre, nil
}

type applier struct {
	t   *TiledMap
	s   TileReader
	pre map[TileID][]byte
}

// load sets the kids of n, a ref to the top of a lower tile, from that tile.
func (a *applier) load(n *tnode) error {
	if n.loaded {
		return nil
	}
	top, err := a.t.lower(a.s, n, a.pre)
	if err != nil {
		return err
	}
	n.kids, n.loaded = top.kids, true
	return nil
}

func (a *applier) update(n *tnode, ups []Update) (*tnode, error) {
	if len(ups) == 0 {
		return n, nil
	}
	if n == nil {
		return tbuild(ups), nil
	}
	cp := min(commonPrefixLen(&n.key, &ups[0].Index), commonPrefixLen(&n.key, &ups[len(ups)-1].Index), n.bits())
	if cp == n.bits() {
		if n.kind == refLeaf {
			return &tnode{kind: refLeaf, key: n.key, val: ups[0].Value}, nil
		}
		if err := a.load(n); err != nil {
			return nil, err
		}
		k := splitAt(ups, int(n.depth))
		for i, part := range [2][]Update{ups[:k], ups[k:]} {
			c, err := a.update(n.kids[i], part)
			if err != nil {
				return nil, err
			}
			n.kids[i] = c
		}
		n.dirty = true
		return n, nil
	}
	nn := &tnode{kind: refNode, depth: uint8(cp), key: maskPrefix(n.key, cp), loaded: true, dirty: true}
	if n.kind == refNode && int(n.depth)/a.t.stride == cp/a.t.stride {
		// n, the top of a lower tile, becomes a node of nn's tile, which
		// is then rewritten with n's nodes in it.
		if err := a.load(n); err != nil {
			return nil, err
		}
	}
	k := splitAt(ups, cp)
	parts := [2][]Update{ups[:k], ups[k:]}
	rb := bit(&n.key, cp)
	c, err := a.update(n, parts[rb])
	if err != nil {
		return nil, err
	}
	nn.kids[rb] = c
	nn.kids[1-rb] = tbuild(parts[1-rb])
	return nn, nil
}

// tbuild returns the subtree holding exactly ups (sorted, distinct, non-empty).
func tbuild(ups []Update) *tnode {
	if len(ups) == 1 {
		return &tnode{kind: refLeaf, key: ups[0].Index, val: ups[0].Value}
	}
	d := commonPrefixLen(&ups[0].Index, &ups[len(ups)-1].Index)
	n := &tnode{kind: refNode, depth: uint8(d), key: maskPrefix(ups[0].Index, d), loaded: true, dirty: true}
	k := splitAt(ups, d)
	n.kids[0], n.kids[1] = tbuild(ups[:k]), tbuild(ups[k:])
	return n
}

// rehash recomputes the hash of every dirty node below n, bottom up.
func rehash(n *tnode) {
	if n == nil || !n.dirty {
		return
	}
	rehash(n.kids[0])
	rehash(n.kids[1])
	n.val = NodeHash(n.depth, n.key, n.kids[0].hash(), n.kids[1].hash())
}

// collect appends the encoding of every changed tile at or below n, whose
// parent node has depth pd (-1 for the root). A node is a tile's top when
// its tile level differs from its parent's; a tile changed exactly when its
// top is dirty, since a change dirties every ancestor. Tile 0 is written by
// Apply itself.
func (t *TiledMap) collect(n *tnode, pd int, tiles *[]Tile) {
	if n == nil || n.kind != refNode || !n.dirty {
		return
	}
	lvl := int(n.depth) / t.stride
	if lvl != 0 && (pd < 0 || pd/t.stride != lvl) {
		id := t.tileOf(int(n.depth), &n.key)
		*tiles = append(*tiles, Tile{ID: id, Data: appendTile(nil, n, int(id.Depth)+t.stride)})
	}
	for _, c := range n.kids {
		t.collect(c, int(n.depth), tiles)
	}
}

// MemTileStore is an in-memory TileStore, safe for concurrent use. It
// counts the tiles read and written, for tests and measurements.
type MemTileStore struct {
	mu            sync.RWMutex
	m             map[string][]byte
	reads, writes int
	readCalls     int
}

// NewMemTileStore returns an empty MemTileStore.
func NewMemTileStore() *MemTileStore { return &MemTileStore{m: make(map[string][]byte)} }

// ReadTiles implements TileReader.
func (m *MemTileStore) ReadTiles(ids []TileID) ([][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.readCalls++
	m.reads += len(ids)
	out := make([][]byte, len(ids))
	for i, id := range ids {
		out[i] = m.m[string(id.Key())]
	}
	return out, nil
}

// WriteTiles implements TileStore.
func (m *MemTileStore) WriteTiles(tiles []Tile) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range tiles {
		m.writes++
		m.m[string(t.ID.Key())] = bytes.Clone(t.Data)
	}
	return nil
}

// Counts returns the number of tiles held, tiles read (and ReadTiles
// calls) and tiles written so far.
func (m *MemTileStore) Counts() (tiles, reads, readCalls, writes int) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.m), m.reads, m.readCalls, m.writes
}
