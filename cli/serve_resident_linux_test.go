package cli

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// `keyline serve --max-resident 1` (a bound the process is always above)
// releases the databases' maps while it serves: it says so on stderr, keeps
// accepting updates and stops cleanly.
func TestServeMaxResident(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuf
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(t.TempDir(), "d"),
			"--epoch-interval", "20ms", "--insecure-no-sync", "--max-resident", "1"},
			IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: testEnv})
	}()
	re := regexp.MustCompile(`listening on (\S+)`)
	var addr string
	for deadline := time.Now().Add(30 * time.Second); addr == ""; time.Sleep(10 * time.Millisecond) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("serve did not start:\n%s\n%s", out.String(), errb.String())
		}
	}
	for i := 0; i < 3; i++ {
		touchServer(t, addr)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(errb.String(), "above the budget of 0 MiB: releasing pages of the database maps"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("serve --max-resident 1 did not release its maps; stderr:\n%s", errb.String())
		}
	}
	touchServer(t, addr)
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exited %d: %s", code, errb.String())
	}
}
