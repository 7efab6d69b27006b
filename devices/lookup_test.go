package devices

import (
	"testing"
)

// countSigs returns how many Ed25519 signatures f verified, and f's error.
func countSigs(f func() error) (int, error) {
	n := SignaturesVerified()
	err := f()
	return int(SignaturesVerified() - n), err
}

// withBadCertSig returns a copy of s whose i'th DeviceCert's ASK
// signature is corrupted and whose own signature is made again by ask, so
// that only that cert signature is wrong.
func withBadCertSig(t *testing.T, s *AccountState, ask *AccountSigningKey, i int) *AccountState {
	t.Helper()
	bad := clone(t, s)
	bad.Devices[i].Signature[7] ^= 0x10
	if err := bad.Sign(ask); err != nil {
		t.Fatal(err)
	}
	return bad
}

// TestLookupRuleSkipsCoveredCertSignature: a state whose DeviceCert's ASK
// signature is corrupted but whose own signature (by the same ASK, over
// the corrupted cert bytes) is valid passes the lookup rule and fails
// every full check with ErrDeviceCert.
func TestLookupRuleSkipsCoveredCertSignature(t *testing.T) {
	c := newChain(t)
	rk, askPub := c.rk.Public(), c.ask.Public()
	for i := range c.v2.Devices {
		bad := withBadCertSig(t, c.v2, c.ask, i)
		if n, err := countSigs(func() error { return VerifyAccountStateForLookup(bad) }); err != nil || n != 4 {
			t.Fatalf("cert %d: VerifyAccountStateForLookup: %d signatures, %v; want 4, nil", i, n, err)
		}
		if err := NewLookupMemo().VerifyAccountState(bad); err != nil {
			t.Fatalf("cert %d: lookup memo VerifyAccountState: %v", i, err)
		}
		if err := NewLookupMemo().VerifyTransitionFrom(c.v1, bad); err != nil {
			t.Fatalf("cert %d: lookup memo VerifyTransitionFrom: %v", i, err)
		}
		const msg = "account signing key signature does not verify"
		wantErr(t, VerifyAccountState(bad), ErrDeviceCert, msg)
		wantErr(t, NewSignatureMemo().VerifyAccountState(bad), ErrDeviceCert, msg)
		wantErr(t, VerifyTransition(c.v1, bad), ErrDeviceCert, msg)
		wantErr(t, VerifyTransitionFrom(c.v1, bad), ErrDeviceCert, msg)
		wantErr(t, NewSignatureMemo(c.v1).VerifyTransitionFrom(c.v1, bad), ErrDeviceCert, msg)
		wantErr(t, VerifyDeviceCert(rk, askPub, bad.Devices[i]), ErrDeviceCert, msg) // a cert alone
	}
	bad1 := withBadCertSig(t, c.v1, c.ask, 0)
	wantErr(t, VerifyCreate(bad1), ErrDeviceCert, "account signing key signature")
	if err := NewLookupMemo().VerifyCreate(bad1); err != nil {
		t.Fatalf("lookup memo VerifyCreate: %v", err)
	}
}

// TestLookupRuleRejects: every signature the lookup rule checks is still
// checked: a corrupted back-signature, SigningKeyCert signature or state
// signature, and a corrupted cert signature under a state signature that
// does not verify, fail it with VerifyAccountState's (for a transition,
// VerifyTransition's) error.
func TestLookupRuleRejects(t *testing.T) {
	c := newChain(t)
	for name, alter := range map[string]func(s *AccountState){
		"back-signature":         func(s *AccountState) { s.Devices[1].BackSignature[3] ^= 1; resign(s, askPriv(c.ask)) },
		"signing key cert":       func(s *AccountState) { s.SigningKey.Signature[3] ^= 1; resign(s, askPriv(c.ask)) },
		"state signature":        func(s *AccountState) { s.Signature[3] ^= 1 },
		"cert and state":         func(s *AccountState) { s.Devices[0].Signature[3] ^= 1 },
		"state by the root key":  func(s *AccountState) { s.Devices[0].Signature[3] ^= 1; resign(s, rkPriv(c.rk)) },
		"device id and back-sig": func(s *AccountState) { s.Devices[0].ID[0] ^= 1; resign(s, askPriv(c.ask)) },
	} {
		bad := clone(t, c.v2)
		alter(bad)
		want, wantT := VerifyAccountState(bad), VerifyTransition(c.v1, bad)
		if want == nil || wantT == nil {
			t.Fatalf("%s: the altered state verifies", name)
		}
		for i, got := range []struct{ err, want error }{
			{VerifyAccountStateForLookup(bad), want},
			{NewLookupMemo(c.v2).VerifyAccountState(bad), want},
			{NewLookupMemo(c.v1).VerifyTransitionFrom(c.v1, bad), wantT},
		} {
			if got.err == nil || got.err.Error() != got.want.Error() {
				t.Fatalf("%s: lookup rule check %d: %v, want %v", name, i, got.err, got.want)
			}
		}
	}
}

// TestLookupRuleCounts: the lookup rule verifies 2 + n signatures per
// state of n devices, the full rule 2 + 2n; a lookup memo seeded with
// v2 verifies only v1's own signature for v1.
func TestLookupRuleCounts(t *testing.T) {
	c := newChain(t)
	five := benchAccount(t, c.rk, c.ask, 5)
	for _, s := range []*AccountState{c.v1, c.v2, c.v3, five} {
		nd := len(s.Devices)
		if n, err := countSigs(func() error { return VerifyAccountStateForLookup(s) }); err != nil || n != 2+nd {
			t.Errorf("v%d, %d devices: lookup rule %d signatures, %v; want %d", s.Version, nd, n, err, 2+nd)
		}
		if n, err := countSigs(func() error { return VerifyAccountState(s) }); err != nil || n != 2+2*nd {
			t.Errorf("v%d, %d devices: full rule %d signatures, %v; want %d", s.Version, nd, n, err, 2+2*nd)
		}
	}
	m := NewLookupMemo(c.v2)
	if n, err := countSigs(func() error { return m.VerifyCreate(c.v1) }); err != nil || n != 1 {
		t.Errorf("lookup memo of v2, VerifyCreate(v1): %d signatures, %v; want 1", n, err)
	}
	if n, err := countSigs(func() error { return m.VerifyTransitionFrom(c.v2, c.v3) }); err != nil || n != 1 {
		t.Errorf("lookup memo, VerifyTransitionFrom(v2, v3): %d signatures, %v; want 1 (v3's own)", n, err)
	}
}

// TestLookupMemoHoldsOnlyVerified: a lookup memo never holds a cert
// signature the lookup rule skipped, so a full check sharing what it holds
// still verifies (and refuses) that signature.
func TestLookupMemoHoldsOnlyVerified(t *testing.T) {
	c := newChain(t)
	bad := withBadCertSig(t, c.v2, c.ask, 0)
	m := NewLookupMemo(c.v1)
	if err := m.VerifyAccountState(bad); err != nil {
		t.Fatal(err)
	}
	if err := m.VerifyAccountState(c.v2); err != nil {
		t.Fatal(err)
	}
	for _, memo := range []*SignatureMemo{m, NewLookupMemo(c.v2, bad)} {
		for _, s := range []*AccountState{c.v1, c.v2, bad} {
			for _, d := range s.Devices {
				body, err := d.body()
				if err != nil {
					t.Fatal(err)
				}
				askPub := s.SigningKey.Key
				if memo.holds(askPub[:], signedMessage(ctxDeviceCert, body), d.Signature[:]) {
					t.Fatalf("lookup memo holds the ASK signature of device %s of v%d, which it never verified", d.ID, s.Version)
				}
			}
		}
	}
	// A full check with everything the lookup memo holds verifies exactly
	// the two cert signatures and refuses the bad one.
	full := &SignatureMemo{known: m.known}
	if n, err := countSigs(func() error { return full.VerifyAccountState(c.v2) }); err != nil || n != 2 {
		t.Fatalf("full check of v2 after the lookup memo: %d signatures, %v; want 2, nil", n, err)
	}
	full = &SignatureMemo{known: m.known}
	wantErr(t, full.VerifyAccountState(bad), ErrDeviceCert, "account signing key signature")
}
