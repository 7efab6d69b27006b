package cli

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemoAttack runs `keyline demo attack` and checks that each attack was
// caught by bob's client, alice's monitor and the auditor, with evidence
// files that `keyline audit verify-evidence` accepts.
func TestDemoAttack(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	var out, errb syncBuf
	code := Run(context.Background(), []string{"--json", "demo", "attack", "--dir", dir}, IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: testEnv})
	if code != 0 {
		t.Fatalf("demo attack: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	d := loadSchema(t)
	d.check(t, "demo attack", out.String())
	var res demoOutput
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
		t.Fatal(err)
	}
	want := []string{"key_substitution", "split_view", "silent_reset"}
	if len(res.Attacks) != len(want) || !res.AllCaught {
		t.Fatalf("attacks %+v, all caught %v", res.Attacks, res.AllCaught)
	}
	for i, at := range res.Attacks {
		if at.Attack != want[i] || !at.Caught || len(at.Detections) != 3 {
			t.Errorf("attack %d: %+v", i, at)
		}
		for _, det := range at.Detections {
			if !det.Caught || det.What == "" {
				t.Errorf("%s: %s did not catch it: %s", at.Attack, det.By, det.What)
			}
			if det.By != "auditor" {
				continue
			}
			if det.EvidencePath == nil {
				t.Errorf("%s: the auditor gave no evidence file", at.Attack)
				continue
			}
			var vo, ve syncBuf
			code := Run(context.Background(), []string{"--json", "--trust", filepath.Join(dir, "trust.json"), "--data-dir", t.TempDir(), "audit", "verify-evidence", *det.EvidencePath}, IO{Stdin: strings.NewReader(""), Stdout: &vo, Stderr: &ve, Getenv: testEnv})
			if code != 0 {
				t.Errorf("%s: evidence %s does not verify: %s", at.Attack, *det.EvidencePath, ve.String())
				continue
			}
			d.check(t, "audit verify-evidence", vo.String())
		}
	}
	// The text version says it in plain words.
	var tout, terr syncBuf
	if code := Run(context.Background(), []string{"demo", "attack", "--dir", filepath.Join(t.TempDir(), "demo2")}, IO{Stdin: strings.NewReader(""), Stdout: &tout, Stderr: &terr, Getenv: testEnv}); code != 0 {
		t.Fatalf("demo attack (text): exit %d\n%s", code, terr.String())
	}
	for _, s := range []string{"key substitution", "split view", "silent reset", "bob's client     CAUGHT", "alice's monitor  CAUGHT", "the auditor      CAUGHT", "evidence: ", "3 of 3 attacks were caught"} {
		if !strings.Contains(tout.String(), s) {
			t.Errorf("the demo does not say %q:\n%s", s, tout.String())
		}
	}
}
