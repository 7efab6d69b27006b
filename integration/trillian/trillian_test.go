package trillianit

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/keyline/keyline/directory/loadgen"
)

// cli runs the keyline binary as device dev against p.
func cli(t *testing.T, p *serveProc, root, dev string, args ...string) (string, string, int) {
	t.Helper()
	full := append([]string{"--server", p.addr, "--trust", filepath.Join(p.dataDir, "trust.json"), "--data-dir", filepath.Join(root, dev)}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, keylineBin(t), full...)
	cmd.Env = append(os.Environ(), "KEYLINE_PASSPHRASE=correct horse battery staple", "KEYLINE_INSECURE_TEST_KDF=1")
	var out, errb syncBuf
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return out.String(), errb.String(), code
}

func cliOK(t *testing.T, p *serveProc, root, dev string, args ...string) string {
	t.Helper()
	out, errs, code := cli(t, p, root, dev, args...)
	if code != 0 {
		t.Fatalf("keyline %s (%s): exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), dev, code, out, errs)
	}
	return out
}

// TestCLIStory drives `keyline serve --log-backend trillian` through the
// command line: two accounts, pairing a second device, revoking it, lookups,
// the owner monitor and a full audit.
func TestCLIStory(t *testing.T) {
	trillianAddr(t)
	p := startServe(t, t.TempDir(), newTree(t))
	root := t.TempDir()
	cliOK(t, p, root, "alice-phone", "account", "create", "alice", "--name", "phone", "--no-confirm")
	cliOK(t, p, root, "bob-pc", "account", "create", "bob", "--name", "pc", "--no-confirm")

	// Pair alice's laptop: request on the laptop, approve on the phone.
	out := cliOK(t, p, root, "alice-laptop", "device", "request", "alice", "--name", "laptop")
	code := regexp.MustCompile(`KL[0-9]-[A-Z0-9-]+`).FindString(out)
	fp := regexp.MustCompile(`Fingerprint:\s+([0-9 ]+)`).FindStringSubmatch(out)
	if code == "" || fp == nil {
		t.Fatalf("device request printed no pairing code or fingerprint:\n%s", out)
	}
	cliOK(t, p, root, "alice-phone", "device", "approve", code, "--fingerprint", strings.TrimSpace(fp[1]))
	cliOK(t, p, root, "alice-laptop", "device", "finish")
	if names := activeDevices(t, p, root, "bob-pc", "alice"); fmt.Sprint(names) != "[laptop phone]" {
		t.Fatalf("alice's devices after pairing: %v", names)
	}

	// Revoke the laptop from the phone (which holds the identity key).
	cliOK(t, p, root, "alice-phone", "device", "revoke", "laptop", "--yes", "--reason", "lost")
	if names := activeDevices(t, p, root, "bob-pc", "alice"); fmt.Sprint(names) != "[phone]" {
		t.Fatalf("alice's devices after the revocation: %v", names)
	}
	cliOK(t, p, root, "alice-phone", "monitor", "--once")
	cliOK(t, p, root, "bob-pc", "monitor", "--once")
	if _, _, code := cli(t, p, root, "bob-pc", "lookup", "carol"); code != 5 {
		t.Fatalf("lookup of an absent account exited %d, want 5", code)
	}
	out = cliOK(t, p, root, "bob-pc", "audit")
	t.Logf("audit: %s", strings.TrimSpace(out))
}

// activeDevices returns the sorted names of uid's unrevoked devices, from a
// verified `lookup --json` on dev.
func activeDevices(t *testing.T, p *serveProc, root, dev, uid string) []string {
	t.Helper()
	out := cliOK(t, p, root, dev, "--json", "lookup", uid)
	var l struct {
		Found   bool `json:"found"`
		Devices []struct {
			Name    string `json:"device_name"`
			Revoked bool   `json:"revoked"`
		} `json:"devices"`
	}
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("lookup --json: %v\n%s", err, out)
	}
	if !l.Found {
		t.Fatalf("lookup %s: not found", uid)
	}
	var names []string
	for _, d := range l.Devices {
		if !d.Revoked {
			names = append(names, d.Name)
		}
	}
	sort.Strings(names)
	return names
}

// TestServeKilledWhileSignerDown is the wedge of issue 15: keyline serve is
// SIGKILLed while trillian_log_signer is down and an epoch's append is in
// flight (its leaves stored, not integrated, for 3 s); then both are restarted — the
// directory first, with an update arriving while the signer is still down.
// The interrupted leaves are integrated at their indices; the directory's
// conditional appends conflict with them, it replays them, and it goes on.
func TestServeKilledWhileSignerDown(t *testing.T) {
	needCtl(t)
	dir := t.TempDir()
	// A long integration timeout: the append is surely still waiting for
	// the signer when serve is killed, however loaded the machine is.
	p := startServe(t, dir, newTree(t), "--trillian-integration-timeout", "60s")
	led := newLedger()
	c, trust := p.client(), p.trust()
	ctx := context.Background()
	create := func(prefix string, i int) error {
		a, err := loadgen.NewAccount(prefix, i)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := a.Create(time.Now())
		raw, _ := st.MarshalBinary()
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := c.Update(cctx, raw); err != nil {
			return err
		}
		led.ack(a, 1)
		return nil
	}
	for i := range 20 {
		if err := create("before", i); err != nil {
			t.Fatal(err)
		}
	}
	ctl(t, "kill", "signer")
	inflight := make(chan error, 1)
	go func() { inflight <- create("inflight", 0) }()
	time.Sleep(3 * time.Second) // the epoch's leaves are stored, its append waits for the signer
	select {
	case err := <-inflight:
		t.Fatalf("the update completed while the signer was down: %v", err)
	default:
	}
	p.kill()
	<-inflight
	c.Close()

	p.args = p.args[:len(p.args)-2] // back to the 5 s integration timeout
	p.start()                       // the directory first: the signer is still down
	c, trust = p.client(), p.trust()
	pending := make(chan error, 1)
	go func() { pending <- create("while-signer-down", 0) }()
	time.Sleep(time.Second)
	ctl(t, "start", "signer")
	if err := <-pending; err != nil {
		t.Logf("the update sent while the signer was down failed (allowed, not acknowledged): %v", err)
	}
	checkDirectory(t, p, led, "serve-killed")
	st, err := lookupState(ctx, c, trust, "inflight-0")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the interrupted update is in the directory: %v (its leaves were stored before the kill)", st != nil)
	if st == nil {
		t.Errorf("the interrupted update's stored leaves were integrated but the directory does not serve them")
	}
}

// TestMariaDBRestartUnderLoad kills MariaDB (SIGKILL) under a load of
// creates, updates and lookups, and restarts it after 5 s.
func TestMariaDBRestartUnderLoad(t *testing.T) {
	needCtl(t)
	faultUnderLoad(t, "mariadb", 5*time.Second, "mariadb-restart")
}

// TestSignerKilledUnderLoad kills trillian_log_signer under load for longer
// than serve's integration timeout (5 s), so that appends time out and the
// directory must resynchronize with stored, unintegrated leaves.
func TestSignerKilledUnderLoad(t *testing.T) {
	needCtl(t)
	faultUnderLoad(t, "signer", 8*time.Second, "signer-killed")
}

func faultUnderLoad(t *testing.T, service string, down time.Duration, tag string) {
	p := startServe(t, t.TempDir(), newTree(t))
	led := newLedger()
	l := startLoad(t, p, led, tag)
	time.Sleep(3 * time.Second)
	before := l.updOK.Load()
	if before == 0 {
		l.stop(t)
		t.Fatal("no update acknowledged before the fault")
	}
	ctl(t, "kill", service)
	atKill := l.updOK.Load()
	time.Sleep(down)
	t.Logf("%s: %d updates acknowledged while %s was down", tag, l.updOK.Load()-atKill, service)
	ctl(t, "start", service)
	recovered := time.Now()
	// The load goes on: acknowledgements resume without manual help.
	eventually(t, 90*time.Second, "acknowledged updates after the restart", func() error {
		if l.updOK.Load() > before+20 {
			return nil
		}
		return fmt.Errorf("%d updates acknowledged since the fault", l.updOK.Load()-before)
	})
	t.Logf("%s: updates acknowledged again %v after %s restarted", tag, time.Since(recovered).Round(time.Millisecond), service)
	time.Sleep(2 * time.Second)
	l.stop(t)
	checkDirectory(t, p, led, tag)
}
