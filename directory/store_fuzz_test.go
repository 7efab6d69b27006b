package directory

import (
	"bytes"
	"errors"
	"testing"

	klog "github.com/keyline/keyline/log"
)

// FuzzParseAccountRecord: parseAccountRecord never panics and fails only
// with errCorrupt; what it accepts re-marshals to exactly its input, and its
// Leaf does not alias the input (bbolt values are only valid inside their
// transaction). A record built from (version, logIndex, leaf) always
// round-trips, so the fuzzer also exercises the accepting path.
func FuzzParseAccountRecord(f *testing.F) {
	leaf := []byte("an AccountUpdate leaf (the parser only checks its entry hash)")
	good := (&accountRecord{Version: 7, LogIndex: 9, EntryHash: klog.EntryHash(leaf), Leaf: leaf}).marshal()
	empty := (&accountRecord{Version: 1, EntryHash: klog.EntryHash(nil)}).marshal()
	badHash := bytes.Clone(good)
	badHash[20] ^= 1
	for _, raw := range [][]byte{good, empty, badHash, good[:47], good[:48], nil} {
		f.Add(raw, uint64(7), uint64(9), leaf)
	}
	f.Add(good, ^uint64(0), ^uint64(0), []byte{})
	f.Fuzz(func(t *testing.T, raw []byte, version, logIndex uint64, leaf []byte) {
		in := bytes.Clone(raw)
		r, err := parseAccountRecord(in)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("error %v does not wrap errCorrupt", err)
			}
			if r != nil {
				t.Fatalf("error %v with a record", err)
			}
		} else {
			if got := r.marshal(); !bytes.Equal(got, raw) {
				t.Fatalf("round trip:\n in %x\nout %x", raw, got)
			}
			if r.EntryHash != klog.EntryHash(r.Leaf) {
				t.Fatal("accepted a record whose entry hash is not its leaf's")
			}
			for i := range in {
				in[i] ^= 0xff
			}
			if !bytes.Equal(r.marshal(), raw) {
				t.Fatal("the parsed record aliases its input")
			}
		}

		want := accountRecord{Version: version, LogIndex: logIndex, EntryHash: klog.EntryHash(leaf), Leaf: bytes.Clone(leaf)}
		enc := want.marshal()
		got, err := parseAccountRecord(enc)
		if err != nil {
			t.Fatalf("a well-formed record does not parse: %v", err)
		}
		if got.Version != version || got.LogIndex != logIndex || got.EntryHash != want.EntryHash || !bytes.Equal(got.Leaf, leaf) {
			t.Fatalf("parsed %+v, want %+v", got, want)
		}
		if !bytes.Equal(got.marshal(), enc) {
			t.Fatal("parse -> marshal is not stable")
		}
	})
}
