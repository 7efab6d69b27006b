// Package trillian is a log.Backend kept by a Trillian log server
// (github.com/google/trillian) over gRPC.
//
// The tree must be a PREORDERED_LOG: Keyline is the log's single writer and
// chooses every leaf index itself, so Append stores leaves with
// AddSequencedLeaves at the next indices and then waits, with bounded
// polling, until trillian_log_signer has integrated them into the Merkle tree.
//
// Trillian is not trusted blindly. The Backend keeps the latest root it has
// verified and accepts a newer one only with a valid consistency proof from
// it; every inclusion and consistency proof is verified against roots derived
// from that chain before it is returned; after an Append the new root must
// equal the root Keyline computes itself from the previous tree and the
// appended leaves. A mismatch is reported as an error wrapping
// log.ErrCorrupt. The very first root a Backend sees is trusted on first use:
// callers that hold a signed checkpoint should compare RootHash at the
// checkpoint's size with it when they start.
//
// Roots at sizes other than the latest are not served by Trillian. RootHash
// derives them from an inclusion proof of leaf size-1 in the latest tree
// (two RPCs and O(log n) hashing, verified against the latest root); the
// left siblings on that path are exactly the compact range of the first size
// leaves. Verified roots are cached.
package trillian

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strings"
	"sync"
	"time"

	"github.com/google/trillian"
	"github.com/google/trillian/types"
	klog "github.com/keyline/keyline/log"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// ErrNotIntegrated is returned (wrapped) by Append when Trillian stored the
// leaves but trillian_log_signer did not integrate them into the tree before
// the integration timeout or the context's deadline. The leaves stay stored
// and are integrated later; the Append was not acknowledged.
var ErrNotIntegrated = errors.New("trillian: leaves stored but not integrated in time")

// ErrConflict is log.ErrConflict, which Append wraps when the tree does not
// end at the expected index or the expected index already holds a different
// leaf: another writer uses the tree, or the leaves of an interrupted Append
// were stored.
var ErrConflict = klog.ErrConflict

// ErrTree is returned (wrapped) when the tree cannot back a Keyline log: it
// is not a PREORDERED_LOG, or it is deleted.
var ErrTree = errors.New("trillian: unusable tree")

// Options tunes a Backend. The zero value (or nil) uses the defaults.
type Options struct {
	// IntegrationTimeout bounds how long Append waits for
	// trillian_log_signer to integrate the appended leaves (default 30s).
	// A shorter context deadline wins.
	IntegrationTimeout time.Duration

	// PollInterval is the first interval between GetLatestSignedLogRoot
	// polls while Append waits (default 10ms); it grows by a quarter each time
	// up to 100ms.
	PollInterval time.Duration
}

const (
	defaultIntegrationTimeout = 30 * time.Second
	defaultPollInterval       = 10 * time.Millisecond
	maxPollInterval           = 100 * time.Millisecond

	// leavesPerRead bounds one GetLeavesByRange request; the server may
	// return fewer, and Entries loops until it has the whole range.
	leavesPerRead = 256
	// leavesPerWrite and bytesPerWrite bound one AddSequencedLeaves request.
	leavesPerWrite = 512
	bytesPerWrite  = 2 << 20
	// maxCachedRoots bounds the cache of verified roots at past sizes.
	maxCachedRoots = 4096
	// maxDisplayName is the size of the Trees.DisplayName column in
	// Trillian's MySQL schema.
	maxDisplayName = 20
	// maxRecvMsgSize is the gRPC receive limit set by Dial.
	maxRecvMsgSize = 64 << 20
)

// identityContext prefixes the LeafIdentityHash Keyline gives every leaf.
// Trillian rejects a second leaf with the same identity hash in one tree; by
// hashing the leaf index in, equal leaves at different indices are accepted,
// and an identical retry of the same leaf at the same index is recognised.
const identityContext = "keyline trillian leaf identity v1\x00"

var hasher = rfc6962.DefaultHasher

var factory = &compact.RangeFactory{Hash: hasher.HashChildren}

// root is a verified tree head.
type root struct {
	size uint64
	hash []byte
}

// Backend is a log.Backend over one Trillian PREORDERED_LOG tree. It is safe
// for concurrent use; Appends are serialised.
type Backend struct {
	treeID int64
	log    trillian.TrillianLogClient
	closer func() error
	opts   Options

	appendMu sync.Mutex     // serialises Append
	tail     *compact.Range // compact range of the tree at the last Append; guarded by appendMu

	rootMu  sync.Mutex // serialises fetching and verifying the latest root
	mu      sync.Mutex // guards the fields below
	trusted root
	roots   map[uint64][]byte // verified roots at past sizes
	closed  bool
}

var _ klog.Backend = (*Backend)(nil)

// Dial connects to the Trillian log server at addr (host:port) without
// transport security — use it on loopback or a private network, or dial
// yourself and use New — and returns a Backend for tree treeID. Close closes
// the connection.
func Dial(ctx context.Context, addr string, treeID int64, opts *Options) (*Backend, error) {
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsgSize)))
	if err != nil {
		return nil, fmt.Errorf("trillian: dial %q: %w", addr, err)
	}
	b, err := New(ctx, conn, treeID, opts)
	if err != nil {
		conn.Close()
		return nil, err
	}
	b.closer = conn.Close
	return b, nil
}

// New returns a Backend for the PREORDERED_LOG tree treeID served over conn
// (a trillian_log_server, which also serves the admin API). It checks the
// tree's type and fetches its latest root, which it trusts on first use.
// Close does not close conn.
func New(ctx context.Context, conn grpc.ClientConnInterface, treeID int64, opts *Options) (*Backend, error) {
	b := &Backend{
		treeID: treeID,
		log:    trillian.NewTrillianLogClient(conn),
		roots:  make(map[uint64][]byte),
	}
	if opts != nil {
		b.opts = *opts
	}
	if b.opts.IntegrationTimeout <= 0 {
		b.opts.IntegrationTimeout = defaultIntegrationTimeout
	}
	if b.opts.PollInterval <= 0 {
		b.opts.PollInterval = defaultPollInterval
	}
	tree, err := trillian.NewTrillianAdminClient(conn).GetTree(ctx, &trillian.GetTreeRequest{TreeId: treeID})
	if err != nil {
		return nil, b.rpcErr("GetTree", err)
	}
	if tree.GetTreeType() != trillian.TreeType_PREORDERED_LOG {
		return nil, fmt.Errorf("%w: tree %d has type %v, want PREORDERED_LOG", ErrTree, treeID, tree.GetTreeType())
	}
	if tree.GetDeleted() {
		return nil, fmt.Errorf("%w: tree %d is deleted", ErrTree, treeID)
	}
	if _, err := b.latest(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

// CreateTree creates a new, initialised, ACTIVE PREORDERED_LOG tree through
// the admin and log API served over conn and returns its id. It is what
// Trillian's createtree tool does with --tree_type=PREORDERED_LOG.
func CreateTree(ctx context.Context, conn grpc.ClientConnInterface, displayName string) (int64, error) {
	if len(displayName) > maxDisplayName {
		return 0, fmt.Errorf("trillian: CreateTree: display name %q is longer than %d bytes (Trillian's MySQL schema limit)", displayName, maxDisplayName)
	}
	tree, err := trillian.NewTrillianAdminClient(conn).CreateTree(ctx, &trillian.CreateTreeRequest{Tree: &trillian.Tree{
		TreeState:       trillian.TreeState_ACTIVE,
		TreeType:        trillian.TreeType_PREORDERED_LOG,
		DisplayName:     displayName,
		MaxRootDuration: durationpb.New(0),
	}})
	if err != nil {
		return 0, fmt.Errorf("trillian: CreateTree failed (%s): %w", status.Code(err), err)
	}
	if _, err := trillian.NewTrillianLogClient(conn).InitLog(ctx, &trillian.InitLogRequest{LogId: tree.TreeId}); err != nil {
		return 0, fmt.Errorf("trillian: InitLog(tree %d) failed (%s): %w", tree.TreeId, status.Code(err), err)
	}
	return tree.TreeId, nil
}

// TreeID returns the id of the Trillian tree.
func (b *Backend) TreeID() int64 { return b.treeID }

func (b *Backend) rpcErr(rpc string, err error) error {
	return fmt.Errorf("trillian: %s(tree %d) failed (%s): %w", rpc, b.treeID, status.Code(err), err)
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: trillian: %s", klog.ErrCorrupt, fmt.Sprintf(format, args...))
}

func (b *Backend) checkOpen() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("trillian: backend is closed")
	}
	return nil
}

// latest fetches the latest signed log root and verifies that it is
// consistent with the last root this Backend trusted.
func (b *Backend) latest(ctx context.Context) (root, error) {
	if err := b.checkOpen(); err != nil {
		return root{}, err
	}
	b.rootMu.Lock()
	defer b.rootMu.Unlock()
	b.mu.Lock()
	prev := b.trusted
	b.mu.Unlock()

	req := &trillian.GetLatestSignedLogRootRequest{LogId: b.treeID}
	if prev.size > 0 {
		req.FirstTreeSize = int64(prev.size) // ask for a consistency proof from prev
	}
	resp, err := b.log.GetLatestSignedLogRoot(ctx, req)
	if err != nil && prev.size > 0 && status.Code(err) == codes.InvalidArgument {
		// Trillian refuses a consistency proof from a size beyond its
		// tree: ask for the bare root so that a rollback is reported as one.
		if r2, err2 := b.log.GetLatestSignedLogRoot(ctx, &trillian.GetLatestSignedLogRootRequest{LogId: b.treeID}); err2 == nil {
			resp, err = r2, nil
			resp.Proof = nil
		}
	}
	if err != nil {
		return root{}, b.rpcErr("GetLatestSignedLogRoot", err)
	}
	var lr types.LogRootV1
	if err := lr.UnmarshalBinary(resp.GetSignedLogRoot().GetLogRoot()); err != nil {
		return root{}, corrupt("GetLatestSignedLogRoot(tree %d) returned an unparsable log root: %v", b.treeID, err)
	}
	if len(lr.RootHash) != hasher.Size() {
		return root{}, corrupt("tree %d root hash has %d bytes, want %d", b.treeID, len(lr.RootHash), hasher.Size())
	}
	if lr.TreeSize > math.MaxInt64 {
		return root{}, corrupt("tree %d size %d out of range", b.treeID, lr.TreeSize)
	}
	cur := root{lr.TreeSize, lr.RootHash}
	switch {
	case cur.size == 0:
		if !bytes.Equal(cur.hash, hasher.EmptyRoot()) {
			return root{}, corrupt("tree %d has size 0 but root %x", b.treeID, cur.hash)
		}
		if prev.size > 0 {
			return root{}, corrupt("tree %d rolled back from size %d to 0", b.treeID, prev.size)
		}
	case cur.size < prev.size:
		return root{}, corrupt("tree %d rolled back from size %d to %d", b.treeID, prev.size, cur.size)
	case cur.size == prev.size:
		if !bytes.Equal(cur.hash, prev.hash) {
			return root{}, corrupt("tree %d forked: root at size %d changed from %x to %x", b.treeID, cur.size, prev.hash, cur.hash)
		}
	case prev.size > 0:
		p := resp.GetProof().GetHashes()
		if err := proof.VerifyConsistency(hasher, prev.size, cur.size, p, prev.hash, cur.hash); err != nil {
			return root{}, corrupt("tree %d root at size %d is not consistent with the trusted root at size %d: %v", b.treeID, cur.size, prev.size, err)
		}
	}
	b.mu.Lock()
	if cur.size > b.trusted.size {
		if b.trusted.size > 0 {
			b.cacheRootLocked(b.trusted.size, b.trusted.hash)
		}
		b.trusted = cur
	}
	b.mu.Unlock()
	return cur, nil
}

func (b *Backend) cacheRootLocked(size uint64, hash []byte) {
	if len(b.roots) >= maxCachedRoots {
		clear(b.roots)
	}
	b.roots[size] = hash
}

// Size returns the size of the latest verified tree.
func (b *Backend) Size(ctx context.Context) (uint64, error) {
	t, err := b.latest(ctx)
	if err != nil {
		return 0, err
	}
	return t.size, nil
}

// Entries returns leaves [start, end), read with GetLeavesByRange until the
// whole range has arrived. It checks every leaf's index and Merkle leaf hash,
// and that the leaves, appended to the compact range of the first start
// leaves, give the verified root at size end.
func (b *Backend) Entries(ctx context.Context, start, end uint64) ([][]byte, error) {
	t, err := b.latest(ctx)
	if err != nil {
		return nil, err
	}
	if start > end || end > t.size {
		return nil, fmt.Errorf("%w: Entries(%d, %d) on a log of size %d", klog.ErrRange, start, end, t.size)
	}
	leaves, err := b.readLeaves(ctx, start, end)
	if err != nil || start == end {
		return leaves, err
	}
	// The leaves must extend the first start leaves to the verified root at
	// size end.
	rng := factory.NewEmptyRange(0)
	if start > 0 {
		if rng, err = b.prefixRange(ctx, start, t); err != nil {
			return nil, err
		}
	}
	for _, l := range leaves {
		if err := rng.Append(hasher.HashLeaf(l), nil); err != nil {
			return nil, fmt.Errorf("trillian: compact range: %w", err)
		}
	}
	got, err := rng.GetRootHash(nil)
	if err != nil {
		return nil, fmt.Errorf("trillian: compact range root: %w", err)
	}
	want, err := b.rootAt(ctx, end, t)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(got, want) {
		return nil, corrupt("GetLeavesByRange(tree %d) leaves [%d, %d) do not match the root at size %d", b.treeID, start, end, end)
	}
	return leaves, nil
}

func (b *Backend) readLeaves(ctx context.Context, start, end uint64) ([][]byte, error) {
	out := make([][]byte, 0, end-start)
	for cur := start; cur < end; {
		count := min(end-cur, leavesPerRead)
		resp, err := b.log.GetLeavesByRange(ctx, &trillian.GetLeavesByRangeRequest{
			LogId: b.treeID, StartIndex: int64(cur), Count: int64(count),
		})
		if err != nil {
			return nil, b.rpcErr("GetLeavesByRange", err)
		}
		got := resp.GetLeaves()
		if len(got) == 0 {
			return nil, corrupt("GetLeavesByRange(tree %d, start %d, count %d) returned no leaves of a tree of size >= %d", b.treeID, cur, count, end)
		}
		if uint64(len(got)) > count {
			return nil, corrupt("GetLeavesByRange(tree %d, start %d, count %d) returned %d leaves", b.treeID, cur, count, len(got))
		}
		for _, l := range got {
			if l.GetLeafIndex() != int64(cur) {
				return nil, corrupt("GetLeavesByRange(tree %d) returned leaf index %d, want %d", b.treeID, l.GetLeafIndex(), cur)
			}
			if mh := l.GetMerkleLeafHash(); len(mh) > 0 && !bytes.Equal(mh, hasher.HashLeaf(l.GetLeafValue())) {
				return nil, corrupt("leaf %d of tree %d: Merkle leaf hash %x does not match its value", cur, b.treeID, mh)
			}
			out = append(out, bytes.Clone(l.GetLeafValue()))
			cur++
		}
	}
	return out, nil
}

func (b *Backend) leafHash(ctx context.Context, index uint64) ([]byte, error) {
	l, err := b.readLeaves(ctx, index, index+1)
	if err != nil {
		return nil, err
	}
	return hasher.HashLeaf(l[0]), nil
}

// RootHash returns the root of the first size leaves. The latest root comes
// from the verified signed log root; others are derived and cached (see the
// package documentation).
func (b *Backend) RootHash(ctx context.Context, size uint64) ([]byte, error) {
	t, err := b.latest(ctx)
	if err != nil {
		return nil, err
	}
	if size > t.size {
		return nil, fmt.Errorf("%w: RootHash(%d) on a log of size %d", klog.ErrRange, size, t.size)
	}
	h, err := b.rootAt(ctx, size, t)
	if err != nil {
		return nil, err
	}
	return bytes.Clone(h), nil
}

func (b *Backend) rootAt(ctx context.Context, size uint64, t root) ([]byte, error) {
	switch size {
	case 0:
		return hasher.EmptyRoot(), nil
	case t.size:
		return t.hash, nil
	}
	b.mu.Lock()
	h, ok := b.roots[size]
	b.mu.Unlock()
	if ok {
		return h, nil
	}
	r, err := b.prefixRange(ctx, size, t)
	if err != nil {
		return nil, err
	}
	h, err = r.GetRootHash(nil)
	if err != nil {
		return nil, fmt.Errorf("trillian: root at size %d: %w", size, err)
	}
	b.mu.Lock()
	b.cacheRootLocked(size, h)
	b.mu.Unlock()
	return h, nil
}

// prefixRange returns the compact range of the first size leaves (0 < size
// <= t.size), taken from the inclusion proof of leaf size-1 in tree t after
// verifying that proof against t's root.
func (b *Backend) prefixRange(ctx context.Context, size uint64, t root) (*compact.Range, error) {
	index := size - 1
	lh, err := b.leafHash(ctx, index)
	if err != nil {
		return nil, err
	}
	p, err := b.inclusion(ctx, index, t.size)
	if err != nil {
		return nil, err
	}
	if err := proof.VerifyInclusion(hasher, index, t.size, lh, p, t.hash); err != nil {
		return nil, corrupt("inclusion proof of leaf %d in tree %d at size %d does not verify against its root: %v", index, b.treeID, t.size, err)
	}
	return prefixFromInclusion(index, t.size, lh, p)
}

// prefixFromInclusion returns the compact range [0, index+1) given a
// verified RFC 9162 inclusion proof p of the leaf with hash leafHash at
// index in a tree of the given size. The proof's left siblings are the
// perfect subtrees that cover [0, index), one per set bit of index.
func prefixFromInclusion(index, size uint64, leafHash []byte, p [][]byte) (*compact.Range, error) {
	inner := bits.Len64(index ^ (size - 1))
	border := bits.OnesCount64(index >> inner)
	if len(p) != inner+border {
		return nil, fmt.Errorf("trillian: inclusion proof for (%d, %d) has %d hashes, want %d", index, size, len(p), inner+border)
	}
	var left [][]byte // increasing level
	for l := 0; l < inner; l++ {
		if index>>l&1 == 1 {
			left = append(left, p[l])
		}
	}
	left = append(left, p[inner:]...)
	hashes := make([][]byte, len(left)) // compact range order: left to right
	for i, h := range left {
		hashes[len(left)-1-i] = bytes.Clone(h)
	}
	r, err := factory.NewRange(0, index, hashes)
	if err != nil {
		return nil, fmt.Errorf("trillian: compact range [0, %d): %w", index, err)
	}
	if err := r.Append(bytes.Clone(leafHash), nil); err != nil {
		return nil, fmt.Errorf("trillian: compact range [0, %d): %w", index+1, err)
	}
	return r, nil
}

func (b *Backend) inclusion(ctx context.Context, index, size uint64) ([][]byte, error) {
	resp, err := b.log.GetInclusionProof(ctx, &trillian.GetInclusionProofRequest{
		LogId: b.treeID, LeafIndex: int64(index), TreeSize: int64(size),
	})
	if err != nil {
		return nil, b.rpcErr("GetInclusionProof", err)
	}
	if resp.GetProof() == nil {
		return nil, corrupt("GetInclusionProof(tree %d, index %d, size %d) returned no proof (server's tree smaller than a size it reported before?)", b.treeID, index, size)
	}
	return cloneHashes(resp.GetProof().GetHashes()), nil
}

// InclusionProof returns the inclusion proof of leaf index in the tree of the
// given size, from GetInclusionProof, after verifying it against the root at
// that size.
func (b *Backend) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	t, err := b.latest(ctx)
	if err != nil {
		return nil, err
	}
	if index >= size || size > t.size {
		return nil, fmt.Errorf("%w: InclusionProof(%d, %d) on a log of size %d", klog.ErrRange, index, size, t.size)
	}
	rh, err := b.rootAt(ctx, size, t)
	if err != nil {
		return nil, err
	}
	lh, err := b.leafHash(ctx, index)
	if err != nil {
		return nil, err
	}
	p, err := b.inclusion(ctx, index, size)
	if err != nil {
		return nil, err
	}
	if err := proof.VerifyInclusion(hasher, index, size, lh, p, rh); err != nil {
		return nil, corrupt("GetInclusionProof(tree %d, index %d, size %d) returned a proof that does not verify: %v", b.treeID, index, size, err)
	}
	return p, nil
}

// ConsistencyProof returns the consistency proof between the trees of sizes
// oldSize and newSize, from GetConsistencyProof, after verifying it against
// the roots at both sizes.
func (b *Backend) ConsistencyProof(ctx context.Context, oldSize, newSize uint64) ([][]byte, error) {
	t, err := b.latest(ctx)
	if err != nil {
		return nil, err
	}
	if oldSize > newSize || newSize > t.size {
		return nil, fmt.Errorf("%w: ConsistencyProof(%d, %d) on a log of size %d", klog.ErrRange, oldSize, newSize, t.size)
	}
	if oldSize == 0 || oldSize == newSize {
		return [][]byte{}, nil
	}
	r1, err := b.rootAt(ctx, oldSize, t)
	if err != nil {
		return nil, err
	}
	r2, err := b.rootAt(ctx, newSize, t)
	if err != nil {
		return nil, err
	}
	resp, err := b.log.GetConsistencyProof(ctx, &trillian.GetConsistencyProofRequest{
		LogId: b.treeID, FirstTreeSize: int64(oldSize), SecondTreeSize: int64(newSize),
	})
	if err != nil {
		return nil, b.rpcErr("GetConsistencyProof", err)
	}
	if resp.GetProof() == nil {
		return nil, corrupt("GetConsistencyProof(tree %d, %d, %d) returned no proof", b.treeID, oldSize, newSize)
	}
	p := cloneHashes(resp.GetProof().GetHashes())
	if err := proof.VerifyConsistency(hasher, oldSize, newSize, p, r1, r2); err != nil {
		return nil, corrupt("GetConsistencyProof(tree %d, %d, %d) returned a proof that does not verify: %v", b.treeID, oldSize, newSize, err)
	}
	return p, nil
}

// identityHash is the LeafIdentityHash of leaf at index (see identityContext).
func identityHash(index uint64, leaf []byte) []byte {
	h := sha256.New()
	h.Write([]byte(identityContext))
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], index)
	h.Write(n[:])
	h.Write(leaf)
	return h.Sum(nil)
}

// Append stores leaves at indices expected, expected+1, ... with
// AddSequencedLeaves and returns once trillian_log_signer has integrated them
// and the new root equals the one computed locally from the previous tree
// and the leaves.
//
// The Append is conditional on expected. If the verified tree's size is not
// expected, nothing is written and the error wraps log.ErrConflict. Trillian
// itself refuses a second leaf at a stored index, so the check also holds
// against leaves that are stored but not yet integrated (an interrupted
// Append, or another writer): then Append waits, up to the integration
// timeout, until the signer has integrated the leaf at expected, and fails
// with an error wrapping log.ErrConflict (and ErrNotIntegrated if the wait
// timed out). The caller reads the integrated leaves and appends after them.
// A leaf identical to the one being appended at the same index (a retry of
// this very Append) is accepted as already stored.
//
// The first leaf is sent alone, so that if its index is taken nothing was
// stored; the rest follow in batches. Trillian cannot store an empty leaf,
// so empty leaves are rejected up front.
func (b *Backend) Append(ctx context.Context, expected uint64, leaves [][]byte) error {
	for i, l := range leaves {
		if len(l) == 0 {
			return fmt.Errorf("trillian: Append: leaf %d is empty (Trillian cannot store empty leaves)", i)
		}
	}
	b.appendMu.Lock()
	defer b.appendMu.Unlock()
	t, err := b.latest(ctx)
	if err != nil {
		return err
	}
	if t.size != expected {
		return fmt.Errorf("%w: trillian: Append at %d, but tree %d has %d integrated leaves", klog.ErrConflict, expected, b.treeID, t.size)
	}
	if len(leaves) == 0 {
		return nil
	}
	first := t.size
	if first > math.MaxInt64-uint64(len(leaves)) {
		return fmt.Errorf("%w: Append of %d leaves at size %d overflows", klog.ErrRange, len(leaves), first)
	}
	rng := b.tail
	if rng == nil || rng.End() != first {
		if first == 0 {
			rng = factory.NewEmptyRange(0)
		} else if rng, err = b.prefixRange(ctx, first, t); err != nil {
			return err
		}
	}
	b.tail = nil // rng is extended below; rebuilt on failure

	// Send the first leaf alone, then the rest in bounded batches.
	for lo := 0; lo < len(leaves); {
		hi, bytesIn := lo+1, len(leaves[lo])
		if lo > 0 {
			for hi < len(leaves) && hi-lo < leavesPerWrite && bytesIn+len(leaves[hi]) <= bytesPerWrite {
				bytesIn += len(leaves[hi])
				hi++
			}
		}
		if err := b.addSequenced(ctx, first+uint64(lo), leaves[lo:hi]); err != nil {
			var ce *conflictError
			if errors.As(err, &ce) {
				return b.awaitConflict(ctx, ce)
			}
			return err
		}
		lo = hi
	}

	for _, l := range leaves {
		if err := rng.Append(hasher.HashLeaf(l), nil); err != nil {
			return fmt.Errorf("trillian: compact range: %w", err)
		}
	}
	want, err := rng.GetRootHash(nil)
	if err != nil {
		return fmt.Errorf("trillian: compact range root: %w", err)
	}
	end := first + uint64(len(leaves))
	nt, err := b.waitFor(ctx, first, end)
	if err != nil {
		return err
	}
	got, err := b.rootAt(ctx, end, nt)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return corrupt("tree %d root at size %d after Append is %x, but the appended leaves give %x", b.treeID, end, got, want)
	}
	b.tail = rng
	return nil
}

// conflictError reports that AddSequencedLeaves found index taken by
// another leaf.
type conflictError struct {
	index uint64
	msg   string
}

func (e *conflictError) Error() string {
	return fmt.Sprintf("leaf index %d is taken: %s", e.index, e.msg)
}

func (e *conflictError) Unwrap() error { return klog.ErrConflict }

// awaitConflict waits until the leaf stored at the conflicting index is
// integrated, so that the caller can read it, and returns the conflict.
func (b *Backend) awaitConflict(ctx context.Context, ce *conflictError) error {
	if _, err := b.waitFor(ctx, ce.index, ce.index+1); err != nil {
		return fmt.Errorf("%w: trillian: AddSequencedLeaves(tree %d): %v (another writer, or an interrupted Append), and waiting for it to be integrated failed: %w", klog.ErrConflict, b.treeID, ce, err)
	}
	return fmt.Errorf("%w: trillian: AddSequencedLeaves(tree %d): %v (another writer, or an interrupted Append); it is now integrated", klog.ErrConflict, b.treeID, ce)
}

func (b *Backend) addSequenced(ctx context.Context, first uint64, leaves [][]byte) error {
	req := &trillian.AddSequencedLeavesRequest{LogId: b.treeID, Leaves: make([]*trillian.LogLeaf, len(leaves))}
	for i, l := range leaves {
		idx := first + uint64(i)
		req.Leaves[i] = &trillian.LogLeaf{LeafValue: l, LeafIndex: int64(idx), LeafIdentityHash: identityHash(idx, l)}
	}
	resp, err := b.log.AddSequencedLeaves(ctx, req)
	if err != nil {
		return b.rpcErr("AddSequencedLeaves", err)
	}
	if len(resp.GetResults()) != len(leaves) {
		return corrupt("AddSequencedLeaves(tree %d) returned %d results for %d leaves", b.treeID, len(resp.GetResults()), len(leaves))
	}
	for i, r := range resp.GetResults() {
		st := status.FromProto(r.GetStatus())
		if st.Code() == codes.OK {
			continue
		}
		// The identity hash covers index and value: a clash means this very
		// leaf is already stored at this index (a retried Append).
		if st.Code() == codes.FailedPrecondition && strings.Contains(st.Message(), "LeafIdentityHash") {
			continue
		}
		idx := first + uint64(i)
		if st.Code() == codes.FailedPrecondition || st.Code() == codes.AlreadyExists {
			return &conflictError{index: idx, msg: st.Message()}
		}
		return fmt.Errorf("trillian: AddSequencedLeaves(tree %d) leaf index %d rejected (%s): %s", b.treeID, idx, st.Code(), st.Message())
	}
	return nil
}

// waitFor polls the latest root until the tree has at least end leaves.
func (b *Backend) waitFor(ctx context.Context, first, end uint64) (root, error) {
	ctx, cancel := context.WithTimeout(ctx, b.opts.IntegrationTimeout)
	defer cancel()
	interval := b.opts.PollInterval
	start := time.Now()
	for {
		t, err := b.latest(ctx)
		if err == nil && t.size >= end {
			return t, nil
		}
		if err != nil && !Transient(err) && ctx.Err() == nil {
			return root{}, err
		}
		timer := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			timer.Stop()
			return root{}, fmt.Errorf("%w: leaves [%d, %d) of tree %d after %v (is trillian_log_signer running for this tree?): %v",
				ErrNotIntegrated, first, end, b.treeID, time.Since(start).Round(time.Millisecond), ctx.Err())
		case <-timer.C:
		}
		interval = min(interval*5/4, maxPollInterval)
	}
}

// Close marks the Backend closed and closes the connection if Dial made it.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	if b.closer != nil {
		return b.closer()
	}
	return nil
}

// Transient reports whether err may go away by itself: a failed RPC (the
// log server, its database or the signer down or restarting) rather than a
// verdict about the tree. Errors wrapping log.ErrCorrupt, log.ErrConflict,
// log.ErrRange or ErrTree, and RPCs refused as invalid, are not transient.
func Transient(err error) bool {
	if err == nil || errors.Is(err, klog.ErrCorrupt) || errors.Is(err, klog.ErrConflict) ||
		errors.Is(err, klog.ErrRange) || errors.Is(err, ErrTree) {
		return false
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.PermissionDenied, codes.Unauthenticated,
		codes.Unimplemented, codes.OutOfRange:
		return false
	}
	return true
}

func cloneHashes(p [][]byte) [][]byte {
	out := make([][]byte, len(p))
	for i, h := range p {
		out[i] = bytes.Clone(h)
	}
	return out
}
