// Package boltread reads values of a bbolt database with pread
// ((*os.File).ReadAt) instead of through bbolt's memory map.
//
// bbolt reads its file through a shared memory map: every page a read
// touches is mapped into the process and counts in its RSS until it is
// unmapped. A process that bounds its RSS (internal/resident) while
// reading a file much larger than the bound pays, on nearly every read, a
// page fault that maps the page back, and on Linux the fault maps the 16
// pages around it too (fault-around, which MADV_RANDOM does not turn off),
// so the bound fills 16 times faster and is released again and again.
// pread copies the bytes it needs from the page cache into the process's
// own buffer instead: nothing is mapped, no fault, and the RSS does not
// grow.
//
// A Reader walks a bucket's B+tree itself: from the bucket's root page,
// which bbolt's own API gives for the caller's read transaction
// (Bucket.Root), through the branch pages to the leaf, with a binary
// search on the bytes of each page (page.go has the format). The caller's
// open read transaction is what makes this safe: bbolt never rewrites a
// page in place (copy on write) and does not reuse a page freed after the
// oldest open read transaction began, so every page reachable from the
// root the transaction sees keeps its bytes in the file until the
// transaction ends; pread and the map read the same page cache.
//
// Branch pages, few and read by every lookup, are cached (see Reader);
// leaf pages are read each time: under uniform lookups of a large file
// they are rarely read twice.
//
// Decoding is bounds-checked: bytes that do not form a valid tree give an
// error wrapping ErrCorrupt, never a panic or a read outside the page.
package boltread

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"go.etcd.io/bbolt"
)

// DefaultCacheBytes bounds the cached branch pages of a Reader (New with
// cacheBytes 0): 32 MiB is every branch page of a 10 GB file of 4 KiB
// pages with its leaves ~75% full (~1 branch page per 100-200 leaves).
const DefaultCacheBytes = 32 << 20

// Reader reads the B+trees of one bbolt file with pread. It is safe for
// concurrent use.
type Reader struct {
	f          io.ReaderAt
	closer     io.Closer
	pageSize   int
	cacheBytes int

	gen atomic.Pointer[generation]

	// bufs are read buffers of 4 KiB << i bytes, returned by Release.
	bufs [bufClasses]sync.Pool

	reads, hits atomic.Int64
}

// bufClasses is the number of pooled buffer sizes: 4 KiB to 64 KiB. A
// larger read gets a buffer of its own.
const bufClasses = 5

// generation is the branch page cache of one bbolt transaction id.
//
// Why keying by transaction id is enough: a read transaction's ID is the
// id of the last committed write transaction it sees, and ids only grow.
// Every read transaction with ID t sees the same root pages, so the same
// reachable pages; a page reachable in t is freed at the earliest by
// commit t+1 and reused only after every transaction that began before
// t+1 committed has ended. A reader with ID t began before t+1 committed,
// so while it runs every page reachable in t holds the bytes cached for t.
// A reader with another ID neither reads nor fills this generation; a
// newer one replaces it.
//
// The price is a cold cache after every commit: the next lookups read
// their branch pages again, once each (~4,700 pages at 10M accounts in
// directory.db, ~10 ms of preads per epoch). Keeping pages across ids
// would need to know which pages the commit freed.
type generation struct {
	txid  int
	mu    sync.RWMutex
	pages map[uint64][]byte
	bytes int
}

// Stats are a Reader's counters.
type Stats struct {
	Reads     int64 // preads of page bytes
	CacheHits int64 // branch pages served from the cache
}

// Stats returns the counters.
func (r *Reader) Stats() Stats { return Stats{Reads: r.reads.Load(), CacheHits: r.hits.Load()} }

// New returns a Reader of the bbolt file read by f, whose pages are
// pageSize bytes (bbolt.DB.Info().PageSize), caching at most cacheBytes of
// branch pages (0: DefaultCacheBytes; negative: none).
func New(f io.ReaderAt, pageSize, cacheBytes int) (*Reader, error) {
	if pageSize < 512 || pageSize > 1<<20 || pageSize&(pageSize-1) != 0 {
		return nil, fmt.Errorf("boltread: page size %d is not a power of two in [512, 1 MiB]", pageSize)
	}
	if cacheBytes == 0 {
		cacheBytes = DefaultCacheBytes
	}
	return &Reader{f: f, pageSize: pageSize, cacheBytes: max(cacheBytes, 0)}, nil
}

// Open returns a Reader of db's file, opened again read-only for pread
// (Close closes it).
func Open(db *bbolt.DB, cacheBytes int) (*Reader, error) {
	f, err := os.Open(db.Path())
	if err != nil {
		return nil, fmt.Errorf("boltread: %w", err)
	}
	r, err := New(f, db.Info().PageSize, cacheBytes)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.closer = f
	return r, nil
}

// Close closes the file opened by Open.
func (r *Reader) Close() error {
	if r == nil || r.closer == nil {
		return nil
	}
	return r.closer.Close()
}

// Bucket returns a Source reading b, opened in the read transaction tx,
// with pread. It reads through bbolt (Mapped) instead when r is nil, when
// tx is writable (its uncommitted changes are in memory, not in the
// file), and when b is an inline bucket (root 0: its page is inside its
// parent's value).
func (r *Reader) Bucket(tx *bbolt.Tx, b *bbolt.Bucket) Source {
	if r == nil || tx.Writable() || b.Root() == 0 {
		return Mapped(b)
	}
	return &preadBucket{r: r, txid: tx.ID(), root: uint64(b.Root())}
}

// Release ends the use of src's results: a Source of Reader.Bucket takes
// the buffers of its reads back for later reads (of any Source of the
// Reader), so every slice src returned before must no longer be used.
// src may read again afterwards. Nothing for Mapped. Lookups release
// their Source once they have decoded or copied what they read, which
// saves allocating and collecting ~30 KB of buffers per lookup.
func Release(src Source) {
	b, ok := src.(*preadBucket)
	if !ok {
		return
	}
	for _, bp := range b.bufs {
		if c := bufClass(cap(*bp)); c >= 0 && 4096<<c == cap(*bp) {
			b.r.bufs[c].Put(bp)
		}
	}
	clear(b.bufs)
	b.bufs = b.bufs[:0]
}

// bufClass returns the class of the smallest pooled buffer holding n
// bytes, -1 if n is larger than every class.
func bufClass(n int) int {
	for c := range bufClasses {
		if n <= 4096<<c {
			return c
		}
	}
	return -1
}

// Source is how a lookup reads one bucket's values: through bbolt's memory
// map (Mapped) or with pread (Reader.Bucket). Both are valid only while
// the transaction the bucket was opened in is open, the values a Source of
// Reader.Bucket returned only until Release, and such a Source is for one
// goroutine at a time.
type Source interface {
	// Get returns key's value, or nil if key is absent or a nested
	// bucket. The result may alias the map or a buffer of the Source:
	// the caller must not modify it.
	Get(key []byte) ([]byte, error)
	// Value returns a handle to read parts of key's value, or nil if key
	// is absent or a nested bucket.
	Value(key []byte) (Value, error)
}

// Value reads parts of one value.
type Value interface {
	// Len returns the value's length in bytes.
	Len() int
	// Slice returns bytes [off, off+n) of the value (an error if they are
	// not within it). The result may alias the map or a buffer of the
	// Value: the caller must not modify it.
	Slice(off, n int) ([]byte, error)
}

// Mapped returns a Source reading b with bbolt's Get.
func Mapped(b *bbolt.Bucket) Source { return mapped{b} }

type mapped struct{ b *bbolt.Bucket }

func (m mapped) Get(key []byte) ([]byte, error) { return m.b.Get(key), nil }

func (m mapped) Value(key []byte) (Value, error) {
	v := m.b.Get(key)
	if v == nil {
		return nil, nil
	}
	return bytesValue(v), nil
}

// Bytes returns b as a Value, aliasing b.
func Bytes(b []byte) Value { return bytesValue(b) }

// bytesValue is a Value held in memory.
type bytesValue []byte

func (b bytesValue) Len() int { return len(b) }

func (b bytesValue) Slice(off, n int) ([]byte, error) {
	if off < 0 || n < 0 || off > len(b)-n {
		return nil, fmt.Errorf("boltread: bytes [%d, +%d) of a %d-byte value", off, n, len(b))
	}
	return b[off : off+n : off+n], nil
}

type preadBucket struct {
	r    *Reader
	txid int
	root uint64
	bufs []*[]byte // taken from r.bufs by alloc, returned by Release
}

// alloc returns a buffer of n bytes (not zeroed: reads fill it), pooled
// if n fits a class.
func (b *preadBucket) alloc(n int) []byte {
	c := bufClass(n)
	if c < 0 {
		return make([]byte, n)
	}
	bp, _ := b.r.bufs[c].Get().(*[]byte)
	if bp == nil {
		buf := make([]byte, 4096<<c)
		bp = &buf
	}
	b.bufs = append(b.bufs, bp)
	return (*bp)[:n]
}

func (b *preadBucket) Get(key []byte) ([]byte, error) {
	v, err := b.value(key)
	if err != nil || v == nil {
		return nil, err
	}
	return v.Slice(0, v.len)
}

func (b *preadBucket) Value(key []byte) (Value, error) {
	v, err := b.value(key)
	if err != nil || v == nil {
		// A nil *leafValue in a Value interface would not be nil.
		return nil, err
	}
	return v, nil
}

// value walks from the root to key's leaf.
func (b *preadBucket) value(key []byte) (*leafValue, error) {
	id := b.root
	for depth := 0; ; depth++ {
		if depth == maxDepth {
			return nil, fmt.Errorf("%w: more than %d pages from root %d to a leaf (a cycle?)", ErrCorrupt, maxDepth, b.root)
		}
		p, h, size, err := b.r.page(b.txid, id, b.alloc)
		if err != nil {
			return nil, err
		}
		if h.flags == branchFlag {
			if id, err = searchBranch(p, h, key); err != nil {
				return nil, err
			}
			continue
		}
		lp := &filePage{b: b, off: int64(id) * int64(b.r.pageSize), size: size, buf: p}
		m, err := searchLeaf(lp, h, size, key)
		if err != nil || !m.found {
			return nil, err
		}
		return &leafValue{p: lp, off: m.off, len: m.len}, nil
	}
}

// page returns page id as seen by read transaction txid: a branch page
// whole (from the cache if there), a leaf page's first page only (filePage
// reads the rest on demand; in a buffer from alloc), with its header and
// size.
func (r *Reader) page(txid int, id uint64, alloc func(int) []byte) ([]byte, header, int, error) {
	g := r.generation(txid)
	if g != nil {
		g.mu.RLock()
		p := g.pages[id]
		g.mu.RUnlock()
		if p != nil {
			r.hits.Add(1)
			h, size, err := parseHeader(p, id, r.pageSize)
			return p, h, size, err
		}
	}
	off := int64(id) * int64(r.pageSize)
	if id > uint64(1<<62)/uint64(r.pageSize) {
		return nil, header{}, 0, fmt.Errorf("%w: page id %d beyond any file", ErrCorrupt, id)
	}
	p := alloc(r.pageSize)
	if err := r.readAt(p, off); err != nil {
		return nil, header{}, 0, fmt.Errorf("page %d: %w", id, err)
	}
	h, size, err := parseHeader(p, id, r.pageSize)
	if err != nil {
		return nil, h, 0, err
	}
	if h.flags != branchFlag {
		return p, h, size, nil
	}
	// A branch page outlives the read in the cache: a buffer of its own.
	p = append(make([]byte, 0, size), p...)
	if size > len(p) {
		p = append(p, make([]byte, size-len(p))...)
		if err := r.readAt(p[r.pageSize:], off+int64(r.pageSize)); err != nil {
			return nil, h, 0, fmt.Errorf("branch page %d: %w", id, err)
		}
	}
	if g != nil {
		g.mu.Lock()
		if g.bytes+len(p) <= r.cacheBytes {
			if _, ok := g.pages[id]; !ok {
				g.pages[id] = p
				g.bytes += len(p)
			}
		}
		g.mu.Unlock()
	}
	return p, h, size, nil
}

// generation returns the cache generation of transaction id txid, making
// it the current one if txid is newer; nil if txid is older than the
// current one or the cache is off.
func (r *Reader) generation(txid int) *generation {
	if r.cacheBytes == 0 {
		return nil
	}
	for {
		g := r.gen.Load()
		switch {
		case g != nil && g.txid == txid:
			return g
		case g != nil && g.txid > txid:
			return nil
		}
		if r.gen.CompareAndSwap(g, &generation{txid: txid, pages: make(map[uint64][]byte)}) {
			return r.gen.Load()
		}
	}
}

// readAt fills p from file offset off. Bytes past the end of the file
// are ErrCorrupt (a page id beyond the file); other read errors are
// returned as they are, prefixed with "boltread".
func (r *Reader) readAt(p []byte, off int64) error {
	r.reads.Add(1)
	n, err := r.f.ReadAt(p, off)
	switch {
	case n == len(p):
		return nil
	case err == nil || err == io.EOF:
		return fmt.Errorf("%w: bytes [%d, +%d) past the end of the file", ErrCorrupt, off, len(p))
	default:
		return fmt.Errorf("boltread: %w", err)
	}
}

// filePage is a leaf page of size bytes at file offset off, of which buf
// holds the first bytes; at reads the others with pread, from the spans
// prefetch read if they hold them.
type filePage struct {
	b     *preadBucket
	off   int64
	size  int
	buf   []byte
	spans []pageSpan
}

// pageSpan is bytes [off, off+len(b)) of a page.
type pageSpan struct {
	off int
	b   []byte
}

func (p *filePage) check(off, n int) error {
	if off < 0 || n < 0 || off > p.size-n {
		return fmt.Errorf("%w: leaf page at %d: bytes [%d, +%d) outside its %d bytes", ErrCorrupt, p.off, off, n, p.size)
	}
	return nil
}

// held returns bytes [off, off+n) if buf or a span holds them.
func (p *filePage) held(off, n int) []byte {
	if off+n <= len(p.buf) {
		return p.buf[off : off+n : off+n]
	}
	for _, s := range p.spans {
		if off >= s.off && off+n <= s.off+len(s.b) {
			return s.b[off-s.off : off-s.off+n : off-s.off+n]
		}
	}
	return nil
}

func (p *filePage) prefetch(off, need, n int) error {
	if err := p.check(off, n); err != nil {
		return err
	}
	if p.held(off, need) != nil {
		return nil
	}
	b := p.b.alloc(n)
	if err := p.b.r.readAt(b, p.off+int64(off)); err != nil {
		return fmt.Errorf("leaf page at %d: %w", p.off, err)
	}
	p.spans = append(p.spans, pageSpan{off, b})
	return nil
}

func (p *filePage) at(off, n int) ([]byte, error) {
	if err := p.prefetch(off, n, n); err != nil {
		return nil, err
	}
	return p.held(off, n), nil
}

// leafValue is a value in a leaf page read with pread.
type leafValue struct {
	p        *filePage
	off, len int
}

func (v *leafValue) Len() int { return v.len }

func (v *leafValue) Slice(off, n int) ([]byte, error) {
	if off < 0 || n < 0 || off > v.len-n {
		return nil, fmt.Errorf("boltread: bytes [%d, +%d) of a %d-byte value", off, n, v.len)
	}
	return v.p.at(v.off+off, n)
}
