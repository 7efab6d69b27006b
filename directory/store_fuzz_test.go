package directory

import (
	"bytes"
	"errors"
	"testing"

	klog "github.com/keyline/keyline/log"
)

// FuzzParseUserRecord: parseUserRecord never panics and fails only with
// errCorrupt; what it accepts re-marshals to exactly its input, a leaf it
// accepts is an AccountUpdate of the record's index and version, and the
// record does not alias the input (bbolt values are only valid inside their
// transaction). A record built from the fuzzed fields always round-trips,
// so the fuzzer also exercises the accepting path.
func FuzzParseUserRecord(f *testing.F) {
	index := [32]byte{7}
	leaf := testLeaf(index, 3)
	pi := bytes.Repeat([]byte{0xaa}, vrfProofSize)
	good := (&userRecord{Proof: pi, Index: index, Version: 3, LogIndex: 9}).marshal()
	withLeaf := (&userRecord{Proof: pi, Index: index, Version: 3, LogIndex: 9, Leaf: leaf}).marshal()
	wrongVersion := (&userRecord{Proof: pi, Index: index, Version: 4, LogIndex: 9, Leaf: leaf}).marshal()
	for _, raw := range [][]byte{good, withLeaf, wrongVersion, good[:userRecordMin-1], append(append(bytes.Clone(pi), index[:]...), 0x83, 0x00, 0x09), append(bytes.Clone(good), 1), nil} {
		f.Add(raw, uint64(3), uint64(9))
	}
	f.Add(good, ^uint64(0), ^uint64(0))
	f.Fuzz(func(t *testing.T, raw []byte, version, logIndex uint64) {
		in := bytes.Clone(raw)
		r, err := parseUserRecord(in)
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
			if r.Leaf != nil {
				u, err := klog.ParseAccountUpdate(r.Leaf)
				if err != nil || u.Index != r.Index || u.Version != r.Version {
					t.Fatalf("accepted a leaf that is not the record's AccountUpdate: %v", err)
				}
			}
			for i := range in {
				in[i] ^= 0xff
			}
			if !bytes.Equal(r.marshal(), raw) {
				t.Fatal("the parsed record aliases its input")
			}
		}

		wants := []userRecord{{Proof: pi, Index: index, Version: version, LogIndex: logIndex}}
		if version > 0 {
			wants = append(wants, userRecord{Proof: pi, Index: index, Version: version, LogIndex: logIndex, Leaf: testLeaf(index, version)})
		}
		for _, want := range wants {
			enc := want.marshal()
			got, err := parseUserRecord(enc)
			if err != nil {
				t.Fatalf("a well-formed record does not parse: %v", err)
			}
			if !bytes.Equal(got.Proof, pi) || got.Index != index || got.Version != version || got.LogIndex != logIndex || !bytes.Equal(got.Leaf, want.Leaf) {
				t.Fatalf("parsed %+v, want %+v", got, want)
			}
		}
	})
}

// testLeaf returns an AccountUpdate leaf of index and version (> 0).
func testLeaf(index [32]byte, version uint64) []byte {
	u := &klog.AccountUpdate{Index: index, Version: version, Update: klog.UpdateCreate, Payload: []byte{2}}
	if version > 1 {
		u.Update, u.PrevHash = klog.UpdateUpdate, [32]byte{1}
	}
	leaf, err := u.Marshal()
	if err != nil {
		panic(err)
	}
	return leaf
}

// FuzzParseUserRecordV2: parseUserRecordV2 (the layout-2 records the
// conversion to layout 3 reads) never panics and fails only with
// errCorrupt; what it accepts re-marshals (marshalV2) to exactly its input
// and re-encodes in layout 3 to a record parseUserRecord reads back with
// the same fields, and the record does not alias the input.
func FuzzParseUserRecordV2(f *testing.F) {
	index := [32]byte{7}
	pi := bytes.Repeat([]byte{0xaa}, vrfProofSize)
	good := (&userRecord{Proof: pi, Index: index, Version: 3, LogIndex: 9}).marshalV2()
	withLeaf := (&userRecord{Proof: pi, Index: index, Version: 3, LogIndex: 9, Leaf: testLeaf(index, 3)}).marshalV2()
	for _, raw := range [][]byte{good, withLeaf, good[:userRecordV2Size-1], nil} {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		in := bytes.Clone(raw)
		r, err := parseUserRecordV2(in)
		if err != nil {
			if !errors.Is(err, errCorrupt) || r != nil {
				t.Fatalf("error %v (record %v)", err, r)
			}
			return
		}
		for i := range in {
			in[i] ^= 0xff
		}
		if got := r.marshalV2(); !bytes.Equal(got, raw) {
			t.Fatalf("round trip:\n in %x\nout %x", raw, got)
		}
		if r.Leaf != nil {
			return // parseUserRecord checks a leaf (FuzzParseUserRecord)
		}
		v3, err := parseUserRecord(r.marshal())
		if err != nil || !bytes.Equal(v3.Proof, r.Proof) || v3.Index != r.Index || v3.Version != r.Version || v3.LogIndex != r.LogIndex || v3.Leaf != nil {
			t.Fatalf("layout-3 re-encoding: %+v %v, want %+v", v3, err, r)
		}
	})
}
