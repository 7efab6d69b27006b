package trillian

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/trillian"
	"github.com/google/trillian/types"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/log/logtest"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/testonly"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// fakeTrillian is an in-process stand-in for trillian_log_server plus
// trillian_log_signer serving one PREORDERED_LOG tree, with the storage
// semantics of Trillian's MySQL backend (identity-hash and index conflicts,
// GetLeavesByRange capped at the tree size) and hooks to make it lie. It lets
// the backend's verification run in every `go test`, without servers.
type fakeTrillian struct {
	trillian.UnimplementedTrillianLogServer
	trillian.UnimplementedTrillianAdminServer

	mu        sync.Mutex
	treeType  trillian.TreeType
	stored    map[int64]*trillian.LogLeaf // by leaf index
	ids       map[string]bool             // stored identity hashes
	tree      *testonly.Tree              // integrated leaves
	values    [][]byte                    // integrated leaf values
	integrate bool                        // integrate on every GetLatestSignedLogRoot
	maxLeaves int                         // GetLeavesByRange returns at most this many

	// Hooks, called with mu held, to tamper with answers.
	onRoot        func(size uint64, hash []byte) (uint64, []byte)
	onInclusion   func(p [][]byte) [][]byte
	onConsistency func(p [][]byte) [][]byte
	onLeaf        func(l *trillian.LogLeaf)
	onIntegrate   func(value []byte) []byte
}

func newFake() *fakeTrillian {
	return &fakeTrillian{
		treeType:  trillian.TreeType_PREORDERED_LOG,
		stored:    map[int64]*trillian.LogLeaf{},
		ids:       map[string]bool{},
		tree:      testonly.New(hasher),
		integrate: true,
		maxLeaves: 7, // forces Entries to loop over partial responses
	}
}

func (f *fakeTrillian) GetTree(ctx context.Context, req *trillian.GetTreeRequest) (*trillian.Tree, error) {
	if req.TreeId != 1 {
		return nil, status.Errorf(codes.NotFound, "tree %d not found", req.TreeId)
	}
	return &trillian.Tree{TreeId: 1, TreeType: f.treeType, TreeState: trillian.TreeState_ACTIVE}, nil
}

func (f *fakeTrillian) integrateLocked() {
	for {
		l, ok := f.stored[int64(f.tree.Size())]
		if !ok {
			return
		}
		v := l.LeafValue
		if f.onIntegrate != nil {
			v = f.onIntegrate(v)
		}
		f.values = append(f.values, v)
		f.tree.AppendData(v)
	}
}

func (f *fakeTrillian) GetLatestSignedLogRoot(ctx context.Context, req *trillian.GetLatestSignedLogRootRequest) (*trillian.GetLatestSignedLogRootResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.integrate {
		f.integrateLocked()
	}
	size, hash := f.tree.Size(), f.tree.Hash()
	var p [][]byte
	if req.FirstTreeSize > 0 && uint64(req.FirstTreeSize) > size {
		// As Trillian: no consistency proof from beyond the tree.
		return nil, status.Errorf(codes.InvalidArgument, "SecondTreeSize: %d < FirstTreeSize: %d", size, req.FirstTreeSize)
	}
	if req.FirstTreeSize > 0 {
		var err error
		if p, err = f.tree.ConsistencyProof(uint64(req.FirstTreeSize), size); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	if f.onRoot != nil {
		size, hash = f.onRoot(size, hash)
	}
	lr, err := (&types.LogRootV1{TreeSize: size, RootHash: hash}).MarshalBinary()
	if err != nil {
		return nil, err
	}
	return &trillian.GetLatestSignedLogRootResponse{
		SignedLogRoot: &trillian.SignedLogRoot{LogRoot: lr},
		Proof:         &trillian.Proof{Hashes: p},
	}, nil
}

func (f *fakeTrillian) AddSequencedLeaves(ctx context.Context, req *trillian.AddSequencedLeavesRequest) (*trillian.AddSequencedLeavesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	res := make([]*trillian.QueuedLogLeaf, len(req.Leaves))
	for i, l := range req.Leaves {
		if len(l.LeafValue) == 0 {
			return nil, status.Errorf(codes.InvalidArgument, "Leaves[%d].LeafValue: empty", i)
		}
		switch {
		case f.ids[string(l.LeafIdentityHash)]:
			res[i] = &trillian.QueuedLogLeaf{Status: status.New(codes.FailedPrecondition, "conflicting LeafIdentityHash").Proto()}
		case f.stored[l.LeafIndex] != nil:
			res[i] = &trillian.QueuedLogLeaf{Status: status.New(codes.FailedPrecondition, "conflicting LeafIndex").Proto()}
		default:
			f.ids[string(l.LeafIdentityHash)] = true
			f.stored[l.LeafIndex] = &trillian.LogLeaf{LeafValue: bytes.Clone(l.LeafValue), LeafIndex: l.LeafIndex, LeafIdentityHash: l.LeafIdentityHash}
			res[i] = &trillian.QueuedLogLeaf{Status: status.New(codes.OK, "OK").Proto()}
		}
	}
	return &trillian.AddSequencedLeavesResponse{Results: res}, nil
}

func (f *fakeTrillian) GetLeavesByRange(ctx context.Context, req *trillian.GetLeavesByRangeRequest) (*trillian.GetLeavesByRangeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	size := int64(len(f.values))
	var out []*trillian.LogLeaf
	for i := req.StartIndex; i < req.StartIndex+req.Count && i < size && len(out) < f.maxLeaves; i++ {
		v := bytes.Clone(f.values[i])
		l := &trillian.LogLeaf{LeafValue: v, LeafIndex: i, MerkleLeafHash: hasher.HashLeaf(v)}
		if f.onLeaf != nil {
			f.onLeaf(l)
		}
		out = append(out, l)
	}
	return &trillian.GetLeavesByRangeResponse{Leaves: out}, nil
}

func (f *fakeTrillian) GetInclusionProof(ctx context.Context, req *trillian.GetInclusionProofRequest) (*trillian.GetInclusionProofResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.TreeSize <= 0 || req.LeafIndex < 0 || req.LeafIndex >= req.TreeSize {
		return nil, status.Errorf(codes.InvalidArgument, "bad request %v", req)
	}
	if uint64(req.TreeSize) > f.tree.Size() {
		return &trillian.GetInclusionProofResponse{}, nil
	}
	p, err := f.tree.InclusionProof(uint64(req.LeafIndex), uint64(req.TreeSize))
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if f.onInclusion != nil {
		p = f.onInclusion(p)
	}
	return &trillian.GetInclusionProofResponse{Proof: &trillian.Proof{LeafIndex: req.LeafIndex, Hashes: p}}, nil
}

func (f *fakeTrillian) GetConsistencyProof(ctx context.Context, req *trillian.GetConsistencyProofRequest) (*trillian.GetConsistencyProofResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.FirstTreeSize <= 0 || req.SecondTreeSize < req.FirstTreeSize {
		return nil, status.Errorf(codes.InvalidArgument, "bad request %v", req)
	}
	if uint64(req.SecondTreeSize) > f.tree.Size() {
		return &trillian.GetConsistencyProofResponse{}, nil
	}
	p, err := f.tree.ConsistencyProof(uint64(req.FirstTreeSize), uint64(req.SecondTreeSize))
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if f.onConsistency != nil {
		p = f.onConsistency(p)
	}
	return &trillian.GetConsistencyProofResponse{Proof: &trillian.Proof{Hashes: p}}, nil
}

func (f *fakeTrillian) set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

// serve starts f on an in-memory listener and returns a connection to it.
func (f *fakeTrillian) serve(t *testing.T) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	s := grpc.NewServer()
	trillian.RegisterTrillianLogServer(s, f)
	trillian.RegisterTrillianAdminServer(s, f)
	go s.Serve(lis)
	conn, err := grpc.NewClient("passthrough:///fake-trillian",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); s.Stop() })
	return conn
}

func openFake(t *testing.T, f *fakeTrillian, opts *Options) *Backend {
	t.Helper()
	b, err := New(t.Context(), f.serve(t), 1, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// TestConformanceFake runs the conformance suite against the fake Trillian,
// so the backend's logic is tested in every `go test` run.
func TestConformanceFake(t *testing.T) {
	logtest.RunConformance(t, func(t *testing.T) klog.Backend {
		b, err := New(t.Context(), newFake().serve(t), 1, nil)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return b
	})
}

// TestPrefixFromInclusion checks the root derivation used by RootHash: the
// compact range from an inclusion proof of leaf m-1 in a tree of size n has
// the root of the first m leaves, for every 1 <= m <= n <= 70.
func TestPrefixFromInclusion(t *testing.T) {
	tree := testonly.New(hasher)
	for i := 0; i < 70; i++ {
		tree.AppendData([]byte(fmt.Sprintf("leaf %d", i)))
	}
	for n := uint64(1); n <= 70; n++ {
		for m := uint64(1); m <= n; m++ {
			p, err := tree.InclusionProof(m-1, n)
			if err != nil {
				t.Fatal(err)
			}
			r, err := prefixFromInclusion(m-1, n, tree.LeafHash(m-1), p)
			if err != nil {
				t.Fatalf("prefixFromInclusion(%d, %d): %v", m-1, n, err)
			}
			got, err := r.GetRootHash(nil)
			if err != nil {
				t.Fatal(err)
			}
			if want := tree.HashAt(m); !bytes.Equal(got, want) {
				t.Fatalf("root of first %d leaves from proof in size %d = %x; want %x", m, n, got, want)
			}
		}
	}
	if _, err := prefixFromInclusion(5, 9, tree.LeafHash(5), nil); err == nil {
		t.Error("prefixFromInclusion accepted a proof of the wrong length")
	}
}

func appendN(t *testing.T, b *Backend, from, n int) {
	t.Helper()
	leaves := make([][]byte, n)
	for i := range leaves {
		leaves[i] = logtest.Leaf(uint64(from + i))
	}
	if err := b.Append(t.Context(), uint64(from), leaves); err != nil {
		t.Fatalf("Append(%d leaves) at %d: %v", n, from, err)
	}
}

func wantCorrupt(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, klog.ErrCorrupt) {
		t.Fatalf("%s = %v; want an error wrapping log.ErrCorrupt", what, err)
	}
}

func flipFirst(p [][]byte) [][]byte {
	if len(p) > 0 {
		p[0] = bytes.Clone(p[0])
		p[0][0] ^= 1
	}
	return p
}

// TestDetectsLyingTrillian makes the fake lie in each way the backend must
// catch and checks that the lie surfaces as log.ErrCorrupt.
func TestDetectsLyingTrillian(t *testing.T) {
	ctx := context.Background()
	t.Run("InclusionProof", func(t *testing.T) {
		f := newFake()
		b := openFake(t, f, nil)
		appendN(t, b, 0, 20)
		f.set(func() { f.onInclusion = flipFirst })
		_, err := b.InclusionProof(ctx, 3, 20)
		wantCorrupt(t, "InclusionProof with a bad proof", err)
		_, err = b.RootHash(ctx, 9)
		wantCorrupt(t, "RootHash(9) from a bad inclusion proof", err)
	})
	t.Run("ConsistencyProof", func(t *testing.T) {
		f := newFake()
		b := openFake(t, f, nil)
		appendN(t, b, 0, 20)
		f.set(func() { f.onConsistency = flipFirst })
		_, err := b.ConsistencyProof(ctx, 5, 20)
		wantCorrupt(t, "ConsistencyProof with a bad proof", err)
	})
	t.Run("RootNotConsistent", func(t *testing.T) {
		f := newFake()
		b := openFake(t, f, nil)
		appendN(t, b, 0, 5)
		// The next root comes with a bad consistency proof from size 5.
		f.set(func() { f.onConsistency = flipFirst })
		f.set(func() {
			f.stored[5] = &trillian.LogLeaf{LeafValue: []byte("x"), LeafIndex: 5}
			f.onRoot = func(size uint64, hash []byte) (uint64, []byte) { h := bytes.Clone(hash); h[1] ^= 1; return size, h }
		})
		_, err := b.Size(ctx)
		wantCorrupt(t, "Size with a root inconsistent with the trusted one", err)
	})
	t.Run("Rollback", func(t *testing.T) {
		f := newFake()
		b := openFake(t, f, nil)
		appendN(t, b, 0, 10)
		f.set(func() {
			f.onRoot = func(size uint64, hash []byte) (uint64, []byte) {
				return f.tree.Size() - 3, f.tree.HashAt(f.tree.Size() - 3)
			}
		})
		_, err := b.Size(ctx)
		wantCorrupt(t, "Size after a rollback", err)
	})
	t.Run("RollbackTruncated", func(t *testing.T) {
		f := newFake()
		b := openFake(t, f, nil)
		appendN(t, b, 0, 10)
		f.set(func() {
			f.integrate = false
			f.values = f.values[:7]
			f.tree = testonly.New(hasher)
			for _, v := range f.values {
				f.tree.AppendData(v)
			}
		})
		_, err := b.Size(ctx)
		wantCorrupt(t, "Size after the server lost leaves", err)
	})
	t.Run("Fork", func(t *testing.T) {
		f := newFake()
		b := openFake(t, f, nil)
		appendN(t, b, 0, 10)
		f.set(func() {
			f.onRoot = func(size uint64, hash []byte) (uint64, []byte) { h := bytes.Clone(hash); h[0] ^= 1; return size, h }
		})
		_, err := b.Size(ctx)
		wantCorrupt(t, "Size after a fork", err)
	})
	t.Run("LeafValue", func(t *testing.T) {
		f := newFake()
		b := openFake(t, f, nil)
		appendN(t, b, 0, 10)
		f.set(func() {
			f.onLeaf = func(l *trillian.LogLeaf) { l.LeafValue = append(l.LeafValue, 'x'); l.MerkleLeafHash = nil }
		})
		_, err := b.InclusionProof(ctx, 4, 10)
		wantCorrupt(t, "InclusionProof of a tampered leaf", err)
		f.set(func() {
			f.onLeaf = func(l *trillian.LogLeaf) { l.LeafValue = append(l.LeafValue, 'x') }
		})
		_, err = b.Entries(ctx, 0, 10)
		wantCorrupt(t, "Entries with a leaf not matching its Merkle leaf hash", err)
		f.set(func() {
			f.onLeaf = func(l *trillian.LogLeaf) {
				if l.LeafIndex == 6 {
					l.LeafValue = []byte("substituted")
					l.MerkleLeafHash = hasher.HashLeaf(l.LeafValue)
				}
			}
		})
		for _, r := range [][2]uint64{{0, 10}, {6, 7}, {3, 8}, {6, 10}} {
			_, err = b.Entries(ctx, r[0], r[1])
			wantCorrupt(t, fmt.Sprintf("Entries(%d, %d) with a consistently substituted leaf 6", r[0], r[1]), err)
		}
		if _, err := b.Entries(ctx, 0, 6); err != nil {
			t.Fatalf("Entries(0, 6) not touching the substituted leaf: %v", err)
		}
		f.set(func() { f.onLeaf = func(l *trillian.LogLeaf) { l.LeafIndex++ } })
		_, err = b.Entries(ctx, 0, 10)
		wantCorrupt(t, "Entries with wrong leaf indices", err)
	})
	t.Run("NoLeaves", func(t *testing.T) {
		f := newFake()
		b := openFake(t, f, nil)
		appendN(t, b, 0, 10)
		f.set(func() { f.maxLeaves = 0 })
		_, err := b.Entries(ctx, 0, 10)
		wantCorrupt(t, "Entries when the server returns no leaves", err)
	})
	t.Run("IntegratesOtherLeaves", func(t *testing.T) {
		f := newFake()
		b := openFake(t, f, nil)
		appendN(t, b, 0, 4)
		f.set(func() { f.onIntegrate = func(v []byte) []byte { return append(bytes.Clone(v), '!') } })
		err := b.Append(ctx, 4, [][]byte{[]byte("a"), []byte("b")})
		wantCorrupt(t, "Append when Trillian integrates different leaves", err)
	})
}

// TestAppendNotIntegrated checks the bounded wait: with no signer, Append
// fails with ErrNotIntegrated after the integration timeout.
func TestAppendNotIntegrated(t *testing.T) {
	f := newFake()
	f.integrate = false
	b := openFake(t, f, &Options{IntegrationTimeout: 150 * time.Millisecond})
	start := time.Now()
	err := b.Append(t.Context(), 0, [][]byte{[]byte("a")})
	if !errors.Is(err, ErrNotIntegrated) {
		t.Fatalf("Append without a signer = %v; want ErrNotIntegrated", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Append waited %v with a 150ms integration timeout", d)
	}
	// A context deadline shorter than the timeout wins.
	b.opts.IntegrationTimeout = time.Hour
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	f.set(func() { f.stored = map[int64]*trillian.LogLeaf{}; f.ids = map[string]bool{} })
	if err := b.Append(ctx, 0, [][]byte{[]byte("a")}); !errors.Is(err, ErrNotIntegrated) {
		t.Fatalf("Append with a short context = %v; want ErrNotIntegrated", err)
	}
}

// TestAppendConflictAndRetry covers Trillian's per-leaf conflict statuses: a
// different leaf already stored at the expected index gives ErrConflict and
// stores nothing (after waiting for the stored leaf's integration, bounded by
// the integration timeout); the same leaf (same identity hash) is a
// successful retry.
func TestAppendConflictAndRetry(t *testing.T) {
	f := newFake()
	f.integrate = false
	b := openFake(t, f, &Options{IntegrationTimeout: 200 * time.Millisecond})
	other := []byte("left over from an interrupted Append")
	f.set(func() {
		f.stored[0] = &trillian.LogLeaf{LeafValue: other, LeafIndex: 0}
		f.ids[string(identityHash(0, other))] = true
	})
	err := b.Append(t.Context(), 0, [][]byte{[]byte("new 0"), []byte("new 1"), []byte("new 2")})
	if !errors.Is(err, ErrConflict) || !errors.Is(err, ErrNotIntegrated) {
		t.Fatalf("Append over a stored leaf the signer does not integrate = %v; want ErrConflict and ErrNotIntegrated", err)
	}
	f.set(func() {
		if len(f.stored) != 1 {
			t.Errorf("after a conflicting Append %d leaves are stored; want only the old one", len(f.stored))
		}
	})
	// Retrying exactly the stored leaf at its index succeeds.
	b.opts.IntegrationTimeout = 5 * time.Second
	go func() { time.Sleep(50 * time.Millisecond); f.set(func() { f.integrate = true }) }()
	if err := b.Append(t.Context(), 0, [][]byte{other, []byte("next")}); err != nil {
		t.Fatalf("Append retrying the stored leaf: %v", err)
	}
	got, err := b.Entries(t.Context(), 0, 2)
	if err != nil || !bytes.Equal(got[0], other) || string(got[1]) != "next" {
		t.Fatalf("Entries = %q, %v", got, err)
	}
	// The same Append again: the tree no longer ends at 0.
	if err := b.Append(t.Context(), 0, [][]byte{other, []byte("next")}); !errors.Is(err, ErrConflict) {
		t.Fatalf("repeating a successful Append = %v; want ErrConflict", err)
	}
	if n, _ := b.Size(t.Context()); n != 2 {
		t.Fatalf("Size after a refused repeat = %d, want 2", n)
	}
}

// TestAppendAfterInterruptedAppend is the wedge of issue 15 in miniature: a
// writer stored three leaves while the signer was down and died; the next
// writer, which only sees the integrated tree, appends at the old size. Its
// Append waits until the signer integrates the stored leaves, then fails with
// ErrConflict without storing anything; after reading the integrated leaves
// it appends at the new size.
func TestAppendAfterInterruptedAppend(t *testing.T) {
	f := newFake()
	b := openFake(t, f, &Options{IntegrationTimeout: 5 * time.Second})
	appendN(t, b, 0, 2)
	f.set(func() {
		f.integrate = false
		for i := int64(2); i < 5; i++ {
			v := logtest.Leaf(uint64(100 + i))
			f.stored[i] = &trillian.LogLeaf{LeafValue: v, LeafIndex: i}
			f.ids[string(identityHash(uint64(i), v))] = true
		}
	})
	go func() { time.Sleep(100 * time.Millisecond); f.set(func() { f.integrate = true }) }()
	err := b.Append(t.Context(), 2, [][]byte{[]byte("epoch of the new writer")})
	if !errors.Is(err, ErrConflict) || errors.Is(err, ErrNotIntegrated) {
		t.Fatalf("Append over stored leaves = %v; want ErrConflict after their integration", err)
	}
	n, err := b.Size(t.Context())
	if err != nil || n < 3 {
		t.Fatalf("Size after the conflict = %d, %v; want the stored leaves integrated", n, err)
	}
	if err := b.Append(t.Context(), 2, [][]byte{[]byte("x")}); !errors.Is(err, ErrConflict) {
		t.Fatalf("Append at the old size after integration = %v; want ErrConflict", err)
	}
	for n < 5 { // the fake may integrate in steps
		time.Sleep(10 * time.Millisecond)
		n, _ = b.Size(t.Context())
	}
	got, err := b.Entries(t.Context(), 2, 5)
	if err != nil || !bytes.Equal(got[0], logtest.Leaf(102)) || !bytes.Equal(got[2], logtest.Leaf(104)) {
		t.Fatalf("Entries(2, 5) = %v; want the interrupted Append's leaves", err)
	}
	if err := b.Append(t.Context(), 5, [][]byte{[]byte("epoch of the new writer")}); err != nil {
		t.Fatalf("Append at the integrated size: %v", err)
	}
}

func TestRejects(t *testing.T) {
	f := newFake()
	b := openFake(t, f, nil)
	if err := b.Append(t.Context(), 0, [][]byte{[]byte("a"), {}}); err == nil {
		t.Error("Append of an empty leaf succeeded")
	}
	if n, _ := b.Size(t.Context()); n != 0 {
		t.Errorf("Size after rejected Append = %d", n)
	}
	f2 := newFake()
	f2.treeType = trillian.TreeType_LOG
	if _, err := New(t.Context(), f2.serve(t), 1, nil); !errors.Is(err, ErrTree) {
		t.Errorf("New on a LOG tree = %v; want ErrTree", err)
	}
	if _, err := New(t.Context(), newFake().serve(t), 2, nil); status.Code(errors.Unwrap(err)) != codes.NotFound {
		t.Errorf("New on a missing tree = %v; want NotFound", err)
	}
}

// FuzzPrefixFromInclusion checks that prefixFromInclusion never panics and,
// whenever it accepts a proof that verifies, returns the right root.
func FuzzPrefixFromInclusion(f *testing.F) {
	tree := testonly.New(hasher)
	for i := 0; i < 40; i++ {
		tree.AppendData([]byte{byte(i)})
	}
	f.Add(uint64(5), uint64(9), []byte{})
	f.Add(uint64(0), uint64(1), []byte{1, 2, 3})
	f.Add(uint64(39), uint64(40), bytes.Repeat([]byte{7}, 64))
	f.Add(^uint64(0), uint64(0), []byte{})
	f.Fuzz(func(t *testing.T, index, size uint64, junk []byte) {
		var p [][]byte
		if index < size && size <= tree.Size() {
			p, _ = tree.InclusionProof(index, size)
		}
		// Mix junk in: as extra hashes, or replacing the first one.
		if len(junk) > 0 {
			if junk[0]%2 == 0 && len(p) > 0 {
				p[0] = junk
			} else {
				p = append(p, junk)
			}
		}
		var lh []byte
		if index < tree.Size() {
			lh = tree.LeafHash(index)
		}
		r, err := prefixFromInclusion(index, size, lh, p)
		if err != nil || index >= size || size > tree.Size() {
			return
		}
		if proof.VerifyInclusion(hasher, index, size, lh, p, tree.HashAt(size)) != nil {
			return
		}
		got, err := r.GetRootHash(nil)
		if err != nil || !bytes.Equal(got, tree.HashAt(index+1)) {
			t.Fatalf("prefixFromInclusion(%d, %d) root = %x, %v; want %x", index, size, got, err, tree.HashAt(index+1))
		}
	})
}

// TestReopenFake runs logtest.RunReopen: new Backends on the same fake tree.
func TestReopenFake(t *testing.T) {
	logtest.RunReopen(t, func(t *testing.T) func() klog.Backend {
		conn := newFake().serve(t)
		return func() klog.Backend {
			b, err := New(t.Context(), conn, 1, nil)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			return b
		}
	})
}

func TestCreateTreeNameLimit(t *testing.T) {
	if _, err := CreateTree(t.Context(), newFake().serve(t), "a-display-name-of-21c"); err == nil {
		t.Fatal("CreateTree accepted a 21-byte display name")
	}
}

// TestTransient checks which errors the directory may retry: failed RPCs
// (server or database down) yes; verdicts about the tree and invalid
// requests no.
func TestTransient(t *testing.T) {
	b := &Backend{treeID: 7}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{b.rpcErr("GetLatestSignedLogRoot", status.Error(codes.Unavailable, "connection refused")), true},
		{b.rpcErr("AddSequencedLeaves", status.Error(codes.Unknown, "dial tcp 127.0.0.1:3306: connect: connection refused")), true},
		{b.rpcErr("GetLeavesByRange", status.Error(codes.Internal, "driver: bad connection")), true},
		{b.rpcErr("GetLeavesByRange", status.Error(codes.DeadlineExceeded, "deadline")), true},
		{fmt.Errorf("%w: leaves [3, 5)", ErrNotIntegrated), true},
		{corrupt("tree %d rolled back", 7), false},
		{fmt.Errorf("%w: index 3 taken", ErrConflict), false},
		{fmt.Errorf("%w: Entries(5, 9)", klog.ErrRange), false},
		{fmt.Errorf("%w: tree 7 is deleted", ErrTree), false},
		{b.rpcErr("GetTree", status.Error(codes.NotFound, "no such tree")), false},
		{b.rpcErr("GetInclusionProof", status.Error(codes.InvalidArgument, "bad size")), false},
		{nil, false},
	} {
		if got := Transient(c.err); got != c.want {
			t.Errorf("Transient(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
