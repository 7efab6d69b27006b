package jsonapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/keyline/keyline/verifier"
)

func sampleLookup() *verifier.LookupBundle {
	h := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	return &verifier.LookupBundle{
		Checkpoint: []byte("keyline.local/dir\n5\nAAAA\n\n— sig\n"), VRFProof: h(1), MapProof: []byte{2, 3},
		EpochRecord: []byte{4}, EpochRecordInclusion: [][]byte{h(5), h(6)},
		AccountUpdate: []byte{7, 8}, AccountUpdateIndex: 0,
		Consistency: [][]byte{h(10)},
	}
}

func TestLookupRoundTrip(t *testing.T) {
	held := &verifier.LookupBundle{VRFProof: []byte("v"), MapProof: []byte("m"), AccountUpdate: []byte{7}, AccountUpdateIndex: 9}
	for _, b := range []*verifier.LookupBundle{sampleLookup(), {Checkpoint: []byte("c"), VRFProof: []byte("v"), MapProof: []byte("m"), EpochRecord: []byte("e"), EpochRecordInclusion: [][]byte{}}, held} {
		data, err := json.Marshal(FromLookup(b))
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseLookup(data)
		if err != nil {
			t.Fatal(err)
		}
		if len(b.EpochRecordInclusion) == 0 {
			got.EpochRecordInclusion = b.EpochRecordInclusion
		}
		if !reflect.DeepEqual(got, b) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, b)
		}
	}
	// A held-checkpoint bundle has no checkpoint fields at all.
	data, _ := json.Marshal(FromLookup(held))
	for _, f := range []string{`"checkpoint"`, `"epoch_record"`, `"epoch_record_inclusion"`, `"consistency"`} {
		if strings.Contains(string(data), f) {
			t.Errorf("held bundle encodes %s: %s", f, data)
		}
	}
	// An absent account has no account_update fields.
	data, _ = json.Marshal(FromLookup(&verifier.LookupBundle{Checkpoint: []byte("c")}))
	if strings.Contains(string(data), `"account_update"`) || strings.Contains(string(data), `"account_update_proof"`) {
		t.Errorf("absent account encodes account_update: %s", data)
	}
}

func TestHistoryRoundTrip(t *testing.T) {
	h := &verifier.HistoryBundle{Checkpoint: []byte("c"), VRFProof: []byte("v"), Entries: []verifier.HistoryEntry{{LogIndex: 3, Leaf: []byte{1}, Inclusion: [][]byte{{2}}}}}
	data, _ := json.Marshal(FromHistory(h))
	got, err := ParseHistory(data)
	if err != nil || !reflect.DeepEqual(got, h) {
		t.Errorf("history round trip: %+v, %v", got, err)
	}
}

func TestStrict(t *testing.T) {
	good, _ := json.Marshal(FromLookup(sampleLookup()))
	for name, doc := range map[string]string{
		"unknown field":   strings.Replace(string(good), `{`, `{"extra":1,`, 1),
		"old field":       strings.Replace(string(good), `{`, `{"account_update_proof":[],`, 1),
		"trailing data":   string(good) + "{}",
		"not base64":      strings.Replace(string(good), `"map_proof":"AgM="`, `"map_proof":"AgM*"`, 1),
		"base64 newline":  strings.Replace(string(good), `"map_proof":"AgM="`, `"map_proof":"Ag\nM="`, 1),
		"non-canonical":   strings.Replace(string(good), `"map_proof":"AgM="`, `"map_proof":"AgN="`, 1),
		"unpadded":        strings.Replace(string(good), `"map_proof":"AgM="`, `"map_proof":"AgM"`, 1),
		"wrong type":      strings.Replace(string(good), `"account_update_index":0`, `"account_update_index":"0"`, 1),
		"negative":        strings.Replace(string(good), `"account_update_index":0`, `"account_update_index":-1`, 1),
		"too many hashes": strings.Replace(string(good), `"consistency":[`, `"consistency":[`+strings.Repeat(`"AA==",`, MaxProofHashes), 1),
		"not json":        "nope",
	} {
		if _, err := ParseLookup([]byte(doc)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	if _, err := ParseLookup(good); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseLookup(f *testing.F) {
	good, _ := json.Marshal(FromLookup(sampleLookup()))
	f.Add(good)
	f.Add([]byte(`{"checkpoint":"","vrf_proof":"","map_proof":"","epoch_record":"","epoch_record_inclusion":[],"account_update_index":0}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"vrf_proof":"AA==","map_proof":"AA==","account_update":"AQ==","account_update_index":3}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseLookup(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		again, err := json.Marshal(FromLookup(b))
		if err != nil {
			t.Fatal(err)
		}
		b2, err := ParseLookup(again)
		if err != nil {
			t.Fatalf("re-encoded bundle does not parse: %v", err)
		}
		if !bytes.Equal(b.Checkpoint, b2.Checkpoint) || !bytes.Equal(b.MapProof, b2.MapProof) || !bytes.Equal(b.AccountUpdate, b2.AccountUpdate) || len(b.Consistency) != len(b2.Consistency) {
			t.Fatal("re-encoded bundle differs")
		}
	})
}

func FuzzParseHistory(f *testing.F) {
	h := &verifier.HistoryBundle{Checkpoint: []byte("c"), VRFProof: []byte("v"), Entries: []verifier.HistoryEntry{{LogIndex: 3, Leaf: []byte{1}, Inclusion: [][]byte{{2}}}}}
	good, _ := json.Marshal(FromHistory(h))
	f.Add(good)
	f.Add([]byte(`{"entries":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHistory(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		again, _ := json.Marshal(FromHistory(h))
		h2, err := ParseHistory(again)
		if err != nil || len(h2.Entries) != len(h.Entries) {
			t.Fatalf("re-encoded history: %v", err)
		}
	})
}

func FuzzParseProof(f *testing.F) {
	f.Add([]byte(`{"proof":["AA=="]}`))
	f.Add([]byte(`{"checkpoint":"AA=="}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := ParseProof(data); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParseProof: %v", err)
		}
		if _, err := ParseCheckpoint(data); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParseCheckpoint: %v", err)
		}
	})
}

// The bundle vectors of docs/protocol.md §7.1.5 are JSON API documents.
func TestBundleVectorsParse(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "verifier", "lookup-bundles.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]json.RawMessage
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	full, err := ParseLookup(v["full"])
	if err != nil || full.Held() {
		t.Fatalf("full: %v", err)
	}
	held, err := ParseLookup(v["held"])
	if err != nil || !held.Held() || held.AccountUpdate == nil {
		t.Fatalf("held: %v", err)
	}
	if again, _ := json.Marshal(FromLookup(held)); !bytes.Equal(again, compact(t, v["held"])) {
		t.Errorf("held bundle re-encodes as %s", again)
	}
}

func compact(t *testing.T, raw []byte) []byte {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
