package trillian

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/google/trillian"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/log/logtest"
	"github.com/transparency-dev/merkle/rfc6962"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Environment variables naming a running Trillian (set by
// scripts/integration-trillian.sh). Without KEYLINE_TRILLIAN_ADDR the tests
// against a real Trillian skip.
const (
	envAddr   = "KEYLINE_TRILLIAN_ADDR"    // host:port of trillian_log_server
	envTreeID = "KEYLINE_TRILLIAN_TREE_ID" // a PREORDERED_LOG tree made by createtree
)

func realTrillian(t testing.TB) *grpc.ClientConn {
	t.Helper()
	addr := os.Getenv(envAddr)
	if addr == "" {
		t.Skipf("%s not set: no Trillian to test against (scripts/integration-trillian.sh starts one)", envAddr)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// treeName fits Trillian's 20-character DisplayName column.
func treeName(t testing.TB) string {
	n := fmt.Sprintf("kl-%d", time.Now().UnixNano()%1e15)
	_ = t
	return n
}

// TestConformanceTrillian runs the log.Backend conformance suite against a
// real trillian_log_server and trillian_log_signer, one new tree per subtest.
func TestConformanceTrillian(t *testing.T) {
	conn := realTrillian(t)
	logtest.RunConformance(t, func(t *testing.T) klog.Backend {
		ctx := t.Context()
		id, err := CreateTree(ctx, conn, treeName(t))
		if err != nil {
			t.Fatalf("CreateTree: %v", err)
		}
		b, err := New(ctx, conn, id, &Options{IntegrationTimeout: 20 * time.Second})
		if err != nil {
			t.Fatalf("New(tree %d): %v", id, err)
		}
		return b
	})
}

// TestReopenTrillian runs logtest.RunReopen on a real Trillian: each handle
// is a new Dial to the same tree, as after a process restart.
func TestReopenTrillian(t *testing.T) {
	conn := realTrillian(t)
	logtest.RunReopen(t, func(t *testing.T) func() klog.Backend {
		id, err := CreateTree(t.Context(), conn, treeName(t))
		if err != nil {
			t.Fatalf("CreateTree: %v", err)
		}
		return func() klog.Backend {
			b, err := Dial(t.Context(), os.Getenv(envAddr), id, nil)
			if err != nil {
				t.Fatalf("Dial(tree %d): %v", id, err)
			}
			return b
		}
	})
}

// TestCreatetreeTreeReopen uses the tree made by Trillian's createtree: it
// appends, closes, reopens with Dial and checks that the state persisted and
// that a second backend (a restarted process) continues at the right index.
func TestCreatetreeTreeReopen(t *testing.T) {
	realTrillian(t)
	idStr := os.Getenv(envTreeID)
	if idStr == "" {
		t.Skipf("%s not set", envTreeID)
	}
	id, err := strconv.ParseInt(idStr, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", envTreeID, idStr, err)
	}
	ctx := t.Context()
	addr := os.Getenv(envAddr)
	b, err := Dial(ctx, addr, id, nil)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	start, err := b.Size(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leaves := [][]byte{[]byte("reopen a"), []byte("reopen b"), []byte("reopen a")}
	if err := b.Append(ctx, start, leaves); err != nil {
		t.Fatalf("Append at %d: %v", start, err)
	}
	root1, err := b.RootHash(ctx, start+3)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Size(ctx); err == nil {
		t.Error("Size after Close succeeded")
	}

	b2, err := Dial(ctx, addr, id, nil)
	if err != nil {
		t.Fatalf("Dial again: %v", err)
	}
	defer b2.Close()
	if n, err := b2.Size(ctx); err != nil || n != start+3 {
		t.Fatalf("Size after reopen = %d, %v; want %d", n, err, start+3)
	}
	if r, err := b2.RootHash(ctx, start+3); err != nil || !bytes.Equal(r, root1) {
		t.Fatalf("RootHash after reopen = %x, %v; want %x", r, err, root1)
	}
	got, err := b2.Entries(ctx, start, start+3)
	if err != nil {
		t.Fatal(err)
	}
	for i := range leaves {
		if !bytes.Equal(got[i], leaves[i]) {
			t.Errorf("entry %d = %q, want %q", start+uint64(i), got[i], leaves[i])
		}
	}
	if err := b2.Append(ctx, start+3, [][]byte{[]byte("after reopen")}); err != nil {
		t.Fatalf("Append after reopen at %d: %v", start+3, err)
	}
}

// TestRejectsNonPreorderedTree checks that New refuses a normal LOG tree.
func TestRejectsNonPreorderedTree(t *testing.T) {
	conn := realTrillian(t)
	ctx := t.Context()
	tree, err := trillian.NewTrillianAdminClient(conn).CreateTree(ctx, &trillian.CreateTreeRequest{Tree: &trillian.Tree{
		TreeState: trillian.TreeState_ACTIVE, TreeType: trillian.TreeType_LOG,
		DisplayName: treeName(t), MaxRootDuration: durationpb.New(0),
	}})
	if err != nil {
		t.Fatalf("CreateTree(LOG): %v", err)
	}
	if _, err := New(ctx, conn, tree.TreeId, nil); !errors.Is(err, ErrTree) {
		t.Fatalf("New on a LOG tree = %v; want ErrTree", err)
	}
	if _, err := New(ctx, conn, 1, nil); err == nil {
		t.Fatal("New on a nonexistent tree succeeded")
	}
}

// TestTrillianConflictStatuses checks how the backend reads Trillian's
// per-leaf AddSequencedLeaves statuses on a real server, whether or not the
// signer has integrated the leaf yet: re-sending the same leaf at the same
// index (same identity hash) counts as stored; a different leaf at a taken
// index is ErrConflict; an equal leaf at another index is accepted.
func TestTrillianConflictStatuses(t *testing.T) {
	conn := realTrillian(t)
	ctx := t.Context()
	id, err := CreateTree(ctx, conn, treeName(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(ctx, conn, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	leaf := []byte("interrupted")
	if err := b.addSequenced(ctx, 0, [][]byte{leaf}); err != nil {
		t.Fatal(err)
	}
	if err := b.addSequenced(ctx, 0, [][]byte{leaf}); err != nil {
		t.Fatalf("re-sending the same leaf at index 0: %v; want success", err)
	}
	if err := b.addSequenced(ctx, 0, [][]byte{[]byte("different")}); !errors.Is(err, ErrConflict) {
		t.Fatalf("a different leaf at index 0: %v; want ErrConflict", err)
	}
	// An Append at 0 conflicts with the stored leaf; it waits for its
	// integration (or reports ErrConflict at once if the tree already has
	// it), and the Append at 1 then succeeds.
	if err := b.Append(ctx, 0, [][]byte{[]byte("next")}); !errors.Is(err, ErrConflict) || errors.Is(err, ErrNotIntegrated) {
		t.Fatalf("Append at 0 over the stored leaf = %v; want ErrConflict after its integration", err)
	}
	if err := b.Append(ctx, 1, [][]byte{[]byte("next")}); err != nil {
		t.Fatalf("Append after the stored leaf: %v", err)
	}
	got, err := b.Entries(ctx, 0, 2)
	if err != nil || !bytes.Equal(got[0], leaf) || string(got[1]) != "next" {
		t.Fatalf("Entries(0, 2) = %q, %v", got, err)
	}
	r, err := b.RootHash(ctx, 1)
	if err != nil || !bytes.Equal(r, rfc6962.DefaultHasher.HashLeaf(leaf)) {
		t.Fatalf("RootHash(1) = %x, %v", r, err)
	}
}
