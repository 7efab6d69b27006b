package auditor_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/keyline/keyline/verifier/auditor"
)

// TestEvidenceCanonicalBase64: an evidence file whose byte fields are
// re-encoded non-canonically (a JSON-escaped line break inside the base64,
// which encoding/json's decoder skips) is refused by ParseEvidence.
func TestEvidenceCanonicalBase64(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "testdata", "audit", "*-*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden evidence: %v", err)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auditor.ParseEvidence(data); err != nil {
		t.Fatal(err)
	}
	// Every long base64 string, one at a time, with "\n" inserted.
	re := regexp.MustCompile(`"[A-Za-z0-9+/]{16,}={0,2}"`)
	locs := re.FindAllIndex(data, -1)
	if len(locs) == 0 {
		t.Fatal("no base64 strings found")
	}
	for _, l := range locs {
		mid := (l[0] + l[1]) / 2
		bad := append(append(append([]byte(nil), data[:mid]...), `\n`...), data[mid:]...)
		var lenient auditor.Evidence
		if err := json.Unmarshal(bad, &lenient); err != nil {
			t.Fatalf("encoding/json refuses the variant (the test would check nothing): %v", err)
		}
		if _, err := auditor.ParseEvidence(bad); err == nil {
			t.Errorf("evidence with a non-canonical value at byte %d accepted", l[0])
		}
	}
}
