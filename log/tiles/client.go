package tiles

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/tlog"

	klog "github.com/keyline/keyline/log"
)

// Bounds on what Client reads.
const (
	maxCheckpointSize = 1 << 20
	maxBundleSize     = Width * (2 + MaxBundledLeaf)
	maxCachedTiles    = 1024 // verified tiles kept in memory (8 MiB)
)

// ErrServer is wrapped by every error about what a tiles server answered
// (an HTTP error, a body of the wrong size, a tile that does not verify).
var ErrServer = errors.New("tiles: bad answer from the tiles server")

// Client reads a log from a tlog-tiles URL prefix. It answers the log
// reads of an auditor: Checkpoint, Entries and ConsistencyProof (the
// methods of verifier.Source that a static log can answer).
//
// Checkpoint returns the served checkpoint as is; the caller verifies its
// signatures. Client remembers its size and root: Entries serves leaves
// below that size (unverified: the caller checks them against the
// checkpoint), and ConsistencyProof computes proofs from tiles that it
// verifies against that root. It is safe for concurrent use.
type Client struct {
	prefix string
	http   *http.Client

	mu    sync.Mutex
	tree  tlog.Tree // from the last Checkpoint
	cache map[tlog.Tile][]byte
}

// NewClient returns a Client for the log at prefix (e.g.
// "https://example.org/log"; a trailing slash is ignored). hc nil means
// http.DefaultClient.
func NewClient(prefix string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{prefix: strings.TrimRight(prefix, "/"), http: hc, cache: make(map[tlog.Tile][]byte)}
}

// get fetches path below the prefix, at most limit bytes.
func (c *Client) get(ctx context.Context, path string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.prefix+"/"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("%w: GET %s: %s: %s", ErrServer, path, resp.Status, bytes.TrimSpace(msg))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: GET %s: body over %d bytes", ErrServer, path, limit)
	}
	return b, nil
}

// Checkpoint fetches <prefix>/checkpoint and remembers its size and root
// for Entries and ConsistencyProof. It parses the checkpoint body but does
// not check signatures.
func (c *Client) Checkpoint(ctx context.Context) ([]byte, error) {
	b, err := c.get(ctx, "checkpoint", maxCheckpointSize)
	if err != nil {
		return nil, err
	}
	body, _, ok := bytes.Cut(b, []byte("\n\n"))
	if !ok {
		return nil, fmt.Errorf("%w: checkpoint is not a signed note", ErrServer)
	}
	cp, err := klog.ParseCheckpoint(append(body, '\n'))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrServer, err)
	}
	c.mu.Lock()
	if cp.Size >= uint64(c.tree.N) {
		c.tree = tlog.Tree{N: int64(cp.Size), Hash: tlog.Hash(cp.Hash)}
	}
	c.mu.Unlock()
	return b, nil
}

func (c *Client) latest() tlog.Tree {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tree
}

// Entries returns leaves [start, end) from the entry bundle that holds
// start: at least one leaf, at most up to the bundle's end. end must not
// exceed the size of the last checkpoint fetched (klog.ErrRange).
func (c *Client) Entries(ctx context.Context, start, end uint64) ([][]byte, error) {
	size := uint64(c.latest().N)
	if start >= end || end > size {
		return nil, fmt.Errorf("%w: entries [%d, %d) of a log of size %d (fetch the checkpoint first)", klog.ErrRange, start, end, size)
	}
	t, _ := TileForSize(0, start/Width, size)
	b, err := c.get(ctx, t.EntriesPath(), maxBundleSize)
	if err != nil {
		return nil, err
	}
	leaves, err := ParseBundle(b, t.W)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrServer, t.EntriesPath(), err)
	}
	first := t.N * Width
	last := min(end, first+uint64(t.W))
	return leaves[start-first : last-first], nil
}

// ConsistencyProof returns the RFC 6962 consistency proof from the tree of
// oldSize to the tree of newSize, computed from tiles verified against the
// last checkpoint fetched (newSize must not exceed its size).
func (c *Client) ConsistencyProof(ctx context.Context, oldSize, newSize uint64) ([][]byte, error) {
	tree := c.latest()
	if oldSize > newSize || newSize > uint64(tree.N) {
		return nil, fmt.Errorf("%w: consistency from %d to %d in a log of size %d", klog.ErrRange, oldSize, newSize, tree.N)
	}
	if oldSize == 0 || oldSize == newSize {
		return nil, nil
	}
	p, err := tlog.ProveTree(int64(newSize), int64(oldSize), tlog.TileHashReader(tree, &tileReader{c: c, ctx: ctx}))
	if err != nil {
		return nil, fmt.Errorf("tiles: consistency proof from %d to %d: %w", oldSize, newSize, err)
	}
	out := make([][]byte, len(p))
	for i := range p {
		out[i] = p[i][:]
	}
	return out, nil
}

// InclusionProof returns the RFC 6962 inclusion proof of leaf index in the
// tree of size, computed from tiles verified against the last checkpoint
// fetched (size must not exceed its size).
func (c *Client) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	tree := c.latest()
	if index >= size || size > uint64(tree.N) {
		return nil, fmt.Errorf("%w: inclusion of %d in %d in a log of size %d", klog.ErrRange, index, size, tree.N)
	}
	p, err := tlog.ProveRecord(int64(size), int64(index), tlog.TileHashReader(tree, &tileReader{c: c, ctx: ctx}))
	if err != nil {
		return nil, fmt.Errorf("tiles: inclusion proof of %d in %d: %w", index, size, err)
	}
	out := make([][]byte, len(p))
	for i := range p {
		out[i] = p[i][:]
	}
	return out, nil
}

// tileReader is a tlog.TileReader over the Client for one call's context.
type tileReader struct {
	c   *Client
	ctx context.Context
}

func (r *tileReader) Height() int { return 8 }

func (r *tileReader) ReadTiles(ts []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(ts))
	for i, t := range ts {
		r.c.mu.Lock()
		data, ok := r.c.cache[t]
		r.c.mu.Unlock()
		if ok {
			out[i] = data
			continue
		}
		if t.H != 8 || t.L < 0 {
			return nil, fmt.Errorf("tiles: unexpected tile %v", t)
		}
		tt := Tile{L: t.L, N: uint64(t.N), W: t.W}
		b, err := r.c.get(r.ctx, tt.Path(), 32*Width)
		if err != nil {
			return nil, err
		}
		if len(b) != 32*t.W {
			return nil, fmt.Errorf("%w: %s has %d bytes, want %d", ErrServer, tt.Path(), len(b), 32*t.W)
		}
		out[i] = b
	}
	return out, nil
}

// SaveTiles keeps verified tiles (called by tlog after verifying them).
func (r *tileReader) SaveTiles(ts []tlog.Tile, data [][]byte) {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	for i, t := range ts {
		if len(r.c.cache) >= maxCachedTiles {
			clear(r.c.cache)
		}
		r.c.cache[t] = data[i]
	}
}
