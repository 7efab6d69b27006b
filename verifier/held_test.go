package verifier

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// heldState returns the state after a verified full lookup of alice, and
// the size of its checkpoint.
func heldState(t *testing.T, d *testDir) (*ClientState, uint64) {
	t.Helper()
	res, err := verify(d, nil, "alice", d.bundle("alice", 0))
	if err != nil {
		t.Fatal(err)
	}
	st := &ClientState{}
	if err := st.Apply(res, d.now); err != nil {
		t.Fatal(err)
	}
	if st.EpochRecord == nil {
		t.Fatal("Apply kept no epoch record")
	}
	return st, res.Checkpoint.Size
}

func TestLookupHeldCheckpoint(t *testing.T) {
	d := world(t)
	st, size := heldState(t, d)
	b := d.bundle("bob", size)
	if !b.Held() || b.EpochRecord != nil || b.EpochRecordInclusion != nil || b.Consistency != nil {
		t.Fatalf("bundle at the known size is not a held-checkpoint bundle: %+v", b)
	}
	res, err := verify(d, st, "bob", b)
	if err != nil {
		t.Fatal(err)
	}
	full, err := verify(d, st, "bob", d.bundle("bob", 0))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Held || full.Held || res.Checkpoint.Size != size || res.Epoch != full.Epoch || res.IdentityKey != full.IdentityKey || res.Version != full.Version {
		t.Fatalf("held %+v, full %+v", res, full)
	}
	// Applying a held result keeps the held checkpoint and record.
	before, _ := st.Marshal()
	if err := st.Apply(res, d.now); err != nil {
		t.Fatal(err)
	}
	st.Contacts = map[string]*Contact{}
	after, _ := st.Marshal()
	if !strings.Contains(string(after), `"epoch_record"`) || len(after) > len(before) {
		t.Fatalf("state after a held lookup:\n%s", after)
	}
	// An absent user, held.
	if r, err := verify(d, st, "carol", d.bundle("carol", size)); err != nil || r.Found || !r.Held {
		t.Fatalf("absent, held: %v %+v", err, r)
	}
	// A full bundle at the known size (a directory that always sends
	// them) is accepted too.
	d.full = true
	if r, err := verify(d, st, "bob", d.bundle("bob", size)); err != nil || r.Held {
		t.Fatalf("full at the known size: %v", err)
	}
}

func TestLookupHeldCheckpointRejected(t *testing.T) {
	d := world(t)
	st, size := heldState(t, d)
	held := func() *LookupBundle { return d.bundle("bob", size) }
	full := d.bundle("bob", 0)

	// Omitted although the client sent no known size (holds nothing).
	_, err := verify(d, nil, "bob", held())
	wantErr(t, err, ErrBundleForm)
	_, err = verify(d, &ClientState{}, "bob", held())
	wantErr(t, err, ErrBundleForm)

	// Partially omitted: the checkpoint is missing, something that goes
	// with it is not.
	for name, tamper := range map[string]func(b *LookupBundle){
		"epoch record":    func(b *LookupBundle) { b.EpochRecord = full.EpochRecord },
		"inclusion proof": func(b *LookupBundle) { b.EpochRecordInclusion = full.EpochRecordInclusion },
		"consistency":     func(b *LookupBundle) { b.Consistency = [][]byte{make([]byte, 32)} },
	} {
		b := held()
		tamper(b)
		if _, err := verify(d, st, "bob", b); err == nil || !strings.Contains(err.Error(), "omits the checkpoint") {
			t.Errorf("%s: %v", name, err)
		}
		wantErr(t, err, ErrBundleForm)
	}
	// The checkpoint without its EpochRecord.
	b := d.bundle("bob", 0)
	b.EpochRecord, b.EpochRecordInclusion = nil, nil
	_, err = verify(d, st, "bob", b)
	wantErr(t, err, ErrEpochRecord)

	// A state without the record (format 1, or after Client.Checkpoint).
	noRec := *st
	noRec.EpochRecord, noRec.EpochRecordInclusion = nil, nil
	_, err = verify(d, &noRec, "bob", held())
	wantErr(t, err, ErrBundleForm)

	// The held record is stale: MaxAge applies to it as to a served one.
	if _, err := VerifyLookup(d.trust, st, "bob", held(), d.now.Add(59*time.Minute)); err != nil {
		t.Fatalf("held, within MaxAge: %v", err)
	}
	_, err = VerifyLookup(d.trust, st, "bob", held(), d.now.Add(61*time.Minute))
	wantErr(t, err, ErrStale)

	// The held record is for another size: the record and proof of the
	// previous checkpoint kept with the current one.
	oldSt, oldSize := heldState(t, d)
	d.now = d.now.Add(time.Minute)
	d.publish(d.addDevice("bob", "bob-tablet"))
	st2, size2 := heldState(t, d)
	if size2 == oldSize {
		t.Fatal("no new checkpoint")
	}
	mixed := *st2
	mixed.EpochRecord, mixed.EpochRecordInclusion = oldSt.EpochRecord, oldSt.EpochRecordInclusion
	_, err = verify(d, &mixed, "bob", d.bundle("bob", size2))
	wantErr(t, err, ErrEpochRecord)
	// The right record with a wrong proof.
	mixed = *st2
	mixed.EpochRecordInclusion = append([][]byte{flip(st2.EpochRecordInclusion[0])}, st2.EpochRecordInclusion[1:]...)
	_, err = verify(d, &mixed, "bob", d.bundle("bob", size2))
	wantErr(t, err, ErrEpochRecord)
	// The held checkpoint no longer opens (a state file edited, or a trust
	// configuration that now needs more cosignatures).
	mixed = *st2
	mixed.Checkpoint = flip(st2.Checkpoint)
	_, err = verify(d, &mixed, "bob", d.bundle("bob", size2))
	wantErr(t, err, ErrCheckpoint)
	// Index confusion and map proof checks still apply to held bundles.
	b = d.bundle("bob", size2)
	b.VRFProof = d.bundle("alice", size2).VRFProof
	_, err = verify(d, st2, "alice", b)
	wantErr(t, err, ErrMapProof)
	// A held bundle is verified against the held record's map root: a
	// map proof of the older map fails.
	b = d.bundle("bob", size2)
	d2 := world(t)
	b.MapProof = d2.bundle("bob", 0).MapProof
	_, err = verify(d, st2, "bob", b)
	wantErr(t, err, ErrMapProof)
}

// countingSource counts Lookups and the known sizes sent.
type countingSource struct {
	*testDir
	lookups, consistency atomic.Int32
	known                []uint64
	// after, if set, runs once after the next Lookup has built its answer.
	after func()
}

func (s *countingSource) Lookup(ctx context.Context, uid string, known uint64) (*LookupBundle, error) {
	s.lookups.Add(1)
	s.known = append(s.known, known)
	b, err := s.testDir.Lookup(ctx, uid, known)
	if f := s.after; f != nil {
		s.after = nil
		f()
	}
	return b, err
}

func (s *countingSource) ConsistencyProof(ctx context.Context, a, b uint64) ([][]byte, error) {
	s.consistency.Add(1)
	return s.testDir.ConsistencyProof(ctx, a, b)
}

// A client holds the epoch's checkpoint after its first lookup and then
// gets held-checkpoint bundles; a state without the record (format 1)
// gets a full bundle instead, without an error.
func TestClientHeldCheckpoint(t *testing.T) {
	d := world(t)
	p := filepath.Join(t.TempDir(), "state.json")
	src := &countingSource{testDir: d}
	c := newTestClient(t, d, p, src)
	if _, err := c.Lookup(t.Context(), "alice"); err != nil {
		t.Fatal(err)
	}
	res, err := c.Lookup(t.Context(), "bob")
	if err != nil || !res.Held {
		t.Fatalf("second lookup: held %v, %v", res != nil && res.Held, err)
	}
	if src.lookups.Load() != 2 || src.known[0] != 0 || src.known[1] != res.Checkpoint.Size {
		t.Fatalf("lookups %d, known sizes %v", src.lookups.Load(), src.known)
	}

	// A format-1 state at the served size: a held bundle is useless to it,
	// so the client asks again for a full one.
	st, err := LoadClientState(p)
	if err != nil {
		t.Fatal(err)
	}
	st.EpochRecord, st.EpochRecordInclusion = nil, nil
	b, _ := st.Marshal()
	v1 := strings.Replace(string(b), `"format": 2`, `"format": 1`, 1)
	if err := os.WriteFile(p, []byte(v1), 0o600); err != nil {
		t.Fatal(err)
	}
	src.lookups.Store(0)
	src.known = nil
	if res, err := c.Lookup(t.Context(), "alice"); err != nil || res.Held {
		t.Fatalf("format-1 state: %v", err)
	}
	if src.lookups.Load() != 2 || src.known[1] != 0 {
		t.Fatalf("format-1 state at the served size: lookups %d, known %v", src.lookups.Load(), src.known)
	}
	if st, err := LoadClientState(p); err != nil || st.EpochRecord == nil {
		t.Fatalf("record not kept: %v", err)
	}

	// After Client.Checkpoint the record is dropped; the log then grows:
	// the next lookup gets a full bundle with a consistency proof.
	if _, err := c.Checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st, err := LoadClientState(p); err != nil || st.EpochRecord == nil {
		t.Fatalf("Checkpoint at the same size dropped the record: %v", err)
	}
	d.now = d.now.Add(time.Minute)
	d.publish(d.addDevice("bob", "bob-tablet"))
	if _, err := c.Checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st, err := LoadClientState(p); err != nil || st.EpochRecord != nil {
		t.Fatalf("Checkpoint kept the old record for a new checkpoint: %v", err)
	}
	src.lookups.Store(0)
	if res, err := c.Lookup(t.Context(), "bob"); err != nil || res.Held || len(res.State.Devices) != 2 {
		t.Fatalf("after Checkpoint: %v", err)
	}
	if src.lookups.Load() != 2 {
		t.Fatalf("after Checkpoint: %d lookups", src.lookups.Load())
	}

	// A state without a record at the served size, and an epoch is
	// published between its two Lookups: the full bundle is larger than
	// the held checkpoint and carries no consistency proof, which the
	// client fetches.
	st, _ = LoadClientState(p)
	st.EpochRecord, st.EpochRecordInclusion = nil, nil
	if err := st.Save(p); err != nil {
		t.Fatal(err)
	}
	src.lookups.Store(0)
	src.consistency.Store(0)
	src.known = nil
	src.after = func() {
		d.now = d.now.Add(time.Minute)
		d.publish(d.addDevice("alice", "alice-desktop"))
	}
	res, err = c.Lookup(t.Context(), "alice")
	if err != nil || res.Held || len(res.State.Devices) != 3 {
		t.Fatalf("epoch between the two lookups: %v", err)
	}
	if src.lookups.Load() != 2 || src.known[1] != 0 || src.consistency.Load() != 1 {
		t.Fatalf("epoch between the two lookups: %d lookups (known %v), %d consistency fetches", src.lookups.Load(), src.known, src.consistency.Load())
	}
	// And the held path again.
	if res, err := c.Lookup(t.Context(), "bob"); err != nil || !res.Held {
		t.Fatalf("held again: %v", err)
	}
}
