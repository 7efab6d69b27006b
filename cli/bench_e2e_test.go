package cli

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestBench runs `keyline bench` (directory/loadgen) briefly against a
// real server, in text and JSON.
func TestBench(t *testing.T) {
	root := t.TempDir()
	srvDir := filepath.Join(root, "server")
	addr, stop := startServer(t, srvDir)
	defer stop()
	w := &world{t: t, root: root, trust: filepath.Join(srvDir, "trust.json"), server: addr}
	r := w.ok("bench", "", "--json", "bench", "--accounts", "20", "--concurrency", "2", "--duration", "200ms", "--verify")
	var out benchOutput
	if err := json.Unmarshal([]byte(r.out), &out); err != nil {
		t.Fatalf("bench --json: %v\n%s", err, r.out)
	}
	if out.Accounts != 20 || out.Created != 20 || out.Lookups == 0 || out.Verified != out.Lookups || out.ProofBytes <= 0 {
		t.Fatalf("bench report %+v", out)
	}
	r = w.ok("bench", "", "bench", "--accounts", "20", "--concurrency", "2", "--duration", "200ms")
	for _, want := range []string{"METRIC", "lookups", "latency p50 / p99", "proof size", "(0 created by this run)"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("bench table lacks %q:\n%s", want, r.out)
		}
	}
	if r := w.run("bench", "", "bench", "--accounts", "0"); r.code != ExitUsage {
		t.Errorf("bench --accounts 0: exit %d", r.code)
	}
}
