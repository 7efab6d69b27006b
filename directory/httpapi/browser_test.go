package httpapi

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/verifier"
)

// tamperingSource serves bob's lookups with a flipped byte in the map proof.
type tamperingSource struct{ verifier.Source }

func (s tamperingSource) Lookup(ctx context.Context, user string, known uint64) (*verifier.LookupBundle, error) {
	b, err := s.Source.Lookup(ctx, user, known)
	if err == nil && user == "bob" {
		mp := append([]byte(nil), b.MapProof...)
		mp[len(mp)-1] ^= 0x01
		b.MapProof = mp
	}
	return b, err
}

// TestBrowser drives the /verify page in headless Chromium: an honest
// lookup verifies and shows the safety number, a contact above v1 is
// accepted after the page verified his history, a pinned key that changes
// turns the page red, and a tampered bundle or a history the directory does
// not serve is shown as failed. It needs
// chromium and KEYLINE_BROWSER_TEST=1 (scripts/integration-browser.sh);
// KEYLINE_SCREENSHOT_DIR keeps the screenshots.
func TestBrowser(t *testing.T) {
	if os.Getenv("KEYLINE_BROWSER_TEST") == "" {
		t.Skip("set KEYLINE_BROWSER_TEST=1 (scripts/integration-browser.sh) to run the headless Chromium test")
	}
	wasmDir := t.TempDir()
	build := exec.Command("../../scripts/build-wasm.sh", wasmDir)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the wasm verifier: %v\n%s", err, out)
	} else {
		t.Logf("%s", strings.TrimSpace(string(out)))
	}
	shots := os.Getenv("KEYLINE_SCREENSHOT_DIR")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	e := newEnv(t, &Options{Web: http.Dir(wasmDir)}, "alice", "bob")
	th, err := New(Options{Source: tamperingSource{e.dir}, Trust: e.dir.Trust(), Web: http.Dir(wasmDir)})
	if err != nil {
		t.Fatal(err)
	}
	tampered := httptest.NewServer(th)
	defer tampered.Close()

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1000, 1300))
	if p := os.Getenv("KEYLINE_CHROMIUM"); p != "" {
		opts = append(opts, chromedp.ExecPath(p))
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()

	const done = `#verdict[data-state="ok"], #verdict[data-state="failed"], #verdict[data-state="changed"], #verdict[data-state="absent"]`
	lookup := func(base, me, peer, shot string) (state, text, digits string) {
		t.Helper()
		c := func(s string) chromedp.CSS { return chromedp.CSS(s) }
		err := chromedp.Do(ctx,
			chromedp.Navigate(base+"/verify"),
			chromedp.WaitEnabled(c("#lookup")),
			chromedp.SetValue(c("#me"), me),
			chromedp.SetValue(c("#peer"), peer),
			chromedp.Click(c("#lookup")),
			chromedp.WaitVisible(c(done)),
		)
		if err != nil {
			t.Fatalf("lookup %s in the browser: %v", peer, err)
		}
		attr, err1 := chromedp.Run(ctx, chromedp.AttributeValue(c("#verdict"), "data-state"))
		text, err2 := chromedp.Run(ctx, chromedp.Text(c("#verdict")))
		digits, err3 := chromedp.Run(ctx, chromedp.TextContent(c("#digits")))
		buf, err4 := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			t.Fatalf("reading the page: %v", err)
		}
		state = attr.Value
		if err := os.WriteFile(filepath.Join(shots, shot), buf, 0o644); err != nil {
			t.Fatal(err)
		}
		return state, text, digits
	}

	// 1. Honest lookup: verified, with the same safety number as Go computes.
	state, text, digits := lookup(e.ts.URL, "alice", "bob", "1-honest.png")
	if state != "ok" || !strings.Contains(text, "Verified: bob") {
		t.Fatalf("honest lookup: %s %q", state, text)
	}
	sn, err := devices.NewSafetyNumber("alice", e.accts["alice"].ik.Public(), "bob", e.accts["bob"].ik.Public())
	if err != nil {
		t.Fatal(err)
	}
	if got := regexp.MustCompile(`\D`).ReplaceAllString(digits, ""); got != sn.Digits() {
		t.Errorf("page safety number %q, want %q", got, sn.Digits())
	}
	// The page looked alice up first, so bob's bundle omitted the
	// checkpoint the page then held (no epoch in between).
	if checks, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#checks"))); err != nil || !strings.Contains(checks, "not sent: the one held from the last lookup") {
		t.Errorf("bob's lookup was not verified against the held checkpoint: %q %v", checks, err)
	}
	if qr, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#qr svg path").length`)); err != nil || qr != 1 {
		t.Errorf("no QR code on the page (%v)", err)
	}
	if pins, err := chromedp.Run(ctx, chromedp.Evaluate[string](`localStorage.getItem("keyline.state")`)); err != nil || !strings.Contains(pins, `"bob"`) {
		t.Errorf("bob not pinned in localStorage: %q %v", pins, err)
	}

	// 1b. Bob adds two devices (v3): the page verifies his history from
	// the version it last verified (v1) before it accepts v3.
	e.addDevice("bob", "laptop")
	e.addDevice("bob", "tablet")
	e.sync()
	state, text, _ = lookup(e.ts.URL, "alice", "bob", "1b-history.png")
	if state != "ok" || !strings.Contains(text, "Verified: bob (version 3)") {
		t.Fatalf("bob at v3: %s %q", state, text)
	}
	if checks, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#checks"))); err != nil || !strings.Contains(checks, "account history v1 to v3") {
		t.Errorf("bob's history was not verified: %q %v", checks, err)
	}
	if v, err := chromedp.Run(ctx, chromedp.Evaluate[int](`JSON.parse(localStorage.getItem("keyline.state")).contacts.bob.version`)); err != nil || v != 3 {
		t.Errorf("bob's verified version in localStorage: %d %v", v, err)
	}

	// 2. Alice compares the numbers and marks bob verified; then the
	// directory resets bob's key: the verified pin changed, shown red and
	// the new key is not pinned.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#mark-verified"))); err != nil {
		t.Fatal(err)
	}
	if v, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`JSON.parse(localStorage.getItem("keyline.state")).contacts.bob.verified`)); err != nil || !v {
		t.Fatalf("bob not marked verified: %v %v", v, err)
	}
	oldBob := e.accts["bob"].ik.Public()
	e.reset("bob")
	state, text, _ = lookup(e.ts.URL, "alice", "bob", "2-changed.png")
	if state != "changed" || !strings.Contains(text, "SAFETY NUMBER CHANGED for bob") || !strings.Contains(text, "you had verified the old key") {
		t.Errorf("after a reset: %s %q", state, text)
	}
	if ik, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.parse(localStorage.getItem("keyline.state")).contacts.bob.ik`)); err != nil || ik != base64.StdEncoding.EncodeToString(oldBob[:]) {
		t.Errorf("bob's verified pin was replaced after the change: %q %v", ik, err)
	}

	// 3. A tampered bundle (another origin: fresh storage) fails.
	state, text, _ = lookup(tampered.URL, "alice", "bob", "3-tampered.png")
	if state != "failed" || !strings.Contains(text, "VERIFICATION FAILED") || !strings.Contains(text, "ErrMapProof") {
		t.Errorf("tampered bundle: %s %q", state, text)
	}
	// 3b. A directory that does not serve bob's history (another origin:
	// a new contact, so the history from v1 is needed) fails.
	nh, err := New(Options{Source: historySource{Source: e.dir, missing: true}, Trust: e.dir.Trust(), Web: http.Dir(wasmDir)})
	if err != nil {
		t.Fatal(err)
	}
	noHistory := httptest.NewServer(nh)
	defer noHistory.Close()
	state, text, _ = lookup(noHistory.URL, "alice", "bob", "3b-no-history.png")
	if state != "failed" || !strings.Contains(text, "VERIFICATION FAILED") || !strings.Contains(text, "ErrHistory") {
		t.Errorf("bob without his history: %s %q", state, text)
	}
	if st, err := chromedp.Run(ctx, chromedp.Evaluate[string](`localStorage.getItem("keyline.state") || ""`)); err != nil || strings.Contains(st, `"bob"`) {
		t.Errorf("bob pinned without his history: %q %v", st, err)
	}

	// 4. The status page shows the log, the epochs chart and the reset.
	e.sync()
	if err := chromedp.Do(ctx, chromedp.Navigate(e.ts.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#ready"))); err != nil {
		t.Fatal(err)
	}
	resets, err1 := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#resets")))
	charts, err2 := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("svg.chart polyline").length`))
	buf, err3 := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resets, "1 reset in the log") || charts != 1 {
		t.Errorf("status page: resets %q, %d charts", resets, charts)
	}
	if err := os.WriteFile(filepath.Join(shots, "4-status.png"), buf, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", shots)
}
