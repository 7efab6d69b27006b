package embedded_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/keyline/keyline/log/embedded"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
)

var update = flag.Bool("update", false, "rewrite testdata/log/bundle.json")

// bundleVector is testdata/log/bundle.json: the 256 leaves of a bundle,
// their bundle encoding, its 16 group hashes (roots of leaves [16g,
// 16g+16)) and the bundle's root (the level-8 node).
type bundleVector struct {
	Leaves []string `json:"leaves"`
	Groups []string `json:"groups"`
	Root   string   `json:"root"`
	Bundle string   `json:"bundle"`
}

// TestBundleVector checks MarshalBundle against testdata/log/bundle.json,
// with group hashes and root computed independently (compact ranges).
func TestBundleVector(t *testing.T) {
	var v bundleVector
	leaves := make([][]byte, embedded.BundleWidth)
	hashes := make([][]byte, embedded.BundleWidth)
	f := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	all := f.NewEmptyRange(0)
	var group *compact.Range
	for j := range leaves {
		leaves[j] = bytes.Repeat([]byte{byte(j)}, j%7) // lengths 0..6
		hashes[j] = rfc6962.DefaultHasher.HashLeaf(leaves[j])
		v.Leaves = append(v.Leaves, hex.EncodeToString(leaves[j]))
		if j%embedded.GroupWidth == 0 {
			group = f.NewEmptyRange(0) // a perfect subtree hashes the same anywhere
		}
		if err := all.Append(hashes[j], nil); err != nil {
			t.Fatal(err)
		}
		if err := group.Append(hashes[j], nil); err != nil {
			t.Fatal(err)
		}
		if j%embedded.GroupWidth == embedded.GroupWidth-1 {
			r, err := group.GetRootHash(nil)
			if err != nil {
				t.Fatal(err)
			}
			v.Groups = append(v.Groups, hex.EncodeToString(r))
		}
	}
	root, err := all.GetRootHash(nil)
	if err != nil {
		t.Fatal(err)
	}
	v.Root = hex.EncodeToString(root)
	b, err := embedded.MarshalBundle(hashes, leaves)
	if err != nil {
		t.Fatal(err)
	}
	v.Bundle = hex.EncodeToString(b)
	for g, want := range v.Groups {
		if got, err := embedded.BundleGroup(b, g); err != nil || hex.EncodeToString(got) != want {
			t.Fatalf("group %d = %x, %v; want %s", g, got, err, want)
		}
	}
	got, _ := json.MarshalIndent(v, "", "  ")
	got = append(got, '\n')
	path := filepath.Join("..", "..", "testdata", "log", "bundle.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("bundle vector differs from %s (run with -update if the change is intended)", path)
	}
}
