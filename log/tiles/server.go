package tiles

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	klog "github.com/keyline/keyline/log"
)

// LeafReader returns leaves [start, end) of a log; it may return fewer
// than asked (at least one when start < end). Every Keyline log reader
// (log.Backend, verifier.Source, the directory) has this method.
type LeafReader interface {
	Entries(ctx context.Context, start, end uint64) ([][]byte, error)
}

// ErrMismatch is returned by Server.Sync when the leaves do not hash to the
// checkpoint's root, or the checkpoint is smaller than one synced before:
// the log or its reader is corrupt (or lying), and nothing new is served.
var ErrMismatch = errors.New("tiles: log does not match the checkpoint")

// Cache-Control values.
const (
	CacheImmutable  = "public, max-age=31536000, immutable" // full tiles and bundles
	CachePartial    = "public, max-age=60"                  // partial tiles and bundles
	CacheCheckpoint = "public, max-age=2"                   // the checkpoint
)

const maxCacheBytes = 32 << 20 // full level-0 tiles and bundles kept in memory

// Server serves a log as tlog-tiles: the checkpoint given to the last
// successful Sync and every tile and bundle of its tree. Level-1+ tiles come
// from Hashes; level-0 tiles and bundles are read from the LeafReader (full
// ones are cached). It is safe for concurrent use.
type Server struct {
	leaves LeafReader
	hashes Hashes

	syncMu sync.Mutex // serializes Sync

	mu         sync.RWMutex
	checkpoint []byte
	size       uint64 // of checkpoint; <= hashes.Size()

	cacheMu    sync.Mutex
	cache      map[cacheKey][]byte
	cacheBytes int
}

type cacheKey struct {
	entries bool
	gzip    bool // the gzipped bundle
	n       uint64
}

// gzipWriters reuses gzip writers (each holds about 1 MiB of state).
var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return w
}}

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzipWriters.Get().(*gzip.Writer)
	zw.Reset(&buf)
	zw.Write(b)
	zw.Close()
	gzipWriters.Put(zw)
	return buf.Bytes()
}

// gzippedBundle returns bundle b of tile t gzipped, cached for full tiles.
func (s *Server) gzippedBundle(t Tile, b []byte) []byte {
	k := cacheKey{entries: true, gzip: true, n: t.N}
	if z := s.cached(k, t); z != nil {
		return z
	}
	z := gzipBytes(b)
	s.store(k, t, z)
	return z
}

// NewServer returns a Server reading leaves from r. It serves nothing until
// the first Sync.
func NewServer(r LeafReader) *Server {
	return &Server{leaves: r, cache: make(map[cacheKey][]byte)}
}

// Checkpoint returns the checkpoint served (nil before the first Sync) and
// its size.
func (s *Server) Checkpoint() ([]byte, uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.checkpoint, s.size
}

// Hashes returns the server's tile hashes (read-only use).
func (s *Server) Hashes() *Hashes { return &s.hashes }

// ParseSignedCheckpoint returns the body of a signed checkpoint note,
// without checking its signatures.
func ParseSignedCheckpoint(signed []byte) (klog.Checkpoint, error) {
	body, _, ok := bytes.Cut(signed, []byte("\n\n"))
	if !ok {
		return klog.Checkpoint{}, fmt.Errorf("tiles: checkpoint is not a signed note")
	}
	return klog.ParseCheckpoint(append(bytes.Clone(body), '\n'))
}

// Sync reads the leaves up to the size of signedCheckpoint (whose
// signatures the caller has checked or trusts), checks that they hash to
// its root and then serves it. onLeaves, if not nil, sees every new leaf
// batch in order with the index of its first leaf. A checkpoint smaller
// than the one served, or whose root does not match, fails with
// ErrMismatch and changes nothing that is served.
func (s *Server) Sync(ctx context.Context, signedCheckpoint []byte, onLeaves func(first uint64, leaves [][]byte)) error {
	cp, err := ParseSignedCheckpoint(signedCheckpoint)
	if err != nil {
		return err
	}
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if _, size := s.Checkpoint(); cp.Size < size {
		return fmt.Errorf("%w: checkpoint of size %d after one of size %d", ErrMismatch, cp.Size, size)
	}
	for n := s.hashes.Size(); n < cp.Size; {
		ls, err := s.leaves.Entries(ctx, n, cp.Size)
		if err != nil {
			return fmt.Errorf("tiles: reading leaves from %d: %w", n, err)
		}
		if len(ls) == 0 {
			return fmt.Errorf("tiles: reading leaves from %d: none returned", n)
		}
		ls = ls[:min(uint64(len(ls)), cp.Size-n)]
		s.hashes.Append(ls)
		if onLeaves != nil {
			onLeaves(n, ls)
		}
		n += uint64(len(ls))
	}
	if s.hashes.Size() != cp.Size {
		// Synced past this size before (a later checkpoint failed to
		// match): the hashes cannot be rewound.
		return fmt.Errorf("%w: hashes at size %d, checkpoint size %d", ErrMismatch, s.hashes.Size(), cp.Size)
	}
	if root := s.hashes.Root(); root != cp.Hash {
		return fmt.Errorf("%w: leaves [0, %d) hash to %x, the checkpoint says %x", ErrMismatch, cp.Size, root[:8], cp.Hash[:8])
	}
	s.mu.Lock()
	s.checkpoint, s.size = bytes.Clone(signedCheckpoint), cp.Size
	s.mu.Unlock()
	return nil
}

// errNotFound is a tile or bundle the served tree does not have.
var errNotFound = errors.New("tiles: no such tile in the served tree")

// servable reports whether t's hashes exist in the tree of size.
func servable(t Tile, size uint64) bool {
	count := size >> (8 * uint(t.L))
	return t.W >= 1 && t.W <= Width && t.N <= (^uint64(0)-uint64(t.W))/Width && t.N*Width+uint64(t.W) <= count
}

// ReadTile returns the contents of tile t of the served tree.
func (s *Server) ReadTile(ctx context.Context, t Tile) ([]byte, error) {
	if _, size := s.Checkpoint(); !servable(t, size) {
		return nil, fmt.Errorf("%w: %s", errNotFound, t.Path())
	}
	if t.L > 0 {
		return s.hashes.Tile(t)
	}
	if b := s.cached(cacheKey{n: t.N}, t); b != nil {
		return b, nil
	}
	leaves, err := s.readLeaves(ctx, t)
	if err != nil {
		return nil, err
	}
	b := LeafTile(leaves)
	s.store(cacheKey{n: t.N}, t, b)
	return b, nil
}

// ReadBundle returns the entry bundle t (t.L is ignored) of the served tree.
func (s *Server) ReadBundle(ctx context.Context, t Tile) ([]byte, error) {
	t.L = 0
	if _, size := s.Checkpoint(); !servable(t, size) {
		return nil, fmt.Errorf("%w: %s", errNotFound, t.EntriesPath())
	}
	if b := s.cached(cacheKey{entries: true, n: t.N}, t); b != nil {
		return b, nil
	}
	leaves, err := s.readLeaves(ctx, t)
	if err != nil {
		return nil, err
	}
	b, err := MarshalBundle(leaves)
	if err != nil {
		return nil, err
	}
	s.store(cacheKey{entries: true, n: t.N}, t, b)
	return b, nil
}

func (s *Server) cached(k cacheKey, t Tile) []byte {
	if !t.Full() {
		return nil
	}
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	return s.cache[k]
}

func (s *Server) store(k cacheKey, t Tile, b []byte) {
	if !t.Full() {
		return
	}
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if s.cacheBytes+len(b) > maxCacheBytes {
		clear(s.cache)
		s.cacheBytes = 0
	}
	if _, ok := s.cache[k]; !ok {
		s.cache[k] = b
		s.cacheBytes += len(b)
	}
}

func (s *Server) readLeaves(ctx context.Context, t Tile) ([][]byte, error) {
	start, end := t.N*Width, t.N*Width+uint64(t.W)
	out := make([][]byte, 0, t.W)
	for n := start; n < end; {
		ls, err := s.leaves.Entries(ctx, n, end)
		if err != nil {
			return nil, fmt.Errorf("tiles: reading leaves [%d, %d): %w", n, end, err)
		}
		if len(ls) == 0 {
			return nil, fmt.Errorf("tiles: reading leaves from %d: none returned", n)
		}
		ls = ls[:min(uint64(len(ls)), end-n)]
		out = append(out, ls...)
		n += uint64(len(ls))
	}
	return out, nil
}

// ServeHTTP serves GET and HEAD of "/checkpoint", "/tile/<L>/<N>[.p/<W>]"
// and "/tile/entries/<N>[.p/<W>]" (paths relative to where it is mounted:
// strip the prefix first, e.g. with http.StripPrefix). Entry bundles are
// gzipped for clients that accept it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := strings.TrimPrefix(r.URL.Path, "/")
	if p == "checkpoint" {
		cp, _ := s.Checkpoint()
		if cp == nil {
			http.Error(w, "no checkpoint yet", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", CacheCheckpoint)
		w.Write(cp)
		return
	}
	t, entries, err := ParsePath(p)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	var b []byte
	if entries {
		b, err = s.ReadBundle(r.Context(), t)
	} else {
		b, err = s.ReadTile(r.Context(), t)
	}
	switch {
	case errors.Is(err, errNotFound):
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	case err != nil:
		http.Error(w, "reading the log failed", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	if t.Full() {
		h.Set("Cache-Control", CacheImmutable)
	} else {
		h.Set("Cache-Control", CachePartial)
	}
	if entries {
		h.Set("Vary", "Accept-Encoding")
		if acceptsGzip(r) {
			h.Set("Content-Encoding", "gzip")
			w.Write(s.gzippedBundle(t, b))
			return
		}
	}
	w.Write(b)
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.TrimSpace(enc) == "gzip" && strings.ReplaceAll(strings.TrimSpace(q), " ", "") != "q=0" {
			return true
		}
	}
	return false
}
