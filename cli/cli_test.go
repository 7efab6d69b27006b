package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"rsc.io/qr"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory/apierr"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/cosign"
)

func TestParseConfig(t *testing.T) {
	kv, err := parseConfig([]byte("# comment\nserver = dir.example:7411\n\ndata_dir: \"/tmp/x y\"\njson=true\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]string{{"server", "dir.example:7411"}, {"data-dir", "/tmp/x y"}, {"json", "true"}}
	if fmt.Sprint(kv) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", kv, want)
	}
	kv, err = parseConfig([]byte(`{"witness-quorum": 2, "json": false, "server": "a:1"}`))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(kv) != fmt.Sprint([][2]string{{"json", "false"}, {"server", "a:1"}, {"witness-quorum", "2"}}) {
		t.Fatalf("JSON config: %v", kv)
	}
	for _, bad := range []string{"server\n", "{\"server\": [1]}", "{bad json", "=x\n"} {
		if _, err := parseConfig([]byte(bad)); err == nil {
			t.Errorf("parseConfig(%q) succeeded", bad)
		}
	}
	if _, err := parseConfig([]byte("a=1\nnot a setting\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("error does not name the line: %v", err)
	}
}

func TestConfigFileAndFlagPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	os.WriteFile(cfg, []byte("server = 127.0.0.1:1\ntrust = "+filepath.Join(dir, "nope.json")+"\n"), 0o600)
	run := func(args ...string) (int, string) {
		var out, errb syncBuf
		code := Run(context.Background(), args, IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: testEnv})
		return code, errb.String()
	}
	// The config's trust path is used (and is missing).
	code, msg := run("--config", cfg, "--data-dir", dir, "lookup", "bob")
	if code != ExitError || !strings.Contains(msg, "nope.json") {
		t.Fatalf("config trust not applied: %d %s", code, msg)
	}
	// A flag overrides the config.
	code, msg = run("--config", cfg, "--data-dir", dir, "--trust", filepath.Join(dir, "other.json"), "lookup", "bob")
	if code != ExitError || !strings.Contains(msg, "other.json") {
		t.Fatalf("flag did not override config: %d %s", code, msg)
	}
	os.WriteFile(cfg, []byte("colour = blue\n"), 0o600)
	if code, msg = run("--config", cfg, "--data-dir", dir, "lookup", "bob"); code != ExitUsage || !strings.Contains(msg, "colour") {
		t.Fatalf("unknown config key: %d %s", code, msg)
	}
}

func TestUsageExitCodes(t *testing.T) {
	for _, args := range [][]string{{"frobnicate"}, {"lookup", "--nope"}, {"lookup"}, {"lookup", "a", "b"}, {"verify", "bob"}, {"device", "revoke", "x", "--reason", "bored"}} {
		var out, errb syncBuf
		code := Run(context.Background(), append(args, "--data-dir", t.TempDir()), IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: testEnv})
		if code != ExitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, ExitUsage, errb.String())
		}
	}
}

// TestRenderQR reads the half-block drawing back into modules and compares
// it with the QR code, quiet zone included.
func TestRenderQR(t *testing.T) {
	payload := "keyline-safety:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA"
	for _, invert := range []bool{false, true} {
		s, err := renderQR(payload, invert)
		if err != nil {
			t.Fatal(err)
		}
		code, _ := qr.Encode(payload, qr.L)
		n := code.Size + 2*qrQuietZone
		lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
		if len(lines) != (n+1)/2 {
			t.Fatalf("%d lines, want %d", len(lines), (n+1)/2)
		}
		for ly, line := range lines {
			runes := []rune(line)
			if len(runes) != n {
				t.Fatalf("line %d has %d columns, want %d", ly, len(runes), n)
			}
			for x, r := range runes {
				var top, bottom bool
				switch r {
				case '█':
					top, bottom = true, true
				case '▀':
					top = true
				case '▄':
					bottom = true
				case ' ':
				default:
					t.Fatalf("unexpected rune %q", r)
				}
				for i, ink := range []bool{top, bottom} {
					y := 2*ly + i
					if y >= n {
						continue
					}
					mx, my := x-qrQuietZone, y-qrQuietZone
					dark := mx >= 0 && my >= 0 && mx < code.Size && my < code.Size && code.Black(mx, my)
					if ink != (dark == invert) {
						t.Fatalf("invert=%v: module (%d,%d) drawn wrong", invert, x, y)
					}
				}
			}
		}
	}
}

func TestProgressPlain(t *testing.T) {
	var b strings.Builder
	now := time.Unix(1000, 0)
	p := newProgress(&b, false, "audit", "entries", 1000, func() time.Time { return now })
	for i := uint64(0); i <= 1000; i++ {
		now = now.Add(time.Millisecond)
		p.update(i)
	}
	p.finish(1000)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) < 10 || len(lines) > 12 {
		t.Fatalf("%d lines, want one per 10%%:\n%s", len(lines), b.String())
	}
	last := lines[len(lines)-1]
	if !strings.Contains(last, "100.0%") || !strings.Contains(last, "1000/1000") || !strings.Contains(last, "entries/s") || strings.Contains(b.String(), "\r") {
		t.Fatalf("last line %q", last)
	}
	if !strings.Contains(lines[5], "ETA") {
		t.Fatalf("no ETA: %q", lines[5])
	}
}

func TestProgressTTY(t *testing.T) {
	var b strings.Builder
	now := time.Unix(1000, 0)
	p := newProgress(&b, true, "audit", "entries", 100, func() time.Time { return now })
	now = now.Add(time.Second)
	p.update(50)
	if s := b.String(); !strings.HasPrefix(s, "\r") || !strings.Contains(s, " 50.0%") || !strings.Contains(s, "50 entries/s") || !strings.Contains(s, "ETA 1s") || !strings.Contains(s, "█") {
		t.Fatalf("bar %q", s)
	}
	p.finish(100)
	if !strings.HasSuffix(b.String(), "\n") {
		t.Fatal("finish does not end the line")
	}
}

func TestRemoteErrClassification(t *testing.T) {
	addr := "127.0.0.1:7411"
	cases := []struct {
		err    error
		code   int
		substr string
	}{
		{status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:7411: connect: connection refused"`), ExitNetwork, "cannot reach directory at 127.0.0.1:7411: connection refused — is `keyline serve` running? use --server"},
		{apierr.FromStatus(status.Error(codes.Unavailable, "x")), ExitNetwork, "cannot reach directory"},
		{apierr.New(codes.AlreadyExists, apierr.AccountExists, "alice exists"), ExitRejected, "[ACCOUNT_EXISTS]"},
		{apierr.New(codes.FailedPrecondition, apierr.VersionNotNext, "v3"), ExitRejected, "rejected the update [VERSION_NOT_NEXT]"},
		{fmt.Errorf("wrapped: %w", context.DeadlineExceeded), ExitNetwork, "did not answer in time"},
		{fmt.Errorf("%w: bad", verifier.ErrMapProof), ExitVerification, "verification failed"},
		{errors.New("anything else"), ExitVerification, "verification failed"},
	}
	for _, c := range cases {
		err := remoteErr("lookup alice", addr, c.err)
		if exitCode(err) != c.code || !strings.Contains(err.Error(), c.substr) {
			t.Errorf("%v -> exit %d %q; want %d containing %q", c.err, exitCode(err), err, c.code, c.substr)
		}
	}
}

func TestParseWitnessFlag(t *testing.T) {
	_, vkey, err := cosign.GenerateKey("w1.example")
	if err != nil {
		t.Fatal(err)
	}
	wc, err := parseWitnessFlag("http://127.0.0.1:7412/?a=b=" + vkey)
	if err != nil || wc.URL != "http://127.0.0.1:7412/?a=b" || wc.VKey != vkey {
		t.Fatalf("%+v %v", wc, err)
	}
	for _, bad := range []string{"http://x", vkey, "ftp://x=" + vkey, "http://x=notakey", "http://=" + vkey, "https:///=" + vkey} {
		if _, err := parseWitnessFlag(bad); err == nil {
			t.Errorf("parseWitnessFlag(%q) succeeded", bad)
		}
	}
}

func TestFindDevice(t *testing.T) {
	secret, _ := devices.NewRecoverySecret(strings.NewReader(strings.Repeat("s", 32)))
	rk := devices.DeriveRootKey(secret)
	now := time.Unix(1700000000, 0)
	ask, err := devices.NewAccountSigningKey(rk, "alice", 1, strings.NewReader(strings.Repeat("k", 32)), now)
	if err != nil {
		t.Fatal(err)
	}
	var certs []*devices.DeviceCert
	for i, name := range []string{"laptop", "phone", "phone"} {
		dk, err := devices.NewDeviceKey(strings.NewReader(strings.Repeat(string(rune('a'+i)), 64)))
		if err != nil {
			t.Fatal(err)
		}
		c, _ := dk.NewCert(name, rk.Public(), now)
		ask.IssueCert(rk.Public(), c)
		certs = append(certs, c)
	}
	st, err := devices.NewAccount(ask, rk.Public(), "alice", certs[0], now)
	if err != nil {
		t.Fatal(err)
	}
	if st, err = devices.AddDevice(st, ask, certs[1], now); err != nil {
		t.Fatal(err)
	}
	// Names are unique in a valid state; findDevice still refuses an
	// ambiguous name in whatever it is given.
	st.Devices = append(st.Devices, certs[2])
	if d, err := findDevice(st, "laptop"); err != nil || d.ID != certs[0].ID {
		t.Fatalf("by name: %v %v", d, err)
	}
	if d, err := findDevice(st, certs[1].ID.String()[:6]); err != nil || d.ID != certs[1].ID {
		t.Fatalf("by prefix: %v %v", d, err)
	}
	if _, err := findDevice(st, "phone"); exitCode(err) != ExitUsage || !strings.Contains(err.Error(), "several") {
		t.Fatalf("ambiguous name: %v", err)
	}
	if _, err := findDevice(st, "tablet"); err == nil || !strings.Contains(err.Error(), "laptop") {
		t.Fatalf("unknown device: %v", err)
	}
}

// Every command's --help shows at least one example, and every command
// has more than a one-line description.
func TestEveryCommandHasHelpExample(t *testing.T) {
	root := NewRootCommand()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			return
		}
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("%s: no example in --help", c.CommandPath())
		}
		if c.Runnable() && strings.TrimSpace(c.Long) == "" {
			t.Errorf("%s: only a one-line description", c.CommandPath())
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	// serve's help shows only server flags.
	var out bytes.Buffer
	code := Run(context.Background(), []string{"serve", "--help"}, IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out, Getenv: testEnv})
	if code != 0 || strings.Contains(out.String(), "--passphrase-file") || strings.Contains(out.String(), "--server ") || !strings.Contains(out.String(), "--tls-cert") || !strings.Contains(out.String(), "Examples:") {
		t.Errorf("serve --help (exit %d):\n%s", code, out.String())
	}
}
