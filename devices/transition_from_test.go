package devices

import (
	"testing"
	"time"
)

// TestVerifyTransitionFrom checks that VerifyTransitionFrom agrees with
// VerifyTransition for a verified prev, and re-verifies every cert that is
// new or differs from prev's.
func TestVerifyTransitionFrom(t *testing.T) {
	c := newChain(t)
	for _, tr := range [][2]*AccountState{{c.v1, c.v2}, {c.v2, c.v3}} {
		if err := VerifyTransitionFrom(tr[0], tr[1]); err != nil {
			t.Fatalf("v%d -> v%d: %v", tr[0].Version, tr[1].Version, err)
		}
	}
	mallory := testRK("mallory")
	malloryASK := testASK(t, mallory, "alice@example.org", 1, "mallory")
	cases := []struct {
		name   string
		mutate func(s *AccountState)
		target error
	}{
		{"state signature corrupted", func(s *AccountState) { s.Signature[0] ^= 1 }, ErrSigner},
		{"kept cert's IK signature changed", func(s *AccountState) {
			cert := *s.Devices[0]
			cert.Signature[0] ^= 1
			s.Devices[0] = &cert
			resign(s, askPriv(c.ask))
		}, ErrDeviceCert},
		{"kept cert's back-signature changed", func(s *AccountState) {
			cert := *s.Devices[0]
			cert.BackSignature[3] ^= 1
			s.Devices[0] = &cert
			resign(s, askPriv(c.ask))
		}, ErrDeviceCert},
		{"kept cert renamed (re-signed by another IK)", func(s *AccountState) {
			cert := *s.Devices[0]
			cert.Name = "renamed"
			body, _ := cert.body()
			cert.Signature = malloryASK.sign(signedMessage(ctxDeviceCert, body))
			s.Devices[0] = &cert
			resign(s, askPriv(c.ask))
		}, ErrDeviceCert},
		{"version skip", func(s *AccountState) { s.Version = 5; resign(s, askPriv(c.ask)) }, ErrVersion},
		{"new generation without re-signed certs", func(s *AccountState) {
			g2 := testASK(t, c.rk, "alice@example.org", 2, "alice 2")
			s.SigningKey = g2.Cert
			resign(s, askPriv(g2))
		}, ErrDeviceCert},
		{"IK replaced", func(s *AccountState) { s.IdentityKey = mallory.Public(); resign(s, askPriv(c.ask)) }, ErrIdentityChanged},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			next := clone(t, c.v2)
			tc.mutate(next)
			wantErr(t, VerifyTransition(c.v1, next), tc.target, "")
			wantErr(t, VerifyTransitionFrom(c.v1, next), tc.target, "")
		})
	}

	// A new cert with a bad back-signature is verified (and rejected).
	tablet := mustCert(t, c.tablet, "tablet", c.rk.Public(), t0)
	if err := c.ask.IssueCert(c.rk.Public(), tablet); err != nil {
		t.Fatal(err)
	}
	tablet.BackSignature[0] ^= 1
	next := clone(t, c.v2)
	next.Version, next.PrevHash, next.Timestamp = 3, mustHash(t, c.v2), c.v2.Timestamp.Add(time.Minute)
	next.Devices = append(next.Devices, tablet)
	sortDevices(next)
	resign(next, askPriv(c.ask))
	wantErr(t, VerifyTransitionFrom(c.v2, next), ErrDeviceCert, "back-signature")

	// The precondition: with an unverified prev whose cert is forged,
	// VerifyTransition rejects the next state but VerifyTransitionFrom
	// trusts the kept cert. The directory only passes states it accepted.
	forged := clone(t, c.v1)
	forged.Devices[0].Signature[0] ^= 1
	resign(forged, askPriv(c.ask))
	succ := clone(t, c.v2)
	succ.PrevHash = mustHash(t, forged)
	succ.Devices = []*DeviceCert{forged.Devices[0], succ.Device(c.laptop.ID())}
	sortDevices(succ)
	resign(succ, askPriv(c.ask))
	wantErr(t, VerifyTransition(forged, succ), ErrDeviceCert, "")
	if err := VerifyTransitionFrom(forged, succ); err != nil {
		t.Fatalf("VerifyTransitionFrom re-verified a kept cert: %v", err)
	}
}

func mustHash(t testing.TB, s *AccountState) [32]byte {
	t.Helper()
	h, err := s.Hash()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func BenchmarkVerifyTransitionFrom(b *testing.B) {
	c := newChain(b)
	b.Run("VerifyTransition", func(b *testing.B) {
		for b.Loop() {
			if err := VerifyTransition(c.v1, c.v2); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("VerifyTransitionFrom", func(b *testing.B) {
		for b.Loop() {
			if err := VerifyTransitionFrom(c.v1, c.v2); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestVerifyTransitionOfVerified checks that VerifyTransitionOfVerified
// gives VerifyTransition's result for every next that VerifyAccountState
// accepts: valid transitions pass, and a self-consistent next that breaks a
// rule between the two states is rejected with the same error.
func TestVerifyTransitionOfVerified(t *testing.T) {
	c := newChain(t)
	for _, tr := range [][2]*AccountState{{c.v1, c.v2}, {c.v2, c.v3}} {
		if err := VerifyTransitionOfVerified(tr[0], tr[1]); err != nil {
			t.Fatalf("v%d -> v%d: %v", tr[0].Version, tr[1].Version, err)
		}
	}
	cases := []struct {
		name      string
		prev      *AccountState
		base      *AccountState
		mutate    func(s *AccountState)
		target    error
		substring string
	}{
		{"version skip", c.v1, c.v2, func(s *AccountState) { s.Version = 5 }, ErrVersion, ""},
		{"previous hash", c.v1, c.v2, func(s *AccountState) { s.PrevHash[0] ^= 1 }, ErrPrevHash, ""},
		{"timestamp before prev", c.v1, c.v2, func(s *AccountState) { s.Timestamp = c.v1.Timestamp.Add(-time.Second) }, ErrTimestamp, ""},
		{"revocation dropped", c.v3, c.v3, func(s *AccountState) {
			s.Version, s.PrevHash, s.Revocations = 4, mustHash(t, c.v3), nil
		}, ErrRevocation, "dropped"},
		{"revoked device listed again", c.v3, c.v3, func(s *AccountState) {
			s.Version, s.PrevHash, s.Revocations = 4, mustHash(t, c.v3), nil
			s.Devices = append(s.Devices, c.v2.Device(c.phone.ID()))
			sortDevices(s)
		}, ErrRevokedDevice, "listed again"},
		{"next generation, certs re-signed (valid)", c.v1, c.v2, func(s *AccountState) {
			g2 := testASK(t, c.rk, "alice@example.org", 2, "alice 2")
			s.SigningKey = g2.Cert
			for i, d := range s.Devices {
				cc := *d
				if err := g2.IssueCert(c.rk.Public(), &cc); err != nil {
					t.Fatal(err)
				}
				s.Devices[i] = &cc
			}
			s.Trusted = nil
			resign(s, askPriv(g2))
		}, nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			next := clone(t, tc.base)
			tc.mutate(next)
			if tc.target != nil {
				resign(next, askPriv(c.ask))
			}
			if err := VerifyAccountState(next); err != nil {
				t.Fatalf("the mutated state is not self-consistent: %v", err)
			}
			want := VerifyTransition(tc.prev, next)
			got := VerifyTransitionOfVerified(tc.prev, next)
			if tc.target == nil {
				if want != nil || got != nil {
					t.Fatalf("VerifyTransition: %v, VerifyTransitionOfVerified: %v", want, got)
				}
				return
			}
			wantErr(t, want, tc.target, tc.substring)
			wantErr(t, got, tc.target, tc.substring)
			if got.Error() != want.Error() {
				t.Fatalf("VerifyTransitionOfVerified: %v, VerifyTransition: %v", got, want)
			}
		})
	}
}

// TestVerifyTransitionFromSignatures counts what VerifyTransitionFrom
// verifies when next keeps prev's signing key cert: next's signature and
// the new certs' two signatures each, nothing prev already carried.
func TestVerifyTransitionFromSignatures(t *testing.T) {
	c := newChain(t)
	for _, tc := range []struct {
		prev, next *AccountState
		want       uint64
	}{
		{c.v1, c.v2, 3}, // state + the laptop's cert (2)
		{c.v2, c.v3, 1}, // state (a revocation)
	} {
		n := SignaturesVerified()
		if err := VerifyTransitionFrom(tc.prev, tc.next); err != nil {
			t.Fatal(err)
		}
		if got := SignaturesVerified() - n; got != tc.want {
			t.Errorf("v%d -> v%d: %d signatures verified, want %d", tc.prev.Version, tc.next.Version, got, tc.want)
		}
	}
}
