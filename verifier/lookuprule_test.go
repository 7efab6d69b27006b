package verifier

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/keyline/keyline/devices"
	klog "github.com/keyline/keyline/log"
)

// badCertUpdate returns the entry of uid's next version, which adds a
// device named name whose cert's account signing key (ASK) signature is
// corrupted, the state itself signed by the account's ASK over the
// corrupted bytes: the lookup rule accepts it, the full rule refuses it
// (devices.ErrDeviceCert).
func (d *testDir) badCertUpdate(uid, name string) entry {
	t := d.t
	t.Helper()
	a := d.accounts[uid]
	c := d.newDevice(a, name)
	st, err := devices.AddDevice(a.state, a.ask, c, d.now)
	if err != nil {
		t.Fatal(err)
	}
	st.Devices = append([]*devices.DeviceCert(nil), st.Devices...)
	for i, dc := range st.Devices {
		if dc.ID == c.ID {
			bad := *dc
			bad.Signature[9] ^= 0x40
			st.Devices[i] = &bad
		}
	}
	payload := resign(t, a, st)
	if err := devices.VerifyAccountState(st); !errors.Is(err, devices.ErrDeviceCert) {
		t.Fatalf("full check of the bad cert state: %v, want %v", err, devices.ErrDeviceCert)
	}
	a.state = st
	return entry{uid, d.updateLeaf(a, klog.UpdateUpdate, st.Version, payload)}
}

// TestLookupRuleBadCertSignatureLatest: alice's latest version carries a
// cert whose ASK signature is corrupted under a valid state signature. A
// contact's lookup (and its history walk from v1) accepts it: the state
// signature by the same key covers the cert. Alice's own monitor, which
// checks every signature, reports it as an error.
func TestLookupRuleBadCertSignatureLatest(t *testing.T) {
	d := world(t)
	_, m := monitorFor(t, d)
	d.publish(d.badCertUpdate("alice", "odd-tablet"))
	c := newTestClient(t, d, filepath.Join(t.TempDir(), "state.json"), d)
	res, err := c.Lookup(context.Background(), "alice")
	if err != nil {
		t.Fatalf("contact lookup: %v", err)
	}
	if res.Version != 3 || len(res.State.Devices) != 3 {
		t.Fatalf("contact lookup: v%d, %d devices", res.Version, len(res.State.Devices))
	}
	_, err = m.Check(context.Background())
	if !errors.Is(err, ErrAccountState) || !errors.Is(err, devices.ErrDeviceCert) {
		t.Fatalf("monitor: %v, want %v and %v", err, ErrAccountState, devices.ErrDeviceCert)
	}
}

// TestLookupRuleBadCertSignatureInHistory: the bad cert is in v3 only; v4
// revokes that device. A new contact's lookup of v4 walks the history from
// v1 by the lookup rule and accepts; alice's monitor (expecting v2) walks
// v3 and v4 by the full rule and refuses v3.
func TestLookupRuleBadCertSignatureInHistory(t *testing.T) {
	d := world(t)
	_, m := monitorFor(t, d)
	d.publish(d.badCertUpdate("alice", "odd-tablet"))
	a := d.accounts["alice"]
	var odd devices.DeviceID
	for _, dc := range a.state.Devices {
		if dc.Name == "odd-tablet" {
			odd = dc.ID
		}
	}
	st, err := devices.RevokeDevices(a.state, a.ask, []devices.DeviceID{odd}, devices.ReasonRetired, d.now)
	if err != nil {
		t.Fatal(err)
	}
	a.state = st
	d.publish(entry{"alice", d.updateLeaf(a, klog.UpdateUpdate, st.Version, enc(t, st))})

	c := newTestClient(t, d, filepath.Join(t.TempDir(), "state.json"), d)
	sigs := devices.SignaturesVerified()
	res, err := c.Lookup(context.Background(), "alice")
	if err != nil {
		t.Fatalf("contact lookup: %v", err)
	}
	if res.Version != 4 {
		t.Fatalf("contact lookup: v%d", res.Version)
	}
	// v4 (2 devices): 2 + 2 in the lookup; v1: its state signature (its
	// signing key cert and device's back-signature are v4's); v2: its
	// state signature (the laptop's back-signature is v4's); v3: its
	// state signature and the odd tablet's back-signature.
	if n := devices.SignaturesVerified() - sigs; n != 4+1+1+2 {
		t.Errorf("contact lookup with history: %d signatures, want 8", n)
	}
	_, err = m.Check(context.Background())
	if !errors.Is(err, ErrHistory) || !errors.Is(err, devices.ErrDeviceCert) {
		t.Fatalf("monitor: %v, want %v and %v", err, ErrHistory, devices.ErrDeviceCert)
	}
}
