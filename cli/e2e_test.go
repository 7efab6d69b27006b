package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory/client"
	"github.com/keyline/keyline/directory/loadgen"
	klog "github.com/keyline/keyline/log"
	pb "github.com/keyline/keyline/proto"
)

// syncBuf is a goroutine-safe buffer for a command's output.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// world is one end-to-end run: a directory and devices with their own data
// dirs, driven through the keyline command line in process.
type world struct {
	t      *testing.T
	root   string
	trust  string
	server string
}

func testEnv(key string) string {
	switch key {
	case "KEYLINE_PASSPHRASE":
		return "correct horse battery staple"
	case "KEYLINE_INSECURE_TEST_KDF":
		return "1"
	}
	return ""
}

type result struct {
	out, err string
	code     int
}

// run runs keyline with the device's data dir against the world's server.
func (w *world) run(device, stdin string, args ...string) result {
	w.t.Helper()
	return w.runAt(w.server, device, stdin, args...)
}

func (w *world) runAt(server, device, stdin string, args ...string) result {
	w.t.Helper()
	full := append([]string{"--server", server, "--trust", w.trust, "--data-dir", filepath.Join(w.root, device)}, args...)
	var out, errb syncBuf
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := Run(ctx, full, IO{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, Getenv: testEnv})
	return result{out.String(), errb.String(), code}
}

func (w *world) ok(device, stdin string, args ...string) result {
	w.t.Helper()
	r := w.run(device, stdin, args...)
	if r.code != 0 {
		w.t.Fatalf("keyline %s (%s): exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), device, r.code, r.out, r.err)
	}
	return r
}

func (w *world) okJSON(device string, v any, args ...string) {
	w.t.Helper()
	r := w.ok(device, "", append([]string{"--json"}, args...)...)
	if err := json.Unmarshal([]byte(r.out), v); err != nil {
		w.t.Fatalf("keyline --json %s: output does not parse: %v\n%s", strings.Join(args, " "), err, r.out)
	}
}

// testResetWindow is the reset window of the test directories: long
// enough for the steps a test takes inside the window (a lookup, unlocking
// a keystore, a cancel-reset) on a loaded CI machine under -race, where 2 s
// was once too short.
const testResetWindow = 5 * time.Second

// touchServer publishes a throwaway account on the directory at addr, so
// that it cuts a new epoch (with the current time).
func touchServer(t *testing.T, addr string) {
	t.Helper()
	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var b [4]byte
	rand.Read(b[:])
	acct, err := loadgen.NewAccount(fmt.Sprintf("filler-%x", b), 0)
	if err != nil {
		t.Fatal(err)
	}
	st, err := acct.Create(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := st.MarshalBinary()
	if _, err := c.Update(context.Background(), enc); err != nil {
		t.Fatalf("touch: %v", err)
	}
}

// startServer runs `keyline serve` in process on a free loopback port and
// returns its address and a stop function.
func startServer(t *testing.T, dataDir string) (string, func()) {
	t.Helper()
	return startServerOn(t, dataDir, "127.0.0.1:0")
}

// stablePort returns a free loopback address for a test that stops a
// server and starts it again on the same address (restartablePort): no
// outgoing connection can take its port in between, as one can an
// ephemeral port from "127.0.0.1:0".
func stablePort(t *testing.T) string {
	t.Helper()
	addr, err := restartablePort()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// restartablePort returns a free loopback address whose port a test can
// bind, release and bind again: in 10000-19999, below Linux's ephemeral
// range (32768-60999, where outgoing connections take ports) and outside
// the 20000-31999 from which scripts/integration-*.sh pick their servers'
// ports while `make test` runs them beside these tests.
func restartablePort() (string, error) {
	var err error
	for range 100 {
		addr := fmt.Sprintf("127.0.0.1:%d", 10000+mrand.IntN(10000))
		var l net.Listener
		if l, err = net.Listen("tcp", addr); err == nil {
			return addr, l.Close()
		}
	}
	return "", fmt.Errorf("no free port in 10000-19999: %v", err)
}

// startServerOn is startServer listening on listen.
func startServerOn(t *testing.T, dataDir, listen string) (string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuf
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"serve", "--listen", listen, "--data-dir", dataDir, "--epoch-interval", "20ms", "--insecure-no-sync", "--reset-window", testResetWindow.String()},
			IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: testEnv})
	}()
	re := regexp.MustCompile(`listening on (\S+)`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			stop := func() {
				cancel()
				if code := <-done; code != 0 {
					t.Errorf("serve exited %d: %s", code, errb.String())
				}
			}
			return m[1], stop
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d before listening:\n%s\n%s", code, out.String(), errb.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("serve did not start:\n%s\n%s", out.String(), errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// createAccount runs `account create` and answers the paper-key check as a
// person would: reading the words from the screen and typing the two asked
// for (the first one wrong once). It returns the paper key.
func (w *world) createAccount(device, user, name string) string {
	w.t.Helper()
	pr, pwr := io.Pipe()
	var out, errb syncBuf
	done := make(chan int, 1)
	args := []string{"--server", w.server, "--trust", w.trust, "--data-dir", filepath.Join(w.root, device), "account", "create", user, "--name", name}
	go func() {
		done <- Run(context.Background(), args, IO{Stdin: pr, Stdout: &out, Stderr: &errb, Getenv: testEnv})
	}()
	wordRe := regexp.MustCompile(`(?m)(\d+)\. ([a-z]+)`)
	askRe := regexp.MustCompile(`Word #(\d+): `)
	typed := 0
	wrongOnce := false
	deadline := time.Now().Add(30 * time.Second)
	for typed < 2 {
		asks := askRe.FindAllStringSubmatch(errb.String(), -1)
		if len(asks) > typed+boolInt(wrongOnce) {
			pos, _ := strconv.Atoi(asks[len(asks)-1][1])
			words := map[int]string{}
			for _, m := range wordRe.FindAllStringSubmatch(out.String(), -1) {
				n, _ := strconv.Atoi(m[1])
				words[n] = m[2]
			}
			if len(words) != 24 {
				w.t.Fatalf("paper key not shown as 24 numbered words:\n%s", out.String())
			}
			if typed == 0 && !wrongOnce {
				wrongOnce = true
				fmt.Fprintln(pwr, "notaword")
				continue
			}
			fmt.Fprintln(pwr, words[pos])
			typed++
			continue
		}
		select {
		case code := <-done:
			w.t.Fatalf("account create exited %d early:\n%s\n%s", code, out.String(), errb.String())
		default:
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("account create: no word prompt:\n%s\n%s", out.String(), errb.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	code := <-done
	pwr.Close()
	if code != 0 {
		w.t.Fatalf("account create %s: exit %d\n%s\n%s", user, code, out.String(), errb.String())
	}
	if !strings.Contains(errb.String(), "That is not word") {
		w.t.Errorf("a wrong word was not refused:\n%s", errb.String())
	}
	var words []string
	for _, m := range wordRe.FindAllStringSubmatch(out.String(), -1) {
		words = append(words, m[0])
	}
	// The words are printed in columns; order them by number.
	byNum := map[int]string{}
	for _, m := range wordRe.FindAllStringSubmatch(out.String(), -1) {
		n, _ := strconv.Atoi(m[1])
		byNum[n] = m[2]
	}
	var paper []string
	for i := 1; i <= 24; i++ {
		paper = append(paper, byNum[i])
	}
	if _, err := devices.ParsePaperKey(strings.Join(paper, " ")); err != nil {
		w.t.Fatalf("printed paper key does not parse: %v", err)
	}
	return strings.Join(paper, " ")
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// pairWaiting adds newDev with `device request --wait`, approving it while
// the new device waits.
func (w *world) pairWaiting(user, approver, newDev, name string) {
	w.t.Helper()
	var out, errb syncBuf
	done := make(chan int, 1)
	args := []string{"--server", w.server, "--trust", w.trust, "--data-dir", filepath.Join(w.root, newDev), "device", "request", user, "--name", name, "--wait", "30s"}
	go func() {
		done <- Run(context.Background(), args, IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: testEnv})
	}()
	codeRe := regexp.MustCompile(`KL2-[A-Z0-9-]+`)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(errb.String(), "Waiting") {
		if time.Now().After(deadline) {
			w.t.Fatalf("device request --wait did not start waiting:\n%s\n%s", out.String(), errb.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	fp := regexp.MustCompile(`Fingerprint:\s+([0-9 ]+)`).FindStringSubmatch(out.String())[1]
	w.ok(approver, "", "device", "approve", codeRe.FindString(out.String()), "--fingerprint", fp)
	if code := <-done; code != 0 || !strings.Contains(out.String(), "Approved: this device is now part of "+user) {
		w.t.Fatalf("device request --wait: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
}

type lookupJSON struct {
	UserID      string `json:"user_id"`
	Found       bool   `json:"found"`
	Verified    bool   `json:"verified"`
	Version     uint64 `json:"version"`
	IdentityKey string `json:"identity_key"`
	Pin         string `json:"pin"`
	Reset       bool   `json:"reset"`
	// ResetPending is set while a directory reset is in its window.
	ResetPending *resetInfo  `json:"reset_pending"`
	Devices      []deviceRow `json:"devices"`
	Checks       []checkRow  `json:"checks"`
}

func activeNames(l lookupJSON) []string {
	var n []string
	for _, d := range l.Devices {
		if !d.Revoked {
			n = append(n, d.name())
		}
	}
	sort.Strings(n)
	return n
}

func TestEndToEnd(t *testing.T) {
	root := t.TempDir()
	srvDir := filepath.Join(root, "server")
	addr, stop := startServer(t, srvDir)
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	w := &world{t: t, root: root, trust: filepath.Join(srvDir, "trust.json"), server: addr}

	// Alice: account on her laptop, then her phone joins.
	alicePaper := w.createAccount("alice-laptop", "alice", "laptop")
	var phoneReq pairingOutput
	r := w.ok("alice-phone", "", "device", "request", "alice", "--name", "phone")
	if !strings.Contains(r.out, "▀") || !strings.Contains(r.out, "KL2-") {
		t.Fatalf("device request shows no QR code or pairing code:\n%s", r.out)
	}
	code := regexp.MustCompile(`KL2-[A-Z0-9-]+`).FindString(r.out)
	fp := regexp.MustCompile(`Fingerprint:\s+([0-9 ]+)`).FindStringSubmatch(r.out)[1]
	phoneReq.Code, phoneReq.Fingerprint = code, strings.TrimSpace(fp)
	// Saying no publishes nothing.
	if r := w.run("alice-laptop", "n\n", "device", "approve", code); r.code != ExitError {
		t.Fatalf("declined approval: exit %d, want %d\n%s", r.code, ExitError, r.err)
	}
	if r := w.run("alice-phone", "", "device", "finish"); r.code == 0 || !strings.Contains(r.err, "not (yet) part") {
		t.Fatalf("finish before approval: exit %d\n%s", r.code, r.err)
	}
	// A fingerprint that does not match is refused as a verification failure.
	if r := w.run("alice-laptop", "", "device", "approve", code, "--fingerprint", "1111 2222 3333 4444 5555"); r.code != ExitVerification {
		t.Fatalf("approve with a wrong fingerprint: exit %d\n%s", r.code, r.err)
	}
	r = w.ok("alice-laptop", "y\n", "device", "approve", code)
	if !strings.Contains(r.err, phoneReq.Fingerprint) {
		t.Fatalf("approver did not show the fingerprint %q:\n%s", phoneReq.Fingerprint, r.err)
	}
	w.ok("alice-phone", "", "device", "finish")
	// The phone is not trusted: it does not hold the account signing key.
	if r := w.run("alice-phone", "", "device", "revoke", "laptop", "-y"); r.code != ExitError || !strings.Contains(r.err, "not trusted") {
		t.Fatalf("revoke from the phone: exit %d\n%s", r.code, r.err)
	}

	// Bob: account with two devices.
	w.createAccount("bob-pc", "bob", "pc")
	w.pairWaiting("bob", "bob-pc", "bob-tablet", "tablet")
	// A wrong passphrase does not open the keystore; a passphrase file does.
	wrongPass := filepath.Join(root, "wrong-pass")
	os.WriteFile(wrongPass, []byte("not it\n"), 0o600)
	if r := w.run("bob-pc", "", "--passphrase-file", wrongPass, "account", "sync"); r.code != ExitError || !strings.Contains(r.err, "wrong passphrase") {
		t.Fatalf("wrong passphrase: exit %d\n%s", r.code, r.err)
	}
	rightPass := filepath.Join(root, "right-pass")
	os.WriteFile(rightPass, []byte(testEnv("KEYLINE_PASSPHRASE")+"\n"), 0o600)
	w.ok("bob-pc", "", "--passphrase-file", rightPass, "account", "sync")
	// Listing devices is read-only: no passphrase is needed.
	w.ok("bob-pc", "", "--passphrase-file", wrongPass, "device", "list")

	// They look each other up.
	var l lookupJSON
	w.okJSON("alice-laptop", &l, "lookup", "bob")
	if !l.Found || !l.Verified || l.Version != 2 || !equal(activeNames(l), []string{"pc", "tablet"}) {
		t.Fatalf("alice's lookup of bob: %+v", l)
	}
	r = w.ok("bob-pc", "", "lookup", "alice")
	for _, want := range []string{"alice  version 2", "laptop", "phone", "ok  VRF proof", "ok  map proof", "ok  epoch record"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("bob's lookup of alice lacks %q:\n%s", want, r.out)
		}
	}
	if r := w.run("bob-pc", "", "lookup", "carol"); r.code != ExitRejected || !strings.Contains(r.out, "no such account") {
		t.Fatalf("lookup of a missing user: exit %d\n%s%s", r.code, r.out, r.err)
	}

	// Safety numbers: both sides see the same 60 digits.
	var snA, snB safetyOutput
	w.okJSON("alice-laptop", &snA, "safety-number", "bob")
	w.okJSON("bob-pc", &snB, "safety-number", "alice")
	if snA.SafetyNumber != snB.SafetyNumber || len(normDigits(snA.SafetyNumber)) != 60 || len(strings.Fields(snA.SafetyNumber)) != 12 {
		t.Fatalf("safety numbers differ or are malformed: %q vs %q", snA.SafetyNumber, snB.SafetyNumber)
	}
	var snPhone safetyOutput
	w.okJSON("alice-phone", &snPhone, "safety-number", "bob")
	if snPhone.SafetyNumber != snA.SafetyNumber {
		t.Fatalf("alice's phone sees another safety number for bob")
	}
	r = w.ok("bob-pc", "", "safety-number", "alice")
	if !strings.Contains(r.out, "█") || !strings.Contains(r.out, strings.Join(strings.Fields(snA.SafetyNumber)[:4], "  ")) {
		t.Fatalf("safety-number text output lacks the QR code or the digit groups:\n%s", r.out)
	}
	// Wrong digits never verify; the right ones (or the scanned QR) pin.
	wrong := []byte(normDigits(snA.SafetyNumber))
	wrong[59] = '0' + (wrong[59]-'0'+1)%10
	if r := w.run("alice-laptop", "", "verify", "bob", string(wrong)); r.code != ExitVerification || strings.Contains(r.out, "Verified") {
		t.Fatalf("verify with wrong digits: exit %d\n%s%s", r.code, r.out, r.err)
	}
	if r := w.run("alice-laptop", "", "verify", "bob", "--scan", snA.QR); r.code != ExitVerification {
		t.Fatalf("verify with alice's own QR (not bob's): exit %d\n%s", r.code, r.err)
	}
	w.ok("alice-laptop", "", "verify", "bob", snB.SafetyNumber)
	w.ok("bob-pc", "", "verify", "alice", "--scan", snA.QR)
	w.okJSON("bob-pc", &l, "lookup", "alice")
	if !strings.Contains(l.Pin, "verified") {
		t.Fatalf("bob's pin of alice is %q after verify", l.Pin)
	}

	// Alice revokes her phone: lookups no longer show it as a device.
	w.ok("alice-laptop", "", "device", "revoke", "phone", "-y", "--reason", "lost")
	w.okJSON("bob-pc", &l, "lookup", "alice")
	if !equal(activeNames(l), []string{"laptop"}) || l.Version != 3 {
		t.Fatalf("after revoking the phone bob sees %v (v%d)", activeNames(l), l.Version)
	}
	var revoked int
	for _, d := range l.Devices {
		if d.Revoked {
			revoked++
		}
	}
	if revoked != 1 {
		t.Fatalf("want 1 revocation, got %+v", l.Devices)
	}
	var list struct {
		Devices []deviceRow `json:"devices"`
	}
	w.okJSON("alice-laptop", &list, "device", "list")
	if len(list.Devices) != 2 || !list.Devices[0].ThisDevice || list.Devices[1].name() != "phone" || !list.Devices[1].Revoked {
		t.Fatalf("device list after revoke: %+v", list.Devices)
	}
	// The phone's monitor sees a change it did not make, names it, exits 3.
	r = w.run("alice-phone", "", "monitor", "--once")
	if r.code != ExitVerification || !strings.Contains(r.out, "UNEXPECTED CHANGE") || !strings.Contains(r.out, "phone") {
		t.Fatalf("phone monitor after its revocation: exit %d\n%s%s", r.code, r.out, r.err)
	}

	// Alice loses everything but her paper key and recovers on a new device.
	r = w.ok("alice-new", alicePaper+"\n", "account", "recover", "alice", "--name", "new-laptop")
	if !strings.Contains(r.out, "revoked as lost: laptop") {
		t.Fatalf("recover output:\n%s", r.out)
	}
	w.okJSON("bob-pc", &l, "lookup", "alice")
	if !equal(activeNames(l), []string{"new-laptop"}) || !strings.Contains(l.Pin, "verified") {
		t.Fatalf("after recovery bob sees %v, pin %q", activeNames(l), l.Pin)
	}
	var snAfter safetyOutput
	w.okJSON("bob-pc", &snAfter, "safety-number", "alice")
	if snAfter.SafetyNumber != snB.SafetyNumber || !snAfter.Verified {
		t.Fatalf("bob's safety number for alice changed by recovery: %q -> %q", snB.SafetyNumber, snAfter.SafetyNumber)
	}
	var snNew safetyOutput
	w.okJSON("alice-new", &snNew, "safety-number", "bob")
	if snNew.SafetyNumber != snA.SafetyNumber {
		t.Fatalf("alice's recovered device sees another safety number")
	}
	// The old laptop's monitor reports the recovery it did not make.
	if r := w.run("alice-laptop", "", "monitor", "--once"); r.code != ExitVerification {
		t.Fatalf("old laptop monitor after recovery: exit %d\n%s", r.code, r.out)
	}

	// Bob's monitor: OK.
	var mon monitorOutput
	w.okJSON("bob-pc", &mon, "monitor", "--once")
	if !mon.OK || mon.UserID != "bob" || mon.Version != 2 {
		t.Fatalf("bob's monitor: %+v", mon)
	}
	w.ok("bob-tablet", "", "monitor", "--once")

	auditHonest(t, w)

	// Errors: friendly, with exit codes, and JSON with --json.
	r = w.runAt("127.0.0.1:1", "bob-pc", "", "--json", "lookup", "alice")
	var je jsonError
	if r.code != ExitNetwork || json.Unmarshal([]byte(r.err), &je) != nil || je.Kind != KindNetwork || je.Hint == nil || !strings.Contains(*je.Hint, "keyline serve") {
		t.Fatalf("unreachable server: exit %d, stderr %s", r.code, r.err)
	}
	if r := w.run("bob-pc", "", "lookup"); r.code != ExitUsage {
		t.Fatalf("lookup without USER: exit %d", r.code)
	}
	if r := w.run("bob-pc", "", "lookup", "Not Valid!"); r.code != ExitUsage {
		t.Fatalf("lookup of an invalid id: exit %d", r.code)
	}

	// A malicious directory: tamper with lookups in transit (a device key
	// the identity key never signed). Bob's client refuses.
	proxy := startTamperingProxy(t, addr)
	r = w.runAt(proxy, "bob-pc", "", "lookup", "alice")
	if r.code != ExitVerification || strings.Contains(r.out, "ok ") || !strings.Contains(r.err, "verification failed") {
		t.Fatalf("forged device: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.err)
	}

	// The directory's operator runs a copy of the directory with the same
	// keys and replaces alice's identity key (a reset nobody asked for).
	stop()
	stopped = true
	evilDir := filepath.Join(root, "evil")
	copyDir(t, srvDir, evilDir)
	evilAddr, stopEvil := startServer(t, evilDir)
	defer stopEvil()
	forgeReset(t, evilAddr, evilDir, "alice")
	// The reset is pending: bob still gets alice's keys, with a notice;
	// alice's monitor tells her how to cancel it.
	r = w.runAt(evilAddr, "bob-pc", "", "lookup", "alice")
	if r.code != 0 || !strings.Contains(r.err, "RESET PENDING") || !strings.Contains(r.out, "RESET PENDING") {
		t.Fatalf("lookup during the reset window: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.err)
	}
	r = w.runAt(evilAddr, "alice-new", "", "monitor", "--once")
	if r.code != ExitVerification || !strings.Contains(r.out, "keyline account cancel-reset") {
		t.Fatalf("alice's monitor during the reset window: exit %d\n%s%s", r.code, r.out, r.err)
	}
	// Nobody cancels it: after the window it takes effect, loudly.
	time.Sleep(testResetWindow + time.Second)
	touchServer(t, evilAddr)
	r = w.runAt(evilAddr, "bob-pc", "", "lookup", "alice")
	if r.code != ExitVerification || !strings.Contains(r.err, "SAFETY NUMBER CHANGED") || strings.Contains(r.out, "ok ") {
		t.Fatalf("silent key substitution by the directory: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.err)
	}
	r = w.runAt(evilAddr, "bob-pc", "", "--json", "lookup", "alice")
	if r.code != ExitVerification || json.Unmarshal([]byte(r.err), &je) != nil || je.Kind != KindVerification {
		t.Fatalf("--json verification failure: exit %d, stderr %s", r.code, r.err)
	}
	// The new number is shown (so the two can compare again), loudly, and
	// with exit code 3; the old digits no longer verify.
	var snEvil safetyOutput
	r = w.runAt(evilAddr, "bob-pc", "", "--json", "safety-number", "alice")
	if r.code != ExitVerification || json.Unmarshal([]byte(r.out), &snEvil) != nil || snEvil.SafetyNumber == snB.SafetyNumber || !strings.Contains(r.err, "SAFETY NUMBER CHANGED") {
		t.Fatalf("safety-number after the forged reset: exit %d\n%s\n%s", r.code, r.out, r.err)
	}
	if r := w.runAt(evilAddr, "bob-pc", "", "verify", "alice", snB.SafetyNumber); r.code != ExitVerification {
		t.Fatalf("old digits against the forged key: exit %d\n%s%s", r.code, r.out, r.err)
	}
	auditCountsReset(t, w, evilAddr)
	// Alice's monitor sees the reset.
	r = w.runAt(evilAddr, "alice-new", "", "monitor", "--once")
	if r.code != ExitVerification || !strings.Contains(r.out, "RESET") {
		t.Fatalf("alice's monitor against the evil directory: exit %d\n%s%s", r.code, r.out, r.err)
	}
}

func equal(a, b []string) bool {
	return strings.Join(a, ",") == strings.Join(b, ",")
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if fi.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, fi.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// forgeReset makes the directory at addr reset user to a fresh identity key
// with its admin token, as a malicious operator would.
func forgeReset(t *testing.T, addr, dataDir, user string) {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	secret, _ := devices.NewRecoverySecret(rand.Reader)
	rk := devices.DeriveRootKey(secret)
	dk, _ := devices.NewDeviceKey(rand.Reader)
	now := time.Now()
	cert, err := dk.NewCert("attacker", rk.Public(), now)
	if err != nil {
		t.Fatal(err)
	}
	// The new state must link to the current one.
	b, err := c.Lookup(context.Background(), user, 0)
	if err != nil {
		t.Fatal(err)
	}
	up, err := klog.ParseAccountUpdate(b.AccountUpdate)
	if err != nil {
		t.Fatal(err)
	}
	prev, err := devices.ParseAccountState(up.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if now.Before(prev.Timestamp) {
		now = prev.Timestamp
	}
	ask, err := devices.NewAccountSigningKey(rk, user, 1, rand.Reader, now)
	if err != nil {
		t.Fatal(err)
	}
	next, err := devices.NewResetState(prev, rk.Public(), ask, cert, now)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := next.MarshalBinary()
	if _, err := c.Reset(context.Background(), strings.TrimSpace(string(tok)), user, enc, "lost"); err != nil {
		t.Fatalf("reset: %v", err)
	}
}

// tamperingProxy forwards the directory API to a real directory but adds a
// device key, not signed by the account's identity key, to every account
// served by Lookup.
type tamperingProxy struct {
	pb.UnimplementedDirectoryServer
	up pb.DirectoryClient
}

func (p *tamperingProxy) Lookup(ctx context.Context, r *pb.LookupRequest) (*pb.LookupResponse, error) {
	resp, err := p.up.Lookup(ctx, r)
	if err != nil || len(resp.AccountUpdate) == 0 {
		return resp, err
	}
	up, err := klog.ParseAccountUpdate(resp.AccountUpdate)
	if err != nil {
		return nil, err
	}
	st, err := devices.ParseAccountState(up.Payload)
	if err != nil {
		return nil, err
	}
	dk, _ := devices.NewDeviceKey(rand.Reader)
	cert, err := dk.NewCert("evil", st.IdentityKey, st.Timestamp)
	if err != nil {
		return nil, err
	}
	cert.Signature[0] = 1 // not IK's signature
	st.Devices = append(st.Devices, cert)
	sort.Slice(st.Devices, func(i, j int) bool { return bytes.Compare(st.Devices[i].ID[:], st.Devices[j].ID[:]) < 0 })
	if up.Payload, err = st.MarshalBinary(); err != nil {
		return nil, err
	}
	if resp.AccountUpdate, err = up.Marshal(); err != nil {
		return nil, err
	}
	return resp, nil
}

func (p *tamperingProxy) GetCheckpoint(ctx context.Context, r *pb.GetCheckpointRequest) (*pb.GetCheckpointResponse, error) {
	return p.up.GetCheckpoint(ctx, r)
}

func (p *tamperingProxy) GetConsistencyProof(ctx context.Context, r *pb.GetConsistencyProofRequest) (*pb.GetConsistencyProofResponse, error) {
	return p.up.GetConsistencyProof(ctx, r)
}

func (p *tamperingProxy) History(ctx context.Context, r *pb.HistoryRequest) (*pb.HistoryResponse, error) {
	return p.up.History(ctx, r)
}

func startTamperingProxy(t *testing.T, upstream string) string {
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
	pb.RegisterDirectoryServer(s, &tamperingProxy{up: pb.NewDirectoryClient(cc)})
	go s.Serve(lis)
	t.Cleanup(func() { s.Stop(); cc.Close() })
	return lis.Addr().String()
}
