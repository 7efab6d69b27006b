package devices

import (
	"crypto/ed25519"
	"testing"
	"time"
)

func TestVerifyResetSignature(t *testing.T) {
	c := newChain(t)
	_, _, ra := newReset(t, c.v3, "alice new", t0.Add(10*time.Hour))
	rkPub := testResetKey().Public().(ed25519.PublicKey)
	if err := VerifyResetSignature(ra, rkPub); err != nil {
		t.Fatal(err)
	}
	// Another reset key.
	otherPub, _, _ := ed25519.GenerateKey(nil)
	wantErr(t, VerifyResetSignature(ra, otherPub), ErrReset, "does not verify")
	wantErr(t, VerifyReset(c.v3, ra, otherPub, testWindow), ErrReset, "does not verify")
	// A wrong-size key.
	wantErr(t, VerifyResetSignature(ra, rkPub[:31]), ErrReset, "31 bytes")
	// Any change to the signed body breaks the signature.
	tampered := *ra
	tampered.Reason = ResetCompromised
	wantErr(t, VerifyResetSignature(&tampered, rkPub), ErrReset, "does not verify")
	tampered = *ra
	tampered.Version++
	wantErr(t, VerifyResetSignature(&tampered, rkPub), ErrReset, "does not verify")
	// A flipped signature bit.
	tampered = *ra
	tampered.Signature[0] ^= 1
	wantErr(t, VerifyResetSignature(&tampered, rkPub), ErrReset, "does not verify")
	// An authorization that does not encode.
	tampered = *ra
	tampered.NewState = nil
	wantErr(t, VerifyResetSignature(&tampered, rkPub), ErrMalformed, "no new state")
	wantErr(t, VerifyResetSignature(nil, rkPub), ErrMalformed, "")
}
