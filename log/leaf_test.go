package log

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/log")

func goldenPath(name string) string { return filepath.Join("..", "testdata", "log", name) }

// leafVector is one golden leaf in testdata/log/leaves.json.
type leafVector struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	Index     string `json:"index,omitempty"`
	Version   uint64 `json:"version,omitempty"`
	PrevHash  string `json:"prev_hash,omitempty"`
	Update    uint8  `json:"update,omitempty"`
	Payload   string `json:"payload,omitempty"`
	Epoch     uint64 `json:"epoch,omitempty"`
	MapRoot   string `json:"map_root,omitempty"`
	Timestamp uint64 `json:"timestamp,omitempty"`
	Leaf      string `json:"leaf"`
	EntryHash string `json:"entry_hash"`
}

func h32(b byte) (h [32]byte) {
	for i := range h {
		h[i] = b + byte(i)
	}
	return h
}

func mustHex32(t *testing.T, s string) (h [32]byte) {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		t.Fatalf("bad 32-byte hex %q", s)
	}
	copy(h[:], b)
	return h
}

func vectorLeaves() []Leaf {
	create := &AccountUpdate{Index: h32(0x10), Version: 1, Update: UpdateCreate, Payload: []byte("signed AccountState v1")}
	createLeaf, _ := create.Marshal()
	upd := &AccountUpdate{Index: h32(0x10), Version: 2, PrevHash: EntryHash(createLeaf), Update: UpdateUpdate, Payload: []byte("signed AccountState v2")}
	updLeaf, _ := upd.Marshal()
	reset := &AccountUpdate{Index: h32(0x10), Version: 3, PrevHash: EntryHash(updLeaf), Update: UpdateReset, Payload: []byte("reset authorization")}
	return []Leaf{
		create, upd, reset,
		&AccountUpdate{Index: h32(0xF0), Version: 1, Update: UpdateCreate, Payload: []byte{}},
		&EpochRecord{Epoch: 0, MapRoot: h32(0x80), Timestamp: 1700000000},
		&EpochRecord{Epoch: 1<<64 - 1, MapRoot: [32]byte{}, Timestamp: 1<<64 - 1},
	}
}

var vectorNames = []string{"create", "update", "reset", "create-empty-payload", "epoch-0", "epoch-max"}

func toVector(t *testing.T, name string, l Leaf) leafVector {
	b, err := l.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	eh := EntryHash(b)
	v := leafVector{Name: name, Leaf: hex.EncodeToString(b), EntryHash: hex.EncodeToString(eh[:])}
	switch l := l.(type) {
	case *AccountUpdate:
		v.Kind, v.Index, v.Version, v.PrevHash, v.Update, v.Payload = "AccountUpdate", hex.EncodeToString(l.Index[:]), l.Version, hex.EncodeToString(l.PrevHash[:]), uint8(l.Update), hex.EncodeToString(l.Payload)
	case *EpochRecord:
		v.Kind, v.Epoch, v.MapRoot, v.Timestamp = "EpochRecord", l.Epoch, hex.EncodeToString(l.MapRoot[:]), l.Timestamp
	}
	return v
}

func TestLeafGolden(t *testing.T) {
	path := goldenPath("leaves.json")
	if *update {
		var vs []leafVector
		for i, l := range vectorLeaves() {
			vs = append(vs, toVector(t, vectorNames[i], l))
		}
		b, _ := json.MarshalIndent(vs, "", "  ")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var vs []leafVector
	if err := json.Unmarshal(data, &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs) != len(vectorNames) {
		t.Fatalf("%d vectors in %s, want %d", len(vs), path, len(vectorNames))
	}
	for _, v := range vs {
		// Build the value from the vector's fields, independently of the code that wrote it.
		var l Leaf
		switch v.Kind {
		case "AccountUpdate":
			p, _ := hex.DecodeString(v.Payload)
			l = &AccountUpdate{Index: mustHex32(t, v.Index), Version: v.Version, PrevHash: mustHex32(t, v.PrevHash), Update: UpdateKind(v.Update), Payload: p}
		case "EpochRecord":
			l = &EpochRecord{Epoch: v.Epoch, MapRoot: mustHex32(t, v.MapRoot), Timestamp: v.Timestamp}
		default:
			t.Fatalf("%s: unknown kind %q", v.Name, v.Kind)
		}
		got, err := l.Marshal()
		if err != nil {
			t.Fatalf("%s: Marshal: %v", v.Name, err)
		}
		if hex.EncodeToString(got) != v.Leaf {
			t.Errorf("%s: Marshal = %x, golden %s", v.Name, got, v.Leaf)
		}
		want, _ := hex.DecodeString(v.Leaf)
		parsed, err := ParseLeaf(want)
		if err != nil {
			t.Fatalf("%s: ParseLeaf: %v", v.Name, err)
		}
		if re, _ := parsed.Marshal(); !bytes.Equal(re, want) {
			t.Errorf("%s: re-encoding differs", v.Name)
		}
		if eh := EntryHash(want); hex.EncodeToString(eh[:]) != v.EntryHash {
			t.Errorf("%s: EntryHash = %x, golden %s", v.Name, eh, v.EntryHash)
		}
	}
	// The update chain of the vectors is intact.
	u2, _ := hex.DecodeString(vs[1].Leaf)
	u, _ := ParseAccountUpdate(u2)
	if hex.EncodeToString(u.PrevHash[:]) != vs[0].EntryHash {
		t.Errorf("update's PrevHash is not the create's entry hash")
	}
}

func TestLeafRejects(t *testing.T) {
	good, _ := (&AccountUpdate{Index: h32(1), Version: 2, PrevHash: h32(2), Update: UpdateUpdate, Payload: []byte("xy")}).Marshal()
	epoch, _ := (&EpochRecord{Epoch: 7, MapRoot: h32(3), Timestamp: 9}).Marshal()
	mut := func(b []byte, f func([]byte) []byte) []byte { return f(bytes.Clone(b)) }
	cases := map[string][]byte{
		"empty":                  {},
		"unknown kind":           mut(epoch, func(b []byte) []byte { b[0] = 3; return b }),
		"kind zero":              mut(epoch, func(b []byte) []byte { b[0] = 0; return b }),
		"epoch truncated":        epoch[:len(epoch)-1],
		"epoch trailing":         append(bytes.Clone(epoch), 0),
		"update truncated fixed": good[:40],
		"update payload short":   good[:len(good)-1],
		"update trailing":        append(bytes.Clone(good), 0),
		"version 0":              mut(good, func(b []byte) []byte { copy(b[33:41], make([]byte, 8)); return b }),
		"update kind 0":          mut(good, func(b []byte) []byte { b[73] = 0; return b }),
		"update kind 4":          mut(good, func(b []byte) []byte { b[73] = 4; return b }),
		"create at version 2":    mut(good, func(b []byte) []byte { b[73] = 1; return b }),
		"zero prev at version 2": mut(good, func(b []byte) []byte { copy(b[41:73], make([]byte, 32)); return b }),
		"payload length huge":    mut(good, func(b []byte) []byte { b[74] = 0xff; return b }),
		"payload over bound": func() []byte {
			b := bytes.Clone(good[:accountUpdateFixed])
			b[74], b[75], b[76], b[77] = 0, 1, 0, 1
			return append(b, make([]byte, MaxPayloadSize+1)...)
		}(),
	}
	for name, b := range cases {
		if _, err := ParseLeaf(b); !errors.Is(err, ErrMalformedLeaf) {
			t.Errorf("%s: ParseLeaf = %v, want ErrMalformedLeaf", name, err)
		}
	}
	if _, err := ParseEpochRecord(good); err == nil {
		t.Error("ParseEpochRecord accepted an account update")
	}
	if _, err := ParseAccountUpdate(epoch); err == nil {
		t.Error("ParseAccountUpdate accepted an epoch record")
	}
	bad := []*AccountUpdate{
		{Version: 1, Update: UpdateCreate, PrevHash: h32(1)},
		{Version: 2, Update: UpdateReset},
		{Version: 1, Update: UpdateUpdate},
		{Version: 1, Update: UpdateCreate, Payload: make([]byte, MaxPayloadSize+1)},
	}
	for i, u := range bad {
		if _, err := u.Marshal(); !errors.Is(err, ErrMalformedLeaf) {
			t.Errorf("bad update %d: Marshal = %v, want ErrMalformedLeaf", i, err)
		}
	}
	max := &AccountUpdate{Version: 1, Update: UpdateCreate, Payload: make([]byte, MaxPayloadSize)}
	b, err := max.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseLeaf(b); err != nil {
		t.Errorf("payload at the bound rejected: %v", err)
	}
}

func FuzzParseLeaf(f *testing.F) {
	for _, l := range vectorLeaves() {
		b, _ := l.Marshal()
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{3})
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseLeaf(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedLeaf) {
				t.Fatalf("error %v does not wrap ErrMalformedLeaf", err)
			}
			return
		}
		re, err := l.Marshal()
		if err != nil {
			t.Fatalf("Marshal of parsed leaf: %v", err)
		}
		if !bytes.Equal(re, b) {
			t.Fatalf("round trip: %x -> %x", b, re)
		}
		if l.Kind() != LeafKind(b[0]) {
			t.Fatalf("Kind %d for tag %d", l.Kind(), b[0])
		}
	})
}
