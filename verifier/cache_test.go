package verifier

import (
	"crypto/ed25519"
	"crypto/rand"
	"reflect"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/note"

	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier/vrf"
)

// A cached verification never vouches under another trust configuration:
// another log key of the same name, another VRF key, a higher quorum or
// another reset key each empty the cache, and the lookup is verified again.
func TestCacheDoesNotVouchForAnotherKey(t *testing.T) {
	d := world(t)
	b := d.bundle("alice", 0)
	c := NewCache(0)
	if _, err := c.VerifyLookup(d.trust, nil, "alice", b, d.now); err != nil {
		t.Fatal(err)
	}
	if len(c.checkpoints) != 1 || len(c.vrfs) != 1 || len(c.payloads) != 1 {
		t.Fatalf("cache holds %d checkpoints, %d VRF proofs, %d payloads", len(c.checkpoints), len(c.vrfs), len(c.payloads))
	}

	_, vkey, err := klog.GenerateKey(rand.Reader, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	otherLog, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	if otherLog.Name() != d.trust.Log.Name() {
		t.Fatal("the other log key must have the same name")
	}
	otherVRF, err := vrf.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherReset, _, _ := ed25519.GenerateKey(rand.Reader)
	for name, c2 := range map[string]struct {
		mod  func(t *Trust)
		want []error
	}{
		"log key":   {func(t *Trust) { t.Log = otherLog }, []error{ErrCheckpoint, ErrCheckpointSignature}},
		"VRF key":   {func(t *Trust) { t.VRF = otherVRF.Public() }, []error{ErrVRF}},
		"quorum":    {func(t *Trust) { t.Quorum = len(t.Witnesses) + 1 }, []error{ErrCheckpoint, ErrWitnessQuorum}},
		"witnesses": {func(t *Trust) { t.Witnesses = t.Witnesses[:1] }, []error{ErrCheckpoint}},
	} {
		other := *d.trust
		c2.mod(&other)
		_, err := c.VerifyLookup(&other, nil, "alice", b, d.now)
		wantErr(t, err, c2.want...)
		if _, err := VerifyLookup(&other, nil, "alice", b, d.now); err == nil {
			t.Fatalf("%s: accepted without the cache", name)
		}
		// Back under the right trust: verified again, and accepted.
		if _, err := c.VerifyLookup(d.trust, nil, "alice", b, d.now); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// The same Trust value changed in place.
	saved := d.trust.Quorum
	d.trust.Quorum = len(d.trust.Witnesses) + 1
	_, err = c.VerifyLookup(d.trust, nil, "alice", b, d.now)
	wantErr(t, err, ErrWitnessQuorum)
	d.trust.Quorum = saved

	// A cached reset payload does not vouch under another reset key.
	d2 := world(t)
	d2.publish(d2.reset("bob"))
	rb := d2.bundle("bob", 0)
	c = NewCache(0)
	if _, err := c.VerifyLookup(d2.trust, nil, "bob", rb, d2.now); err != nil {
		t.Fatal(err)
	}
	other := *d2.trust
	other.ResetKey = otherReset
	_, err = c.VerifyLookup(&other, nil, "bob", rb, d2.now)
	wantErr(t, err, ErrReset)
}

// A failure is never cached: the same bad input fails again, and the
// cache stays empty.
func TestCacheNoFailures(t *testing.T) {
	d := world(t)
	c := NewCache(0)
	b := d.bundle("alice", 0)
	b.VRFProof = flip(b.VRFProof)
	b.Checkpoint = flip(b.Checkpoint)
	for range 2 {
		_, err := c.VerifyLookup(d.trust, nil, "alice", b, d.now)
		wantErr(t, err, ErrCheckpoint)
	}
	b = d.bundle("alice", 0)
	b.VRFProof = flip(b.VRFProof)
	for range 2 {
		_, err := c.VerifyLookup(d.trust, nil, "alice", b, d.now)
		wantErr(t, err, ErrVRF)
	}
	if len(c.vrfs) != 0 || len(c.payloads) != 0 {
		t.Fatalf("failures cached: %d VRF proofs, %d payloads", len(c.vrfs), len(c.payloads))
	}
}

// The tables are bounded, and the cache is safe for concurrent use.
func TestCacheBoundedConcurrent(t *testing.T) {
	d := world(t)
	for _, u := range []string{"carol", "dave", "erin"} {
		d.publish(d.create(u))
	}
	users := []string{"alice", "bob", "carol", "dave", "erin", "frank"}
	bundles := map[string]*LookupBundle{}
	for _, u := range users {
		bundles[u] = d.bundle(u, 0)
	}
	c := NewCache(2)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				for _, u := range users {
					if _, err := c.VerifyLookup(d.trust, nil, u, bundles[u], d.now); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	if len(c.checkpoints) > 2 || len(c.vrfs) != 2 || len(c.payloads) != 2 {
		t.Fatalf("cache sizes %d %d %d, bound 2", len(c.checkpoints), len(c.vrfs), len(c.payloads))
	}
}

// openLogCheckpoint answers from the cache only for a note opened under the
// same trust, with klog.OpenCheckpoint's result; otherwise it verifies the
// note (and another log key of the same name rejects it).
func TestCacheOpenLogCheckpoint(t *testing.T) {
	d := world(t)
	logKey := &countingVerifier{Verifier: d.trust.Log}
	d.trust.Log = logKey
	c := NewCache(0)
	want, _, err := klog.OpenCheckpoint(d.cp, d.trust.Log, d.trust.Origin)
	if err != nil {
		t.Fatal(err)
	}
	logKey.n.Store(0)
	if got, err := c.openLogCheckpoint(d.trust, d.cp); err != nil || !reflect.DeepEqual(got, want) || logKey.n.Load() != 1 {
		t.Fatalf("not cached: %+v, %v, %d log signatures verified (want 1)", got, err, logKey.n.Load())
	}
	if _, err := c.openCheckpoint(d.trust, d.cp); err != nil {
		t.Fatal(err)
	}
	logKey.n.Store(0)
	if got, err := c.openLogCheckpoint(d.trust, d.cp); err != nil || !reflect.DeepEqual(got, want) || logKey.n.Load() != 0 {
		t.Fatalf("cached: %+v, %v, %d log signatures verified (want 0)", got, err, logKey.n.Load())
	}
	if _, err := (*Cache)(nil).openLogCheckpoint(d.trust, d.cp); err != nil {
		t.Fatalf("nil cache: %v", err)
	}

	_, vkey, err := klog.GenerateKey(rand.Reader, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	otherLog, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	other := *d.trust
	other.Log = otherLog
	if _, err := c.openLogCheckpoint(&other, d.cp); err == nil {
		t.Fatal("a note cached under one log key opened under another")
	}
}
