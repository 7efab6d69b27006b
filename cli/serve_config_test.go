package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// serve refuses a max_checkpoint_age its own empty epochs cannot keep up
// with, as a usage error, before it creates anything.
func TestServeRefusesMaxAgeNotAboveEmptyEpochInterval(t *testing.T) {
	for _, args := range [][]string{
		{"--max-checkpoint-age", "30m"}, // default empty-epoch-interval 1h
		{"--max-checkpoint-age", "1h", "--empty-epoch-interval", "1h"},
		{"--max-checkpoint-age", "soon"},
	} {
		var out, errb syncBuf
		full := append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(t.TempDir(), "d"), "--insecure-no-sync"}, args...)
		code := Run(context.Background(), full, IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: testEnv})
		if code != ExitUsage || !strings.Contains(strings.ToLower(strings.ReplaceAll(errb.String(), "-", "")), "maxcheckpointage") {
			t.Errorf("serve %v: exit %d, stderr %s", args, code, errb.String())
		}
	}
}
