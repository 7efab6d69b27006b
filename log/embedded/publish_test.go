package embedded_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/keyline/keyline/log"
	"github.com/keyline/keyline/log/embedded"
	"github.com/keyline/keyline/log/logtest"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
)

const origin = "keyline.test/log"

type seedReader struct{ seed string }

func (r seedReader) Read(p []byte) (int, error) {
	h := sha256.Sum256([]byte(r.seed))
	for i := range p {
		p[i] = h[i%32]
	}
	return len(p), nil
}

func keys(t testing.TB, seed string) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := log.GenerateKey(seedReader{seed}, origin)
	if err != nil {
		t.Fatal(err)
	}
	return signerVerifier(t, skey, vkey)
}

func signerVerifier(t testing.TB, skey, vkey string) (note.Signer, note.Verifier) {
	t.Helper()
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

func appendLeaves(t testing.TB, l log.Backend, from, to uint64) {
	t.Helper()
	var leaves [][]byte
	for i := from; i < to; i++ {
		leaves = append(leaves, logtest.Leaf(i))
	}
	if err := l.Append(context.Background(), from, leaves); err != nil {
		t.Fatalf("Append [%d, %d): %v", from, to, err)
	}
}

func open(t testing.TB, path string) *embedded.Log {
	t.Helper()
	l, err := embedded.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestPublish(t *testing.T) {
	ctx := t.Context()
	signer, verifier := keys(t, "publish")
	path := filepath.Join(t.TempDir(), "log.db")
	l := open(t, path)
	defer func() { l.Close() }()

	first, err := log.Publish(ctx, l, l, signer, verifier, origin)
	if err != nil {
		t.Fatalf("Publish of the empty log: %v", err)
	}
	c0, _, err := log.OpenCheckpoint(first, verifier, origin)
	if err != nil || c0.Size != 0 || !bytes.Equal(c0.Hash[:], rfc6962.DefaultHasher.EmptyRoot()) {
		t.Fatalf("empty checkpoint %+v, %v", c0, err)
	}
	appendLeaves(t, l, 0, 77)
	msg, err := log.Publish(ctx, l, l, signer, verifier, origin)
	if err != nil {
		t.Fatal(err)
	}
	c1, _, err := log.OpenCheckpoint(msg, verifier, origin)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := l.RootHash(ctx, 77)
	if c1.Size != 77 || !bytes.Equal(c1.Hash[:], root) {
		t.Fatalf("checkpoint %+v, root %x", c1, root)
	}
	again, err := log.Publish(ctx, l, l, signer, verifier, origin)
	if err != nil || !bytes.Equal(again, msg) {
		t.Fatalf("second Publish at the same size = %q, %v; want the same checkpoint", again, err)
	}
	// Reopen: the checkpoint survives and is still the latest.
	l.Close()
	l = open(t, path)
	latest, err := l.LatestCheckpoint(ctx)
	if err != nil || !bytes.Equal(latest, msg) {
		t.Fatalf("after reopen LatestCheckpoint = %q, %v", latest, err)
	}
	appendLeaves(t, l, 77, 300)
	msg2, err := log.Publish(ctx, l, l, signer, verifier, origin)
	if err != nil {
		t.Fatal(err)
	}
	c2, _, _ := log.OpenCheckpoint(msg2, verifier, origin)
	p, err := l.ConsistencyProof(ctx, 77, 300)
	if err != nil {
		t.Fatal(err)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, c1.Size, c2.Size, p, c1.Hash[:], c2.Hash[:]); err != nil {
		t.Fatalf("published checkpoints inconsistent: %v", err)
	}
	hist, err := l.Checkpoints(ctx)
	if err != nil || len(hist) != 3 || !bytes.Equal(hist[0], first) || !bytes.Equal(hist[1], msg) || !bytes.Equal(hist[2], msg2) {
		t.Fatalf("checkpoint history has %d entries, %v", len(hist), err)
	}
	// Another key of the same name cannot continue the log.
	s2, v2 := keys(t, "impostor")
	if _, err := log.Publish(ctx, l, l, s2, v2, origin); err == nil {
		t.Fatal("Publish with a different key accepted the stored checkpoint")
	}
	// Compare-and-swap refuses a stale prev.
	if err := l.StoreCheckpoint(ctx, msg, []byte("x")); !errors.Is(err, log.ErrCheckpointConflict) {
		t.Fatalf("StoreCheckpoint with stale prev = %v", err)
	}
}

func TestPublishConcurrent(t *testing.T) {
	ctx := t.Context()
	signer, verifier := keys(t, "concurrent")
	l := open(t, filepath.Join(t.TempDir(), "log.db"))
	defer l.Close()
	var mu sync.Mutex
	bySize := map[uint64][]byte{}
	var wg sync.WaitGroup
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 15; i++ {
				msg, err := log.Publish(ctx, l, l, signer, verifier, origin)
				if errors.Is(err, log.ErrCheckpointConflict) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				c, _, _ := log.OpenCheckpoint(msg, verifier, origin)
				mu.Lock()
				if prev, ok := bySize[c.Size]; ok && !bytes.Equal(prev, msg) {
					t.Errorf("two different checkpoints at size %d", c.Size)
				}
				bySize[c.Size] = msg
				mu.Unlock()
			}
		}()
	}
	for i := uint64(0); i < 20; i++ {
		appendLeaves(t, l, i*10, i*10+10)
	}
	wg.Wait()
	if _, err := log.Publish(ctx, l, l, signer, verifier, origin); err != nil {
		t.Fatal(err)
	}
	hist, _ := l.Checkpoints(ctx)
	final, _ := l.RootHash(ctx, 200)
	for _, msg := range hist {
		c, _, err := log.OpenCheckpoint(msg, verifier, origin)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := l.ConsistencyProof(ctx, c.Size, 200)
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, c.Size, 200, p, c.Hash[:], final); err != nil {
			t.Errorf("stored checkpoint at size %d inconsistent with the final tree: %v", c.Size, err)
		}
	}
}

func nodeKey(level uint, index uint64) []byte {
	return append([]byte{byte(level)}, binary.BigEndian.AppendUint64(nil, index)...)
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// corruption rewrites (or, if mutate is nil, deletes) one stored value of a
// closed store through bbolt.
type corruption struct {
	name   string
	bucket string
	key    []byte
	mutate func(v []byte) []byte
}

func flipBit(bit int) func([]byte) []byte {
	return func(v []byte) []byte {
		v = bytes.Clone(v)
		v[(bit/8)%len(v)] ^= 1 << (bit % 8)
		return v
	}
}

// flipLeafBit flips a bit of leaf j's bytes inside a stored bundle.
func flipLeafBit(j, bit int) func([]byte) []byte {
	return func(v []byte) []byte {
		l, err := embedded.BundleLeaf(v, j)
		if err != nil || len(l) == 0 {
			panic(fmt.Sprintf("bundle leaf %d: %v", j, err))
		}
		v = bytes.Clone(v)
		l, _ = embedded.BundleLeaf(v, j)
		l[(bit/8)%len(l)] ^= 1 << (bit % 8)
		return v
	}
}

// TestPublishRefusesCorruption builds a store with a checkpoint signed at
// size 600 and 400 more leaves (bundles 0-2 and a tail of 232 leaves;
// stored nodes (8,0), (8,1), (8,2) and (9,0)), then for each corruption of a
// copy of the file checks that Publish fails, signs nothing and stores
// nothing.
func TestPublishRefusesCorruption(t *testing.T) {
	const signed, total = 600, 1000
	ctx := t.Context()
	signer, verifier := keys(t, "corruption")
	dir := t.TempDir()
	template := filepath.Join(dir, "template.db")
	l := open(t, template)
	appendLeaves(t, l, 0, signed)
	cp, err := log.Publish(ctx, l, l, signer, verifier, origin)
	if err != nil {
		t.Fatal(err)
	}
	appendLeaves(t, l, signed, total)
	l.Close()

	var cases []corruption
	// Every stored leaf the new checkpoint covers, and the last signed leaf:
	// in bundle 2 up to 767, in the tail from 768.
	for i := uint64(signed - 1); i < total; i++ {
		if i < 768 {
			cases = append(cases, corruption{fmt.Sprintf("leaf %d in bundle 2", i), "bundles", binary.BigEndian.AppendUint64(nil, 2), flipLeafBit(int(i%256), int(i*13)%2400)})
		} else {
			cases = append(cases, corruption{fmt.Sprintf("leaf %d in the tail", i), "tail", binary.BigEndian.AppendUint64(nil, i), flipBit(int(i*13) % 2400)})
		}
	}
	// The stored node of the signed tree's compact range, and the stored
	// node whose range reaches past the signed size.
	cases = append(cases,
		corruption{"signed compact node (9,0)", "nodes", nodeKey(9, 0), flipBit(7)},
		corruption{"node (8,2)", "nodes", nodeKey(8, 2), flipBit(100)},
		corruption{"truncated node", "nodes", nodeKey(8, 2), func(v []byte) []byte { return v[:31] }},
		corruption{"deleted node", "nodes", nodeKey(8, 2), nil},
		corruption{"deleted signed node", "nodes", nodeKey(9, 0), nil},
		corruption{"deleted tail leaf", "tail", binary.BigEndian.AppendUint64(nil, 875), nil},
		corruption{"deleted last signed bundle", "bundles", binary.BigEndian.AppendUint64(nil, 2), nil},
		corruption{"truncated bundle", "bundles", binary.BigEndian.AppendUint64(nil, 2), func(v []byte) []byte { return v[:len(v)-1] }},
		corruption{"bundle group hash", "bundles", binary.BigEndian.AppendUint64(nil, 2), func(v []byte) []byte {
			v = bytes.Clone(v)
			v[32*15+4] ^= 8 // group of leaves [752, 768)
			return v
		}},
		corruption{"bundle offset moved", "bundles", binary.BigEndian.AppendUint64(nil, 2), func(v []byte) []byte {
			v = bytes.Clone(v)
			v[512+4*(signed%256)+3] ^= 1 // the end of leaf 600 and start of 601
			return v
		}},
		corruption{"size shrunk below checkpoint", "meta", []byte("size"), func([]byte) []byte { return binary.BigEndian.AppendUint64(nil, signed-1) }},
		corruption{"signed checkpoint bit flip", "checkpoints", []byte("latest"), func(v []byte) []byte { v = bytes.Clone(v); v[len(origin)+2] ^= 1; return v }},
		corruption{"checkpoint signature bit flip", "checkpoints", []byte("latest"), func(v []byte) []byte { v = bytes.Clone(v); v[len(v)-10] ^= 4; return v }},
	)

	for i, c := range cases {
		path := filepath.Join(dir, fmt.Sprintf("c%d.db", i))
		copyFile(t, template, path)
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte(c.bucket))
			v := b.Get(c.key)
			if v == nil {
				return fmt.Errorf("no stored value %s/%x", c.bucket, c.key)
			}
			if c.mutate == nil {
				return b.Delete(c.key)
			}
			return b.Put(c.key, c.mutate(v))
		})
		db.Close()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		l := open(t, path)
		before, _ := l.Checkpoints(ctx)
		msg, err := log.Publish(ctx, l, l, signer, verifier, origin)
		after, _ := l.Checkpoints(ctx)
		latest, _ := l.LatestCheckpoint(ctx)
		l.Close()
		os.Remove(path)
		if err == nil {
			t.Errorf("%s: Publish succeeded with corrupt store:\n%s", c.name, msg)
			continue
		}
		if c.bucket != "checkpoints" && !errors.Is(err, log.ErrCorrupt) {
			t.Errorf("%s: error %v does not wrap log.ErrCorrupt", c.name, err)
		}
		if msg != nil || len(after) != len(before) || (c.bucket != "checkpoints" && !bytes.Equal(latest, cp)) {
			t.Errorf("%s: Publish stored or returned a checkpoint despite failing", c.name)
		}
	}
	t.Logf("%d corruptions refused", len(cases))

	// The uncorrupted template publishes.
	l = open(t, template)
	defer l.Close()
	if _, err := log.Publish(ctx, l, l, signer, verifier, origin); err != nil {
		t.Fatalf("uncorrupted store: %v", err)
	}
}
