package directory

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyline/keyline/directory/loadgen"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier/vrf"
)

var update = flag.Bool("update", false, "rewrite testdata/directory golden files")

const goldenPath = "../testdata/directory/epochs.json"

// goldenEpoch is what one sequenced epoch must produce, byte for byte,
// from fixed keys and states (EpochRecord timestamps are not fixed, so
// only the AccountUpdate leaves and map roots are recorded).
type goldenEpoch struct {
	UserID    string `json:"user_id"`
	VRFProof  string `json:"vrf_proof"`
	VRFIndex  string `json:"vrf_index"`
	LogIndex  uint64 `json:"log_index"`
	Leaf      string `json:"leaf"`
	EntryHash string `json:"entry_hash"`
	Epoch     uint64 `json:"epoch"`
	MapRoot   string `json:"map_root"`
}

// TestGoldenEpochs runs a directory with a fixed VRF seed on deterministic
// accounts (create a, create b, update a; one epoch each) and compares
// the leaves, VRF proofs and map roots with testdata/directory/epochs.json.
func TestGoldenEpochs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(i)
	}
	sk, err := vrf.NewKeyFromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, FileVRFSeed), sk.MarshalSeedFile(), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openTest(t, dir, nil)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a, _ := loadgen.NewAccount("golden", 1)
	b, _ := loadgen.NewAccount("golden", 2)
	a1, err := a.Create(now)
	if err != nil {
		t.Fatal(err)
	}
	b1, err := b.Create(now)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := a.Touch(a1, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var got []goldenEpoch
	for _, st := range []struct {
		uid   string
		bytes []byte
	}{{a.UserID, mustMarshal(t, a1)}, {b.UserID, mustMarshal(t, b1)}, {a.UserID, mustMarshal(t, a2)}} {
		r, err := s.Update(ctx, st.bytes)
		if err != nil {
			t.Fatal(err)
		}
		lb, err := s.Lookup(ctx, st.uid, 0)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := klog.ParseEpochRecord(lb.EpochRecord)
		if err != nil {
			t.Fatal(err)
		}
		u, _ := klog.ParseAccountUpdate(r.Leaf)
		eh := klog.EntryHash(r.Leaf)
		got = append(got, goldenEpoch{
			UserID: st.uid, VRFProof: hex.EncodeToString(lb.VRFProof), VRFIndex: hex.EncodeToString(u.Index[:]),
			LogIndex: r.LogIndex, Leaf: hex.EncodeToString(r.Leaf), EntryHash: hex.EncodeToString(eh[:]),
			Epoch: r.Epoch, MapRoot: hex.EncodeToString(rec.MapRoot[:]),
		})
	}
	js, _ := json.MarshalIndent(got, "", "  ")
	js = append(js, '\n')
	if *update {
		if err := os.MkdirAll(filepath.Dir(goldenPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenPath, js, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if string(want) != string(js) {
		t.Fatalf("epochs differ from %s:\n%s", goldenPath, js)
	}
}
