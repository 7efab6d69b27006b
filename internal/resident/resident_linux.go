//go:build linux

package resident

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"

	"go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

var pageSize = int64(os.Getpagesize())

// statm is /proc/self/statm, kept open: reading it again from offset 0
// regenerates it, which costs a fraction of opening it each time.
var statm struct {
	sync.Mutex
	f   *os.File
	buf [256]byte
}

// ReadUsage returns this process's resident memory, from /proc/self/statm.
func ReadUsage() (Usage, error) {
	statm.Lock()
	defer statm.Unlock()
	if statm.f == nil {
		f, err := os.Open("/proc/self/statm")
		if err != nil {
			return Usage{}, fmt.Errorf("resident: %w", err)
		}
		statm.f = f
	}
	n, err := statm.f.ReadAt(statm.buf[:], 0)
	if err != nil && err != io.EOF {
		return Usage{}, fmt.Errorf("resident: reading /proc/self/statm: %w", err)
	}
	b := statm.buf[:n]
	// size resident shared text lib data dt, in pages.
	f := bytes.Fields(b)
	if len(f) < 3 {
		return Usage{}, fmt.Errorf("resident: /proc/self/statm has %d fields, want 7", len(f))
	}
	res, err1 := strconv.ParseInt(string(f[1]), 10, 64)
	shr, err2 := strconv.ParseInt(string(f[2]), 10, 64)
	if err1 != nil || err2 != nil {
		return Usage{}, fmt.Errorf("resident: /proc/self/statm %q is not numeric", b)
	}
	return Usage{Resident: res * pageSize, Shared: shr * pageSize}, nil
}

// release drops the pages of db's map in [off, off+n) from this process's
// page tables with madvise(MADV_DONTNEED), in chunks, in one read
// transaction. After each chunk it calls more (if not nil) and stops when
// that returns false.
//
// Why this cannot touch memory other than bbolt's map of db (MADV_DONTNEED
// on anonymous memory would zero it, on a private mapping discard its
// changes):
//
//  1. It runs inside a read transaction. bbolt (v1.5.0, db.go) unmaps and
//     remaps the file only in DB.mmap, which holds db.mmaplock for
//     writing; every transaction from DB.Begin(false) (so DB.View) holds
//     mmaplock for reading from beginTx until removeTx, and DB.Close
//     takes it for writing too. So while the callback runs, the map
//     cannot move or go away: db.Info().Data, the address of its first
//     byte, stays valid.
//  2. The length is at most tx.Size() = the transaction's meta page
//     high-water mark (pgid) times the page size. Every page below it was
//     allocated by DB.allocate, which remaps to at least (pgid+count+1)
//     pages before it raises pgid, and after Open it remaps only when the
//     size it needs is at least the current map's, so the map never
//     shrinks. So [Data, Data+tx.Size()) lies within the map.
//  3. Not to rely on 1-2 alone (a future bbolt could change them), it
//     also reads /proc/self/maps and clips the range to the read-only
//     shared file mapping that starts at Data at file offset 0; if there
//     is none it releases nothing and fails. On a read-only shared file
//     mapping MADV_DONTNEED loses nothing whatever file it maps: the
//     process cannot have written to it, so the next access reads the
//     same bytes back from the page cache (or the file).
//
// The transaction does not delay commits, only a commit that must grow
// the map: that waits until the release ends (at most 1 GiB of map, tens
// of milliseconds if every page of it is mapped; see BenchmarkRelease*).
func release(db *bbolt.DB, off, n int64, more func() bool) (next, end int64, err error) {
	off = off / pageSize * pageSize
	next = off
	err = db.View(func(tx *bbolt.Tx) error {
		base := db.Info().Data
		end = tx.Size()
		mapped, err := readOnlyFileMapping(base)
		if err != nil {
			return err
		}
		end = min(end, mapped)
		stop := min(off+n, end)
		for next < stop {
			c := min(stop-next, chunk)
			if _, _, e := unix.Syscall(unix.SYS_MADVISE, base+uintptr(next), uintptr(c), unix.MADV_DONTNEED); e != 0 {
				return fmt.Errorf("resident: madvise %s: %w", db.Path(), e)
			}
			next += c
			if more != nil && !more() {
				break
			}
		}
		return nil
	})
	return next, end, err
}

// readOnlyFileMapping returns the length of the read-only, shared mapping
// of a file that starts at address base at file offset 0 (following
// adjacent entries of the same file), from /proc/self/maps.
func readOnlyFileMapping(base uintptr) (int64, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("resident: %w", err)
	}
	defer f.Close()
	// Each line: start-end perms offset dev inode [path], addresses and
	// offset in hex.
	var (
		length   int64
		dev, ino []byte
		sc       = bufio.NewScanner(f)
	)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		fs := bytes.Fields(sc.Bytes())
		if len(fs) < 5 {
			continue
		}
		r := bytes.SplitN(fs[0], []byte("-"), 2)
		if len(r) != 2 {
			continue
		}
		start, err1 := strconv.ParseUint(string(r[0]), 16, 64)
		stop, err2 := strconv.ParseUint(string(r[1]), 16, 64)
		offset, err3 := strconv.ParseUint(string(fs[2]), 16, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		if length == 0 {
			if uintptr(start) != base {
				continue
			}
			if string(fs[1]) != "r--s" || offset != 0 || string(fs[4]) == "0" {
				return 0, fmt.Errorf("resident: the mapping at %#x is %s at offset %d of inode %s, not a read-only shared file mapping from offset 0", base, fs[1], offset, fs[4])
			}
			dev, ino = bytes.Clone(fs[3]), bytes.Clone(fs[4])
			length = int64(stop - start)
			continue
		}
		// The kernel may list one mmap as several adjacent entries.
		if uintptr(start) != base+uintptr(length) || string(fs[1]) != "r--s" || offset != uint64(length) ||
			!bytes.Equal(fs[3], dev) || !bytes.Equal(fs[4], ino) {
			break
		}
		length += int64(stop - start)
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("resident: reading /proc/self/maps: %w", err)
	}
	if length == 0 {
		return 0, fmt.Errorf("resident: no mapping starts at %#x", base)
	}
	return length, nil
}
