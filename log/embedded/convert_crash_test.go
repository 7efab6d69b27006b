package embedded_test

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/keyline/keyline/log/embedded"
	bolt "go.etcd.io/bbolt"
)

// envConvertPath is the log path of the conversion child; set only in it.
const envConvertPath = "KEYLINE_LOG_CONVERT_CHILD"

// TestConvertChild is the process of TestConvertCrash. It does nothing
// unless started by it: it prints "start", opens (converting) the log and
// prints "converted".
func TestConvertChild(t *testing.T) {
	path := os.Getenv(envConvertPath)
	if path == "" {
		t.Skip("conversion child; run by TestConvertCrash")
	}
	os.Stdout.WriteString("start\n")
	l, err := embedded.Open(path, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "child open: %v\n", err)
		os.Exit(2)
	}
	l.Close()
	os.Stdout.WriteString("converted\n")
	time.Sleep(time.Hour)
}

// storedFormatOf returns meta/format of the bbolt file at path.
func storedFormatOf(t *testing.T, path string) uint64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var f uint64
	if err := db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket([]byte("meta")).Get([]byte("format"))
		f, err = strconv.ParseUint(fmt.Sprintf("%x", v), 16, 64)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestConvertCrash SIGKILLs a process converting a format-1 log at random
// moments. After each kill the log file is either the untouched format-1
// file or the complete converted one, and the next Open yields the same
// log.
func TestConvertCrash(t *testing.T) {
	iterations := 12
	if s := os.Getenv(envCrashIterations); s != "" {
		var err error
		if iterations, err = strconv.Atoi(s); err != nil {
			t.Fatalf("%s: %v", envCrashIterations, err)
		}
	}
	dir := t.TempDir()
	leaves := testLeaves(30_000)
	ref := roots(t, leaves)
	cps := checkpointNotes(t, ref, 100, 20_000)
	template := filepath.Join(dir, "template.db")
	if err := embedded.WriteFormat1(template, leaves, cps, 5000); err != nil {
		t.Fatal(err)
	}
	original, err := os.ReadFile(template)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "log.db")
	// One uninterrupted conversion sets the range of kill times.
	copyFile(t, template, path)
	start := time.Now()
	open(t, path).Close()
	took := time.Since(start)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	interrupted := 0
	for iter := range iterations {
		copyFile(t, template, path)
		cmd := exec.Command(os.Args[0], "-test.run=^TestConvertChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), envConvertPath+"="+path)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		if !sc.Scan() || sc.Text() != "start" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("iteration %d: child did not start: %s", iter, stderr.Bytes())
		}
		lines := make(chan []string, 1)
		go func() {
			var got []string
			for sc.Scan() {
				got = append(got, sc.Text())
			}
			lines <- got
		}()
		time.Sleep(time.Duration(rng.Int64N(int64(took) * 3 / 2)))
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		got := <-lines
		cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("iteration %d: child exited by itself: %s", iter, stderr.Bytes())
		}
		if len(got) == 0 {
			interrupted++
		}
		// The file is either the format-1 original or the converted one.
		switch f := storedFormatOf(t, path); f {
		case 1:
			now, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(now, original) {
				t.Fatalf("iteration %d: the format-1 file changed during an interrupted conversion (%v)", iter, err)
			}
		case 2:
		default:
			t.Fatalf("iteration %d: format %d after the kill", iter, f)
		}
		l := open(t, path)
		checkTree(t, l, leaves, ref, rng)
		hist, err := l.Checkpoints(t.Context())
		if err != nil || len(hist) != len(cps) || !bytes.Equal(hist[1], cps[1]) {
			t.Fatalf("iteration %d: %d checkpoints after conversion, %v", iter, len(hist), err)
		}
		l.Close()
		if _, err := os.Stat(path + embedded.ConvertingSuffix); !os.IsNotExist(err) {
			t.Fatalf("iteration %d: the conversion file is left after Open: %v", iter, err)
		}
	}
	t.Logf("%d kills, %d during the conversion (one conversion took %v)", iterations, interrupted, took)
	if interrupted == 0 {
		t.Fatalf("no kill interrupted a conversion: the test exercised nothing")
	}
}
