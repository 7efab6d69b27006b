package cli

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
)

// TestMain lets the scripts under testdata/script run `keyline` as a real
// process (the test binary re-executed): real stdio, no terminal.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"keyline": func() { os.Exit(Main(context.Background(), os.Args[1:])) },
	})
}

// TestScripts runs the scenarios in testdata/script. Each gets its own
// directory on loopback (started in this process): $SERVER is its address,
// $TRUST its trust.json, $SRVDIR its data dir. The command `pairing DIR`
// sets $CODE and $FP from the pending pairing request in the client folder
// DIR.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: filepath.Join("testdata", "script"),
		Setup: func(e *testscript.Env) error {
			srvDir := filepath.Join(e.WorkDir, "server")
			addr, stop, err := startScriptServer(srvDir)
			if err != nil {
				return err
			}
			e.Defer(stop)
			e.Setenv("SERVER", addr)
			e.Setenv("TRUST", filepath.Join(srvDir, "trust.json"))
			e.Setenv("SRVDIR", srvDir)
			e.Setenv("KEYLINE_INSECURE_TEST_KDF", "1")
			e.Setenv("KEYLINE_PASSPHRASE", "correct horse battery staple")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"pairing": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 1 {
					ts.Fatalf("usage: pairing DIR")
				}
				b, err := os.ReadFile(ts.MkAbs(filepath.Join(args[0], pairingFile)))
				ts.Check(err)
				var p pairingOutput
				ts.Check(json.Unmarshal(b, &p))
				ts.Setenv("CODE", p.Code)
				ts.Setenv("FP", p.Fingerprint)
			},
			// othertrust FILE writes the trust file of another directory
			// (another origin and log key) to FILE.
			"othertrust": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 1 {
					ts.Fatalf("usage: othertrust FILE")
				}
				var tf verifier.TrustFile
				ts.Check(json.Unmarshal([]byte(ts.ReadFile(ts.Getenv("TRUST"))), &tf))
				_, vkey, err := klog.GenerateKey(rand.Reader, "other.example/dir")
				ts.Check(err)
				tf.Origin, tf.LogKey = "other.example/dir", vkey
				b, err := json.Marshal(tf)
				ts.Check(err)
				ts.Check(os.WriteFile(ts.MkAbs(args[0]), b, 0o644))
			},
		},
	})
}

// startScriptServer runs `keyline serve` in this process on a free
// loopback port.
func startScriptServer(dir string) (addr string, stop func(), err error) {
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuf
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--data-dir", dir, "--epoch-interval", "20ms", "--insecure-no-sync"},
			IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: testEnv})
	}()
	re := regexp.MustCompile(`listening on (\S+)`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m[1], func() { cancel(); <-done }, nil
		}
		select {
		case <-done:
			cancel()
			return "", nil, &Error{Msg: "serve exited: " + errb.String()}
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			return "", nil, &Error{Msg: "serve did not start: " + errb.String()}
		}
		time.Sleep(5 * time.Millisecond)
	}
}
