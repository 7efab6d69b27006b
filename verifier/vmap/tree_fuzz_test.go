package vmap

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParseRef: parseRef never panics and fails only with ErrCorruptStore;
// what it accepts is a prefix of its input that re-encodes (ref.append) to
// exactly the bytes consumed, and parsing that encoding again gives the same
// ref with nothing left over. The node and root records that hold refs go
// through loadNode and loadRoot, which must also fail only with
// ErrCorruptStore.
func FuzzParseRef(f *testing.F) {
	s, _ := fuzzFixture()
	root, err := loadRoot(s)
	if err != nil {
		f.Fatal(err)
	}
	rootNode, err := loadNode(s, &root)
	if err != nil {
		f.Fatal(err)
	}
	leaf := ref{kind: refLeaf, key: idx(1), val: val(1, 1)}
	f.Add(root.append(nil))
	f.Add(leaf.append(nil))
	empty := ref{kind: refEmpty}
	f.Add(empty.append(nil))
	f.Add(rootNode.children[1].append(rootNode.children[0].append(nil)))
	f.Add(leaf.append(nil)[:40])
	f.Add(root.append(nil)[:65])
	f.Add([]byte{3})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, rest, err := parseRef(b)
		if err != nil {
			if !errors.Is(err, ErrCorruptStore) {
				t.Fatalf("error %v is not ErrCorruptStore", err)
			}
		} else {
			if len(rest) > len(b) || !bytes.Equal(b[len(b)-len(rest):], rest) {
				t.Fatalf("rest %x is not a suffix of %x", rest, b)
			}
			enc := r.append(nil)
			if !bytes.Equal(enc, b[:len(b)-len(rest)]) {
				t.Fatalf("round trip:\n in %x\nout %x", b[:len(b)-len(rest)], enc)
			}
			r2, rest2, err := parseRef(enc)
			if err != nil || r2 != r || len(rest2) != 0 {
				t.Fatalf("re-parse of %x: %+v rest %x err %v, want %+v", enc, r2, rest2, err, r)
			}
		}

		// The same bytes as a stored root and as the record of the root
		// node (under the fixture's root key, so the children are checked
		// against a real prefix).
		ms := NewMemStore()
		if err := ms.Put(rootKey, b); err != nil {
			t.Fatal(err)
		}
		if _, err := loadRoot(ms); err != nil && !errors.Is(err, ErrCorruptStore) {
			t.Fatalf("loadRoot: error %v is not ErrCorruptStore", err)
		}
		if err := ms.Put(nodeKey(root.depth, root.key), b); err != nil {
			t.Fatal(err)
		}
		n, err := loadNode(ms, &root)
		if err != nil {
			if !errors.Is(err, ErrCorruptStore) {
				t.Fatalf("loadNode: error %v is not ErrCorruptStore", err)
			}
			return
		}
		for i, c := range n.children {
			if c.kind == refEmpty || c.bits() <= int(n.depth) || bit(&c.key, int(n.depth)) != i {
				t.Fatalf("loadNode accepted misplaced child %d: %+v", i, c)
			}
		}
		if got := n.children[1].append(n.children[0].append(nil)); !bytes.Equal(got, b) {
			t.Fatalf("node record round trip:\n in %x\nout %x", b, got)
		}
	})
}
