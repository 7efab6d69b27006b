//go:build linux

package resident

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

var bucket = []byte("b")

// value is the contents of key i: its 8 bytes (with the top bit set, so
// never zero) repeated, so a reader can tell a value from another key's or
// from zeroed memory.
func value(i uint64, size int) []byte {
	return bytes.Repeat(binary.BigEndian.AppendUint64(nil, i|1<<63), size/8)
}

func key(i uint64) []byte { return binary.BigEndian.AppendUint64(nil, i) }

func openDB(t *testing.T) *bbolt.DB {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "t.db"), 0o600, &bbolt.Options{NoSync: true, NoGrowSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket(bucket); return err }); err != nil {
		t.Fatal(err)
	}
	return db
}

// fill appends keys [from, to) of size bytes each.
func fill(t testing.TB, db *bbolt.DB, from, to uint64, size int) {
	for i := from; i < to; {
		err := db.Update(func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucket)
			for end := min(to, i+64); i < end; i++ {
				if err := b.Put(key(i), value(i, size)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Error(err)
			return
		}
	}
}

// checkAll reads keys [0, n) and compares them with value.
func checkAll(t testing.TB, db *bbolt.DB, n uint64, size int) {
	err := db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucket)
		for i := range n {
			if got := b.Get(key(i)); !bytes.Equal(got, value(i, size)) {
				return fmt.Errorf("key %d: read %d bytes that are not its value", i, len(got))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// rssFile returns RssFile from /proc/self/status, in bytes.
func rssFile(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "RssFile:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

func TestStepReleasesMappedPages(t *testing.T) {
	const n, size = 6000, 16 << 10 // ~96 MiB of values
	db := openDB(t)
	fill(t, db, 0, n, size)
	before := rssFile(t)
	u0, err := ReadUsage()
	if err != nil {
		t.Fatal(err)
	}
	checkAll(t, db, n, size) // maps every page
	touched := rssFile(t)
	if touched-before < 80<<20 {
		t.Fatalf("reading the database mapped %d MiB, want ~96 MiB: the test cannot see a release", (touched-before)>>20)
	}
	tr := &Trimmer{Budget: u0.Resident + 16<<20, DBs: []*bbolt.DB{db}}
	u, err := tr.Step()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFile(t)
	t.Logf("RssFile %d MiB before reading, %d MiB after, %d MiB after Step with a budget of %d MiB (RSS %d MiB)",
		before>>20, touched>>20, after>>20, tr.Budget>>20, u.Resident>>20)
	if u.Resident > tr.Budget {
		t.Errorf("RSS after Step is %d MiB, above the budget of %d MiB", u.Resident>>20, tr.Budget>>20)
	}
	if after > before+16<<20 {
		t.Errorf("RssFile after Step is %d MiB, want at most %d MiB (before reading + 16 MiB)", after>>20, (before+16<<20)>>20)
	}
	if s := tr.Stats(); s.Trims != 1 || s.Released == 0 {
		t.Errorf("Stats() = %+v, want 1 trim and some bytes released", s)
	}
	// The data is still there and maps back in.
	checkAll(t, db, n, size)
	if again := rssFile(t); again < after+80<<20 {
		t.Errorf("RssFile after reading again is %d MiB, want ~%d MiB", again>>20, touched>>20)
	}
	// Under the budget, Step does nothing.
	tr2 := &Trimmer{Budget: 1 << 50, DBs: []*bbolt.DB{db}}
	if _, err := tr2.Step(); err != nil || tr2.Stats().Trims != 0 {
		t.Errorf("Step under the budget: %+v, %v; want no trim", tr2.Stats(), err)
	}
}

// TestReleaseWhileRemapping releases the map continuously while writers
// grow the file (so bbolt remaps it many times) and readers check every
// value they read. Run with -race.
func TestReleaseWhileRemapping(t *testing.T) {
	const size = 8 << 10
	db := openDB(t)
	fill(t, db, 0, 256, size)
	var (
		written  atomic.Uint64 // keys [0, written) are committed
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		releases atomic.Int64
	)
	written.Store(256)
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := written.Load()
				err := db.View(func(tx *bbolt.Tx) error {
					for range 32 {
						i := rng.Uint64N(n)
						if got := tx.Bucket(bucket).Get(key(i)); !bytes.Equal(got, value(i, size)) {
							return fmt.Errorf("key %d: read %d bytes that are not its value", i, len(got))
						}
					}
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		tr := &Trimmer{Budget: 1, DBs: []*bbolt.DB{db}} // always above: releases on every step
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := tr.Step(); err != nil {
				t.Error(err)
				return
			}
			releases.Add(1)
		}
	}()
	// ~48 MiB in steps: the map grows 32 KiB -> 64 MiB, remapping at
	// each doubling.
	deadline := time.Now().Add(20 * time.Second)
	for n := uint64(256); n < 6000 && time.Now().Before(deadline) && !t.Failed(); n += 256 {
		fill(t, db, n, n+256, size)
		written.Store(n + 256)
	}
	close(stop)
	wg.Wait()
	st, err := os.Stat(db.Path())
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() < 32<<20 {
		t.Errorf("the file grew to %d MiB only: too few remaps to test", st.Size()>>20)
	}
	if releases.Load() < 10 {
		t.Errorf("only %d trim steps ran while the file grew", releases.Load())
	}
	checkAll(t, db, written.Load(), size)
	t.Logf("file %d MiB, %d trim steps, %d keys", st.Size()>>20, releases.Load(), written.Load())
}

func TestReadOnlyFileMapping(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mmap := func(prot, flags, fd int) []byte {
		b, err := unix.Mmap(fd, 0, 1<<20, prot, flags)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Munmap(b) })
		return b
	}
	addr := func(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

	ro := mmap(unix.PROT_READ, unix.MAP_SHARED, int(f.Fd()))
	if n, err := readOnlyFileMapping(addr(ro)); err != nil || n != 1<<20 {
		t.Errorf("read-only shared file mapping: %d, %v; want %d", n, err, 1<<20)
	}
	if _, err := readOnlyFileMapping(addr(ro) + uintptr(pageSize)); err == nil {
		t.Error("an address inside a mapping was accepted as its start")
	}
	for name, b := range map[string][]byte{
		"anonymous":         mmap(unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON, -1),
		"writable shared":   mmap(unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED, int(f.Fd())),
		"read-only private": mmap(unix.PROT_READ, unix.MAP_PRIVATE, int(f.Fd())),
	} {
		if n, err := readOnlyFileMapping(addr(b)); err == nil {
			t.Errorf("%s mapping accepted (%d bytes)", name, n)
		}
	}
}

func TestReleaseClosedDB(t *testing.T) {
	db := openDB(t)
	fill(t, db, 0, 10, 100)
	db.Close()
	if _, _, err := Release(db, 0, 1<<20); err == nil {
		t.Error("Release on a closed database succeeded")
	}
	tr := &Trimmer{Budget: 1, DBs: []*bbolt.DB{db}}
	if _, err := tr.Step(); err != nil {
		t.Errorf("Step over a closed database: %v (want it skipped)", err)
	}
}

// Run with a budget below the heap: it releases (and says so once), warns
// once that the heap alone is above the budget, and returns when stopped.
func TestRunHeapAboveBudget(t *testing.T) {
	db := openDB(t)
	fill(t, db, 0, 100, 4096)
	var (
		mu   sync.Mutex
		logs []string
	)
	tr := &Trimmer{Budget: 1, DBs: []*bbolt.DB{db}, Interval: 10 * time.Millisecond, Logf: func(f string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		logs = append(logs, fmt.Sprintf(f, a...))
	}}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tr.Run(stop)
	}()
	time.Sleep(200 * time.Millisecond)
	close(stop)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after stop was closed")
	}
	if s := tr.Stats(); s.Trims < 2 || s.Released == 0 {
		t.Errorf("Stats() = %+v, want several trims that released something", s)
	}
	var first, heap int
	for _, l := range logs {
		if strings.Contains(l, "releasing pages of the database maps") {
			first++
		}
		if strings.Contains(l, "anonymous memory (heap, stacks) alone is") {
			heap++
		}
	}
	if first != 1 || heap != 1 {
		t.Errorf("logs %q: want the first release and the heap warning once each", logs)
	}
}
