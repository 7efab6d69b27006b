package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// auditHonest runs `keyline audit` over the honest directory: it replays the
// whole log and must find no violation, count no reset, and resume.
func auditHonest(t *testing.T, w *world) {
	t.Helper()
	// Errors here are reported with Errorf so that the rest of the story
	// (forged answers, resets) still runs if the audit fails.
	r := w.run("auditor", "", "audit")
	if r.code != 0 || !strings.Contains(r.out, "OK: no violation") || !strings.Contains(r.err, "100.0%") {
		t.Errorf("audit of the honest directory: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.err)
		return
	}
	var out auditOutput
	r = w.ok("auditor", "", "--json", "audit")
	if err := json.Unmarshal([]byte(r.out), &out); err != nil {
		t.Fatalf("audit --json: %v\n%s", err, r.out)
	}
	if !out.OK || out.Accounts != 2 || out.Resets != 0 || out.Replayed != out.CheckpointSize || out.Replayed == 0 {
		t.Errorf("audit of the honest log: %+v", out)
	}
	// Evidence that proves nothing is refused, never reported as valid.
	bogus := filepath.Join(w.root, "bogus-evidence.json")
	os.WriteFile(bogus, []byte(`{"format":"keyline-audit-evidence/v1","rule":"prev-hash","log_index":3,"checkpoints":[]}`), 0o600)
	r = w.run("auditor", "", "audit", "verify-evidence", bogus)
	if r.code != ExitVerification || strings.Contains(r.out, "VALID") || !strings.Contains(r.err, "does NOT prove") {
		t.Fatalf("verify-evidence of a bogus file: exit %d\n%s%s", r.code, r.out, r.err)
	}
}

// auditCountsReset resumes the auditor against a directory that has since
// published a reset: the log is still well formed, and the reset is counted
// and listed.
func auditCountsReset(t *testing.T, w *world, server string) {
	t.Helper()
	var out auditOutput
	r := w.runAt(server, "auditor", "", "--json", "audit")
	if r.code != 0 || json.Unmarshal([]byte(r.out), &out) != nil {
		t.Errorf("audit after the reset: exit %d\n%s%s", r.code, r.out, r.err)
		return
	}
	if !out.OK || out.Resets != 1 || len(out.ResetIndexes) != 1 || out.Replayed != out.CheckpointSize {
		t.Errorf("audit after the reset: %+v", out)
	}
	r = w.runAt(server, "auditor", "", "audit")
	if !strings.Contains(r.out, "identity resets") || !strings.Contains(r.out, "1 (log entries ") {
		t.Errorf("audit table does not list the reset:\n%s", r.out)
	}
}
