// Package resident bounds the resident memory (RSS) of a process that
// reads bbolt databases.
//
// bbolt reads its file through a read-only shared memory map, so every page
// a lookup touches stays mapped into the process and counts in its RSS
// (as RssFile) until the kernel reclaims it: a server doing random lookups
// over a 10 GB file ends up with ~10 GB resident although it allocated
// little. A Trimmer samples the process's RSS and, when it exceeds a
// budget, tells the kernel (madvise MADV_DONTNEED) that the process no
// longer needs parts of the databases' maps. That only removes the pages
// from the process's page tables: they stay in the kernel's page cache (as
// clean, reclaimable file pages) and the next access maps them back with a
// minor fault, without I/O while the page cache holds them. Nothing the
// process allocated (its anonymous memory: heap, stacks) is touched; if that
// alone is above the budget, trimming cannot reach it and the Trimmer says
// so once.
//
// Used by the directory server for directory.db, log.db and checkpoints.db.
// The log package opens its own bbolt file and depends on no other Keyline
// package, so the directory passes its *bbolt.DB here (embedded.Log.DB).
//
// Only Linux can do this (/proc/self/statm and /proc/self/maps); on other
// systems Run returns at once and Step does nothing (see resident_other.go).
package resident

import (
	"errors"
	"time"

	"go.etcd.io/bbolt"
)

// DefaultInterval is the longest a Trimmer waits between two samples of
// the RSS. It samples more often as the RSS nears the budget, so that the
// RSS cannot grow far past it between samples (see Run).
const DefaultInterval = 100 * time.Millisecond

// minInterval is the shortest wait between two samples.
const minInterval = 5 * time.Millisecond

// chunk is the span of a map released between two samples of the RSS, and
// sweep the most one read transaction releases. A transaction holds
// bbolt's remap lock for reading, so a commit that must grow the map waits
// for it (BenchmarkRelease* measures the cost per chunk).
const (
	chunk = 32 << 20
	sweep = 1 << 30
)

// ErrUnsupported is returned by ReadUsage where the RSS cannot be read
// (systems other than Linux).
var ErrUnsupported = errors.New("resident: resident memory is only measured and trimmed on Linux")

// Usage is the resident memory of this process, in bytes.
type Usage struct {
	// Resident is all of it (VmRSS).
	Resident int64
	// Shared is the part backed by files or shared memory (RssFile +
	// RssShmem): here, mostly the pages of the bbolt maps.
	Shared int64
}

// Anon returns the resident memory the process allocated itself (heap,
// stacks): what trimming cannot release.
func (u Usage) Anon() int64 { return u.Resident - u.Shared }

// Trimmer keeps the process's RSS near or below Budget by releasing the
// pages of the memory maps of DBs. Set the fields, then call Run (or Step);
// the fields must not change afterwards.
type Trimmer struct {
	// Budget is the RSS in bytes above which the Trimmer releases pages.
	// It releases until the RSS is at most half of Budget: the room left
	// absorbs the growth while the next sample is late (a busy machine
	// wakes the Trimmer tens of milliseconds late, while lookups map
	// pages back at GB/s). Must be positive.
	Budget int64
	// DBs are the open databases whose maps may be released. A database
	// closed while the Trimmer runs is skipped.
	DBs []*bbolt.DB
	// Interval is the longest Run waits between two samples of the RSS
	// (0: DefaultInterval).
	Interval time.Duration
	// Logf, if set, receives the Trimmer's notices: the first trim,
	// anonymous memory alone above the budget, and the first failure to
	// release a map.
	Logf func(format string, args ...any)

	// Where the next release starts: DBs[cur] at byte off. A step
	// releases only as much as it must, continuing where the previous one
	// stopped, so successive steps spread over the whole of every map
	// and the rest stays mapped.
	cur        int
	off        int64
	trims      int64
	released   int64
	warnedAnon bool
	warnedErr  bool
}

// Stats are a Trimmer's counters.
type Stats struct {
	Trims    int64 // steps that found the RSS above the budget
	Released int64 // bytes of map address space released (mapped or not)
}

// Stats returns the counters. Not safe to call concurrently with Run.
func (t *Trimmer) Stats() Stats { return Stats{Trims: t.trims, Released: t.released} }

// Run calls Step until stop is closed. It waits between two steps at most
// Interval and less as the RSS nears Budget: half the time the RSS, growing
// as fast as since the last step, would take to reach Budget, at least 5
// ms. It returns at once where RSS cannot be measured (not Linux) or when
// there is nothing to do.
func (t *Trimmer) Run(stop <-chan struct{}) {
	if _, err := ReadUsage(); err != nil || t.Budget <= 0 || len(t.DBs) == 0 {
		return
	}
	iv := t.Interval
	if iv <= 0 {
		iv = DefaultInterval
	}
	timer := time.NewTimer(iv)
	defer timer.Stop()
	var (
		last  Usage // after the previous step
		lastT time.Time
	)
	for {
		select {
		case <-stop:
			return
		case <-timer.C:
		}
		now := time.Now()
		before, after, err := t.step()
		wait := iv
		if err == nil && !lastT.IsZero() {
			// Above the budget after a step means a whole pass did not
			// get below it (the heap alone is that large): sampling
			// sooner would only repeat the pass.
			grow, room := before.Resident-last.Resident, t.Budget-after.Resident
			if grow > 0 && room > 0 {
				perSec := float64(grow) / now.Sub(lastT).Seconds()
				wait = min(wait, time.Duration(float64(room)/perSec/2*float64(time.Second)))
			}
		}
		last, lastT = after, time.Now()
		timer.Reset(max(wait, minInterval))
	}
}

// Step samples the RSS once and, if it is above Budget, releases chunks of
// the maps round-robin until it is at most half of Budget or every map has
// been released once. It returns the RSS after the step.
func (t *Trimmer) Step() (Usage, error) {
	_, after, err := t.step()
	return after, err
}

// step is Step, also returning the RSS before the step.
func (t *Trimmer) step() (before, after Usage, err error) {
	u, err := ReadUsage()
	if err != nil || u.Resident <= t.Budget || len(t.DBs) == 0 {
		return u, u, err
	}
	before = u
	if t.trims == 0 && t.Logf != nil {
		t.Logf("resident: RSS %d MiB is above the budget of %d MiB: releasing pages of the database maps (they stay in the page cache)", u.Resident>>20, t.Budget>>20)
	}
	t.trims++
	low := t.Budget / 2
	if t.heapAboveLine(u.Anon(), low) && t.Logf != nil {
		t.Logf("resident: anonymous memory (heap, stacks) alone is %d MiB, above half the budget of %d MiB: releasing map pages cannot bring the RSS below it", u.Anon()>>20, t.Budget>>20)
	}
	var usageErr error
	more := func() bool {
		u, usageErr = ReadUsage()
		return usageErr == nil && u.Resident > low
	}
	// One pass over every map at most: wraps counts the maps finished.
	for wraps := 0; wraps < len(t.DBs) && u.Resident > low && usageErr == nil; {
		next, end, err := release(t.DBs[t.cur], t.off, sweep, more)
		if err != nil && !errors.Is(err, bbolt.ErrDatabaseNotOpen) && !t.warnedErr && t.Logf != nil {
			t.Logf("resident: cannot release the map of %s (RSS may exceed the budget): %v", t.DBs[t.cur].Path(), err)
			t.warnedErr = true
		}
		if next > t.off {
			t.released += next - t.off
		}
		t.off = next
		if err != nil || next >= end {
			t.cur = (t.cur + 1) % len(t.DBs)
			t.off = 0
			wraps++
		}
	}
	return before, u, usageErr
}

// heapAboveLine records anonymous memory anon against the line low (half
// the budget) and reports whether to warn: the first time anon is above
// the line, and again only after it fell below half the line, so an RSS
// hovering around the line does not repeat the warning on every step.
func (t *Trimmer) heapAboveLine(anon, low int64) bool {
	switch {
	case anon > low:
		warn := !t.warnedAnon
		t.warnedAnon = true
		return warn
	case anon < low/2:
		t.warnedAnon = false
	}
	return false
}

// Release releases the pages of db's map in [off, off+n), clipped to the
// database's current size: this process stops mapping them, the page
// cache keeps them. It returns where the released range ended and the
// size of the map it may release (the database's high-water mark). Use it
// to release a whole database: for off := 0; off < end; off = next {...}.
func Release(db *bbolt.DB, off, n int64) (next, end int64, err error) {
	return release(db, off, n, nil)
}
