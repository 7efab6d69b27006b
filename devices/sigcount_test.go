package devices

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"testing"

	"filippo.io/edwards25519"
)

// edgeSignature returns a signature that crypto/ed25519 accepts for pub
// (any encoding of A = a*B + T, T a point of small order) over a message
// it picks: R = r*B + T2 and S = r + k*a, which verifies when
// [k](-T) = T2, i.e. for about one message in eight.
func edgeSignature(t *testing.T, rng *mrand.Rand, pub []byte, a *edwards25519.Scalar, t2 *edwards25519.Point) (msg, sig []byte) {
	t.Helper()
	var rb [64]byte
	for range 512 {
		msg = fmt.Appendf(nil, "edge %d", rng.Uint64())
		for i := range rb {
			rb[i] = byte(rng.Uint32())
		}
		r, _ := new(edwards25519.Scalar).SetUniformBytes(rb[:])
		R := new(edwards25519.Point).ScalarBaseMult(r)
		R.Add(R, t2)
		k := edChallenge(R.Bytes(), pub, msg)
		S := new(edwards25519.Scalar).MultiplyAdd(k, a, r)
		sig = append(R.Bytes(), S.Bytes()...)
		if ed25519.Verify(pub, msg, sig) {
			return msg, sig
		}
	}
	t.Fatalf("no edge-case signature for %x", pub)
	return nil, nil
}

// TestSigGroupMatchesEd25519 is the differential test of sigGroup.verify
// against crypto/ed25519.Verify: valid signatures, the same altered (a
// flipped bit of R, S, the message or the key; S + q; the top bits of S),
// and the edge cases on which Ed25519 verifiers disagree and
// crypto/ed25519 accepts: public keys and R with a small-order component,
// small-order and non-canonical public key encodings; R encoded
// non-canonically on a signature whose equation holds (edNonCanonicalR),
// a bit flipped in every byte of a signature, key and message
// (edByteFlips), and the "Taming the many EdDSAs" vectors
// (edSpeccheckCases). Each check alone, and groups of several (sharing
// keys) must give what crypto/ed25519 gives for each (a group: all of
// them).
func TestSigGroupMatchesEd25519(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(3, 4))
	checks := ed25519TestChecks(t, rng)
	accepted := 0
	for _, c := range checks {
		want := ed25519.Verify(c.pub, c.msg, c.sig)
		g := &sigGroup{checks: []sigCheck{c}}
		if got := g.verify(); got != want {
			t.Fatalf("pub %x msg %x sig %x: sigGroup %v, crypto/ed25519 %v", c.pub, c.msg, c.sig, got, want)
		}
		if want {
			accepted++
		}
	}
	// Groups of up to 12 checks (more than the stack buffers), keys shared.
	for range 400 {
		n := 1 + rng.IntN(12)
		g := &sigGroup{}
		want := true
		for range n {
			c := checks[rng.IntN(len(checks))]
			if rng.IntN(3) > 0 && !ed25519.Verify(c.pub, c.msg, c.sig) {
				continue // mostly valid groups
			}
			g.checks = append(g.checks, c)
			want = want && ed25519.Verify(c.pub, c.msg, c.sig)
		}
		if got := g.verify(); got != want {
			t.Fatalf("group of %d: sigGroup %v, crypto/ed25519 %v", len(g.checks), got, want)
		}
	}
	t.Logf("%d checks (%d accepted by crypto/ed25519) and 400 groups agree", len(checks), accepted)
}

// ed25519TestChecks returns the signature checks of the differential
// tests against crypto/ed25519 (TestSigGroupMatchesEd25519,
// TestVerifyEd25519MatchesEd25519): valid signatures and the same
// altered, small-order and mixed-order keys and R, non-canonical key and
// R encodings (see the test's doc comment and edNonCanonicalR).
func ed25519TestChecks(t *testing.T, rng *mrand.Rand) []sigCheck {
	t.Helper()
	var checks []sigCheck
	add := func(pub, msg, sig []byte) { checks = append(checks, sigCheck{pub: pub, msg: msg, sig: sig}) }
	// Valid signatures, some keys signing several messages, and alterations.
	q := []byte{0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10}
	for range 6 {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		for range 3 {
			msg := make([]byte, rng.IntN(300))
			rand.Read(msg)
			sig := ed25519.Sign(priv, msg)
			add(pub, msg, sig)
			for _, part := range []string{"sig", "msg", "pub"} {
				s, m, p := bytes.Clone(sig), bytes.Clone(msg), bytes.Clone([]byte(pub))
				switch part {
				case "sig":
					bit := rng.IntN(512)
					s[bit/8] ^= 1 << (bit % 8)
				case "msg":
					m = append(m, 1)
				case "pub":
					bit := rng.IntN(256)
					p[bit/8] ^= 1 << (bit % 8)
				}
				add(p, m, s)
			}
			s := bytes.Clone(sig) // S + q: the same S mod q, not canonical
			var carry uint16
			for i := range 32 {
				sum := uint16(s[32+i]) + uint16(q[i]) + carry
				s[32+i], carry = byte(sum), sum>>8
			}
			add(pub, msg, s)
			s = bytes.Clone(sig)
			s[63] |= 0x20 << rng.IntN(3)
			add(pub, msg, s)
		}
	}
	// Small-order points: the identity and the multiples of a point of order 8.
	order8, _ := new(edwards25519.Point).SetBytes([]byte{0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f,
		0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a})
	var torsion []*edwards25519.Point
	for i, p := 0, edwards25519.NewIdentityPoint(); i < 8; i++ {
		torsion = append(torsion, p)
		p = new(edwards25519.Point).Add(p, order8)
	}
	zero := edwards25519.NewScalar()
	var encodings [][]byte // of small-order public keys, canonical or not
	for _, T := range torsion {
		encodings = append(encodings, T.Bytes())
	}
	for y := range 19 { // y = p + y: non-canonical encodings of y
		for _, sign := range []byte{0, 0x80} {
			b := bytes.Repeat([]byte{0xff}, 32)
			b[0], b[31] = byte(0xed+y), 0x7f|sign
			if y >= 0x13 {
				continue
			}
			if _, err := new(edwards25519.Point).SetBytes(b); err == nil {
				encodings = append(encodings, b)
			}
		}
		b := make([]byte, 32) // y small, sign bit set: "negative zero" for y = 1
		b[0], b[31] = byte(y), 0x80
		if _, err := new(edwards25519.Point).SetBytes(b); err == nil {
			encodings = append(encodings, b)
		}
	}
	multiple := func(T *edwards25519.Point, m int) *edwards25519.Point { // [m]T
		p := edwards25519.NewIdentityPoint()
		for range m {
			p = new(edwards25519.Point).Add(p, T)
		}
		return p
	}
	for _, enc := range encodings {
		A, _ := new(edwards25519.Point).SetBytes(enc)
		if new(edwards25519.Point).MultByCofactor(A).Equal(edwards25519.NewIdentityPoint()) != 1 {
			sig := make([]byte, 64) // a key of unknown discrete log: a random signature
			rand.Read(sig[:32])
			add(enc, []byte("m"), sig)
			continue
		}
		for _, m := range []int{0, 1 + rng.IntN(7)} { // R = [m]A is [k](-A) for some k
			msg, sig := edgeSignature(t, rng, enc, zero, multiple(A, m))
			add(enc, msg, sig)
		}
	}
	// Mixed-order keys A = a*B + T with R = r*B + T2.
	for range 8 {
		var ab [64]byte
		rand.Read(ab[:])
		a, _ := new(edwards25519.Scalar).SetUniformBytes(ab[:])
		A := new(edwards25519.Point).ScalarBaseMult(a)
		T := torsion[1+rng.IntN(7)]
		A.Add(A, T)
		msg, sig := edgeSignature(t, rng, A.Bytes(), a, multiple(T, rng.IntN(8)))
		add(A.Bytes(), msg, sig)
		s := bytes.Clone(sig) // R with another small-order component
		R, _ := new(edwards25519.Point).SetBytes(s[:32])
		copy(s, R.Add(R, order8).Bytes())
		add(A.Bytes(), msg, s)
	}
	checks = append(checks, edNonCanonicalR(t, rng, torsion)...)
	checks = append(checks, edByteFlips(rng)...)
	checks = append(checks, edSpeccheckCases(t)...)
	return checks
}

// TestSignatureMemo checks that a memo seeded with a verified state skips
// exactly the signatures that state carries, byte for byte, and still
// rejects whatever it does not hold, with the package functions' errors.
func TestSignatureMemo(t *testing.T) {
	c := newChain(t)
	if err := VerifyAccountState(c.v2); err != nil {
		t.Fatal(err)
	}
	count := func(f func() error) (int, error) {
		n := SignaturesVerified()
		err := f()
		return int(SignaturesVerified() - n), err
	}
	// v1 carries v2's signing key cert and phone cert: only its own
	// signature is verified.
	m := NewSignatureMemo(c.v2)
	if n, err := count(func() error { return m.VerifyCreate(c.v1) }); err != nil || n != 1 {
		t.Fatalf("VerifyCreate(v1) with v2's memo: %d signatures, %v; want 1, nil", n, err)
	}
	// Now v1's signature is held too: nothing left to verify.
	if n, err := count(func() error { return m.VerifyAccountState(c.v1) }); err != nil || n != 0 {
		t.Fatalf("VerifyAccountState(v1) again: %d signatures, %v; want 0, nil", n, err)
	}
	if n, err := count(func() error { return m.VerifyTransitionFrom(c.v1, c.v2) }); err != nil || n != 0 {
		t.Fatalf("VerifyTransitionFrom(v1, v2): %d signatures, %v; want 0, nil", n, err)
	}
	// Altered signatures are not held: the memo gives the plain errors.
	for name, alter := range map[string]func(s *AccountState){
		"state signature": func(s *AccountState) { s.Signature[5] ^= 1 },
		"cert signature":  func(s *AccountState) { s.SigningKey.Signature[5] ^= 1 },
		"device cert":     func(s *AccountState) { s.Devices[0].Signature[5] ^= 1 },
		"back-signature":  func(s *AccountState) { s.Devices[0].BackSignature[5] ^= 1 },
	} {
		bad := clone(t, c.v1)
		alter(bad)
		want := VerifyCreate(bad)
		if want == nil {
			t.Fatalf("%s: altered v1 verifies", name)
		}
		for _, memo := range []*SignatureMemo{NewSignatureMemo(c.v2), m, nil} {
			if err := memo.VerifyCreate(bad); err == nil || err.Error() != want.Error() {
				t.Fatalf("%s: memo VerifyCreate = %v, want %v", name, err, want)
			}
		}
	}
	// A nil memo is the package functions.
	var none *SignatureMemo
	if n, err := count(func() error { return none.VerifyCreate(c.v1) }); err != nil || n != 4 {
		t.Fatalf("nil memo: %d signatures, %v; want 4, nil", n, err)
	}
}

// TestSignatureMemoCopies: a memo keeps its own copies of the verified
// bytes, so a state changed in place after it was verified (its
// signatures altered in the very arrays the memo saw) is verified again
// and refused, not found in the memo.
func TestSignatureMemoCopies(t *testing.T) {
	for _, rule := range []checkRule{fullRule, lookupRule} {
		c := newChain(t)
		s := clone(t, c.v1)
		if err := VerifyCreate(s); err != nil {
			t.Fatal(err)
		}
		m := newMemo(rule, []*AccountState{s})
		if err := m.VerifyCreate(s); err != nil {
			t.Fatalf("rule %d: memo refuses the state it holds: %v", rule, err)
		}
		s.Signature[5] ^= 1
		s.SigningKey.Signature[7] ^= 1
		if err := m.VerifyCreate(s); err == nil {
			t.Fatalf("rule %d: a state altered in place after the memo was made verifies", rule)
		}
		// And a memo that learnt the state by verifying it.
		s2 := clone(t, c.v1)
		m2 := newMemo(rule, nil)
		if err := m2.VerifyCreate(s2); err != nil {
			t.Fatal(err)
		}
		s2.Signature[5] ^= 1
		if err := m2.VerifyCreate(s2); err == nil {
			t.Fatalf("rule %d: a state altered in place after the memo verified it verifies", rule)
		}
	}
}
