package vmap

import "testing"

// TestTiledWarm checks Warm: it loads every tile of the map (a proof then
// reads nothing), after an Apply it reads exactly the tiles the Apply
// rewrote (but tile 0, which it reads on its own), and a cache too small
// for the map is left incomplete without reading tiles it cannot keep.
func TestTiledWarm(t *testing.T) {
	s := NewMemTileStore()
	mem := NewMemStore()
	tm, _ := NewTiledMap(8, NewTileCache(256, 64<<20))
	var ups []Update
	for i := 0; i < 20000; i++ {
		ups = append(ups, Update{idx(i), val(i, 1)})
	}
	root, err := tm.Apply(s, ups)
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, mem, ups)
	st, err := tm.Warm(s, root, true)
	tiles, _, _, _ := s.Counts()
	if err != nil || !st.Complete || st.Read != tiles-1 {
		t.Fatalf("first Warm: %+v, %v; the store holds %d tiles", st, err, tiles)
	}
	if cs := tm.cache.Stats(); cs.Tiles != tiles {
		t.Fatalf("cache holds %d tiles after Warm, the store %d", cs.Tiles, tiles)
	}
	prove := func(root Hash) {
		t.Helper()
		_, before, _, _ := s.Counts()
		for i := 0; i < 1000; i++ {
			k := idx(i * 37 % 30000) // a third absent
			p, err := tm.Prove(s, root, k)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := Prove(mem, k)
			if p.Kind != want.Kind || p.Value != want.Value || len(p.Siblings) != len(want.Siblings) {
				t.Fatalf("proof of %x differs from the node store's", k[:4])
			}
		}
		if _, after, _, _ := s.Counts(); after != before {
			t.Fatalf("1000 proofs after Warm read %d tiles", after-before)
		}
	}
	prove(root)
	// An epoch: 300 changed values and 300 new entries.
	ups = ups[:0]
	for i := 0; i < 300; i++ {
		ups = append(ups, Update{idx(i * 61), val(i*61, 2)}, Update{idx(20000 + i), val(20000+i, 1)})
	}
	_, _, _, w0 := s.Counts()
	if root, err = tm.Apply(s, ups); err != nil {
		t.Fatal(err)
	}
	mustApply(t, mem, ups)
	_, _, _, w1 := s.Counts()
	if st, err = tm.Warm(s, root, false); err != nil || !st.Complete || st.Read != w1-w0-1 {
		t.Fatalf("Warm after an Apply writing %d tiles: %+v, %v", w1-w0, st, err)
	}
	prove(root)
	if st, err = tm.Warm(s, root, true); err != nil || !st.Complete || st.Read != 0 {
		t.Fatalf("Warm of a warm cache: %+v, %v", st, err)
	}

	// A cache that holds a fraction of the map.
	small, _ := NewTiledMap(8, NewTileCache(256, 200<<10))
	if st, err = small.Warm(s, root, true); err != nil || st.Complete || st.Read == 0 {
		t.Fatalf("Warm into a small cache: %+v, %v", st, err)
	}
	if st, err = small.Warm(s, root, true); err != nil || st.Complete || st.Read != 0 {
		t.Fatalf("second Warm into a full cache: %+v, %v (read tiles it cannot keep)", st, err)
	}
	for i := 0; i < 1000; i++ {
		if _, err := small.Prove(s, root, idx(i)); err != nil {
			t.Fatal(err)
		}
	}

	// A tile that does not match its parent's ref (here: its top's
	// stored hash) is an error, not a cached tile.
	bad, _ := NewTiledMap(8, NewTileCache(256, 64<<20))
	for k, v := range s.m {
		if len(k) == 3 {
			v[5] ^= 1
			break
		}
	}
	if _, err := bad.Warm(s, root, true); err == nil {
		t.Fatal("Warm accepted a damaged tile")
	}
}
