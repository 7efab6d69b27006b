package vrf

import (
	"bytes"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"testing"

	"filippo.io/edwards25519"
)

// referenceVerify is RFC 9381 section 5.3 (validate_key = TRUE, the key
// already validated) written as plainly as the edwards25519 API allows,
// sharing no code with Verify: constant-time single scalar
// multiplications, Point.Bytes for every encoding, canonicity checked by
// re-encoding. It returns beta, or nil if the proof does not verify.
func referenceVerify(pk *PublicKey, alpha, pi []byte) []byte {
	if len(pi) != ProofSize {
		return nil
	}
	gamma, err := new(edwards25519.Point).SetBytes(pi[:32])
	if err != nil || !bytes.Equal(gamma.Bytes(), pi[:32]) {
		return nil
	}
	var cb [32]byte
	copy(cb[:], pi[32:48])
	c, err := new(edwards25519.Scalar).SetCanonicalBytes(cb[:])
	if err != nil {
		panic(err)
	}
	s, err := new(edwards25519.Scalar).SetCanonicalBytes(pi[48:])
	if err != nil {
		return nil
	}
	Y, err := new(edwards25519.Point).SetBytes(pk.Bytes())
	if err != nil {
		panic(err)
	}
	var H *edwards25519.Point
	for ctr := 0; ctr < 256 && H == nil; ctr++ {
		h := sha512.New()
		h.Write([]byte{suiteString, 0x01})
		h.Write(pk.Bytes())
		h.Write(alpha)
		h.Write([]byte{byte(ctr), 0x00})
		sum := h.Sum(nil)[:32]
		if p, err := new(edwards25519.Point).SetBytes(sum); err == nil && bytes.Equal(p.Bytes(), sum) {
			H = new(edwards25519.Point).MultByCofactor(p)
		}
	}
	if H == nil {
		return nil
	}
	U := new(edwards25519.Point).ScalarBaseMult(s)
	U.Subtract(U, new(edwards25519.Point).ScalarMult(c, Y))
	V := new(edwards25519.Point).ScalarMult(s, H)
	V.Subtract(V, new(edwards25519.Point).ScalarMult(c, gamma))
	h := sha512.New()
	h.Write([]byte{suiteString, 0x02})
	for _, p := range []*edwards25519.Point{Y, H, gamma, U, V} {
		h.Write(p.Bytes())
	}
	h.Write([]byte{0x00})
	if !bytes.Equal(h.Sum(nil)[:cLen], pi[32:48]) {
		return nil
	}
	h = sha512.New()
	h.Write([]byte{suiteString, 0x03})
	h.Write(new(edwards25519.Point).MultByCofactor(gamma).Bytes())
	h.Write([]byte{0x00})
	return h.Sum(nil)
}

// checkAgainstReference verifies (alpha, pi) under pk without the key
// table, with it, and through Verify, and fails t unless all three give
// referenceVerify's result: the same beta, or an error matching
// ErrMalformedProof or ErrInvalidProof. It returns whether pi verified.
func checkAgainstReference(t *testing.T, pk *PublicKey, table *keyTable, alpha, pi []byte) bool {
	t.Helper()
	want := referenceVerify(pk, alpha, pi)
	plain, errPlain := pk.verifyWith(alpha, pi, nil)
	tabled, errTabled := pk.verifyWith(alpha, pi, table)
	beta, errVerify := pk.Verify(alpha, pi)
	for _, r := range []struct {
		name string
		beta []byte
		err  error
	}{{"without table", plain[:], errPlain}, {"with table", tabled[:], errTabled}, {"Verify", beta, errVerify}} {
		switch {
		case want == nil && r.err == nil:
			t.Fatalf("%s accepts proof %x for alpha %x that the reference rejects", r.name, pi, alpha)
		case want != nil && r.err != nil:
			t.Fatalf("%s rejects proof %x for alpha %x that the reference accepts: %v", r.name, pi, alpha, r.err)
		case want != nil && !bytes.Equal(r.beta, want):
			t.Fatalf("%s: beta %x, reference %x", r.name, r.beta, want)
		case r.err != nil && !errors.Is(r.err, ErrMalformedProof) && !errors.Is(r.err, ErrInvalidProof):
			t.Fatalf("%s: error %v matches neither ErrMalformedProof nor ErrInvalidProof", r.name, r.err)
		}
	}
	return want != nil
}

// TestVerifyKeyTable is the differential test of Verify's key table: on
// valid proofs for random keys and alphas, and on invalid ones (flipped
// bits, another key's or alpha's proof, random c and s, Gamma replaced by
// random, small-order and mixed-order points, random bytes), Verify with
// and without the table gives what referenceVerify gives.
func TestVerifyKeyTable(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	var small [][]byte // the 8 points of small order, and the identity
	order8, _ := new(edwards25519.Point).SetBytes(unhex(t, "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"))
	for k, p := 0, edwards25519.NewIdentityPoint(); k < 8; k++ {
		small = append(small, p.Bytes())
		p = new(edwards25519.Point).Add(p, order8)
	}
	keys := 8
	if testing.Short() {
		keys = 3
	}
	valid, invalid := 0, 0
	for k := range keys {
		sk, err := GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pk := sk.Public()
		table := newKeyTable(&pk.y)
		other, _ := GenerateKey(rand.Reader)
		for a := range 12 {
			alpha := make([]byte, rng.IntN(40))
			rand.Read(alpha)
			if a == 0 {
				alpha = fmt.Appendf(nil, "user%d@example.org", k)
			}
			_, pi := sk.Prove(alpha)
			if !checkAgainstReference(t, pk, table, alpha, pi) {
				t.Fatalf("valid proof rejected by the reference")
			}
			valid++
			var bad [][]byte
			for range 4 {
				m := bytes.Clone(pi)
				bit := rng.IntN(ProofSize * 8)
				m[bit/8] ^= 1 << (bit % 8)
				bad = append(bad, m)
			}
			_, otherPi := other.Prove(alpha)
			_, otherAlpha := sk.Prove(append(bytes.Clone(alpha), 'x'))
			bad = append(bad, otherPi, otherAlpha)
			m := bytes.Clone(pi) // random c
			rand.Read(m[32:48])
			bad = append(bad, m)
			m = bytes.Clone(pi) // random reduced s
			var sb [64]byte
			rand.Read(sb[:])
			rs, _ := new(edwards25519.Scalar).SetUniformBytes(sb[:])
			copy(m[48:], rs.Bytes())
			bad = append(bad, m)
			m = bytes.Clone(pi) // Gamma: a random point of prime order
			rand.Read(sb[:])
			rs, _ = new(edwards25519.Scalar).SetUniformBytes(sb[:])
			rp := new(edwards25519.Point).ScalarBaseMult(rs)
			copy(m[:32], rp.Bytes())
			bad = append(bad, m)
			m = bytes.Clone(pi) // Gamma + a point of small order: same 8*Gamma
			g, _ := new(edwards25519.Point).SetBytes(pi[:32])
			copy(m[:32], new(edwards25519.Point).Add(g, order8).Bytes())
			bad = append(bad, m)
			m = bytes.Clone(pi) // Gamma of small order
			copy(m[:32], small[rng.IntN(len(small))])
			bad = append(bad, m)
			m = make([]byte, ProofSize) // random bytes
			rand.Read(m)
			bad = append(bad, m)
			for _, m := range bad {
				if checkAgainstReference(t, pk, table, alpha, m) {
					t.Fatalf("altered proof %x for alpha %x verifies", m, alpha)
				}
				invalid++
			}
		}
	}
	t.Logf("%d valid and %d invalid proofs agree with the reference", valid, invalid)
}

// TestMulChallenge checks the key table's c*Y against ScalarMult for
// challenges with every digit pattern that matters to the signed radix-16
// recoding (0, all ones, carries through every nibble) and random ones.
func TestMulChallenge(t *testing.T) {
	sk, _ := GenerateKey(rand.Reader)
	pk := sk.Public()
	table := newKeyTable(&pk.y)
	var cs [][cLen]byte
	for _, b := range []byte{0x00, 0xff, 0x88, 0x87, 0x78, 0x08, 0x80, 0x01} {
		var c [cLen]byte
		for i := range c {
			c[i] = b
		}
		cs = append(cs, c)
	}
	for range 200 {
		var c [cLen]byte
		rand.Read(c[:])
		cs = append(cs, c)
	}
	for _, c := range cs {
		e := challengeRadix16(&c)
		for i, d := range e {
			if d < -8 || d >= 8 || (i == len(e)-1 && d != 0 && d != 1) {
				t.Fatalf("c = %x: digit %d is %d", c, i, d)
			}
		}
		var cb [32]byte
		copy(cb[:], c[:])
		s, err := new(edwards25519.Scalar).SetCanonicalBytes(cb[:])
		if err != nil {
			t.Fatal(err)
		}
		want := new(edwards25519.Point).ScalarMult(s, &pk.y)
		if got := table.mulChallenge(new(edwards25519.Point), &c); got.Equal(want) != 1 {
			t.Fatalf("c = %x: table gives %x, ScalarMult %x", c, got.Bytes(), want.Bytes())
		}
	}
}

// TestKeyTableBuiltAfterPlainVerifies checks that a key's first
// plainVerifies verifications build no table and the next one does.
func TestKeyTableBuiltAfterPlainVerifies(t *testing.T) {
	sk, _ := GenerateKey(rand.Reader)
	pk, err := NewPublicKey(sk.Public().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	_, pi := sk.Prove([]byte("a"))
	for i := range plainVerifies + 2 {
		if _, err := pk.Verify([]byte("a"), pi); err != nil {
			t.Fatal(err)
		}
		if built := pk.table.Load() != nil; built != (i >= plainVerifies) {
			t.Fatalf("after %d verifications: table built %v", i+1, built)
		}
	}
}

// TestKeyTableConcurrent verifies with one fresh key from several
// goroutines at once (run with -race): the table may be built more than
// once, every verification gives the same beta.
func TestKeyTableConcurrent(t *testing.T) {
	sk, _ := GenerateKey(rand.Reader)
	pk, err := NewPublicKey(sk.Public().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	want, pi := sk.Prove([]byte("a"))
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for range 4 {
				beta, err := pk.Verify([]byte("a"), pi)
				if err == nil && !bytes.Equal(beta, want) {
					err = fmt.Errorf("beta %x, want %x", beta, want)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if pk.table.Load() == nil {
		t.Fatal("no table after 32 verifications")
	}
}
