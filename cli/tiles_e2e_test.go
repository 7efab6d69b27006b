package cli

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/keyline/keyline/verifier/cosign"
	tlogwitness "github.com/keyline/keyline/verifier/witness"
)

// startHTTPServer runs `keyline serve --http` in process and returns the
// gRPC and HTTP addresses.
func startHTTPServer(t *testing.T, dataDir string) (grpcAddr, httpAddr string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuf
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"--json", "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data-dir", dataDir, "--epoch-interval", "20ms", "--insecure-no-sync"},
			IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: testEnv})
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var info struct{ Listen, HTTP string }
		if s := out.String(); strings.Contains(s, "\n") && json.Unmarshal([]byte(s), &info) == nil {
			return info.Listen, info.HTTP, func() {
				cancel()
				if code := <-done; code != 0 {
					t.Errorf("serve exited %d: %s", code, errb.String())
				}
			}
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

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServeHTTPAuditTilesExport: `serve --http` serves the log as tiles;
// `audit --tiles` replays it from there; `export-tiles` mirrors it to a
// directory that a plain file server serves and `audit --tiles` accepts;
// gRPC requests show in /metrics.
func TestServeHTTPAuditTilesExport(t *testing.T) {
	root := t.TempDir()
	dataDir := filepath.Join(root, "server")
	grpcAddr, httpAddr, stop := startHTTPServer(t, dataDir)
	defer stop()
	w := &world{t: t, root: root, trust: filepath.Join(dataDir, "trust.json"), server: grpcAddr}
	base := "http://" + httpAddr

	if r := w.run("reader", "", "lookup", "nobody"); !strings.Contains(r.out, "proves the account ABSENT") {
		t.Fatalf("lookup: exit %d\n%s%s", r.code, r.out, r.err)
	}
	if code, _ := httpGet(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := httpGet(t, base+"/readyz")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz: %d %s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, metrics := httpGet(t, base+"/metrics")
	if !regexp.MustCompile(`keyline_request_duration_seconds_count\{method="Lookup",transport="grpc"\} [1-9]`).MatchString(metrics) {
		t.Errorf("gRPC lookup not in /metrics:\n%s", metrics)
	}

	var out auditOutput
	r := w.run("auditor", "", "--json", "audit", "--tiles", base)
	if r.code != 0 || json.Unmarshal([]byte(r.out), &out) != nil || !out.OK || out.Replayed == 0 || out.Replayed != out.CheckpointSize {
		t.Fatalf("audit --tiles: exit %d %+v\n%s%s", r.code, out, r.out, r.err)
	}

	mirror := filepath.Join(root, "mirror")
	r = w.run("exporter", "", "export-tiles", mirror)
	if r.code != 0 || !strings.Contains(r.out, "exported checkpoint of size") {
		t.Fatalf("export-tiles: exit %d\n%s%s", r.code, r.out, r.err)
	}
	if _, err := os.Stat(filepath.Join(mirror, "checkpoint")); err != nil {
		t.Fatal(err)
	}
	fs := httptest.NewServer(http.FileServer(http.Dir(mirror)))
	defer fs.Close()
	r = w.run("auditor2", "", "--json", "audit", "--tiles", fs.URL)
	if r.code != 0 || json.Unmarshal([]byte(r.out), &out) != nil || !out.OK || out.Replayed == 0 {
		t.Fatalf("audit --tiles of the exported mirror: exit %d\n%s%s", r.code, r.out, r.err)
	}
	// A bad tiles URL fails, it does not pass silently.
	if r := w.run("auditor3", "", "audit", "--tiles", fs.URL+"/nothing-here"); r.code == 0 {
		t.Errorf("audit of a missing tiles URL exited 0:\n%s", r.out)
	}
}

// TestWitnessOverTiles: `keyline witness --tiles URL` audits the log from
// the tiles of `serve --http` and then cosigns the directory's checkpoint.
func TestWitnessOverTiles(t *testing.T) {
	root := t.TempDir()
	dataDir := filepath.Join(root, "server")
	grpcAddr, httpAddr, stop := startHTTPServer(t, dataDir)
	defer stop()
	w := &world{t: t, root: root, trust: filepath.Join(dataDir, "trust.json"), server: grpcAddr}
	base := "http://" + httpAddr
	var kg struct{ Name, VKey string }
	w.okJSON("witness", &kg, "witness", "keygen", "w1.test")

	// --server points nowhere: everything must come from the tiles.
	wctx, wcancel := context.WithCancel(context.Background())
	var wout, werr syncBuf
	wdone := make(chan int, 1)
	go func() {
		wdone <- Run(wctx, []string{"--server", "127.0.0.1:1", "--trust", w.trust, "--data-dir", filepath.Join(root, "witness"), "witness", "--tiles", base, "--listen", "127.0.0.1:0"},
			IO{Stdin: strings.NewReader(""), Stdout: &wout, Stderr: &werr, Getenv: testEnv})
	}()
	defer func() {
		wcancel()
		if code := <-wdone; code != 0 {
			t.Errorf("witness exited %d: %s", code, werr.String())
		}
	}()
	urlRe := regexp.MustCompile(`--witness (http://\S+)=`)
	deadline := time.Now().Add(20 * time.Second)
	for urlRe.FindStringSubmatch(wout.String()) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("witness did not start:\n%s\n%s", wout.String(), werr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	wurl := urlRe.FindStringSubmatch(wout.String())[1]
	_, cp := httpGet(t, base+"/checkpoint")
	v, err := cosign.NewVerifierFromVkey(kg.VKey)
	if err != nil {
		t.Fatal(err)
	}
	var lines []byte
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		lines, err = tlogwitness.AddCheckpoint(ctx, nil, wurl, 0, nil, []byte(cp))
		cancel()
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("the witness reading tiles did not cosign: %v\n%s", err, werr.String())
	}
	if _, err := note.Open(append([]byte(cp), lines...), note.VerifierList(v)); err != nil {
		t.Errorf("cosignature does not verify: %v", err)
	}
}
