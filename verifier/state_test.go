package verifier

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	klog "github.com/keyline/keyline/log"
)

var update = flag.Bool("update", false, "rewrite testdata/verifier golden files")

func TestClientStateRoundTripAndGolden(t *testing.T) {
	golden := filepath.Join("..", "testdata", "verifier", "state.json")
	if *update {
		d := world(t)
		res, err := verify(d, nil, "alice", d.bundle("alice", 0))
		if err != nil {
			t.Fatal(err)
		}
		st := &ClientState{}
		if err := st.Apply(res, t0); err != nil {
			t.Fatal(err)
		}
		delete(st.Contacts, "alice")
		st.Pin("bob", d.accounts["bob"].ik.Public(), true, t0)
		st.Pin("carol", [32]byte{3}, false, t0.Add(time.Hour))
		st.Own = &OwnAccount{UserID: "alice", Version: 2, EntryHash: klog.EntryHash(d.accounts["alice"].leaf)}
		b, err := st.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	st, err := ParseClientState(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Contacts) != 2 || !st.Contacts["bob"].Verified || st.Contacts["carol"].Verified || st.Own.Version != 2 || st.Checkpoint == nil || st.EpochRecord == nil || len(st.EpochRecordInclusion) == 0 {
		t.Fatalf("%+v", st)
	}
	out, err := st.Marshal()
	if err != nil || !bytes.Equal(out, data) {
		t.Fatalf("re-encoding differs: %v\n%s", err, out)
	}
	for name, mut := range map[string]string{
		"unknown field":             strings.Replace(string(data), `"format"`, `"extra": 1, "format"`, 1),
		"duplicate key":             strings.Replace(string(data), `"format": 2`, `"format": 2, "format": 2`, 1),
		"format 3":                  strings.Replace(string(data), `"format": 2`, `"format": 3`, 1),
		"format 1 with a record":    strings.Replace(string(data), `"format": 2`, `"format": 1`, 1),
		"record without checkpoint": strings.Replace(string(data), `"checkpoint": "`, `"x": "`, 1),
		"record not a leaf":         strings.Replace(string(data), `"epoch_record": "`, `"epoch_record": "AA`, 1),
		"proof hash size": strings.Replace(string(data), `"epoch_record_inclusion": [
    "`, `"epoch_record_inclusion": [
    "AAAA`, 1),
		"proof without record": strings.Replace(string(data), `"epoch_record": "`, `"x_record": "`, 1),
		"user id":              strings.Replace(string(data), `"bob"`, `"Bob"`, 1),
		"ik":                   strings.Replace(string(data), `"ik": "`, `"ik": "AA`, 1),
		"time":                 strings.Replace(string(data), `T12:00:00Z`, `T12:00:00.5Z`, 1),
		"trailing":             string(data) + "{}",
		"version":              strings.Replace(string(data), `"version": 2`, `"version": 0`, 1),
	} {
		if _, err := ParseClientState([]byte(mut)); !errors.Is(err, ErrState) {
			t.Errorf("%s: accepted (%v)", name, err)
		}
	}
}

// A format-1 state file (before the held EpochRecord) still loads, holds
// no EpochRecord, and is written back as format 2 with the same content.
func TestClientStateFormat1(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "testdata", "verifier", "state-v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := ParseClientState(data)
	if err != nil {
		t.Fatal(err)
	}
	if st.Checkpoint == nil || st.EpochRecord != nil || st.EpochRecordInclusion != nil || len(st.Contacts) != 2 || st.Own == nil {
		t.Fatalf("%+v", st)
	}
	out, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Replace(string(data), `"format": 1`, `"format": 2`, 1); string(out) != want {
		t.Fatalf("format 1 re-encoded as\n%s\nwant\n%s", out, want)
	}
}

func TestClientStateSaveAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	st, err := LoadClientState(p)
	if err != nil || st.Checkpoint != nil {
		t.Fatal(err)
	}
	st.Pin("bob", [32]byte{1}, true, t0)
	if err := st.Save(p); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v", fi.Mode(), err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
	back, err := LoadClientState(p)
	if err != nil || back.Contacts["bob"].IK != [32]byte{1} {
		t.Fatal(err)
	}
}

func TestClientLookupAdvancesState(t *testing.T) {
	d := world(t)
	p := filepath.Join(t.TempDir(), "state.json")
	c := NewClient(d.trust, p, d)
	c.Now = func() time.Time { return d.now }
	ctx := context.Background()
	res, err := c.Lookup(ctx, "alice")
	if err != nil || res.Pin != PinNew {
		t.Fatal(err)
	}
	st, _ := c.State()
	if !bytes.Equal(st.Checkpoint, d.cp) || st.Contacts["alice"] == nil || st.Contacts["alice"].Verified {
		t.Fatalf("state not advanced: %+v", st)
	}
	if res, err = c.Lookup(ctx, "alice"); err != nil || res.Pin != PinMatch {
		t.Fatalf("%v %+v", err, res)
	}
	// A failed lookup changes nothing.
	before, _ := os.ReadFile(p)
	if err := c.Pin("alice", [32]byte{9}, true); err != nil {
		t.Fatal(err)
	}
	pinned, _ := os.ReadFile(p)
	d.publish(d.addDevice("bob", "b2"))
	_, err = c.Lookup(ctx, "alice")
	wantErr(t, err, ErrSafetyNumberChanged)
	after, _ := os.ReadFile(p)
	if !bytes.Equal(after, pinned) || bytes.Equal(before, pinned) {
		t.Fatal("state changed by a failed lookup")
	}
	// Checkpoint refresh with consistency.
	cp, err := c.Checkpoint(ctx)
	if err != nil || cp.Size != d.size() {
		t.Fatal(err)
	}
	// A rolled-back directory is refused by Checkpoint and Lookup.
	d.cp = d.history[d.index("alice")][0].Leaf // garbage note
	if _, err := c.Checkpoint(ctx); !errors.Is(err, ErrCheckpoint) {
		t.Fatalf("got %v", err)
	}
}

func FuzzParseClientState(f *testing.F) {
	for _, name := range []string{"state.json", "state-v1.json"} {
		if b, err := os.ReadFile(filepath.Join("..", "testdata", "verifier", name)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"format":1}`))
	f.Add([]byte(`{"format":2}`))
	f.Add([]byte(`{"format":1,"contacts":{"a":{"ik":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","verified":true,"pinned_at":"2026-01-02T03:04:05Z"}}}`))
	f.Add([]byte(`{"format":1,"own":{"user_id":"a","version":1,"entry_hash":"0000000000000000000000000000000000000000000000000000000000000001"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := ParseClientState(b)
		if err != nil {
			if !errors.Is(err, ErrState) {
				t.Fatalf("error does not wrap ErrState: %v", err)
			}
			return
		}
		out, err := st.Marshal()
		if err != nil {
			t.Fatalf("parsed state does not marshal: %v", err)
		}
		st2, err := ParseClientState(out)
		if err != nil {
			t.Fatal(err)
		}
		out2, _ := st2.Marshal()
		if !bytes.Equal(out, out2) {
			t.Fatalf("not stable:\n%s\n%s", out, out2)
		}
	})
}
