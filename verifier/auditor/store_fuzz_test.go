package auditor

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParseAccountRec: parseAccountRec never panics and fails only with
// ErrCorruptState; what it accepts re-marshals to exactly its input and does
// not alias it (bbolt values are only valid inside their transaction). A
// record built from fields with a non-empty leaf (every stored record holds
// an AccountUpdate leaf) always round-trips.
func FuzzParseAccountRec(f *testing.F) {
	leaf := []byte("an AccountUpdate leaf")
	good := (&accountRec{version: 3, logIndex: 17, resets: 1, leaf: leaf}).marshal()
	for _, raw := range [][]byte{good, good[:25], good[:24], good[:7], nil} {
		f.Add(raw, uint64(3), uint64(17), uint64(1), leaf)
	}
	f.Add(good, ^uint64(0), ^uint64(0), ^uint64(0), []byte{0})
	f.Fuzz(func(t *testing.T, raw []byte, version, logIndex, resets uint64, leaf []byte) {
		in := bytes.Clone(raw)
		r, err := parseAccountRec(in)
		if err != nil {
			if !errors.Is(err, ErrCorruptState) {
				t.Fatalf("error %v does not wrap ErrCorruptState", err)
			}
			if r != nil {
				t.Fatalf("error %v with a record", err)
			}
		} else {
			if got := r.marshal(); !bytes.Equal(got, raw) {
				t.Fatalf("round trip:\n in %x\nout %x", raw, got)
			}
			for i := range in {
				in[i] ^= 0xff
			}
			if !bytes.Equal(r.marshal(), raw) {
				t.Fatal("the parsed record aliases its input")
			}
		}

		if len(leaf) == 0 {
			return
		}
		want := accountRec{version: version, logIndex: logIndex, resets: resets, leaf: bytes.Clone(leaf)}
		enc := want.marshal()
		got, err := parseAccountRec(enc)
		if err != nil {
			t.Fatalf("a well-formed record does not parse: %v", err)
		}
		if got.version != version || got.logIndex != logIndex || got.resets != resets || !bytes.Equal(got.leaf, leaf) {
			t.Fatalf("parsed %+v, want %+v", got, want)
		}
		if !bytes.Equal(got.marshal(), enc) {
			t.Fatal("parse -> marshal is not stable")
		}
	})
}
