package verifier

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// vectorBundle is a lookup bundle in the field names of the JSON API
// (docs/api.md), standard base64.
type vectorBundle struct {
	Checkpoint           string   `json:"checkpoint,omitempty"`
	VRFProof             string   `json:"vrf_proof"`
	MapProof             string   `json:"map_proof"`
	EpochRecord          string   `json:"epoch_record,omitempty"`
	EpochRecordInclusion []string `json:"epoch_record_inclusion,omitempty"`
	AccountUpdate        string   `json:"account_update,omitempty"`
	AccountUpdateIndex   uint64   `json:"account_update_index"`
	Consistency          []string `json:"consistency,omitempty"`
}

type vectorCase struct {
	Name   string       `json:"name"`
	State  string       `json:"state"` // a client state file, "" for none
	Now    string       `json:"now,omitempty"`
	Bundle vectorBundle `json:"bundle"`
	Error  string       `json:"error"` // the verifier sentinel's name
}

type bundleVectors struct {
	Comment       string       `json:"comment"`
	Trust         TrustFile    `json:"trust"`
	Now           string       `json:"now"`
	User          string       `json:"user"`
	KnownTreeSize uint64       `json:"known_tree_size"`
	State         string       `json:"state"`
	Full          vectorBundle `json:"full"`
	Held          vectorBundle `json:"held"`
	Result        struct {
		CheckpointSize uint64 `json:"checkpoint_size"`
		Epoch          uint64 `json:"epoch"`
		Version        uint64 `json:"version"`
		LogIndex       uint64 `json:"log_index"`
		IdentityKey    string `json:"identity_key"`
	} `json:"result"`
	Rejected []vectorCase `json:"rejected"`
}

func toVector(b *LookupBundle) vectorBundle {
	enc := func(x []byte) string {
		if len(x) == 0 {
			return ""
		}
		return base64.StdEncoding.EncodeToString(x)
	}
	encs := func(xs [][]byte) []string {
		var out []string
		for _, x := range xs {
			out = append(out, enc(x))
		}
		return out
	}
	return vectorBundle{enc(b.Checkpoint), enc(b.VRFProof), enc(b.MapProof), enc(b.EpochRecord), encs(b.EpochRecordInclusion), enc(b.AccountUpdate), b.AccountUpdateIndex, encs(b.Consistency)}
}

func fromVector(t *testing.T, v vectorBundle) *LookupBundle {
	t.Helper()
	dec := func(s string) []byte {
		if s == "" {
			return nil
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	decs := func(ss []string) [][]byte {
		var out [][]byte
		for _, s := range ss {
			out = append(out, dec(s))
		}
		return out
	}
	return &LookupBundle{Checkpoint: dec(v.Checkpoint), VRFProof: dec(v.VRFProof), MapProof: dec(v.MapProof), EpochRecord: dec(v.EpochRecord),
		EpochRecordInclusion: decs(v.EpochRecordInclusion), AccountUpdate: dec(v.AccountUpdate), AccountUpdateIndex: v.AccountUpdateIndex, Consistency: decs(v.Consistency)}
}

var sentinels = map[string]error{"ErrBundleForm": ErrBundleForm, "ErrEpochRecord": ErrEpochRecord, "ErrStale": ErrStale, "ErrCheckpoint": ErrCheckpoint}

func makeBundleVectors(t *testing.T) *bundleVectors {
	d := world(t)
	full := d.bundle("alice", 0)
	res, err := VerifyLookup(d.trust, nil, "alice", full, d.now)
	if err != nil {
		t.Fatal(err)
	}
	st := &ClientState{}
	if err := st.Apply(res, d.now); err != nil {
		t.Fatal(err)
	}
	delete(st.Contacts, "alice")
	stb, _ := st.Marshal()
	v1 := *st
	v1.EpochRecord, v1.EpochRecordInclusion = nil, nil
	v1b, _ := v1.Marshal()
	v1s := strings.Replace(string(v1b), `"format": 2`, `"format": 1`, 1)
	held := d.bundle("alice", res.Checkpoint.Size)
	v := &bundleVectors{
		Comment: "Lookup bundle forms (docs/protocol.md §7.1.5): a full bundle (known_tree_size 0) and the held bundle " +
			"(known_tree_size = the served size) of the same lookup, which verify to the same result, the first with no state and " +
			"the second with the state holding the checkpoint and its EpochRecord; and bundles the verifier must reject. " +
			"Regenerate: go test ./verifier -run TestLookupBundleVectors -update",
		Trust: d.trustFile, Now: d.now.Format(time.RFC3339), User: "alice", KnownTreeSize: res.Checkpoint.Size,
		State: string(stb), Full: toVector(full), Held: toVector(held),
	}
	v.Result.CheckpointSize, v.Result.Epoch, v.Result.Version, v.Result.LogIndex = res.Checkpoint.Size, res.Epoch.Epoch, res.Version, res.LogIndex
	v.Result.IdentityKey = hex.EncodeToString(res.IdentityKey[:])
	add := func(name, state, now string, b *LookupBundle, err string) {
		v.Rejected = append(v.Rejected, vectorCase{name, state, now, toVector(b), err})
	}
	add("held bundle, the client holds no checkpoint (sent no known size)", "", "", held, "ErrBundleForm")
	add("held bundle, the state holds no EpochRecord (format 1)", v1s, "", held, "ErrBundleForm")
	b := *held
	b.EpochRecord = full.EpochRecord
	add("checkpoint omitted, EpochRecord sent", v.State, "", &b, "ErrBundleForm")
	b = *held
	b.EpochRecordInclusion = full.EpochRecordInclusion
	add("checkpoint omitted, EpochRecord inclusion proof sent", v.State, "", &b, "ErrBundleForm")
	b = *held
	b.Consistency = full.EpochRecordInclusion[:1]
	add("checkpoint omitted, consistency proof sent", v.State, "", &b, "ErrBundleForm")
	b = *full
	b.EpochRecord, b.EpochRecordInclusion = nil, nil
	add("checkpoint sent, EpochRecord omitted", "", "", &b, "ErrEpochRecord")
	add("held bundle, held EpochRecord older than max_checkpoint_age (1h)", v.State, d.now.Add(61*time.Minute).Format(time.RFC3339), held, "ErrStale")
	return v
}

func TestLookupBundleVectors(t *testing.T) {
	path := filepath.Join("..", "testdata", "verifier", "lookup-bundles.json")
	if *update {
		b, err := json.MarshalIndent(makeBundleVectors(t), "", "  ")
		if err != nil {
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
	var v bundleVectors
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	trust, err := v.Trust.Trust()
	if err != nil {
		t.Fatal(err)
	}
	parseNow := func(s string) time.Time {
		n, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	state := func(s string) *ClientState {
		if s == "" {
			return nil
		}
		st, err := ParseClientState([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	now := parseNow(v.Now)
	full, err := VerifyLookup(trust, nil, v.User, fromVector(t, v.Full), now)
	if err != nil {
		t.Fatalf("full bundle: %v", err)
	}
	held, err := VerifyLookup(trust, state(v.State), v.User, fromVector(t, v.Held), now)
	if err != nil {
		t.Fatalf("held bundle: %v", err)
	}
	for _, r := range []*LookupResult{full, held} {
		if r.Checkpoint.Size != v.Result.CheckpointSize || r.Epoch.Epoch != v.Result.Epoch || r.Version != v.Result.Version || r.LogIndex != v.Result.LogIndex || hex.EncodeToString(r.IdentityKey[:]) != v.Result.IdentityKey {
			t.Fatalf("result %+v, want %+v", r, v.Result)
		}
	}
	if full.Held || !held.Held || v.Held.Checkpoint != "" || v.KnownTreeSize != v.Result.CheckpointSize {
		t.Fatal("the vectors' held bundle is not a held bundle")
	}
	if len(v.Rejected) == 0 {
		t.Fatal("no rejection vectors")
	}
	for _, c := range v.Rejected {
		n := now
		if c.Now != "" {
			n = parseNow(c.Now)
		}
		_, err := VerifyLookup(trust, state(c.State), v.User, fromVector(t, c.Bundle), n)
		want := sentinels[c.Error]
		if want == nil || !errors.Is(err, want) {
			t.Errorf("%s: got %v, want %s", c.Name, err, c.Error)
		}
	}
}
