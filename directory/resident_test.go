//go:build linux

package directory

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// TestMaxResidentTrimsWhileServing serves with a resident memory bound the
// process is always above, so the trimmer releases the maps of directory.db
// and log.db every 100 ms while updates grow the files and lookups read
// them; every lookup must still verify.
func TestMaxResidentTrimsWhileServing(t *testing.T) {
	var (
		mu   sync.Mutex
		logs []string
	)
	s := openTest(t, t.TempDir(), func(c *Config) {
		c.MaxResident = 1
		c.Logf = func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			logs = append(logs, fmt.Sprintf(format, args...))
		}
	})
	ctx := context.Background()
	trust := trustOf(t, s)
	var uids []string
	deadline := time.Now().Add(time.Second)
	for i := 0; i < 40 || time.Now().Before(deadline); i++ {
		uid := fmt.Sprintf("user%d@example.com", i)
		if _, err := s.Update(ctx, newTestAccount(t, uid).bytes(t)); err != nil {
			t.Fatal(err)
		}
		uids = append(uids, uid)
		for _, u := range uids[max(0, len(uids)-5):] {
			mustLookup(t, s, trust, u)
		}
	}
	for _, u := range uids {
		mustLookup(t, s, trust, u)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(strings.Join(logs, "\n"), "releasing pages of the database maps") {
		t.Errorf("the trimmer did not run: logs %q", logs)
	}
}

// TestCloseSyncsFreelist checks that reopening a directory closed cleanly
// does not map all of directory.db: Close writes bbolt's free-page list,
// so Open reads it instead of walking every page. Without it (the file as
// a crash leaves it) Open maps the whole file, which the test also checks
// so that it can fail.
func TestCloseSyncsFreelist(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileDirDB)
	db, err := openBolt(path, true)
	if err != nil {
		t.Fatal(err)
	}
	// ~48 MiB in many pages.
	for i := 0; i < 48; i++ {
		err := db.Update(func(tx *bbolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("b"))
			if err != nil {
				return err
			}
			for j := 0; j < 1024; j++ {
				if err := b.Put(binary.BigEndian.AppendUint32(nil, uint32(i<<10|j)), make([]byte, 1000)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	mapped := func() int64 {
		before := rssFile(t)
		db, err := openBolt(path, true)
		if err != nil {
			t.Fatal(err)
		}
		after := rssFile(t)
		if err := syncFreelist(db); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		return after - before
	}
	// Closed without syncFreelist: Open walks and maps the file.
	if m := mapped(); m < 32<<20 {
		t.Fatalf("opening a file without a free-page list mapped %d MiB, want ~48: the test cannot see the difference", m>>20)
	}
	// Closed with syncFreelist.
	if m := mapped(); m > 8<<20 {
		t.Errorf("opening a file closed by syncFreelist mapped %d MiB, want a few pages", m>>20)
	}
}

// rssFile returns RssFile from /proc/self/status, in bytes.
func rssFile(t *testing.T) int64 {
	t.Helper()
	kb := procStatusKB("RssFile")
	if kb < 0 {
		t.Fatal("no RssFile in /proc/self/status")
	}
	return kb << 10
}
