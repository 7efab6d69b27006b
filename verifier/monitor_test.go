package verifier

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	klog "github.com/keyline/keyline/log"
)

func monitorFor(t *testing.T, d *testDir) (*Client, *Monitor) {
	c := NewClient(d.trust, filepath.Join(t.TempDir(), "state.json"), d)
	c.Now = func() time.Time { return d.now }
	a := d.accounts["alice"]
	if err := c.SetOwn(OwnAccount{UserID: "alice", Version: a.state.Version, EntryHash: klog.EntryHash(a.leaf)}); err != nil {
		t.Fatal(err)
	}
	return c, NewMonitor(c)
}

func hasAlert(rep *MonitorReport, k AlertKind) bool {
	for _, a := range rep.Alerts {
		if a.Kind == k {
			return true
		}
	}
	return false
}

func TestMonitorOK(t *testing.T) {
	d := world(t)
	_, m := monitorFor(t, d)
	rep, err := m.Check(context.Background())
	if err != nil || !rep.OK || len(rep.Alerts) != 0 {
		t.Fatalf("%v %+v", err, rep)
	}
	// Other accounts changing does not matter; one lookup still suffices.
	d.publish(d.addDevice("bob", "bob-tablet"))
	if rep, err = m.Check(context.Background()); err != nil || !rep.OK {
		t.Fatalf("%v %+v", err, rep)
	}
}

func TestMonitorDeviceAddedWithIK(t *testing.T) {
	d := world(t)
	_, m := monitorFor(t, d)
	ik := d.accounts["alice"].ik.Public()
	d.publish(d.addDevice("alice", "evil-laptop"))
	rep, err := m.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || len(rep.Changes) != 1 || !hasAlert(rep, AlertUnexpectedUpdate) || hasAlert(rep, AlertReset) {
		t.Fatalf("%+v", rep)
	}
	c := rep.Changes[0]
	a := d.accounts["alice"]
	if c.Version != 3 || c.LogIndex != a.logIdx || c.ByResetKey || c.SignerIK != ik || len(c.Added) != 1 || c.Added[0].Name != "evil-laptop" || len(c.Removed) != 0 {
		t.Fatalf("change %+v", c)
	}
	t.Log(rep.Alerts[0].Message)
	// After the owner accepts, the next check is OK.
	if err := m.Accept(rep); err != nil {
		t.Fatal(err)
	}
	if rep, err = m.Check(context.Background()); err != nil || !rep.OK {
		t.Fatalf("%v %+v", err, rep)
	}
}

// TestMonitorKeyRotated: a version the owner did not make rotated the
// account signing key (generation 1 -> 2, certified by the root key). The
// monitor reports it as AlertKeyRotated, not as an update by a device
// holding the signing key; an update after it with the new key is an
// ordinary unexpected update.
func TestMonitorKeyRotated(t *testing.T) {
	d := world(t)
	_, m := monitorFor(t, d)
	a := d.accounts["alice"]
	d.publish(d.rotate("alice"))
	rep, err := m.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || !hasAlert(rep, AlertKeyRotated) || hasAlert(rep, AlertUnexpectedUpdate) || len(rep.Changes) != 1 {
		t.Fatalf("%+v", rep)
	}
	c := rep.Changes[0]
	if !c.Rotated() || c.Generation != 2 || c.PrevGeneration != 1 || c.ByResetKey || c.SignerIK != a.ik.Public() {
		t.Fatalf("change %+v", c)
	}
	if msg := rep.Alerts[0].Message; !strings.Contains(msg, "generation 1 to 2") || !strings.Contains(msg, "paper key") {
		t.Fatalf("alert message %q", msg)
	}
	if err := m.Accept(rep); err != nil {
		t.Fatal(err)
	}
	d.publish(d.addDevice("alice", "tablet"))
	rep, err = m.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !hasAlert(rep, AlertUnexpectedUpdate) || hasAlert(rep, AlertKeyRotated) || len(rep.Changes) != 1 || rep.Changes[0].Rotated() || rep.Changes[0].Generation != 2 {
		t.Fatalf("update after the rotation: %+v", rep)
	}
}

func TestMonitorReset(t *testing.T) {
	d := world(t)
	_, m := monitorFor(t, d)
	old := d.accounts["alice"].state
	d.publish(d.reset("alice"))
	rep, err := m.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || !hasAlert(rep, AlertReset) || len(rep.Changes) != 1 {
		t.Fatalf("%+v", rep)
	}
	c := rep.Changes[0]
	if !c.ByResetKey || c.Kind != klog.UpdateReset || c.SignerIK == old.IdentityKey || len(c.Added) != 1 || len(c.Removed) != len(old.Devices) || c.Removed[0].Revocation == nil {
		t.Fatalf("change %+v", c)
	}
	t.Log(rep.Alerts[0].Message)
}

func TestMonitorHiddenAndBackwards(t *testing.T) {
	d := world(t)
	c, m := monitorFor(t, d)
	// The owner made v3, but the directory never published it (it serves
	// v2): version backwards and a hidden entry.
	leaf := d.addDevice("alice", "alice-tablet").leaf
	if err := c.SetOwn(OwnAccount{UserID: "alice", Version: 3, EntryHash: klog.EntryHash(leaf)}); err != nil {
		t.Fatal(err)
	}
	rep, err := m.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || !hasAlert(rep, AlertVersionBackwards) || !hasAlert(rep, AlertHiddenEntry) {
		t.Fatalf("%+v", rep)
	}
}

func TestMonitorRewrittenEntry(t *testing.T) {
	d := world(t)
	c, m := monitorFor(t, d)
	a := d.accounts["alice"]
	// The owner makes v3; the directory logs a different v3 in its place.
	prevState, prevLeaf, prevDevs := a.state, a.leaf, a.devs
	ownLeaf := d.addDevice("alice", "alice-tablet").leaf
	a.state, a.leaf, a.devs = prevState, prevLeaf, prevDevs
	if err := c.SetOwn(OwnAccount{UserID: "alice", Version: 3, EntryHash: klog.EntryHash(ownLeaf)}); err != nil {
		t.Fatal(err)
	}
	d.publish(d.addDevice("alice", "not-the-owners"))
	rep, err := m.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || !hasAlert(rep, AlertHiddenEntry) || len(rep.Changes) != 1 || len(rep.Changes[0].Added) != 1 || rep.Changes[0].Added[0].Name != "not-the-owners" {
		t.Fatalf("%+v", rep)
	}
}

func TestMonitorHistoryTruncated(t *testing.T) {
	d := world(t)
	_, m := monitorFor(t, d)
	d.publish(d.addDevice("alice", "x"))
	// The history hides the newest entry the lookup served.
	// The lookup itself verifies the history from the version it last
	// verified (Client.checkGenerations) and fails closed.
	m.Client.Source = &truncatingSource{testDir: d}
	rep, err := m.Check(context.Background())
	if !errors.Is(err, ErrHistory) {
		t.Fatalf("got %v %+v, want ErrHistory", err, rep)
	}
}

// truncatingSource drops the last entry of every history.
type truncatingSource struct{ *testDir }

func (s *truncatingSource) History(ctx context.Context, uid string, from uint64) (*HistoryBundle, error) {
	h, err := s.testDir.History(ctx, uid, from)
	if err == nil && len(h.Entries) > 0 {
		h.Entries = h.Entries[:len(h.Entries)-1]
	}
	return h, err
}

func TestMonitorHistoryVersionSkip(t *testing.T) {
	d := world(t)
	_, m := monitorFor(t, d)
	d.publish(d.addDevice("alice", "x"))
	d.publish(d.addDevice("alice", "y"))
	m.Client.Source = &skippingSource{testDir: d}
	_, err := m.Check(context.Background())
	if err == nil {
		t.Fatal("history with a skipped version accepted")
	}
	wantErr(t, err, ErrHistory)
}

// skippingSource drops the middle entry of every history.
type skippingSource struct{ *testDir }

func (s *skippingSource) History(ctx context.Context, uid string, from uint64) (*HistoryBundle, error) {
	h, err := s.testDir.History(ctx, uid, from)
	if err == nil && len(h.Entries) > 2 {
		h.Entries = append(h.Entries[:1], h.Entries[2:]...)
	}
	return h, err
}

// pagingSource returns at most pageSize entries per History call, like the
// directory (MaxHistoryEntries), and counts the calls.
type pagingSource struct {
	*testDir
	pageSize int
	calls    int
}

func (s *pagingSource) History(ctx context.Context, uid string, from uint64) (*HistoryBundle, error) {
	s.calls++
	h, err := s.testDir.History(ctx, uid, from)
	if err == nil && len(h.Entries) > s.pageSize {
		h.Entries = h.Entries[:s.pageSize]
	}
	return h, err
}

func TestMonitorHistoryPages(t *testing.T) {
	d := world(t)
	_, m := monitorFor(t, d) // own v2
	const n = 7
	for i := 0; i < n; i++ {
		d.publish(d.addDevice("alice", fmt.Sprintf("unexpected %d", i)))
	}
	src := &pagingSource{testDir: d, pageSize: 2}
	m.Client.Source = src
	rep, err := m.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// History from v1 to v9: 9 entries in pages of 2, fetched twice: by
	// the lookup's generation check from the pinned v1, and by the monitor.
	if hasAlert(rep, AlertHistoryTruncated) || len(rep.Changes) != n || src.calls != 10 {
		t.Fatalf("calls %d, %d changes, alerts %+v", src.calls, len(rep.Changes), rep.Alerts)
	}
	for i, c := range rep.Changes {
		if c.Version != uint64(3+i) {
			t.Fatalf("change %d is v%d", i, c.Version)
		}
	}
	// Each unexpected change tells the owner how to cut the device off.
	for _, al := range rep.Alerts {
		if al.Kind != AlertUnexpectedUpdate || !strings.Contains(al.Message, "`"+CutOffCommand+"`") || !strings.Contains(al.Message, "generation 1") {
			t.Fatalf("alert %+v", al)
		}
	}
	// A page that breaks the chain to the previous page is rejected.
	m.Client.Source = &pagingSkipSource{pagingSource{testDir: d, pageSize: 2}}
	_, err = m.Check(context.Background())
	wantErr(t, err, ErrHistory)
}

// pagingSkipSource pages like pagingSource but answers the second call
// from one version later than asked.
type pagingSkipSource struct{ pagingSource }

func (s *pagingSkipSource) History(ctx context.Context, uid string, from uint64) (*HistoryBundle, error) {
	if s.calls == 1 {
		from++
	}
	return s.pagingSource.History(ctx, uid, from)
}
