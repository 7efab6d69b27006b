package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// auditHonest runs `keyline audit` over the honest directory: it replays the
// whole log and must find no violation, count no reset, and resume.
func auditHonest(t *testing.T, w *world) {
	t.Helper()
	r := w.ok("auditor", "", "audit")
	if !strings.Contains(r.out, "OK: no violation") || !strings.Contains(r.err, "100.0%") {
		t.Fatalf("audit output:\nstdout:\n%s\nstderr:\n%s", r.out, r.err)
	}
	var out auditOutput
	r = w.ok("auditor", "", "--json", "audit")
	if err := json.Unmarshal([]byte(r.out), &out); err != nil {
		t.Fatalf("audit --json: %v\n%s", err, r.out)
	}
	if !out.OK || out.Accounts != 2 || out.Resets != 0 || out.Replayed != out.CheckpointSize || out.Replayed == 0 {
		t.Fatalf("audit of the honest log: %+v", out)
	}
}
