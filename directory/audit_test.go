package directory

import (
	"context"
	"testing"
	"time"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/verifier/auditor"
)

// TestAuditorReplaysDirectory runs the real auditor over a real directory's
// log — creates, device adds, a revocation, a reset and several epochs,
// including the genesis epoch — and checks it finds no violation and counts
// exactly what happened. It ties the directory's epoch numbering, leaf
// encoding and map values to the auditor's independent recomputation.
func TestAuditorReplaysDirectory(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir(), nil)
	trust := trustOf(t, s)

	alice, bob := newTestAccount(t, "alice"), newTestAccount(t, "bob")
	for _, a := range []*testAccount{alice, bob} {
		if _, err := s.Update(ctx, a.bytes(t)); err != nil {
			t.Fatal(err)
		}
	}
	next := alice.addDevice(t, "laptop")
	if _, err := s.Update(ctx, mustMarshal(t, next)); err != nil {
		t.Fatal(err)
	}
	alice.state = next
	revoked, err := devices.RevokeDevices(alice.state, alice.ask, []devices.DeviceID{alice.state.Devices[0].ID}, devices.ReasonLost, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, mustMarshal(t, revoked)); err != nil {
		t.Fatal(err)
	}
	// Bob lost everything: the directory resets his identity key.
	rs := resetStateFor(t, bob.state, "new phone")
	if _, err := s.Reset(ctx, s.AdminToken(), "bob", mustMarshal(t, rs), "lost"); err != nil {
		t.Fatal(err)
	}

	a, err := auditor.Open(t.TempDir(), trust, s.Source(), &auditor.Options{NoSync: true, BatchSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var calls int
	st, err := a.Run(ctx, func(done, total uint64) { calls++ })
	if err != nil {
		t.Fatalf("auditor found a problem in an honest directory: %v", err)
	}
	cp, err := s.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vc, err := trust.OpenCheckpoint(cp)
	if err != nil {
		t.Fatal(err)
	}
	if st.Violation != nil || st.Replayed != vc.Size || st.Accounts != 2 || st.Resets != 1 || calls == 0 {
		t.Fatalf("status %+v (checkpoint size %d, progress calls %d)", st, vc.Size, calls)
	}
	// The witness interface accepts the directory's checkpoint.
	if err := a.Verify(ctx, vc.Checkpoint); err != nil {
		t.Fatalf("auditor refuses the directory's own checkpoint: %v", err)
	}
}
