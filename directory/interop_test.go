package directory

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyline/keyline/verifier"
)

// TestVerifierClient runs the verifier package's client (the one the CLI
// uses) against the directory, in process and over gRPC: lookups of a
// present, an updated, a reset and an absent account must verify, and
// the client's state (consistency from its last checkpoint) must carry
// across epochs.
func TestVerifierClient(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir(), nil)
	trust := trustOf(t, s)
	c := serveTest(t, s)
	a := newTestAccount(t, "kim")
	if _, err := s.Update(ctx, a.bytes(t)); err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]verifier.Source{"inproc": s.Source(), "grpc": c} {
		t.Run(name, func(t *testing.T) {
			vc := verifier.NewClient(trust, filepath.Join(t.TempDir(), "state.json"), src)
			r, err := vc.Lookup(ctx, "kim")
			if err != nil {
				t.Fatal(err)
			}
			if !r.Found || r.IdentityKey != a.ik.Public() {
				t.Fatalf("found=%v", r.Found)
			}
			r, err = vc.Lookup(ctx, "nobody-here")
			if err != nil || r.Found {
				t.Fatalf("absent account: found=%v err=%v", r != nil && r.Found, err)
			}
		})
	}
	vc := verifier.NewClient(trust, filepath.Join(t.TempDir(), "state.json"), c)
	if _, err := vc.Lookup(ctx, "kim"); err != nil {
		t.Fatal(err)
	}
	next := a.addDevice(t, "laptop")
	if _, err := s.Update(ctx, mustMarshal(t, next)); err != nil {
		t.Fatal(err)
	}
	r, err := vc.Lookup(ctx, "kim")
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != 2 {
		t.Fatalf("version %d after update", r.Version)
	}
	if _, err := verifier.VerifyLookup(trust, nil, "kim", mustBundle(t, s, "kim"), time.Now()); err != nil {
		t.Fatal(err)
	}
}

func mustBundle(t *testing.T, s *Server, uid string) *verifier.LookupBundle {
	t.Helper()
	b, err := s.Lookup(context.Background(), uid, 0)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
