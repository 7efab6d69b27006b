package cli

import (
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestWitnessCosigns runs `keyline witness` next to `keyline serve
// --witness URL=VKEY --witness-quorum 1`: clients then accept only
// checkpoints the witness cosigned after auditing the log, and lookups show
// the witness; when the witness is gone, new checkpoints are refused.
func TestWitnessCosigns(t *testing.T) {
	root := t.TempDir()
	srvDir := filepath.Join(root, "server")
	w := &world{t: t, root: root, trust: filepath.Join(srvDir, "trust.json")}

	var kg struct {
		Name, VKey string
	}
	w.okJSON("witness", &kg, "witness", "keygen", "w1.test")
	if !strings.HasPrefix(kg.VKey, "w1.test+") {
		t.Fatalf("keygen vkey %q", kg.VKey)
	}
	if r := w.run("witness", "", "witness", "keygen", "w1.test"); r.code != ExitError {
		t.Fatalf("keygen over an existing key: exit %d", r.code)
	}

	// First start creates the directory's keys and trust.json. The port is
	// one the restart below can surely bind again.
	addr, stop := startServerOn(t, srvDir, stablePort(t))
	stop()

	// The witness audits the directory at addr.
	wctx, wcancel := context.WithCancel(context.Background())
	var wout, werr syncBuf
	wdone := make(chan int, 1)
	go func() {
		wdone <- Run(wctx, []string{"--server", addr, "--trust", w.trust, "--data-dir", filepath.Join(root, "witness"), "witness", "--listen", "127.0.0.1:0"},
			IO{Stdin: strings.NewReader(""), Stdout: &wout, Stderr: &werr, Getenv: testEnv})
	}()
	flagRe := regexp.MustCompile(`--witness (\S+)`)
	deadline := time.Now().Add(20 * time.Second)
	for flagRe.FindStringSubmatch(wout.String()) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("witness did not start:\n%s\n%s", wout.String(), werr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	witnessFlag := flagRe.FindStringSubmatch(wout.String())[1]
	if !strings.HasSuffix(witnessFlag, "="+kg.VKey) {
		t.Fatalf("witness prints %q, keygen printed %q", witnessFlag, kg.VKey)
	}

	// Restart the directory on the same address with the witness.
	ctx, cancel := context.WithCancel(context.Background())
	var sout, serr syncBuf
	sdone := make(chan int, 1)
	go func() {
		sdone <- Run(ctx, []string{"serve", "--listen", addr, "--data-dir", srvDir, "--epoch-interval", "20ms", "--empty-epoch-interval", "100ms",
			"--insecure-no-sync", "--witness", witnessFlag, "--witness-quorum", "1"},
			IO{Stdin: strings.NewReader(""), Stdout: &sout, Stderr: &serr, Getenv: testEnv})
	}()
	defer func() {
		cancel()
		<-sdone
		wcancel()
		if code := <-wdone; code != 0 {
			t.Errorf("witness exited %d: %s", code, werr.String())
		}
	}()
	w.server = addr
	var first result
	deadline = time.Now().Add(15 * time.Second)
	for {
		first = w.run("carol-pc", "", "lookup", "nobody")
		if first.code == ExitRejected { // verified absence under a cosigned checkpoint
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for a cosigned checkpoint:\n%s%s\n%s%s", first.out, first.err, lastLines(serr.String(), 5), lastLines(werr.String(), 5))
		}
		time.Sleep(50 * time.Millisecond)
	}

	w.ok("carol-pc", "", "account", "create", "carol", "--no-confirm")
	var l lookupOutput
	r := w.ok("dave", "", "--json", "lookup", "carol")
	if err := json.Unmarshal([]byte(r.out), &l); err != nil {
		t.Fatal(err)
	}
	if !l.Found || l.WitnessQuorum != 1 || len(l.Cosigners) != 1 || l.Cosigners[0] != "w1.test" {
		t.Fatalf("lookup with a witness: %+v", l)
	}
	r = w.ok("dave", "", "lookup", "carol")
	if !strings.Contains(r.out, "1 of 1 required cosigned: w1.test") {
		t.Fatalf("text lookup does not name the witness:\n%s", r.out)
	}

	// Without the witness the directory's next (empty) epoch cannot be
	// cosigned: it waits for the witness (asking again with backoff), and
	// lookups keep being answered from the last cosigned checkpoint, which
	// quorum clients accept. (directory.TestWitnessLiveness covers the
	// witness coming back.)
	wcancel()
	if code := <-wdone; code != 0 {
		t.Errorf("witness exited %d: %s", code, werr.String())
	}
	wdone <- 0
	time.Sleep(300 * time.Millisecond) // several empty-epoch intervals
	for i := 0; i < 3; i++ {
		r = w.ok("dave", "", "lookup", "carol")
		if !strings.Contains(r.out, "1 of 1 required cosigned: w1.test") {
			t.Fatalf("lookup without the witness:\n%s", r.out)
		}
	}
	if !strings.Contains(serr.String(), "asking the other witnesses again") {
		t.Fatalf("serve does not say it waits for the witness:\n%s", lastLines(serr.String(), 5))
	}
}

func waitFor(t *testing.T, what string, cond func() bool, diag func() string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s:\n%s", what, diag())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
