package directory

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/keyline/keyline/log/embedded"
)

// TestLookupPread serves lookups with pread (Config.Pread) while updates
// grow the files: every bundle must verify and equal the one read through
// bbolt's maps, for accounts in complete log bundles and in the tail, and
// for unknown users.
func TestLookupPread(t *testing.T) {
	s := openTest(t, t.TempDir(), func(c *Config) { c.Pread = PreadOn })
	if s.pread.Load() == nil {
		t.Fatal("Pread on, but no reader")
	}
	ctx := context.Background()
	trust := trustOf(t, s)
	const n = 700 // more than two log bundles of 256 leaves
	uids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 64)
	for i := range uids {
		uids[i] = fmt.Sprintf("user%d@example.com", i)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, err := s.Update(ctx, newTestAccount(t, uids[i]).bytes(t)); err != nil {
				errs <- err
			}
		}()
		if i%100 == 99 { // lookups while the files grow
			for _, u := range uids[i-20 : i-10] {
				if _, err := s.Lookup(ctx, u, 0); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	l := s.backend.(*embedded.Log)
	lookupMapped := func(uid string) any {
		r := s.pread.Load()
		s.pread.Store(nil)
		s.m.SetPread(nil)
		l.SetPread(false)
		defer func() {
			s.pread.Store(r)
			s.m.SetPread(r)
			l.SetPread(true)
		}()
		b, err := s.Lookup(ctx, uid, 0)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	before := s.pread.Load().Stats()
	for i, uid := range append(uids, "nobody@example.com", "nobody2@example.com") {
		if i%7 != 0 && i < n {
			continue
		}
		mustLookup(t, s, trust, uid)
		got, err := s.Lookup(ctx, uid, 0)
		if err != nil {
			t.Fatal(err)
		}
		if want := lookupMapped(uid); !reflect.DeepEqual(any(got), want) {
			t.Fatalf("%s: the bundle read with pread differs from the one read through the maps", uid)
		}
	}
	if s.pread.Load().Stats().Reads == before.Reads {
		t.Fatal("lookups read nothing with pread")
	}
}

// TestPreadAuto checks when Config.Pread auto turns pread on: with a
// resident bound below the files' size, and not without a bound.
func TestPreadAuto(t *testing.T) {
	for _, c := range []struct {
		maxRes int64
		pread  string
		want   bool
	}{{1, PreadAuto, true}, {-1, PreadAuto, false}, {1 << 40, "", false}, {1, PreadOff, false}, {-1, PreadOn, true}} {
		s := openTest(t, t.TempDir(), func(cfg *Config) { cfg.MaxResident, cfg.Pread = c.maxRes, c.pread })
		if got := s.pread.Load() != nil; got != c.want {
			t.Errorf("MaxResident %d, Pread %q: pread on %v, want %v", c.maxRes, c.pread, got, c.want)
		}
		s.Close()
	}
	if _, err := Open(Config{DataDir: t.TempDir(), Pread: "sometimes"}); err == nil {
		t.Error("Pread \"sometimes\" accepted")
	}
}

// TestPreadAutoWhenFilesGrow checks that with Config.Pread auto a directory
// that outgrows its resident bound while it runs turns pread on after the
// epoch that took the files above it, and that lookups then read with
// pread and still verify.
func TestPreadAutoWhenFilesGrow(t *testing.T) {
	dir := t.TempDir()
	openTest(t, dir, nil).Close()
	files := func() int64 {
		return fileSize(filepath.Join(dir, "directory.db")) + fileSize(filepath.Join(dir, "log.db"))
	}
	bound := files()
	s := openTest(t, dir, func(c *Config) { c.MaxResident = bound })
	if s.pread.Load() != nil {
		t.Fatalf("files of %d bytes, bound %d: pread on at Open", files(), bound)
	}
	ctx := context.Background()
	trust := trustOf(t, s)
	// Enough accounts that the users and map buckets are no longer inline
	// and the log has a complete bundle (pread reads neither inline
	// buckets nor the log's tail).
	uids := make([]string, 300)
	for i := range uids {
		uids[i] = fmt.Sprintf("grow%d@example.com", i)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(uids))
	for _, uid := range uids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Update(ctx, newTestAccount(t, uid).bytes(t)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if files() <= bound {
		t.Fatalf("files still %d bytes after %d accounts", files(), len(uids))
	}
	// The epochs that grew the files have been installed (Update returns
	// after them), and checkPread runs right after installing each.
	deadline := time.Now().Add(10 * time.Second)
	for s.pread.Load() == nil {
		if time.Now().After(deadline) {
			t.Fatalf("files of %d bytes above the bound of %d, but pread is still off", files(), bound)
		}
		time.Sleep(10 * time.Millisecond)
	}
	before := s.pread.Load().Stats()
	for _, uid := range uids {
		mustLookup(t, s, trust, uid)
	}
	if s.pread.Load().Stats().Reads == before.Reads {
		t.Error("lookups after the switch read nothing with pread")
	}
}
