package vmap

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
)

// onceWriter fails the test if an Apply writes a tile twice.
type onceWriter struct {
	*MemTileStore
	t       testing.TB
	batches int
}

func (w *onceWriter) WriteTiles(tiles []Tile) error {
	w.batches++
	seen := map[string]bool{}
	for _, tl := range tiles {
		k := string(tl.ID.Key())
		if seen[k] {
			w.t.Fatalf("tile %x written twice in one batch", tl.ID.Key())
		}
		seen[k] = true
	}
	return w.MemTileStore.WriteTiles(tiles)
}

// checkAllTiles decodes every stored tile, recomputes its hashes, and checks
// that every lower-tile ref names an existing tile with that top hash.
func checkAllTiles(t *testing.T, s *MemTileStore, stride int) {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	for k, b := range s.m {
		id, err := ParseTileKey([]byte(k))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(id.Key(), []byte(k)) {
			t.Fatalf("tile key %x does not round-trip", k)
		}
		if _, err := CheckTile(id, stride, b); err != nil {
			t.Fatalf("tile %x: %v", k, err)
		}
		top, _ := decodeTile(id, stride, b)
		var walk func(n *tnode)
		walk = func(n *tnode) {
			if n == nil || n.kind == refLeaf {
				return
			}
			if !n.loaded {
				lid := TileID{Depth: uint8(int(n.depth) / stride * stride)}
				lid.Prefix = maskPrefix(n.key, int(lid.Depth))
				lb := s.m[string(lid.Key())]
				h, err := CheckTile(lid, stride, lb)
				if err != nil || h != n.val {
					t.Fatalf("lower tile %x: hash %x, want %x (%v)", lid.Key(), h[:4], n.val[:4], err)
				}
				return
			}
			walk(n.kids[0])
			walk(n.kids[1])
		}
		walk(top)
	}
}

// TestTiledMatchesNodeStore applies the same batches to the untiled map and
// to tiled maps of several strides, and checks equal roots, byte-identical
// proofs (with and without a cache), valid tiles, and that every Apply
// writes each tile once in one batch.
func TestTiledMatchesNodeStore(t *testing.T) {
	for _, stride := range []int{1, 3, 4, 8, 11, 16} {
		mem := NewMemStore()
		ts := &onceWriter{MemTileStore: NewMemTileStore(), t: t}
		tm, err := NewTiledMap(stride, nil)
		if err != nil {
			t.Fatal(err)
		}
		cached, _ := NewTiledMap(stride, NewTileCache(2*stride, 1<<20))
		rng := rand.New(rand.NewPCG(uint64(stride), 1))
		n := 0
		for b := 0; b < 12; b++ {
			var ups []Update
			size := []int{1, 2, 7, 50, 300}[b%5]
			seen := map[int]bool{}
			for len(ups) < size {
				i := n + len(ups)
				if n > 0 && rng.IntN(3) == 0 {
					i = rng.IntN(n) // update an existing entry
				}
				if seen[i] {
					continue
				}
				seen[i] = true
				ups = append(ups, Update{idx(i), val(i, b)})
			}
			n += size
			want := mustApply(t, mem, ups)
			got, err := tm.Apply(ts, ups)
			if err != nil {
				t.Fatalf("stride %d batch %d: %v", stride, b, err)
			}
			if got != want {
				t.Fatalf("stride %d batch %d: tiled root %x, untiled %x", stride, b, got[:4], want[:4])
			}
			if r, _ := tm.Root(ts); r != want {
				t.Fatalf("stride %d: Root %x, want %x", stride, r[:4], want[:4])
			}
			for q := 0; q < 40; q++ {
				k := idx(rng.IntN(n + 100))
				wp, err := Prove(mem, k)
				if err != nil {
					t.Fatal(err)
				}
				we, _ := wp.MarshalBinary()
				for _, m := range []*TiledMap{tm, cached} {
					gp, err := m.Prove(ts, want, k)
					if err != nil {
						t.Fatal(err)
					}
					ge, _ := gp.MarshalBinary()
					if !bytes.Equal(ge, we) {
						t.Fatalf("stride %d batch %d: proofs differ for %x", stride, b, k[:4])
					}
				}
			}
		}
		checkAllTiles(t, ts.MemTileStore, stride)
		if ts.batches != 12 {
			t.Fatalf("stride %d: %d write batches for 12 epochs", stride, ts.batches)
		}
		if st := cached.cache.Stats(); st.Hits == 0 || st.Tiles == 0 {
			t.Fatalf("stride %d: cache unused: %+v", stride, st)
		}
	}
}

// TestTiledGolden rebuilds the golden map (testdata/vmap/golden.json) as
// tiles and checks its roots and proofs are unchanged.
func TestTiledGolden(t *testing.T) {
	b, err := os.ReadFile("../../testdata/vmap/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	tm, _ := NewTiledMap(8, NewTileCache(16, 1<<20))
	s := NewMemTileStore()
	var root Hash
	for bt := 0; bt < 4; bt++ {
		var ups []Update
		for i := 8 * bt; i < 8*bt+12; i++ {
			ups = append(ups, Update{idx(i), val(i, bt+1)})
		}
		if bt == 3 {
			for i := 0; i < 4; i++ {
				ups = append(ups, Update{idx(i), val(i, bt+1)})
			}
		}
		if root, err = tm.Apply(s, ups); err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(root[:]) != g.Roots[bt] {
			t.Fatalf("batch %d root %x, golden %s", bt, root, g.Roots[bt])
		}
	}
	for i, wp := range g.Proofs {
		var k Index
		hex.Decode(k[:], []byte(wp.Index))
		p, err := tm.Prove(s, root, k)
		if err != nil {
			t.Fatal(err)
		}
		enc, _ := p.MarshalBinary()
		if hex.EncodeToString(enc) != wp.Proof {
			t.Errorf("golden proof %d differs", i)
		}
	}
}

// TestTiledCorrupt checks that damaged tiles give ErrCorruptStore, never a
// panic or a proof for another root.
func TestTiledCorrupt(t *testing.T) {
	tm, _ := NewTiledMap(4, nil)
	s := NewMemTileStore()
	var ups []Update
	for i := 0; i < 200; i++ {
		ups = append(ups, Update{idx(i), val(i, 1)})
	}
	root, err := tm.Apply(s, ups)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := 0
	for k, v := range s.m {
		for _, mut := range []func([]byte) []byte{
			func(b []byte) []byte { return b[:len(b)-1] },
			func(b []byte) []byte { return append(b, 0) },
			func(b []byte) []byte { b[0] ^= 0xff; return b },
			func(b []byte) []byte { b[len(b)-1] ^= 1; return b }, // a leaf value or a hash
		} {
			orig := bytes.Clone(v)
			s.m[k] = mut(bytes.Clone(v))
			for i := 0; i < 200; i += 7 {
				p, err := tm.Prove(s, root, idx(i))
				if err != nil {
					if !errors.Is(err, ErrCorruptStore) {
						t.Fatalf("tile %x: %v, want ErrCorruptStore", k, err)
					}
					corrupt++
					continue
				}
				// Damage the structure checks cannot see (a value or a
				// stored hash) gives a proof that does not verify.
				if _, _, err := Verify(root, idx(i), p); err != nil && !errors.Is(err, ErrRootMismatch) {
					t.Fatalf("tile %x: proof error %v", k, err)
				}
			}
			s.m[k] = orig
		}
	}
	if corrupt == 0 {
		t.Fatal("no damaged tile was detected as corrupt")
	}
}

func FuzzDecodeTile(f *testing.F) {
	tm, _ := NewTiledMap(4, nil)
	s := NewMemTileStore()
	var ups []Update
	for i := 0; i < 60; i++ {
		ups = append(ups, Update{idx(i), val(i, 1)})
	}
	if _, err := tm.Apply(s, ups); err != nil {
		f.Fatal(err)
	}
	for k, v := range s.m {
		f.Add([]byte(k), v)
	}
	f.Add([]byte{0}, []byte{tagEmpty})
	f.Add([]byte{0}, []byte{})
	f.Fuzz(func(t *testing.T, key, data []byte) {
		id, err := ParseTileKey(key)
		if err != nil {
			if !errors.Is(err, ErrCorruptStore) {
				t.Fatalf("ParseTileKey: %v", err)
			}
			return
		}
		// The lookup path's walker never panics and fails with
		// ErrCorruptStore, whatever the bytes.
		for _, k := range []Index{idx(1), idx(2), {}} {
			ref := &tnode{kind: refNode, depth: id.Depth}
			if len(data) > 34 && data[0] == tagInner {
				ref.depth = data[1]
				copy(ref.val[:], data[2:34])
			}
			if _, err := walkTile(id, 4, data, ref, &k, &Proof{}); err != nil && !errors.Is(err, ErrCorruptStore) {
				t.Fatalf("walkTile: %v", err)
			}
		}
		top, err := decodeTile(id, 4, data)
		if err != nil {
			if !errors.Is(err, ErrCorruptStore) {
				t.Fatalf("decodeTile: %v", err)
			}
			return
		}
		// A decodable tile is canonical: re-encoding gives the same bytes.
		if re := appendTile(nil, top, int(id.Depth)+4); !bytes.Equal(re, data) {
			t.Fatalf("re-encoding differs:\n%x\n%x", re, data)
		}
		if _, err := CheckTile(id, 4, data); err != nil && !errors.Is(err, ErrCorruptStore) {
			t.Fatalf("CheckTile: %v", err)
		}
	})
}

type tileVectors struct {
	Description string `json:"description"`
	Maps        []struct {
		Stride int    `json:"stride"`
		Root   string `json:"root"`
		Tiles  []struct {
			Key  string `json:"key"`
			Data string `json:"data"`
		} `json:"tiles"`
	} `json:"maps"`
}

// TestTileVectors checks the tiles of the golden map (the 4 batches of
// golden.json) at strides 8 and 4 against testdata/vmap/tiles.json
// (regenerate with -update), and that every vector tile passes CheckTile.
func TestTileVectors(t *testing.T) {
	const path = "../../testdata/vmap/tiles.json"
	var got tileVectors
	got.Description = "tiles (key -> encoding, docs/protocol.md 5.2.5) of the golden map of golden.json after its 4 batches, sorted by key"
	for _, stride := range []int{8, 4} {
		tm, _ := NewTiledMap(stride, nil)
		s := NewMemTileStore()
		var root Hash
		for bt := 0; bt < 4; bt++ {
			var ups []Update
			for i := 8 * bt; i < 8*bt+12; i++ {
				ups = append(ups, Update{idx(i), val(i, bt+1)})
			}
			if bt == 3 {
				for i := 0; i < 4; i++ {
					ups = append(ups, Update{idx(i), val(i, bt+1)})
				}
			}
			var err error
			if root, err = tm.Apply(s, ups); err != nil {
				t.Fatal(err)
			}
		}
		got.Maps = append(got.Maps, struct {
			Stride int    `json:"stride"`
			Root   string `json:"root"`
			Tiles  []struct {
				Key  string `json:"key"`
				Data string `json:"data"`
			} `json:"tiles"`
		}{Stride: stride, Root: hex.EncodeToString(root[:])})
		m := &got.Maps[len(got.Maps)-1]
		keys := make([]string, 0, len(s.m))
		for k := range s.m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			m.Tiles = append(m.Tiles, struct {
				Key  string `json:"key"`
				Data string `json:"data"`
			}{hex.EncodeToString([]byte(k)), hex.EncodeToString(s.m[k])})
		}
	}
	if *updateGolden {
		b, _ := json.MarshalIndent(got, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want tileVectors
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if !bytes.Equal(gb, wb) {
		t.Fatalf("tiles differ from %s", path)
	}
	for _, m := range want.Maps {
		for _, tl := range m.Tiles {
			k, _ := hex.DecodeString(tl.Key)
			d, _ := hex.DecodeString(tl.Data)
			id, err := ParseTileKey(k)
			if err != nil {
				t.Fatal(err)
			}
			h, err := CheckTile(id, m.Stride, d)
			if err != nil {
				t.Fatal(err)
			}
			if id.Depth == 0 && hex.EncodeToString(h[:]) != m.Root {
				t.Fatalf("stride %d: tile 0 hashes to %x, root %s", m.Stride, h, m.Root)
			}
		}
	}
}

// TestTiledReads checks the point of tiles: with the top two levels cached
// (stride 8), a lookup reads from the store exactly one tile per tile level
// at depth 16 or more that its path has nodes in (counted from the untiled
// proof's branching depths), and an Apply makes one ReadTiles call per
// tile level.
func TestTiledReads(t *testing.T) {
	s := NewMemTileStore()
	mem := NewMemStore()
	tm, _ := NewTiledMap(8, NewTileCache(16, 64<<20))
	var ups []Update
	for i := 0; i < 20000; i++ {
		ups = append(ups, Update{idx(i), val(i, 1)})
	}
	root, err := tm.Apply(s, ups)
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, mem, ups)
	if _, _, calls, _ := s.Counts(); calls > 5 {
		t.Fatalf("Apply of 20,000 entries made %d ReadTiles calls", calls)
	}
	for i := 0; i < 2000; i++ { // warm the cache
		if _, err := tm.Prove(s, root, idx(i)); err != nil {
			t.Fatal(err)
		}
	}
	want := 0
	_, before, _, _ := s.Counts()
	for i := 0; i < 1000; i++ {
		k := idx(5000 + i)
		if i%3 == 0 {
			k = idx(100000 + i) // absent
		}
		if _, err := tm.Prove(s, root, k); err != nil {
			t.Fatal(err)
		}
		p, _ := Prove(mem, k)
		levels := map[int]bool{}
		for _, sb := range p.Siblings {
			levels[int(sb.Depth)/8] = true
		}
		if p.Kind == AbsentNode {
			levels[int(p.NodeDepth)/8] = true
		}
		for l := range levels {
			if l >= 2 {
				want++
			}
		}
	}
	_, after, _, _ := s.Counts()
	if after-before != want || want == 0 {
		t.Fatalf("1000 lookups read %d tiles, want %d (one per uncached level crossed)", after-before, want)
	}
	if st := tm.cache.Stats(); st.Tiles != 257 {
		t.Fatalf("cache holds %d tiles, want 257 (tile 0 and the 256 at depth 8)", st.Tiles)
	}
}
