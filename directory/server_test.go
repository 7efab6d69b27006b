package directory

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory/apierr"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
)

func TestEndToEnd(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir, nil)
	trust := trustOf(t, s)

	// trust.json on disk is what Trust returns; key files are private.
	tj, err := verifier.LoadTrust(filepath.Join(dir, FileTrust))
	if err != nil {
		t.Fatal(err)
	}
	if tj.Origin != DefaultOrigin || !tj.VRF.Equal(trust.VRF) {
		t.Fatalf("trust.json differs from Trust()")
	}
	for _, f := range []string{FileLogKey, FileVRFSeed, FileResetKey, FileAdminToken} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}

	// Unknown user: verifiable non-inclusion.
	if v := mustLookup(t, s.Source(), trust, "nobody@example.com"); v.found {
		t.Fatal("unknown user found")
	}

	// Create.
	alice := newTestAccount(t, "alice@example.com")
	res, err := s.Update(ctx, alice.bytes(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := trust.OpenCheckpoint(res.Checkpoint); err != nil {
		t.Fatal(err)
	}
	v := mustLookup(t, s.Source(), trust, "Alice@Example.com ") // normalized
	if !v.found || v.version != 1 || v.update.Update != klog.UpdateCreate || v.state.IdentityKey != alice.ik.Public() {
		t.Fatalf("after create: found=%v version=%d", v.found, v.version)
	}
	if v.cp.Size <= res.LogIndex || v.epoch.Epoch != res.Epoch {
		t.Fatalf("lookup epoch %d size %d, update acknowledged in epoch %d at %d", v.epoch.Epoch, v.cp.Size, res.Epoch, res.LogIndex)
	}
	firstSize, firstRoot := v.cp.Size, v.cp.Hash

	// Add a device, then revoke the first one.
	next := alice.addDevice(t, "laptop")
	if _, err := s.Update(ctx, mustMarshal(t, next)); err != nil {
		t.Fatal(err)
	}
	prev := alice.state
	alice.state = next
	rev, err := devices.RevokeDevices(alice.state, alice.ask, []devices.DeviceID{prev.Devices[0].ID}, devices.ReasonLost, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, mustMarshal(t, rev)); err != nil {
		t.Fatal(err)
	}
	alice.state = rev
	b, err := s.Lookup(ctx, "alice@example.com", firstSize)
	if err != nil {
		t.Fatal(err)
	}
	v, err = verifyLookup(trust, "alice@example.com", b, firstSize, firstRoot[:])
	if err != nil {
		t.Fatal(err)
	}
	if v.version != 3 || len(v.state.Devices) != 1 || v.state.Revoked(prev.Devices[0].ID) == nil {
		t.Fatalf("after revoke: version %d, %d devices", v.version, len(v.state.Devices))
	}

	// Reset with the admin token: new IK, every device revoked.
	rs := resetStateFor(t, alice.state, "new phone")
	newIK := rs.IdentityKey
	if _, err := s.Reset(ctx, "wrong", "alice@example.com", mustMarshal(t, rs), "lost"); apierr.Code(err) != codes.PermissionDenied {
		t.Fatalf("reset with a wrong token: %v", err)
	}
	if _, err := s.Reset(ctx, s.AdminToken(), "alice@example.com", mustMarshal(t, rs), "lost"); err != nil {
		t.Fatal(err)
	}
	v = mustLookup(t, s.Source(), trust, "alice@example.com")
	if v.version != 4 || v.update.Update != klog.UpdateReset || v.state.IdentityKey != newIK {
		t.Fatalf("after reset: version %d kind %d", v.version, v.update.Update)
	}
	a, err := devices.ParseResetAuthorization(v.update.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if err := devices.VerifyReset(alice.state, a, trust.ResetKey, trust.MinResetWindow()); err != nil {
		t.Fatalf("reset authorization: %v", err)
	}

	// History: four versions, chained, each included in the checkpoint.
	h, err := s.History(ctx, "alice@example.com", 0)
	if err != nil {
		t.Fatal(err)
	}
	checkHistory(t, trust, h, 4)
	h2, err := s.History(ctx, "alice@example.com", 3)
	if err != nil || len(h2.Entries) != 2 {
		t.Fatalf("History from 3: %d entries, %v", len(h2.Entries), err)
	}

	// Log reads.
	cp, err := s.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vc, err := trust.OpenCheckpoint(cp)
	if err != nil {
		t.Fatal(err)
	}
	leaves, err := s.Entries(ctx, 0, vc.Size+10)
	if err != nil || uint64(len(leaves)) != vc.Size {
		t.Fatalf("Entries: %d leaves, %v", len(leaves), err)
	}
	if _, err := s.Entries(ctx, vc.Size, vc.Size+1); apierr.Code(err) != codes.OutOfRange {
		t.Fatalf("Entries past the end: %v", err)
	}
	if _, err := s.ConsistencyProof(ctx, 2, vc.Size+1); apierr.Code(err) != codes.OutOfRange {
		t.Fatalf("ConsistencyProof past the end: %v", err)
	}
}

// checkHistory verifies a history bundle: every entry included in the
// checkpoint, versions 1..n chained by entry hash.
func checkHistory(t *testing.T, trust *verifier.Trust, h *verifier.HistoryBundle, n int) {
	t.Helper()
	cp, err := trust.OpenCheckpoint(h.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Entries) != n {
		t.Fatalf("history has %d entries, want %d", len(h.Entries), n)
	}
	var prevHash [32]byte
	for i, e := range h.Entries {
		if err := verifyInclusion(e.LogIndex, cp.Size, e.Leaf, e.Inclusion, cp.Hash[:]); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		u, err := klog.ParseAccountUpdate(e.Leaf)
		if err != nil {
			t.Fatal(err)
		}
		if u.Version != uint64(i+1) || u.PrevHash != prevHash {
			t.Fatalf("entry %d: version %d, chain broken", i, u.Version)
		}
		prevHash = klog.EntryHash(e.Leaf)
	}
}

func TestRejections(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir(), nil)
	bob := newTestAccount(t, "bob")
	if _, err := s.Update(ctx, bob.bytes(t)); err != nil {
		t.Fatal(err)
	}
	next := bob.addDevice(t, "tablet")
	bad := *next
	bad.Signature[0] ^= 1
	skip := *next
	skip.Version = 3
	if err := skip.Sign(bob.ask); err != nil {
		t.Fatal(err)
	}
	wrongPrev := *next
	wrongPrev.PrevHash[0] ^= 1
	if err := wrongPrev.Sign(bob.ask); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		state  []byte
		code   codes.Code
		reason string
	}{
		{"bad signature", mustMarshal(t, &bad), codes.InvalidArgument, apierr.BadSignature},
		{"wrong version", mustMarshal(t, &skip), codes.FailedPrecondition, apierr.VersionNotNext},
		{"wrong prev hash", mustMarshal(t, &wrongPrev), codes.FailedPrecondition, apierr.PrevHashMismatch},
		{"create existing", bob.bytes(t), codes.FailedPrecondition, apierr.AccountExists},
		{"malformed", []byte{1, 2, 3}, codes.InvalidArgument, apierr.MalformedAccountState},
		{"empty", nil, codes.InvalidArgument, apierr.MalformedRequest},
		{"oversized", make([]byte, MaxStateSize+1), codes.InvalidArgument, apierr.RequestTooLarge},
	} {
		_, err := s.Update(ctx, tc.state)
		if apierr.Code(err) != tc.code || apierr.Reason(err) != tc.reason {
			t.Errorf("%s: got %v, want %v %s", tc.name, err, tc.code, tc.reason)
		}
	}
	if _, err := s.Update(ctx, mustMarshal(t, next)); err != nil {
		t.Fatalf("valid update after rejections: %v", err)
	}
	if !errors.Is(devicesError(devices.ErrDeviceCert), &apierr.Error{Reason: apierr.BadDeviceCert}) {
		t.Fatal("ErrDeviceCert does not map to BAD_DEVICE_CERT")
	}
}

// TestOldDataDirRefused: an account payload of format 1 (written by a
// Keyline before the root key / signing key formats) is refused on
// replay with an error naming the version.
func TestOldDataDirRefused(t *testing.T) {
	for _, kind := range []klog.UpdateKind{klog.UpdateCreate, klog.UpdateReset} {
		_, _, err := stateOf(&klog.AccountUpdate{Version: 3, Update: kind, Payload: []byte{0x01, 0x00, 0x05}})
		if !errors.Is(err, ErrOldDataDir) || !strings.Contains(err.Error(), "format 1") {
			t.Fatalf("kind %d: got %v", kind, err)
		}
	}
	a := newTestAccount(t, "alice")
	if st, ra, err := stateOf(&klog.AccountUpdate{Version: 1, Update: klog.UpdateCreate, Payload: a.bytes(t)}); err != nil || ra != nil || st.UserID != "alice" {
		t.Fatalf("format 2: %v", err)
	}
}
