package auditor_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/keyline/keyline/devices"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier/auditor"
	"github.com/keyline/keyline/verifier/auditor/audittest"
)

var update = flag.Bool("update", false, "rewrite testdata/audit golden evidence files")

const goldenDir = "../../testdata/audit"

// goldenCases build deterministic violating logs (directory seed 1).
var goldenCases = map[string]func(t *testing.T, d *audittest.Directory){
	"prev-hash": func(t *testing.T, d *audittest.Directory) {
		a := d.Accounts["user0"]
		next, err := devices.RevokeDevices(a.State, a.ASK, []devices.DeviceID{a.Devices[0].ID()}, devices.ReasonLost, d.Time.Add(5e9))
		must(t, err)
		p, err := next.MarshalBinary()
		must(t, err)
		must(t, d.AppendUpdate(a, a.Index, 2, [32]byte{7}, klog.UpdateUpdate, p))
		closeEpoch(t, d)
	},
	"map-root": func(t *testing.T, d *audittest.Directory) {
		a := d.Accounts["user0"]
		must(t, d.AddDevice(a))
		delete(d.Pending, a.Index)
		closeEpoch(t, d)
	},
	"checkpoint-end": func(t *testing.T, d *audittest.Directory) {
		must(t, d.AddDevice(d.Accounts["user1"]))
		d.Log.Publish()
	},
}

// TestGoldenEvidence checks the evidence the auditor writes byte for byte
// against testdata/audit/<rule>.json (regenerate with -update) and that the
// checked-in files verify against the golden trust file.
func TestGoldenEvidence(t *testing.T) {
	for rule, build := range goldenCases {
		t.Run(rule, func(t *testing.T) {
			d, _ := base(t)
			build(t, d)
			a := open(t, d, t.TempDir(), 5)
			_, err := a.Run(ctx, nil)
			var v *auditor.Violation
			if !errors.As(err, &v) || string(v.Rule) != rule {
				t.Fatalf("got %v, want %s", err, rule)
			}
			path := filepath.Join(goldenDir, rule+".json")
			if *update {
				must(t, os.WriteFile(path, v.Evidence, 0o644))
				tf, _ := json.MarshalIndent(map[string]string{"origin": audittest.Origin, "log_key": d.Log.VKey}, "", "  ")
				must(t, os.WriteFile(filepath.Join(goldenDir, "log.vkey.json"), append(tf, '\n'), 0o644))
			}
			want, err := os.ReadFile(path)
			must(t, err)
			if !bytes.Equal(want, v.Evidence) {
				t.Fatalf("evidence differs from %s (run with -update if the format changed on purpose)", path)
			}
			f, err := auditor.VerifyEvidence(d.Trust(), want)
			must(t, err)
			if string(f.Rule) != rule {
				t.Fatalf("finding %s", string(f.Rule))
			}
		})
	}
}

// TestEvidenceWithoutViolation: well-proven leaves of an honest log, claimed
// to break a rule, are rejected.
func TestEvidenceWithoutViolation(t *testing.T) {
	d, a := base(t)
	must(t, d.AddDevice(a))
	closeEpoch(t, d)
	// Build real evidence for another directory's violation, then swap in
	// honest leaves: segment proofs come from an auditor-independent path.
	d2, _ := base(t)
	goldenCases["prev-hash"](t, d2)
	au := open(t, d2, t.TempDir(), 5)
	_, err := au.Run(ctx, nil)
	var v *auditor.Violation
	if !errors.As(err, &v) {
		t.Fatal(err)
	}
	// Evidence from the honest log: leaves of versions 1 and 2 of user0,
	// proven in its checkpoint, claimed as every account rule.
	n, _ := d.Log.Checkpoint(ctx)
	size := d.Log.Size()
	seg := func(i uint64) auditor.Segment {
		return segmentFor(t, d, i, size)
	}
	prev := uint64(0)
	for _, r := range auditor.Rules() {
		e := auditor.Evidence{Format: auditor.EvidenceFormat, Rule: r, LogIndex: a.LogIndex, PrevIndex: &prev,
			Checkpoints: [][]byte{n}, Segments: []auditor.Segment{seg(0), seg(a.LogIndex)}}
		b, _ := e.Marshal()
		if f, err := auditor.VerifyEvidence(d.Trust(), b); err == nil {
			t.Errorf("honest entries accepted as %s: %+v", string(r), f)
		}
	}
}

// segmentFor builds a one-leaf segment the slow way, from the log's own
// tree: left/right compact ranges from the audittest log.
func segmentFor(t *testing.T, d *audittest.Directory, i, size uint64) auditor.Segment {
	t.Helper()
	left, right, err := d.Log.RangeProof(i, i+1, size)
	must(t, err)
	return auditor.Segment{Start: i, Leaves: [][]byte{d.Log.Leaf(i)}, Left: left, Right: right}
}

func FuzzVerifyEvidence(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(goldenDir, "*.json"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"format":"keyline-audit-evidence/v1","rule":"split-view","log_index":0,"checkpoints":["AA=="]}`))
	f.Add([]byte(`{}`))
	d, err := audittest.NewDirectory(1)
	if err != nil {
		f.Fatal(err)
	}
	trust := d.Trust()
	f.Fuzz(func(t *testing.T, data []byte) {
		e, perr := auditor.ParseEvidence(data)
		fnd, verr := auditor.VerifyEvidence(trust, data)
		if perr != nil && verr == nil {
			t.Fatal("VerifyEvidence accepted what ParseEvidence rejects")
		}
		if verr != nil && !errors.Is(verr, auditor.ErrBadEvidence) {
			t.Fatalf("error does not wrap ErrBadEvidence: %v", verr)
		}
		if verr == nil && fnd.Rule != e.Rule {
			t.Fatal("finding rule differs")
		}
		if perr == nil {
			// Marshal of a parsed file parses to the same value.
			b, err := e.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			e2, err := auditor.ParseEvidence(b)
			if err != nil {
				t.Fatalf("re-parse: %v", err)
			}
			b2, _ := e2.Marshal()
			if !bytes.Equal(b, b2) {
				t.Fatal("marshal not stable")
			}
		}
	})
}
