package devices

import (
	"crypto/ed25519"
	mrand "math/rand/v2"
	"sync"
	"testing"
)

// TestEd25519VerifierMatchesEd25519: a verifier made once per key gives
// crypto/ed25519.Verify's result on every check of ed25519TestChecks
// (valid, altered, small-order, mixed-order, non-canonical keys and R,
// speccheck), used from several goroutines at once; and refuses a key of
// the wrong length.
func TestEd25519VerifierMatchesEd25519(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(21, 22))
	checks := ed25519TestChecks(t, rng)
	verifiers := map[string]*Ed25519Verifier{}
	valid := 0
	for _, c := range checks {
		if len(c.pub) != ed25519.PublicKeySize {
			continue
		}
		if verifiers[string(c.pub)] == nil {
			v, err := NewEd25519Verifier(c.pub)
			if err != nil {
				t.Fatal(err)
			}
			verifiers[string(c.pub)] = v
		}
		if ed25519.Verify(c.pub, c.msg, c.sig) {
			valid++
		}
	}
	if valid == 0 || len(verifiers) < 2 {
		t.Fatalf("%d valid checks by %d keys: the test set is too small", valid, len(verifiers))
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for _, c := range checks {
				v := verifiers[string(c.pub)]
				if v == nil {
					continue
				}
				if got, want := v.Verify(c.msg, c.sig), ed25519.Verify(c.pub, c.msg, c.sig); got != want {
					t.Errorf("pub %x msg %x sig %x: Ed25519Verifier %v, crypto/ed25519 %v", c.pub, c.msg, c.sig, got, want)
					return
				}
			}
		})
	}
	wg.Wait()
	// A valid signature takes the fast path (no silent fallback).
	pub, priv, _ := ed25519.GenerateKey(nil)
	v, err := NewEd25519Verifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	fast := edFastAccepted.Load()
	if !v.Verify([]byte("checkpoint"), ed25519.Sign(priv, []byte("checkpoint"))) || edFastAccepted.Load() != fast+1 {
		t.Fatal("a valid signature did not take the fast path")
	}
	if _, err := NewEd25519Verifier(make([]byte, 31)); err == nil {
		t.Fatal("31-byte key accepted")
	}
}
