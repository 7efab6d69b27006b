package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
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
	// The server runs in this process: --server-pid names it. /proc counts
	// CPU in 10 ms ticks, so the creates must take more than one tick for
	// the server's CPU per create to be above 0: 200 of them.
	r := w.ok("bench", "", "--json", "bench", "--accounts", "200", "--concurrency", "2", "--duration", "200ms", "--verify",
		"--server-pid", strconv.Itoa(os.Getpid()))
	var out benchOutput
	if err := json.Unmarshal([]byte(r.out), &out); err != nil {
		t.Fatalf("bench --json: %v\n%s", err, r.out)
	}
	if out.Accounts != 200 || out.Created != 200 || out.Lookups == 0 || out.Verified != out.Lookups || out.ProofBytes <= 0 {
		t.Fatalf("bench report %+v", out)
	}
	if out.Ed25519PerSec <= 0 || out.ServerCPUPerCreate == nil || *out.ServerCPUPerCreate <= 0 || out.ServerCPUPerLookup == nil || *out.ServerCPUPerLookup <= 0 || out.ClientCPUPerLookup <= 0 {
		t.Fatalf("bench report lacks the reference or CPU figures: %+v", out)
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
	// An upper-case prefix is a usage error, before any account is created.
	for _, p := range []string{"Loadgen", "load gen", "LOADGEN"} {
		if r := w.run("bench", "", "bench", "--accounts", "5", "--prefix", p, "--duration", "100ms"); r.code != ExitUsage || !strings.Contains(r.err, "--prefix") {
			t.Errorf("bench --prefix %q: exit %d, stderr %q", p, r.code, r.err)
		}
	}
	if r := w.run("bench", "", "bench", "--server-pid", "999999999"); r.code != ExitUsage {
		t.Errorf("bench --server-pid of no process: exit %d", r.code)
	}
}
