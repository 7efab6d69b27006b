package cli

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/keyline/keyline/devices"
	pb "github.com/keyline/keyline/proto"
	"github.com/keyline/keyline/verifier/cosign"
)

// updateProxy forwards the directory API to a real directory and breaks
// publishing the way networks and hostile directories do (mode).
type updateProxy struct {
	tamperingProxy
	mode string // "tamper-after-update", "cut-after-update", "cut-before-update"
	mu   sync.Mutex
	sent bool
}

func (p *updateProxy) Update(ctx context.Context, r *pb.UpdateRequest) (*pb.UpdateResponse, error) {
	if p.mode == "reject-update" {
		return nil, status.Error(codes.FailedPrecondition, "concurrent update")
	}
	if p.mode == "cut-before-update" {
		return nil, status.Error(codes.Unavailable, "error reading from server: EOF")
	}
	resp, err := p.up.Update(ctx, r)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.sent = true
	p.mu.Unlock()
	if p.mode == "cut-after-update" {
		return nil, status.Error(codes.Unavailable, "error reading from server: EOF")
	}
	return resp, nil
}

func (p *updateProxy) Lookup(ctx context.Context, r *pb.LookupRequest) (*pb.LookupResponse, error) {
	p.mu.Lock()
	sent := p.sent
	p.mu.Unlock()
	if p.mode == "tamper-after-update" && sent {
		return p.tamperingProxy.Lookup(ctx, r)
	}
	return p.up.Lookup(ctx, r)
}

func startUpdateProxy(t *testing.T, upstream, mode string) string {
	t.Helper()
	cc, err := grpc.NewClient(upstream, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	pb.RegisterDirectoryServer(s, &updateProxy{tamperingProxy: tamperingProxy{up: pb.NewDirectoryClient(cc)}, mode: mode})
	go s.Serve(lis)
	t.Cleanup(func() { s.Stop(); cc.Close() })
	return lis.Addr().String()
}

// runEnv runs keyline in the world with env overriding testEnv.
func (w *world) runEnv(env map[string]string, device, stdin string, args ...string) result {
	w.t.Helper()
	full := append([]string{"--server", w.server, "--trust", w.trust, "--data-dir", filepath.Join(w.root, device)}, args...)
	var out, errb syncBuf
	getenv := func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return testEnv(k)
	}
	code := Run(context.Background(), full, IO{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, Getenv: getenv})
	return result{out.String(), errb.String(), code}
}

func wantIn(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s does not say %q:\n%s", what, sub, s)
		}
	}
}

func wantNotIn(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			t.Errorf("%s says %q:\n%s", what, sub, s)
		}
	}
}

// pairingCode runs `device request` on dev and returns the code and the
// fingerprint it shows.
func (w *world) pairingCode(dev, user, name string) (code, fp string) {
	w.t.Helper()
	r := w.ok(dev, "", "device", "request", user, "--name", name)
	code = regexp.MustCompile(`KL2-[A-Z0-9-]+`).FindString(r.out)
	fp = strings.TrimSpace(regexp.MustCompile(`Fingerprint:\s+([0-9 ]+)`).FindStringSubmatch(r.out)[1])
	return code, fp
}

// TestIssue10 has one case per way issue 10 found to lose a key or a pin,
// or to leave a first-time user stuck. Each case fails on the behaviour
// before the fix.
func TestIssue10(t *testing.T) {
	root := t.TempDir()
	srvDir := filepath.Join(root, "server")
	addr, stop := startServer(t, srvDir)
	defer stop()
	w := &world{t: t, root: root, trust: filepath.Join(srvDir, "trust.json"), server: addr}
	w.ok("alice", "", "account", "create", "alice", "--name", "laptop", "--no-confirm")
	w.ok("bob", "", "account", "create", "bob", "--name", "pc", "--no-confirm")

	cases := []struct {
		name string
		run  func(t *testing.T, w *world)
	}{
		{"passphrase source is checked before the paper key is shown", func(t *testing.T, w *world) {
			empty := filepath.Join(w.root, "empty-pass")
			os.WriteFile(empty, nil, 0o600)
			for i, c := range []struct {
				env  map[string]string
				args []string
				want string
			}{
				{nil, []string{"--passphrase-file", filepath.Join(w.root, "no-such-file")}, "passphrase file"},
				{nil, []string{"--passphrase-file", empty}, "is empty"},
				{map[string]string{"KEYLINE_PASSPHRASE": ""}, nil, "KEYLINE_PASSPHRASE"}, // piped stdin, no passphrase
				{map[string]string{"KEYLINE_PASSPHRASE": "short"}, nil, "too short"},
			} {
				dev := "pp" + string(rune('a'+i))
				r := w.runEnv(c.env, dev, "", append(c.args, "account", "create", dev, "--no-confirm")...)
				if r.code == 0 {
					t.Fatalf("case %d: account create succeeded", i)
				}
				wantIn(t, "the error", r.err, c.want)
				wantNotIn(t, "the output before the error", r.out+r.err, "PAPER KEY")
			}
		}},
		{"a verification failure after publish keeps the keys and says it was published", func(t *testing.T, w *world) {
			proxy := startUpdateProxy(t, w.server, "tamper-after-update")
			r := w.runAt(proxy, "carol", "", "account", "create", "carol", "--no-confirm")
			if r.code != ExitVerification {
				t.Fatalf("exit %d, want %d\n%s", r.code, ExitVerification, r.err)
			}
			wantIn(t, "the error", r.err, "was published at epoch", "your keys are saved", "keyline account sync")
			if _, err := os.Stat(filepath.Join(w.root, "carol", "keystore")); err != nil {
				t.Fatalf("no keystore after a published create: %v", err)
			}
			r = w.ok("carol", "", "account", "sync")
			wantIn(t, "account sync", r.err, "was published")
			w.ok("carol", "", "device", "list")
		}},
		{"one command at a time per client folder", func(t *testing.T, w *world) {
			dir := filepath.Join(w.root, "locked")
			os.MkdirAll(dir, 0o700)
			a := newApp(IO{Getenv: testEnv})
			a.dataDir = dir
			unlock, err := a.lockDataDir()
			if err != nil {
				t.Fatal(err)
			}
			r := w.run("locked", "", "account", "create", "dave", "--no-confirm")
			unlock()
			if r.code == 0 {
				t.Fatal("account create ran while another command held the client folder")
			}
			wantIn(t, "the error", r.err, "another keyline command is using the client folder")
			// Two creates at once: at most one wins, and the keystore is
			// the winner's.
			var wg sync.WaitGroup
			res := make([]result, 2)
			for i, u := range []string{"erin", "frank"} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res[i] = w.run("race", "", "account", "create", u, "--no-confirm")
				}()
			}
			wg.Wait()
			wins := 0
			for i, u := range []string{"erin", "frank"} {
				if res[i].code == 0 {
					wins++
					var info deviceInfo
					b, _ := os.ReadFile(filepath.Join(w.root, "race", deviceInfoFile))
					json.Unmarshal(b, &info)
					if info.UserID != u {
						t.Errorf("%s won, but the keystore is %q's", u, info.UserID)
					}
				}
			}
			if wins != 1 {
				t.Errorf("%d of two concurrent creates succeeded:\n%s\n%s", wins, res[0].err, res[1].err)
			}
		}},
		{"a trust file of another directory is named as the problem; pins are kept", func(t *testing.T, w *world) {
			w.ok("alice", "", "lookup", "bob")
			otherDir := filepath.Join(w.root, "other-server")
			_, stopOther := startServer(t, otherDir)
			defer stopOther()
			before, _ := os.ReadFile(filepath.Join(w.root, "alice", clientStateFile))
			r := w.run("alice", "", "--trust", filepath.Join(otherDir, "trust.json"), "lookup", "bob")
			if r.code == 0 {
				t.Fatal("lookup with another directory's trust file succeeded")
			}
			wantIn(t, "the error", r.err, "does not match the client state", "trust file", "your pins are intact")
			wantNotIn(t, "the error", r.err, "move it away")
			after, _ := os.ReadFile(filepath.Join(w.root, "alice", clientStateFile))
			if string(before) != string(after) {
				t.Error("the client state changed")
			}
		}},
		{"a deleted client state next to a keystore is an error with a recovery path", func(t *testing.T, w *world) {
			var l lookupJSON
			w.okJSON("bob", &l, "lookup", "alice") // pins alice
			state := filepath.Join(w.root, "bob", clientStateFile)
			os.Remove(state)
			r := w.run("bob", "", "lookup", "alice")
			if r.code == 0 {
				t.Fatal("lookup without the client state succeeded (re-pinning silently)")
			}
			wantIn(t, "the error", r.err, "is missing", "keyline state restore")
			w.ok("bob", "", "state", "restore")
			w.okJSON("bob", &l, "lookup", "alice")
			if l.Pin == "new" {
				t.Errorf("after restore, alice is pinned anew (%q)", l.Pin)
			}
			// A damaged state gets the same advice, never "move it away".
			os.WriteFile(state, []byte("{not json"), 0o600)
			r = w.run("bob", "", "lookup", "alice")
			wantIn(t, "the error", r.err, "damaged", "keyline state restore")
			wantNotIn(t, "the error", r.err, "move it away")
			w.ok("bob", "", "state", "restore")
			// A reset keeps the backup: restore undoes it.
			w.ok("bob", "", "state", "reset", "--yes")
			w.ok("bob", "", "state", "restore")
			w.okJSON("bob", &l, "lookup", "alice")
			if l.Pin == "new" {
				t.Errorf("after reset and restore, alice is pinned anew (%q)", l.Pin)
			}
		}},
		{"safety-number after an unexplained change prints the digits and a useful hint", func(t *testing.T, w *world) {
			w.ok("alice", "", "lookup", "bob")
			// Alice's pin of bob (verified) is replaced by another key:
			// the directory now serves a key no reset explains.
			state := filepath.Join(w.root, "alice", clientStateFile)
			b, _ := os.ReadFile(state)
			var f map[string]any
			json.Unmarshal(b, &f)
			other := make([]byte, 32)
			rand.Read(other)
			f["contacts"].(map[string]any)["bob"] = map[string]any{"ik": base64.StdEncoding.EncodeToString(other), "verified": true, "version": 1, "pinned_at": "2026-01-02T03:04:05Z"}
			b, _ = json.Marshal(f)
			os.WriteFile(state, b, 0o600)
			r := w.run("alice", "", "safety-number", "bob", "--no-qr")
			if r.code != ExitVerification {
				t.Fatalf("exit %d, want %d\n%s", r.code, ExitVerification, r.err)
			}
			digits := regexp.MustCompile(`(?m)^\s+(\d{5}\s+){3}\d{5}$`).FindAllString(r.out, -1)
			if len(digits) != 3 {
				t.Fatalf("safety-number shows no 60 digits:\n%s\n%s", r.out, r.err)
			}
			wantIn(t, "the warning", r.err, "NEW", "FORGED")
			errLine := r.err[strings.LastIndex(r.err, "keyline: "):]
			wantIn(t, "the error", errLine, "keyline verify bob")
			wantNotIn(t, "the error", errLine, "keyline safety-number bob")
		}},
		{"pairing: re-show, names unique, approving off a terminal names the flags, revoke by name and prefix", func(t *testing.T, w *world) {
			code, fp := w.pairingCode("alice-phone", "alice", "phone")
			code2, fp2 := w.pairingCode("alice-phone", "alice", "phone")
			if code2 != code || fp2 != fp {
				t.Errorf("the request shown again differs: %s %s vs %s %s", code2, fp2, code, fp)
			}
			r := w.run("alice", "", "device", "approve", code)
			if r.code == 0 {
				t.Fatal("approve with no terminal and no flag succeeded")
			}
			wantIn(t, "the error", r.err, "--fingerprint", "--yes")
			w.ok("alice", "", "device", "approve", code, "--fingerprint", fp)
			w.ok("alice-phone", "", "device", "finish")
			// A second "phone" is refused, on the new device already.
			r = w.run("alice-phone2", "", "device", "request", "alice", "--name", "phone")
			if r.code != ExitUsage {
				t.Fatalf("request with a duplicate name: exit %d\n%s", r.code, r.err)
			}
			wantIn(t, "the error", r.err, `already has a device named "phone"`, "--name")
			w.ok("alice", "", "device", "revoke", "phone", "--yes")
			code, fp = w.pairingCode("alice-tab", "alice", "tablet")
			w.ok("alice", "", "device", "approve", code, "--fingerprint", fp)
			w.ok("alice-tab", "", "device", "finish")
			var info deviceInfo
			b, _ := os.ReadFile(filepath.Join(w.root, "alice-tab", deviceInfoFile))
			json.Unmarshal(b, &info)
			w.ok("alice", "", "device", "revoke", info.DeviceID[:8], "--yes")
		}},
		{"a truncated or bit-flipped keystore is reported as damaged, not as a wrong passphrase", func(t *testing.T, w *world) {
			w.ok("ks", "", "account", "create", "kate", "--no-confirm")
			path := filepath.Join(w.root, "ks", "keystore")
			orig, _ := os.ReadFile(path)
			flipped := append([]byte{}, orig...)
			flipped[len(flipped)-5] ^= 1
			for name, b := range map[string][]byte{"truncated": orig[:len(orig)-7], "bit-flipped": flipped} {
				os.WriteFile(path, b, 0o600)
				r := w.run("ks", "", "account", "sync")
				if r.code == 0 {
					t.Fatalf("%s keystore opened", name)
				}
				wantIn(t, name+" keystore", r.err, "damaged")
				wantNotIn(t, name+" keystore", r.err, "wrong passphrase")
			}
			os.WriteFile(path, orig, 0o600)
			w.ok("ks", "", "account", "sync")
		}},
		{"a connection cut after publishing says so, and sync finishes it", func(t *testing.T, w *world) {
			for i, mode := range []string{"cut-after-update", "cut-before-update"} {
				dev := "cut" + string(rune('a'+i))
				user := "cutuser" + string(rune('a'+i))
				proxy := startUpdateProxy(t, w.server, mode)
				r := w.runAt(proxy, dev, "", "account", "create", user, "--no-confirm")
				if r.code == 0 {
					t.Fatalf("%s: create succeeded", mode)
				}
				wantIn(t, mode+" error", r.err, "may or may not be published", "your keys are saved", "keyline account sync")
				// Running create again points at sync instead of failing
				// on the keystore.
				r = w.run(dev, "", "account", "create", user, "--no-confirm")
				wantIn(t, "create again", r.err, "did not finish", "keyline account sync")
				r = w.ok(dev, "", "account", "sync")
				wantIn(t, mode+" sync", r.err, "published")
				if _, err := os.Stat(filepath.Join(w.root, dev, pendingFile)); err == nil {
					t.Errorf("%s: the pending record is still there after sync", mode)
				}
				w.ok(dev, "", "device", "list")
			}
		}},
		{"killed after the pending record but before the keys were saved: nothing was sent, the folder is usable", func(t *testing.T, w *world) {
			dir := filepath.Join(w.root, "early")
			os.MkdirAll(dir, 0o700)
			a := newApp(IO{Getenv: testEnv})
			a.dataDir = dir
			_, st, err := demoAccount("early", "phone", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			enc, _ := st.MarshalBinary()
			h, _ := st.Hash()
			if err := a.writePending(&pendingOp{Format: pendingFormat, Op: "account create", UserID: "early", Version: 1, StateHash: fmt.Sprintf("%x", h), State: base64.StdEncoding.EncodeToString(enc), NewAccount: true, StartedAt: time.Now().UTC().Truncate(time.Second)}); err != nil {
				t.Fatal(err)
			}
			r := w.ok("early", "", "account", "sync")
			wantIn(t, "sync", r.err, "nothing was published")
			w.ok("early", "", "account", "create", "early", "--no-confirm")
		}},
		{"an update with new keys saves the keystore before it is sent", func(t *testing.T, w *world) {
			w.ok("rot", "", "account", "create", "rot", "--no-confirm")
			a := newApp(IO{Getenv: testEnv, Stdin: strings.NewReader("")})
			a.dataDir, a.trustPath = filepath.Join(w.root, "rot"), w.trust
			a.server = startUpdateProxy(t, w.server, "cut-before-update")
			o, err := a.openOwn(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			ask, err := needSigningKey(o.ks, o.res.State, "test")
			if err != nil {
				t.Fatal(err)
			}
			dk, err := devices.NewDeviceKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			cert, err := dk.NewCert("tablet", o.res.IdentityKey, o.res.State.Timestamp)
			if err != nil {
				t.Fatal(err)
			}
			next, err := devices.AddDevice(o.res.State, ask, cert, o.res.State.Timestamp.Add(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(filepath.Join(w.root, "rot", keystoreSumFile))
			_, err = o.publishWithNewKeys(context.Background(), "device approve", next)
			o.close()
			if err == nil || !strings.Contains(err.Error(), "may or may not be published") {
				t.Fatalf("publish through a cut connection: %v", err)
			}
			after, _ := os.ReadFile(filepath.Join(w.root, "rot", keystoreSumFile))
			if string(before) == string(after) {
				t.Error("the keystore was not saved before the update was sent")
			}
			r := w.ok("rot", "", "account", "sync")
			wantIn(t, "sync", r.err, "sending it again", "now published")
		}},
		{"an update the directory refused leaves a usable folder and says nothing was published", func(t *testing.T, w *world) {
			proxy := startUpdateProxy(t, w.server, "reject-update")
			r := w.runAt(proxy, "rej", "", "account", "create", "rejected", "--no-confirm")
			if r.code != ExitRejected {
				t.Fatalf("exit %d, want %d\n%s", r.code, ExitRejected, r.err)
			}
			wantIn(t, "the error", r.err, "nothing was published", "paper key it showed is void", "keystore.unpublished-")
			if _, err := os.Stat(filepath.Join(w.root, "rej", pendingFile)); err == nil {
				t.Error("the pending record is still there")
			}
			w.ok("rej", "", "account", "create", "rejected", "--no-confirm")
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, w) })
	}
}

// TestServeKeyFilesAndTrustChange: serve refuses an initialised data dir
// that lost a key file, says whether it created or opened a directory, and
// says when clients need the new trust.json.
func TestServeKeyFilesAndTrustChange(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "srv")
	_, out, stop := startServeOut(t, dir)
	wantIn(t, "first start", out.String(), "Created a NEW directory", "key fingerprints")
	stop()
	_, out, stop = startServeOut(t, dir, "--max-checkpoint-age", "48h")
	wantIn(t, "second start", out.String(), "Opened the existing directory", "log size", "TRUST CHANGED", "max checkpoint age", "Clients must fetch the new trust.json")
	stop()
	_, vkey, err := cosign.GenerateKey("w.example")
	if err != nil {
		t.Fatal(err)
	}
	_, out, stop = startServeOut(t, dir, "--max-checkpoint-age", "48h", "--witness", "http://127.0.0.1:1="+vkey, "--witness-quorum", "1")
	wantIn(t, "start with a witness", out.String(), "TRUST CHANGED", "witnesses: 0 before, 1 now", "witness quorum: 0 before, 1 now", "Clients must fetch the new trust.json")
	stop()
	_, out, stop = startServeOut(t, dir, "--max-checkpoint-age", "48h", "--witness", "http://127.0.0.1:1="+vkey, "--witness-quorum", "1")
	wantNotIn(t, "restart with the same settings", out.String(), "TRUST CHANGED")
	stop()
	for _, f := range []string{"vrf.seed", "reset.key", "log.skey"} {
		os.Rename(filepath.Join(dir, f), filepath.Join(dir, f+".away"))
		var o, e syncBuf
		code := Run(context.Background(), []string{"serve", "--listen", "127.0.0.1:0", "--data-dir", dir, "--insecure-no-sync"}, IO{Stdin: strings.NewReader(""), Stdout: &o, Stderr: &e, Getenv: testEnv})
		if code != ExitError {
			t.Fatalf("serve without %s: exit %d\n%s", f, code, e.String())
		}
		wantIn(t, "serve without "+f, e.String(), "lacks "+f, "refusing to start")
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("serve created a new %s", f)
		}
		os.Rename(filepath.Join(dir, f+".away"), filepath.Join(dir, f))
	}
}

// startServeOut is startServeArgs returning stdout.
func startServeOut(t *testing.T, dataDir string, extra ...string) (string, *syncBuf, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuf
	done := make(chan int, 1)
	args := append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--epoch-interval", "20ms", "--insecure-no-sync"}, extra...)
	go func() {
		done <- Run(ctx, args, IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: testEnv})
	}()
	re := regexp.MustCompile(`listening on (\S+)`)
	for {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m[1], &out, func() { cancel(); <-done }
		}
		select {
		case code := <-done:
			cancel()
			t.Fatalf("serve exited %d before listening:\n%s\n%s", code, out.String(), errb.String())
		default:
		}
		waitShort()
	}
}

func waitShort() { time.Sleep(5 * time.Millisecond) }
