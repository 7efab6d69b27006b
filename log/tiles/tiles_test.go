package tiles

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	klog "github.com/keyline/keyline/log"
)

func TestPathExamples(t *testing.T) {
	for _, c := range []struct {
		t       Tile
		path    string
		entries string
	}{
		{Tile{L: 0, N: 1234067, W: 256}, "tile/0/x001/x234/067", "tile/entries/x001/x234/067"},
		{Tile{L: 3, N: 5, W: 8}, "tile/3/005.p/8", "tile/entries/005.p/8"},
		{Tile{L: 0, N: 0, W: 255}, "tile/0/000.p/255", "tile/entries/000.p/255"},
		{Tile{L: 63, N: 1000, W: 1}, "tile/63/x001/000.p/1", "tile/entries/x001/000.p/1"},
		{Tile{L: 1, N: ^uint64(0), W: 256}, "tile/1/x018/x446/x744/x073/x709/x551/615", "tile/entries/x018/x446/x744/x073/x709/x551/615"},
	} {
		if got := c.t.Path(); got != c.path {
			t.Errorf("%+v.Path() = %q, want %q", c.t, got, c.path)
		}
		if got := c.t.EntriesPath(); got != c.entries {
			t.Errorf("%+v.EntriesPath() = %q, want %q", c.t, got, c.entries)
		}
		got, e, err := ParsePath(c.path)
		if err != nil || e || got != c.t {
			t.Errorf("ParsePath(%q) = %+v, %v, %v", c.path, got, e, err)
		}
		got, e, err = ParsePath(c.entries)
		want := c.t
		want.L = 0
		if err != nil || !e || got != want {
			t.Errorf("ParsePath(%q) = %+v, %v, %v", c.entries, got, e, err)
		}
	}
}

func TestParsePathRejects(t *testing.T) {
	for _, p := range []string{
		"", "tile", "tile/", "tile/0", "tile/0/", "tile/00/000", "tile/64/000", "tile/-1/000",
		"tile/0/1", "tile/0/0001", "tile/0/x000/001", "tile/0/001/002", "tile/0/x1/002",
		"tile/0/000.p/0", "tile/0/000.p/256", "tile/0/000.p/08", "tile/0/000.p/", "tile/0/000.p",
		"tile/entries/abc", "tile/data/000", "tiles/0/000", "/tile/0/000", "tile/0/000/",
		"tile/0/x018/x446/x744/x073/x709/x551/616", "tile/0/x001/x002/x003/x004/x005/x006/x007/008",
		"tile/0/0a0", "tile/0/x00a/000", "tile/ 1/000",
	} {
		if tt, _, err := ParsePath(p); !errors.Is(err, ErrPath) {
			t.Errorf("ParsePath(%q) = %+v, %v; want ErrPath", p, tt, err)
		}
	}
}

// TestTileForSizeSpec checks the examples of the tlog-tiles spec.
func TestTileForSizeSpec(t *testing.T) {
	count := func(size uint64) map[string]int {
		m := map[string]int{}
		for l := 0; l <= MaxLevel; l++ {
			for n := uint64(0); ; n++ {
				tt, ok := TileForSize(l, n, size)
				if !ok {
					break
				}
				m[fmt.Sprintf("L%d W%d", l, tt.W)]++
			}
		}
		return m
	}
	// "a tree of size 70,000 will be represented by 273 full level 0 tiles,
	// one partial level 0 tile of width 112, one full level 1 tile, one
	// partial level 1 tile of width 17, and one partial level 2 tile of width 1."
	want := map[string]int{"L0 W256": 273, "L0 W112": 1, "L1 W256": 1, "L1 W17": 1, "L2 W1": 1}
	if got := count(70000); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("size 70000: %v, want %v", got, want)
	}
	want = map[string]int{"L0 W256": 1, "L1 W1": 1}
	if got := count(256); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("size 256: %v, want %v", got, want)
	}
	if got := count(0); len(got) != 0 {
		t.Errorf("size 0: %v, want no tiles", got)
	}
}

func TestBundleRoundTrip(t *testing.T) {
	leaves := [][]byte{{}, []byte("a"), bytes.Repeat([]byte{7}, MaxBundledLeaf)}
	b, err := MarshalBundle(leaves)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseBundle(b, 3)
	if err != nil || len(got) != 3 || !bytes.Equal(got[2], leaves[2]) || len(got[0]) != 0 || string(got[1]) != "a" {
		t.Fatalf("ParseBundle = %d leaves, %v", len(got), err)
	}
	for _, c := range []struct {
		b    []byte
		want int
	}{{b, 2}, {b, 4}, {b[:len(b)-1], 3}, {append(b, 0), 3}, {nil, 1}, {[]byte{0}, 1}, {b, 0}, {b, 257}} {
		if _, err := ParseBundle(c.b, c.want); !errors.Is(err, ErrBundle) {
			t.Errorf("ParseBundle(%d bytes, %d) = %v, want ErrBundle", len(c.b), c.want, err)
		}
	}
	if _, err := MarshalBundle([][]byte{make([]byte, MaxBundledLeaf+1)}); !errors.Is(err, ErrLeafTooLarge) {
		t.Errorf("MarshalBundle(65536-byte leaf) = %v, want ErrLeafTooLarge", err)
	}
}

func testLeaves(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(fmt.Sprintf("leaf %d %s", i, strings.Repeat("x", i%17)))
	}
	return out
}

// tlogHashes computes the tlog stored hashes of leaves with
// golang.org/x/mod/sumdb/tlog, independently of this package.
func tlogHashes(t testing.TB, leaves [][]byte) tlog.HashReaderFunc {
	var stored []tlog.Hash
	for i, l := range leaves {
		hs, err := tlog.StoredHashes(int64(i), l, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
			out := make([]tlog.Hash, len(idx))
			for j, x := range idx {
				out[j] = stored[x]
			}
			return out, nil
		}))
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, hs...)
	}
	return func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for j, x := range idx {
			out[j] = stored[x]
		}
		return out, nil
	}
}

// TestHashesAgainstTlog compares roots and level-1+ tiles with the ones
// x/mod/sumdb/tlog computes.
func TestHashesAgainstTlog(t *testing.T) {
	n := 256*256 + 3*256 + 5
	if testing.Short() {
		n = 3*256 + 5
	}
	leaves := testLeaves(n)
	hr := tlogHashes(t, leaves)
	var h Hashes
	if h.Root() != Hash(rfc6962.DefaultHasher.EmptyRoot()) {
		t.Fatal("empty root")
	}
	check := func(size int) {
		want, err := tlog.TreeHash(int64(size), hr)
		if err != nil {
			t.Fatal(err)
		}
		if got := h.Root(); got != Hash(want) {
			t.Fatalf("root at size %d differs from tlog's", size)
		}
		for l := 1; l <= 2; l++ {
			for nn := uint64(0); ; nn++ {
				tt, ok := TileForSize(l, nn, uint64(size))
				if !ok {
					break
				}
				got, err := h.Tile(tt)
				if err != nil {
					t.Fatalf("size %d: %v", size, err)
				}
				want, err := tlog.ReadTileData(tlog.Tile{H: 8, L: tt.L, N: int64(tt.N), W: tt.W}, hr)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("size %d: tile %s differs from tlog's", size, tt.Path())
				}
			}
		}
	}
	done := 0
	for _, size := range []int{1, 2, 3, 255, 256, 257, 511, 512, 700, 3*256 + 5, 256 * 256, n} {
		if size > n {
			continue
		}
		h.Append(leaves[done:size])
		done = size
		check(size)
	}
	tt := Tile{L: 1, N: 0, W: 256}
	if _, err := h.Tile(Tile{L: 1, N: 1, W: 256}); err == nil && n < 2*256*256 {
		t.Errorf("Tile(%s) beyond the tree did not fail", tt.Path())
	}
}

// memLog is a LeafReader over a slice; it returns at most 100 leaves a call.
type memLog struct {
	mu     sync.Mutex
	leaves [][]byte
}

func (m *memLog) Entries(_ context.Context, start, end uint64) ([][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if start > end || end > uint64(len(m.leaves)) {
		return nil, klog.ErrRange
	}
	return m.leaves[start:min(end, start+100)], nil
}

func (m *memLog) add(ls [][]byte) {
	m.mu.Lock()
	m.leaves = append(m.leaves, ls...)
	m.mu.Unlock()
}

type testSigner struct {
	signer   note.Signer
	verifier note.Verifier
}

func newTestSigner(t testing.TB) *testSigner {
	skey, vkey, err := klog.GenerateKey(rand.Reader, "example.org/log")
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return &testSigner{s, v}
}

func (s *testSigner) sign(t testing.TB, leaves [][]byte) ([]byte, Hash) {
	var h Hashes
	h.Append(leaves)
	root := h.Root()
	cp, err := klog.SignCheckpoint(klog.Checkpoint{Origin: "example.org/log", Size: uint64(len(leaves)), Hash: root}, s.signer)
	if err != nil {
		t.Fatal(err)
	}
	return cp, root
}

// c2spReader is a tlog.TileReader that fetches C2SP paths, written
// independently of this package's paths: tlog's own path for height 8
// is tile/8/<L>/<N>[.p/<W>]; C2SP drops the height element.
type c2spReader struct {
	t   testing.TB
	url string
}

func (r *c2spReader) Height() int { return 8 }
func (r *c2spReader) ReadTiles(ts []tlog.Tile) ([][]byte, error) {
	var out [][]byte
	for _, tt := range ts {
		p := "tile/" + strings.TrimPrefix(tt.Path(), "tile/8/")
		resp, err := http.Get(r.url + "/" + p)
		if err != nil {
			return nil, err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return nil, fmt.Errorf("GET %s: %s", p, resp.Status)
		}
		out = append(out, b)
	}
	return out, nil
}
func (r *c2spReader) SaveTiles([]tlog.Tile, [][]byte) {}

// TestServerWithTlogClient serves a growing log and reads it back with
// x/mod/sumdb/tlog's TileHashReader (root, inclusion and consistency
// proofs verified with transparency-dev/merkle) and with Client.
func TestServerWithTlogClient(t *testing.T) {
	ctx := context.Background()
	sg := newTestSigner(t)
	all := testLeaves(256*3 + 17)
	ml := &memLog{}
	srv := NewServer(ml)
	ts := httptest.NewServer(srv)
	defer ts.Close()

	if resp, err := http.Get(ts.URL + "/checkpoint"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("checkpoint before Sync: %v %v", resp.Status, err)
	}
	cl := NewClient(ts.URL+"/", nil)
	var prevSize uint64
	var prevRoot Hash
	for _, size := range []int{1, 5, 256, 300, 512, 256*3 + 17} {
		ml.add(all[len(ml.leaves):size])
		cp, root := sg.sign(t, all[:size])
		var seen []uint64
		if err := srv.Sync(ctx, cp, func(first uint64, ls [][]byte) { seen = append(seen, first) }); err != nil {
			t.Fatalf("Sync(%d): %v", size, err)
		}
		if len(seen) == 0 || seen[0] != prevSize {
			t.Fatalf("onLeaves saw batches at %v, want the first at %d", seen, prevSize)
		}
		tree := tlog.Tree{N: int64(size), Hash: tlog.Hash(root)}
		thr := tlog.TileHashReader(tree, &c2spReader{t: t, url: ts.URL})
		got, err := tlog.TreeHash(int64(size), thr)
		if err != nil || Hash(got) != root {
			t.Fatalf("size %d: tlog TreeHash via tiles = %x, %v", size, got[:4], err)
		}
		for _, idx := range []int{0, size / 2, size - 1} {
			p, err := tlog.ProveRecord(int64(size), int64(idx), thr)
			if err != nil {
				t.Fatal(err)
			}
			lh := rfc6962.DefaultHasher.HashLeaf(all[idx])
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(idx), uint64(size), lh, hashes(p), root[:]); err != nil {
				t.Fatalf("size %d: inclusion of %d: %v", size, idx, err)
			}
		}
		// Our client.
		if b, err := cl.Checkpoint(ctx); err != nil || !bytes.Equal(b, cp) {
			t.Fatalf("Client.Checkpoint: %v", err)
		}
		if prevSize > 0 {
			p, err := cl.ConsistencyProof(ctx, prevSize, uint64(size))
			if err != nil {
				t.Fatal(err)
			}
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, prevSize, uint64(size), p, prevRoot[:], root[:]); err != nil {
				t.Fatalf("consistency %d -> %d: %v", prevSize, size, err)
			}
		}
		p, err := cl.InclusionProof(ctx, uint64(size-1), uint64(size))
		if err != nil {
			t.Fatal(err)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(size-1), uint64(size), rfc6962.DefaultHasher.HashLeaf(all[size-1]), p, root[:]); err != nil {
			t.Fatal(err)
		}
		var read [][]byte
		for n := uint64(0); n < uint64(size); {
			ls, err := cl.Entries(ctx, n, uint64(size))
			if err != nil {
				t.Fatal(err)
			}
			read = append(read, ls...)
			n += uint64(len(ls))
		}
		for i := range read {
			if !bytes.Equal(read[i], all[i]) {
				t.Fatalf("entry %d differs", i)
			}
		}
		prevSize, prevRoot = uint64(size), root
	}
	if _, err := cl.Entries(ctx, 0, prevSize+1); !errors.Is(err, klog.ErrRange) {
		t.Errorf("Entries past the checkpoint: %v, want ErrRange", err)
	}

	// Headers, 404s, gzip.
	for _, c := range []struct {
		path, cache string
		status      int
	}{
		{"/checkpoint", CacheCheckpoint, 200},
		{"/tile/0/000", CacheImmutable, 200},
		{"/tile/0/003.p/17", CachePartial, 200},
		{"/tile/0/003.p/5", CachePartial, 200}, // an older size's partial tile
		{"/tile/1/000.p/3", CachePartial, 200},
		{"/tile/entries/001", CacheImmutable, 200},
		{"/tile/entries/003.p/17", CachePartial, 200},
		{"/tile/0/003.p/18", "", 404},
		{"/tile/0/004.p/1", "", 404},
		{"/tile/1/000", "", 404},
		{"/tile/2/000.p/1", "", 404},
		{"/tile/0/3", "", 404},
		{"/other", "", 404},
	} {
		resp, err := http.Get(ts.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status || resp.Header.Get("Cache-Control") != c.cache {
			t.Errorf("GET %s: %d %q, want %d %q", c.path, resp.StatusCode, resp.Header.Get("Cache-Control"), c.status, c.cache)
		}
	}
	req, _ := http.NewRequest("GET", ts.URL+"/tile/entries/000", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("entry bundle not gzipped for a gzip client")
	}
	if resp, _ := http.Post(ts.URL+"/checkpoint", "text/plain", nil); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}
}

func hashes(p []tlog.Hash) [][]byte {
	out := make([][]byte, len(p))
	for i := range p {
		out[i] = p[i][:]
	}
	return out
}

// TestSyncMismatch: leaves that do not hash to the checkpoint's root are
// never served.
func TestSyncMismatch(t *testing.T) {
	ctx := context.Background()
	sg := newTestSigner(t)
	all := testLeaves(300)
	ml := &memLog{leaves: append([][]byte(nil), all[:200]...)}
	srv := NewServer(ml)
	cp, _ := sg.sign(t, all[:200])
	if err := srv.Sync(ctx, cp, nil); err != nil {
		t.Fatal(err)
	}
	// The log rewrites leaf 250 before the next checkpoint.
	bad := append([][]byte(nil), all[200:]...)
	bad[50] = []byte("forged")
	ml.add(bad)
	cp2, _ := sg.sign(t, all)
	if err := srv.Sync(ctx, cp2, nil); !errors.Is(err, ErrMismatch) {
		t.Fatalf("Sync with a forged leaf: %v, want ErrMismatch", err)
	}
	if got, size := srv.Checkpoint(); !bytes.Equal(got, cp) || size != 200 {
		t.Fatalf("served checkpoint changed after a failed Sync (size %d)", size)
	}
	if _, err := srv.ReadBundle(ctx, Tile{N: 0, W: 201}); err == nil {
		t.Error("bundle past the served size was served")
	}
	cp0, _ := sg.sign(t, all[:100])
	if err := srv.Sync(ctx, cp0, nil); !errors.Is(err, ErrMismatch) {
		t.Fatalf("Sync to a smaller checkpoint: %v, want ErrMismatch", err)
	}
}

// TestExport writes the tiles to a directory, serves it with a plain file
// server and reads it back with Client.
func TestExport(t *testing.T) {
	ctx := context.Background()
	sg := newTestSigner(t)
	all := testLeaves(600)
	ml := &memLog{leaves: append([][]byte(nil), all[:300]...)}
	srv := NewServer(ml)
	cp, _ := sg.sign(t, all[:300])
	if err := srv.Sync(ctx, cp, nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st, err := srv.Export(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Tiles != 3 || st.Bundles != 2 || st.Skipped != 0 { // 0/000 0/001.p/44 1/000.p/1
		t.Errorf("first export: %+v", st)
	}
	ml.add(all[300:])
	cp2, root2 := sg.sign(t, all)
	if err := srv.Sync(ctx, cp2, nil); err != nil {
		t.Fatal(err)
	}
	if st, err = srv.Export(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if st.Skipped != 2 || st.Tiles != 3 || st.Bundles != 2 { // new: 0/001 0/002.p/88 1/000.p/2
		t.Errorf("second export: %+v", st)
	}
	for _, f := range []string{"checkpoint", "tile/0/000", "tile/0/001", "tile/0/002.p/88", "tile/1/000.p/2", "tile/entries/002.p/88"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	fs := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer fs.Close()
	cl := NewClient(fs.URL, nil)
	if _, err := cl.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	var h Hashes
	for n := uint64(0); n < 600; {
		ls, err := cl.Entries(ctx, n, 600)
		if err != nil {
			t.Fatal(err)
		}
		h.Append(ls)
		n += uint64(len(ls))
	}
	if h.Root() != root2 {
		t.Error("exported entries do not hash to the checkpoint root")
	}
	if _, err := cl.ConsistencyProof(ctx, 300, 600); err != nil {
		t.Error(err)
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"tile/0/x001/x234/067", "tile/entries/005.p/17", "tile/63/000", "tile/0/x000/001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		tt, entries, err := ParsePath(p)
		if err != nil {
			if !errors.Is(err, ErrPath) {
				t.Fatalf("error does not wrap ErrPath: %v", err)
			}
			return
		}
		back := tt.Path()
		if entries {
			back = tt.EntriesPath()
		}
		if back != p {
			t.Fatalf("ParsePath(%q) = %+v, which prints as %q", p, tt, back)
		}
	})
}

func FuzzParseBundle(f *testing.F) {
	b, _ := MarshalBundle(testLeaves(3))
	f.Add(b, 3)
	f.Add([]byte{0, 0}, 1)
	f.Add([]byte{0, 5, 1}, 1)
	f.Fuzz(func(t *testing.T, b []byte, want int) {
		leaves, err := ParseBundle(b, want)
		if err != nil {
			if !errors.Is(err, ErrBundle) {
				t.Fatalf("error does not wrap ErrBundle: %v", err)
			}
			return
		}
		again, err := MarshalBundle(leaves)
		if err != nil || !bytes.Equal(again, b) || len(leaves) != want {
			t.Fatalf("re-marshal differs (%v)", err)
		}
	})
}
