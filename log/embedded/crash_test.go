package embedded_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyline/keyline/log"
	"github.com/keyline/keyline/log/embedded"
	"github.com/keyline/keyline/log/logtest"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	bolt "go.etcd.io/bbolt"
)

// Environment of the crash-test writer child.
const (
	envCrashPath = "KEYLINE_LOG_CRASH_CHILD" // store path; set only in the child
	envCrashSkey = "KEYLINE_LOG_CRASH_SKEY"
	envCrashVkey = "KEYLINE_LOG_CRASH_VKEY"
	envCrashSeed = "KEYLINE_LOG_CRASH_SEED"
	// KEYLINE_LOG_CRASH_ITERATIONS overrides the number of kills (default 30).
	envCrashIterations = "KEYLINE_LOG_CRASH_ITERATIONS"
)

// TestCrashChild is the writer process of TestCrashSafety. It does nothing
// unless started by TestCrashSafety. It appends batches of logtest.Leaf(i)
// at index i forever, printing "ack <first> <n>" after each acknowledged
// Append and "cp <base64 note>" after each Publish, until it is killed.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(envCrashPath)
	if path == "" {
		t.Skip("crash-test writer child; run by TestCrashSafety")
	}
	seed, _ := strconv.ParseUint(os.Getenv(envCrashSeed), 10, 64)
	rng := rand.New(rand.NewPCG(seed, 1))
	signer, verifier := signerVerifier(t, os.Getenv(envCrashSkey), os.Getenv(envCrashVkey))
	l, err := embedded.Open(path, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "child open: %v\n", err)
		os.Exit(2)
	}
	ctx := context.Background()
	for {
		size, err := l.Size(ctx)
		if err != nil {
			fmt.Fprintf(os.Stderr, "child size: %v\n", err)
			os.Exit(2)
		}
		n := 1 + rng.Uint64N(64)
		leaves := make([][]byte, n)
		for i := range leaves {
			leaves[i] = logtest.Leaf(size + uint64(i))
		}
		first := size
		if err := l.Append(ctx, size, leaves); err != nil {
			fmt.Fprintf(os.Stderr, "child append: %v\n", err)
			os.Exit(2)
		}
		// One write per line: os.Stdout is unbuffered, and pipe writes this
		// short are atomic, so a line is either wholly read or absent.
		os.Stdout.WriteString(fmt.Sprintf("ack %d %d\n", first, n))
		if rng.IntN(3) == 0 {
			msg, err := log.Publish(ctx, l, l, signer, verifier, origin)
			if err != nil {
				fmt.Fprintf(os.Stderr, "child publish: %v\n", err)
				os.Exit(2)
			}
			os.Stdout.WriteString("cp " + base64.StdEncoding.EncodeToString(msg) + "\n")
		}
	}
}

// TestCrashSafety SIGKILLs a writer child at random moments, reopening the
// same store each time, then checks that every acknowledged leaf is present
// with its contents, every checkpoint ever signed is stored and consistent
// with the final tree, and the store passes bbolt's consistency check. The
// child's batches of 1-64 leaves are killed both in appends that only add
// to the tail and in appends that complete a bundle (moving the tail into
// "bundles"): tens of thousands of leaves, over a hundred bundles.
func TestCrashSafety(t *testing.T) {
	iterations := 30
	if s := os.Getenv(envCrashIterations); s != "" {
		var err error
		if iterations, err = strconv.Atoi(s); err != nil {
			t.Fatalf("%s: %v", envCrashIterations, err)
		}
	}
	ctx := t.Context()
	skey, vkey, err := log.GenerateKey(seedReader{"crash"}, origin)
	if err != nil {
		t.Fatal(err)
	}
	_, verifier := signerVerifier(t, skey, vkey)
	path := filepath.Join(t.TempDir(), "log.db")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))

	var acked uint64              // every index below this was acknowledged
	signed := map[uint64][]byte{} // size -> signed checkpoint note
	var order [][]byte            // signed notes in the order printed
	for iter := 0; iter < iterations; iter++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), envCrashPath+"="+path, envCrashSkey+"="+skey, envCrashVkey+"="+vkey,
			envCrashSeed+"="+strconv.FormatUint(rng.Uint64(), 10))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan []string, 1)
		go func() {
			var got []string
			sc := bufio.NewScanner(out)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				got = append(got, sc.Text())
			}
			lines <- got
		}()
		// Kill after the child started writing, at a random moment.
		time.Sleep(time.Duration(50+rng.IntN(400)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		got := <-lines
		werr := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("iteration %d: child exited by itself (%v): %s", iter, werr, stderr.Bytes())
		}
		for _, line := range got {
			switch f := strings.Fields(line); {
			case len(f) == 3 && f[0] == "ack":
				first, err1 := strconv.ParseUint(f[1], 10, 64)
				n, err2 := strconv.ParseUint(f[2], 10, 64)
				if err1 != nil || err2 != nil {
					t.Fatalf("bad child line %q", line)
				}
				// Leaves past acked may also survive unacknowledged; they
				// are checked below like every other leaf.
				acked = max(acked, first+n)
			case len(f) == 2 && f[0] == "cp":
				msg, err := base64.StdEncoding.DecodeString(f[1])
				if err != nil {
					t.Fatalf("bad child line %q", line)
				}
				c, _, err := log.OpenCheckpoint(msg, verifier, origin)
				if err != nil {
					t.Fatalf("child printed a bad checkpoint: %v", err)
				}
				if prev, ok := signed[c.Size]; ok && !bytes.Equal(prev, msg) {
					t.Fatalf("fork: two different checkpoints signed at size %d", c.Size)
				}
				signed[c.Size] = msg
				order = append(order, msg)
			default:
				t.Fatalf("iteration %d: unexpected child output %q", iter, line)
			}
		}
	}
	t.Logf("%d kills, %d leaves acknowledged, %d checkpoints signed", iterations, acked, len(signed))
	if acked < 2*embedded.BundleWidth || len(signed) == 0 {
		t.Fatalf("the child acknowledged %d leaves and %d checkpoints: the test exercised no bundle", acked, len(signed))
	}

	// The store opens cleanly and passes bbolt's own check.
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	}); err != nil {
		t.Fatalf("bbolt check: %v", err)
	}
	db.Close()

	l, err := embedded.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	size, err := l.Size(ctx)
	if err != nil || size < acked {
		t.Fatalf("Size = %d, %v; %d leaves were acknowledged", size, err, acked)
	}
	entries, err := l.Entries(ctx, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range entries {
		if !bytes.Equal(e, logtest.Leaf(uint64(i))) {
			t.Fatalf("leaf %d has wrong contents after crashes", i)
		}
	}
	final, err := l.RootHash(ctx, size)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := l.Checkpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inStore := map[string]bool{}
	for _, s := range stored {
		inStore[string(s)] = true
	}
	for _, msg := range order {
		if !inStore[string(msg)] {
			t.Errorf("a signed checkpoint was returned but not stored:\n%s", msg)
		}
	}
	for _, msg := range stored {
		c, _, err := log.OpenCheckpoint(msg, verifier, origin)
		if err != nil {
			t.Fatal(err)
		}
		if other, ok := signed[c.Size]; ok && !bytes.Equal(other, msg) {
			t.Errorf("fork: stored and printed checkpoints differ at size %d", c.Size)
		}
		p, err := l.ConsistencyProof(ctx, c.Size, size)
		if err != nil {
			t.Fatal(err)
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, c.Size, size, p, c.Hash[:], final); err != nil {
			t.Errorf("checkpoint at size %d inconsistent with the final tree: %v", c.Size, err)
		}
	}
	// The recovered store verifies and publishes.
	signer, _ := signerVerifier(t, skey, vkey)
	if err := l.CheckStored(ctx, 0, size); err != nil {
		t.Fatal(err)
	}
	if _, err := log.Publish(ctx, l, l, signer, verifier, origin); err != nil {
		t.Fatalf("Publish after crashes: %v", err)
	}
}
