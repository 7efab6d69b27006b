package boltread

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrCorrupt is wrapped by every error about page bytes that do not form
// a valid bbolt B+tree: a page whose header names another page or an
// unexpected type, an element or key outside its page, an empty branch,
// a tree deeper than maxDepth.
var ErrCorrupt = errors.New("boltread: corrupt bbolt page")

// bbolt's page format (go.etcd.io/bbolt/internal/common/page.go), in the
// byte order of the host that wrote the file (bbolt writes its structs as
// they are in memory; NativeEndian reads them the same way):
//
//	page header (16 bytes): id u64, flags u16, count u16, overflow u32
//	branch element (16 bytes): pos u32, ksize u32, pgid u64
//	leaf element (16 bytes):   flags u32, pos u32, ksize u32, vsize u32
//
// The elements follow the header; an element's key starts pos bytes after
// the element itself, a leaf's value right after its key. A page spans
// overflow+1 consecutive pages of the file.
const (
	headerSize  = 16
	elementSize = 16

	branchFlag = 0x01
	leafFlag   = 0x02

	// bucketLeafFlag marks a leaf element whose value is a nested bucket
	// (bbolt's Get returns nil for it).
	bucketLeafFlag = 0x01
)

// maxDepth bounds the branch pages followed from a bucket's root to a
// leaf. bbolt keeps at least two keys per page, so a tree of 2^32 keys is
// at most 32 deep; a deeper walk means the pages form a cycle.
const maxDepth = 48

// maxPageBytes bounds the size of a page (with its overflow) this package
// reads at once: a branch page, or the element table of a leaf page.
const maxPageBytes = 64 << 20

var ne = binary.NativeEndian

// header is a decoded page header.
type header struct {
	id       uint64
	flags    uint16
	count    uint16
	overflow uint32
}

// parseHeader decodes the header of the page at the start of b, which must
// be page id of a file with pageSize-byte pages, and returns it with the
// page's size in bytes (overflow included).
func parseHeader(b []byte, id uint64, pageSize int) (header, int, error) {
	if len(b) < headerSize {
		return header{}, 0, fmt.Errorf("%w: page %d: %d bytes, shorter than a page header", ErrCorrupt, id, len(b))
	}
	h := header{id: ne.Uint64(b), flags: ne.Uint16(b[8:]), count: ne.Uint16(b[10:]), overflow: ne.Uint32(b[12:])}
	if h.id != id {
		return h, 0, fmt.Errorf("%w: page %d identifies itself as page %d", ErrCorrupt, id, h.id)
	}
	if h.flags != branchFlag && h.flags != leafFlag {
		return h, 0, fmt.Errorf("%w: page %d has flags %#x, not a branch or leaf page", ErrCorrupt, id, h.flags)
	}
	size := (uint64(h.overflow) + 1) * uint64(pageSize)
	if size > maxPageBytes && h.flags == branchFlag {
		return h, 0, fmt.Errorf("%w: branch page %d spans %d pages", ErrCorrupt, id, uint64(h.overflow)+1)
	}
	if size > 1<<40 {
		return h, 0, fmt.Errorf("%w: page %d spans %d pages", ErrCorrupt, id, uint64(h.overflow)+1)
	}
	if int(h.count)*elementSize > int(size)-headerSize {
		return h, 0, fmt.Errorf("%w: page %d: %d elements do not fit in %d bytes", ErrCorrupt, id, h.count, size)
	}
	return h, int(size), nil
}

// span returns b[off:off+n] if it lies within b, else an ErrCorrupt naming
// what of page id it was.
func span(b []byte, off, n uint64, id uint64, what string) ([]byte, error) {
	if off > uint64(len(b)) || n > uint64(len(b))-off {
		return nil, fmt.Errorf("%w: page %d: %s [%d, +%d) outside its %d bytes", ErrCorrupt, id, what, off, n, len(b))
	}
	return b[off : off+n : off+n], nil
}

// searchBranch returns the child of branch page p (all its bytes, header
// h) whose range holds key: the last element whose key is <= key, or the
// first if key is below every element (as bbolt's Cursor.searchPage).
func searchBranch(p []byte, h header, key []byte) (uint64, error) {
	if h.count == 0 {
		return 0, fmt.Errorf("%w: branch page %d has no elements", ErrCorrupt, h.id)
	}
	keyAt := func(i int) ([]byte, error) {
		e, err := span(p, headerSize+uint64(i)*elementSize, elementSize, h.id, "branch element")
		if err != nil {
			return nil, err
		}
		return span(p, headerSize+uint64(i)*elementSize+uint64(ne.Uint32(e)), uint64(ne.Uint32(e[4:])), h.id, "branch key")
	}
	// Binary search for the first element whose key is >= key.
	lo, hi := 0, int(h.count)
	exact := false
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		k, err := keyAt(mid)
		if err != nil {
			return 0, err
		}
		switch c := bytes.Compare(k, key); {
		case c < 0:
			lo = mid + 1
		case c == 0:
			exact = true
			hi = mid
		default:
			hi = mid
		}
	}
	i := lo
	if !exact && i > 0 {
		i--
	}
	if i >= int(h.count) {
		i = int(h.count) - 1
	}
	e, err := span(p, headerSize+uint64(i)*elementSize, elementSize, h.id, "branch element")
	if err != nil {
		return 0, err
	}
	child := ne.Uint64(e[8:])
	if child == h.id {
		return 0, fmt.Errorf("%w: branch page %d points to itself", ErrCorrupt, h.id)
	}
	return child, nil
}

// leafPage reads bytes of one leaf page: at(off, n) returns bytes [off,
// off+n) of the page or an error; prefetch(off, need, n) says that bytes
// [off, off+need) are about to be read, and perhaps up to off+n: a file
// page that does not hold the first reads them all in one pread.
// Bounds are checked by searchLeaf against the page's size.
type leafPage interface {
	at(off, n int) ([]byte, error)
	prefetch(off, need, n int) error
}

// prefetchValue is how much of a value searchLeaf reads together with its
// key: all of a value up to this size (a map tile, read whole next), else
// its first page (the header of a log bundle, of which one leaf is read).
const prefetchValue = 32 << 10

// leafMatch is where a key's value lies in its leaf page.
type leafMatch struct {
	found    bool
	off, len int // the value's bytes within the page
}

// searchLeaf finds key in the leaf page of header h and size bytes. A key
// whose element is a nested bucket is not found (bbolt's Get returns nil).
func searchLeaf(p leafPage, h header, size int, key []byte) (leafMatch, error) {
	elem := func(i int) (flags uint32, koff, klen, vlen int, err error) {
		e, err := p.at(headerSize+i*elementSize, elementSize)
		if err != nil {
			return 0, 0, 0, 0, err
		}
		flags = ne.Uint32(e)
		pos, ks, vs := uint64(ne.Uint32(e[4:])), uint64(ne.Uint32(e[8:])), uint64(ne.Uint32(e[12:]))
		start := uint64(headerSize+i*elementSize) + pos
		if start > uint64(size) || ks > uint64(size)-start || vs > uint64(size)-start-ks {
			return 0, 0, 0, 0, fmt.Errorf("%w: leaf page %d: element %d's key and value [%d, +%d+%d) outside its %d bytes", ErrCorrupt, h.id, i, start, ks, vs, size)
		}
		return flags, int(start), int(ks), int(vs), nil
	}
	// key reads element i's key, with a prefix of its value: in a page
	// spanning several (large values), keys lie far apart, each before
	// its value, and the value read next is then at hand.
	keyAt := func(koff, klen, vlen int) ([]byte, error) {
		if vlen > prefetchValue {
			vlen = 4096
		}
		if koff+klen+vlen > size {
			return nil, fmt.Errorf("%w: leaf page %d: key at %d outside its %d bytes", ErrCorrupt, h.id, koff, size)
		}
		if err := p.prefetch(koff, klen, klen+vlen); err != nil {
			return nil, err
		}
		return p.at(koff, klen)
	}
	lo, hi := 0, int(h.count)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		_, koff, klen, vlen, err := elem(mid)
		if err != nil {
			return leafMatch{}, err
		}
		k, err := keyAt(koff, klen, vlen)
		if err != nil {
			return leafMatch{}, err
		}
		if bytes.Compare(k, key) < 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == int(h.count) {
		return leafMatch{}, nil
	}
	flags, koff, klen, vlen, err := elem(lo)
	if err != nil {
		return leafMatch{}, err
	}
	k, err := keyAt(koff, klen, vlen)
	if err != nil {
		return leafMatch{}, err
	}
	if !bytes.Equal(k, key) || flags&bucketLeafFlag != 0 {
		return leafMatch{}, nil
	}
	return leafMatch{found: true, off: koff + klen, len: vlen}, nil
}

// bytesPage is a leafPage held in memory.
type bytesPage []byte

func (b bytesPage) prefetch(off, need, n int) error { return nil }

func (b bytesPage) at(off, n int) ([]byte, error) {
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("%w: negative span", ErrCorrupt)
	}
	return span(b, uint64(off), uint64(n), 0, "bytes")
}
