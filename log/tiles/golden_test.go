package tiles

import (
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/tiles/vectors.json")

// tileVectors is testdata/tiles/vectors.json: the leaves of
// testdata/log/leaves.json as a log, its entry bundle, level-0 tile and
// root, and path encodings.
type tileVectors struct {
	Leaves     []string          `json:"leaves"`
	BundlePath string            `json:"bundle_path"`
	Bundle     string            `json:"bundle"`
	TilePath   string            `json:"tile_path"`
	Tile       string            `json:"tile"`
	Root       string            `json:"root"`
	Paths      map[string]string `json:"paths"` // "L/N/W" -> path
}

func TestGoldenVectors(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "log", "leaves.json"))
	if err != nil {
		t.Fatal(err)
	}
	var lv []struct {
		Leaf string `json:"leaf"`
	}
	if err := json.Unmarshal(raw, &lv); err != nil {
		t.Fatal(err)
	}
	var leaves [][]byte
	v := tileVectors{Paths: map[string]string{}}
	for _, l := range lv {
		b, err := hex.DecodeString(l.Leaf)
		if err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, b)
		v.Leaves = append(v.Leaves, l.Leaf)
	}
	tt, _ := TileForSize(0, 0, uint64(len(leaves)))
	bundle, err := MarshalBundle(leaves)
	if err != nil {
		t.Fatal(err)
	}
	var h Hashes
	h.Append(leaves)
	root := h.Root()
	v.BundlePath, v.Bundle = tt.EntriesPath(), hex.EncodeToString(bundle)
	v.TilePath, v.Tile = tt.Path(), hex.EncodeToString(LeafTile(leaves))
	v.Root = hex.EncodeToString(root[:])
	for _, p := range []Tile{{0, 0, 256}, {0, 1234067, 256}, {1, 5, 17}, {2, 1000, 1}, {63, 999999, 255}} {
		v.Paths["L="+itoa(uint64(p.L))+" N="+itoa(p.N)+" W="+itoa(uint64(p.W))] = p.Path()
	}
	got, _ := json.MarshalIndent(v, "", "  ")
	got = append(got, '\n')
	path := filepath.Join("..", "..", "testdata", "tiles", "vectors.json")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != string(got) {
		t.Errorf("tile vectors differ from %s (run with -update if the change is intended)", path)
	}
}

func itoa(n uint64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
