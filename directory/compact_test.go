package directory

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// writeLayout2 rewrites the directory.db of the closed directory in dir
// into layout 2, as Keyline wrote it before layout 3: users records with
// u64 version and log index, and meta "layout" 2.
func writeLayout2(t *testing.T, dir string) {
	t.Helper()
	db, err := openBolt(filepath.Join(dir, FileDirDB), true)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bbolt.Tx) error {
		users := tx.Bucket(bucketUsers)
		var uids, recs [][]byte
		if err := users.ForEach(func(k, v []byte) error {
			r, err := parseUserRecord(v)
			if err != nil {
				return err
			}
			uids, recs = append(uids, bytes.Clone(k)), append(recs, r.marshalV2())
			return nil
		}); err != nil {
			return err
		}
		for i, uid := range uids {
			if err := users.Put(uid, recs[i]); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyLayout, u64(2))
	}); err != nil {
		t.Fatal(err)
	}
}

// conversionFixture makes a directory in dir with n bulk accounts (created
// in epochs of 25, so the file has free pages) and ann at version 2 (a
// history record), closes it, rewrites it in layout 2 and returns every
// account's lookup answer (and that of an unknown user), as answers
// records them.
func conversionFixture(t *testing.T, dir string, n int) map[string]string {
	t.Helper()
	ctx := context.Background()
	s := openTest(t, dir, func(c *Config) { c.MaxBatch, c.QueueSize = 25, 50 })
	if err := bulkLoad(s, n, func(int) {}); err != nil {
		t.Fatal(err)
	}
	ann := newTestAccount(t, "ann")
	if _, err := s.Update(ctx, ann.bytes(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, mustMarshal(t, ann.addDevice(t, "tablet"))); err != nil {
		t.Fatal(err)
	}
	want := answers(t, s, n)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	writeLayout2(t, dir)
	return want
}

// answers returns the lookup bundle fields that depend on the map and the
// account index (VRF proof, map proof, AccountUpdate and its log index) of
// the n bulk accounts, ann and an unknown user, by user id.
func answers(t *testing.T, s *Server, n int) map[string]string {
	t.Helper()
	uids := []string{"ann", "nobody"}
	for i := range n {
		uids = append(uids, fmt.Sprintf("%s-%d", benchPrefix, i))
	}
	out := map[string]string{}
	for _, uid := range uids {
		b, err := s.Lookup(context.Background(), uid, 0)
		if err != nil {
			t.Fatalf("Lookup(%q): %v", uid, err)
		}
		out[uid] = fmt.Sprintf("%x/%x/%x/%d", b.VRFProof, b.MapProof, b.AccountUpdate, b.AccountUpdateIndex)
	}
	return out
}

// checkLayout3 checks the closed or open directory.db of s: meta/layout 3,
// every users record in the layout-3 encoding, n+1 of them, and no
// conversion file left.
func checkLayout3(t *testing.T, s *Server, n int) {
	t.Helper()
	if err := s.db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketMeta).Get(keyLayout); len(b) != 8 || binary.BigEndian.Uint64(b) != 3 {
			t.Errorf("meta/layout = %x, want 3", b)
		}
		got := 0
		err := tx.Bucket(bucketUsers).ForEach(func(k, v []byte) error {
			got++
			r, err := parseUserRecord(v)
			if err != nil {
				return err
			}
			if !bytes.Equal(r.marshal(), v) || len(v) > userRecordMin+4 {
				t.Errorf("user record of %q: %d bytes, not layout 3", k, len(v))
			}
			return nil
		})
		if got != n+1 {
			t.Errorf("%d user records, want %d", got, n+1)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.db.Path() + suffixConverting); !os.IsNotExist(err) {
		t.Errorf("%s%s left after the conversion: %v", FileDirDB, suffixConverting, err)
	}
}

// TestLayout2Conversion opens a directory.db of layout 2 (fixed-width user
// records, a file with free pages), with a stale conversion file next to
// it, and checks that Open converts it to layout 3 in a new file: every
// lookup answer (VRF proof, map proof, AccountUpdate) is unchanged, the
// records are re-encoded, the file has no free pages left and is smaller,
// histories are complete, updates and creates continue, reopening does
// not convert again, and compacting the layout-3 file again (compactDirDB
// without re-encoding) changes no answer.
func TestLayout2Conversion(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const n = 300
	want := conversionFixture(t, dir, n)
	path := filepath.Join(dir, FileDirDB)
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	db, err := openBolt(path, true)
	if err != nil {
		t.Fatal(err)
	}
	freeBefore := db.Stats().FreePageN
	db.Close()
	if err := os.WriteFile(path+suffixConverting, []byte("an interrupted conversion"), 0o600); err != nil {
		t.Fatal(err)
	}
	defer func(n int) { compactTxBytes = n }(compactTxBytes)
	compactTxBytes = 8 << 10 // several transactions

	var logs bytes.Buffer
	s := openTest(t, dir, func(c *Config) {
		c.Logf = func(f string, a ...any) { fmt.Fprintf(&logs, f+"\n", a...) }
	})
	checkLayout3(t, s, n)
	if !bytes.Contains(logs.Bytes(), []byte("converted 301 accounts to layout 3")) {
		t.Errorf("conversion log:\n%s", logs.Bytes())
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if after.Size() > before.Size() {
		t.Errorf("directory.db is %d bytes after the conversion, %d before", after.Size(), before.Size())
	}
	if free := s.db.Stats().FreePageN; free > 8 || free >= freeBefore {
		t.Errorf("%d free pages after the conversion, %d before", free, freeBefore)
	}
	if got := answers(t, s, n); len(got) != len(want) {
		t.Fatalf("%d answers, want %d", len(got), len(want))
	} else {
		for uid, w := range want {
			if got[uid] != w {
				t.Fatalf("lookup of %q changed by the conversion:\n got %.200s\nwant %.200s", uid, got[uid], w)
			}
		}
	}
	trust := trustOf(t, s)
	if v := mustLookup(t, s.Source(), trust, "ann"); !v.found || v.version != 2 {
		t.Fatalf("ann: found %v version %d", v.found, v.version)
	}
	h, err := s.History(ctx, "ann", 1)
	if err != nil {
		t.Fatal(err)
	}
	checkHistory(t, trust, h, 2)
	bob := newTestAccount(t, "bob")
	if _, err := s.Update(ctx, bob.bytes(t)); err != nil {
		t.Fatal(err)
	}
	if v := mustLookup(t, s.Source(), trust, "bob"); !v.found || v.version != 1 {
		t.Fatalf("bob after the conversion: found %v version %d", v.found, v.version)
	}
	s.Close()

	logs.Reset()
	s = openTest(t, dir, func(c *Config) {
		c.Logf = func(f string, a ...any) { fmt.Fprintf(&logs, f+"\n", a...) }
	})
	if bytes.Contains(logs.Bytes(), []byte("convert")) {
		t.Errorf("a layout-3 directory.db converted again:\n%s", logs.Bytes())
	}
	checkLayout3(t, s, n+1)
	if v := mustLookup(t, s.Source(), trust, "bob"); !v.found || v.version != 1 {
		t.Fatalf("bob after reopening: found %v version %d", v.found, v.version)
	}

	// A layout-3 file compacted again (as the benchmark fixtures are)
	// keeps every record as it is.
	want = answers(t, s, n)
	s.Close()
	if err := compactFixture(path); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, nil)
	checkLayout3(t, s, n+1)
	for uid, w := range answers(t, s, n) {
		if want[uid] != w {
			t.Fatalf("lookup of %q changed by compacting a layout-3 file", uid)
		}
	}
}

// TestLayout2ConversionCrashHelper is the child process of
// TestLayout2ConversionCrash: it opens the directory in
// KEYLINE_DIR_CONVERT_DIR, printing "committed" after each transaction of
// the conversion's new file and stopping (forever) after the second.
func TestLayout2ConversionCrashHelper(t *testing.T) {
	dir := os.Getenv("KEYLINE_DIR_CONVERT_DIR")
	if dir == "" {
		t.Skip("child process of TestLayout2ConversionCrash")
	}
	compactTxBytes = 8 << 10
	commits := 0
	compactHook = func() {
		commits++
		fmt.Printf("committed\n")
		if commits == 2 {
			time.Sleep(time.Hour)
		}
	}
	s, err := Open(Config{DataDir: dir})
	if err == nil {
		s.Close()
	}
	t.Fatalf("the conversion finished: %v", err)
}

// TestLayout2ConversionCrash kills (SIGKILL) a process in the middle of
// converting a layout-2 directory.db (after two transactions of the new
// file) and checks that the old file is byte for byte unchanged and that
// the next Open converts it, with every lookup answer unchanged.
func TestLayout2ConversionCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	const n = 300
	want := conversionFixture(t, dir, n)
	path := filepath.Join(dir, FileDirDB)
	sum := func() [32]byte {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(b)
	}
	old := sum()

	cmd := exec.Command(os.Args[0], "-test.run=^TestLayout2ConversionCrashHelper$")
	cmd.Env = append(os.Environ(), "KEYLINE_DIR_CONVERT_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan int)
	go func() {
		sc, commits := bufio.NewScanner(out), 0
		for commits < 2 && sc.Scan() {
			if sc.Text() == "committed" {
				commits++
			} else {
				t.Logf("child: %s", sc.Text())
			}
		}
		done <- commits
	}()
	var commits int
	select {
	case commits = <-done:
	case <-time.After(time.Minute):
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if commits != 2 {
		t.Fatalf("the child reported %d committed transactions of the conversion, want 2", commits)
	}
	if sum() != old {
		t.Fatal("directory.db changed by an interrupted conversion")
	}
	if fi, err := os.Stat(path + suffixConverting); err != nil || fi.Size() == 0 {
		t.Fatalf("no partial conversion file: %v", err)
	}

	s := openTest(t, dir, nil)
	checkLayout3(t, s, n)
	got := answers(t, s, n)
	for uid, w := range want {
		if got[uid] != w {
			t.Fatalf("lookup of %q changed by the conversion:\n got %.200s\nwant %.200s", uid, got[uid], w)
		}
	}
	if v := mustLookup(t, s.Source(), trustOf(t, s), "ann"); !v.found || v.version != 2 {
		t.Fatalf("ann: found %v version %d", v.found, v.version)
	}
}
