package devices

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"slices"
	"testing"

	"filippo.io/edwards25519"
)

// Adversarial tests of the fast Ed25519 path (edverify.go): each one
// targets a step of the soundness argument and fails if that step is
// wrong. edReferenceHolds is the oracle: the equation crypto/ed25519
// checks, computed with edwards25519.

// edReferenceHolds reports whether [S]B - [k]A == R, the point equation
// crypto/ed25519.Verify checks (with edwards25519's own scalar
// multiplication).
func edReferenceHolds(A, R *edwards25519.Point, S, k *edwards25519.Scalar) bool {
	minusA := new(edwards25519.Point).Negate(A)
	return new(edwards25519.Point).VarTimeDoubleScalarBaseMult(k, minusA, S).Equal(R) == 1
}

// edScalarOfBig returns x mod L as a Scalar.
func edScalarOfBig(x *big.Int) *edwards25519.Scalar {
	var b [32]byte
	putLEInt(&b, new(big.Int).Mod(x, bigL))
	s, err := new(edwards25519.Scalar).SetCanonicalBytes(b[:])
	if err != nil {
		panic(err)
	}
	return s
}

// edRandomScalar returns a random scalar.
func edRandomScalar(rng *mrand.Rand) *edwards25519.Scalar {
	var b [64]byte
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	s, _ := new(edwards25519.Scalar).SetUniformBytes(b[:])
	return s
}

// edKeyOf returns p decoded as an edKey, failing t if it does not decode.
func edKeyOf(t *testing.T, p *edwards25519.Point) *edKey {
	t.Helper()
	var k edKey
	if !k.set(p.Bytes()) {
		t.Fatalf("%x does not decode", p.Bytes())
	}
	return &k
}

// TestEdCanonical checks edCanonical against its definition, enc ==
// R.Bytes() for the point R that enc decodes to, on every encoding whose
// y is p + j (j = 0..18, the non-reduced field elements), on both
// encodings with x = 0 (y = ±1) with the sign bit set, on every first
// byte of the encodings 2^255 - 256 + b (either side of p = 2^255 - 19),
// on the points of small order, and on random bytes that decode.
func TestEdCanonical(t *testing.T) {
	var encs [][]byte
	for b0 := range 256 {
		for _, top := range []byte{0x7f, 0xff} {
			e := bytes.Repeat([]byte{0xff}, 32)
			e[0], e[31] = byte(b0), top
			encs = append(encs, e)
			e = bytes.Clone(e) // one byte lower in the middle: y < p
			e[15] = 0xfe
			encs = append(encs, e)
		}
	}
	for _, y := range []byte{1, 0} { // y = 1 and, below, y = p - 1: x = 0
		e := make([]byte, 32)
		e[0], e[31] = y, 0x80
		encs = append(encs, e)
	}
	for _, T := range edTorsion(t) {
		encs = append(encs, T.Bytes())
		e := T.Bytes()
		e[31] ^= 0x80
		encs = append(encs, e)
	}
	rng := mrand.New(mrand.NewPCG(21, 22))
	for range 500 {
		e := make([]byte, 32)
		for i := range e {
			e[i] = byte(rng.Uint32())
		}
		encs = append(encs, e)
	}
	canonical, non := 0, 0
	for _, enc := range encs {
		R, err := new(edwards25519.Point).SetBytes(enc)
		if err != nil {
			continue
		}
		want := bytes.Equal(R.Bytes(), enc)
		if got := edCanonical(enc, R); got != want {
			t.Fatalf("edCanonical(%x) = %v, want %v (canonical %x)", enc, got, want, R.Bytes())
		}
		if want {
			canonical++
		} else {
			non++
		}
	}
	// Every non-canonical encoding SetBytes accepts is one of y >= p
	// (j = 0..18, 19 values, those on the curve with both signs) or
	// x = 0 with the sign bit set (y = 1, y = p - 1, and y = p + 1).
	if non < 8 || canonical < 300 {
		t.Fatalf("%d canonical and %d non-canonical encodings decoded", canonical, non)
	}
	t.Logf("%d canonical, %d non-canonical", canonical, non)
}

// TestEdFastCheckEdgeChallenges checks edFastCheck on structured
// challenges k (edgeChallenges: 0, tiny k, L-1, powers of two, k near
// 2^128 and near 8L/m, runs of ones, and k that reduceChallenge refuses),
// with keys A = [a]B + T for every point T of small order and R = [S]B -
// [k]A exactly, or plus a point of small order or plus B: it must accept
// exactly when the equation holds and k is not refused.
func TestEdFastCheckEdgeChallenges(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(23, 24))
	torsion := edTorsion(t)
	ks := edgeChallenges()
	ks = append(ks, new(big.Int).Rsh(big8L, 115)) // refused (TestReduceChallengeRefusesLong)
	// Every 10th: about 2,200 challenges, 1.3 s; KEYLINE_ED_LONG=1 for
	// all 22k.
	step := 10
	if testing.Short() {
		step = 50
	}
	if os.Getenv("KEYLINE_ED_LONG") != "" {
		step = 1
	}
	accepted, refused := 0, 0
	for i := 0; i < len(ks); i += step {
		kk := ks[i]
		k := edScalarOfBig(kk)
		A := new(edwards25519.Point).ScalarBaseMult(edRandomScalar(rng))
		A.Add(A, torsion[i%8])
		key := edKeyOf(t, A)
		S := edRandomScalar(rng)
		R := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(k, new(edwards25519.Point).Negate(A), S)
		var kb [32]byte
		copy(kb[:], k.Bytes())
		_, _, _, ok := reduceChallenge(&kb)
		if got := edFastCheck(key, R, S, k); got != ok {
			t.Fatalf("k=%v A=%x: equation holds, reduceChallenge ok=%v, edFastCheck %v", kk, A.Bytes(), ok, got)
		}
		if ok {
			accepted++
		} else {
			refused++
		}
		// The same with R off by a point of small order or by B: refused,
		// since [c1] of it is not the identity for an odd c1.
		for _, off := range []*edwards25519.Point{torsion[1+i%7], edwards25519.NewGeneratorPoint()} {
			R2 := new(edwards25519.Point).Add(R, off)
			if edReferenceHolds(A, R2, S, k) {
				t.Fatal("reference equation holds for R + T")
			}
			if edFastCheck(key, R2, S, k) {
				t.Fatalf("k=%v A=%x: R off by %x accepted", kk, A.Bytes(), off.Bytes())
			}
		}
	}
	if refused < 1 || accepted < len(ks)/step/2 {
		t.Fatalf("%d accepted, %d refused", accepted, refused)
	}
	t.Logf("%d challenges accepted, %d refused", accepted, refused)
}

// TestEdFastCheckEdgeScalars drives c1·S mod L, the scalar split into
// the two halves for B and 2^128·B, to edge values (0, 1, 2^128 - 1 with
// its NAF carry into bit 128, 2^128, halves of all ones, L - 1, L - 2),
// by S = target·c1^-1 mod L, for edge and random k: the equation holds
// and must be accepted; R off by the point of order 2 must not.
func TestEdFastCheckEdgeScalars(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(25, 26))
	torsion := edTorsion(t)
	one := big.NewInt(1)
	pow2 := func(n uint) *big.Int { return new(big.Int).Lsh(one, n) }
	ones := func(n uint) *big.Int { return new(big.Int).Sub(pow2(n), one) }
	targets := []*big.Int{
		big.NewInt(0), big.NewInt(1), ones(128), pow2(128), new(big.Int).Add(pow2(128), one),
		new(big.Int).Add(ones(128), new(big.Int).Lsh(ones(124), 128)),
		new(big.Int).Lsh(ones(124), 128), new(big.Int).Sub(bigL, one), new(big.Int).Sub(bigL, big.NewInt(2)),
		new(big.Int).Sub(pow2(252), one), pow2(252),
	}
	ks := []*big.Int{big.NewInt(0), big.NewInt(1), big.NewInt(7), new(big.Int).Sub(bigL, one), new(big.Int).Sub(pow2(128), one), pow2(128)}
	for range 6 {
		ks = append(ks, randBelow(rng, bigL))
	}
	ran := 0
	for i, kk := range ks {
		k := edScalarOfBig(kk)
		var kb [32]byte
		copy(kb[:], k.Bytes())
		_, c1, neg, ok := reduceChallenge(&kb)
		if !ok {
			continue // L-1 among them (TestEdFastCheckEdgeChallenges covers refusals)
		}
		ran++
		c1v := leInt(c1[:])
		if neg {
			c1v.Neg(c1v)
		}
		c1inv := new(big.Int).ModInverse(new(big.Int).Mod(c1v, bigL), bigL)
		A := new(edwards25519.Point).ScalarBaseMult(edRandomScalar(rng))
		A.Add(A, torsion[i%8])
		key := edKeyOf(t, A)
		for _, target := range targets {
			S := edScalarOfBig(new(big.Int).Mul(target, c1inv))
			var cs edwards25519.Scalar
			cs.Multiply(edScalarOfBig(c1v), S)
			if leInt(cs.Bytes()).Cmp(target) != 0 {
				t.Fatalf("c1·S = %v, want %v", leInt(cs.Bytes()), target)
			}
			R := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(k, new(edwards25519.Point).Negate(A), S)
			if !edFastCheck(key, R, S, k) {
				t.Fatalf("k=%v, c1·S = %v: valid equation not accepted", kk, target)
			}
			if edFastCheck(key, new(edwards25519.Point).Add(R, torsion[4]), S, k) {
				t.Fatalf("k=%v, c1·S = %v: R + (0, -1) accepted", kk, target)
			}
		}
	}
	if ran < 10 {
		t.Fatalf("only %d challenges not refused", ran)
	}
}

// TestVerifyEd25519TorsionGrid signs, for every pair (T_A, T_R) of
// points of small order, with A = [a]B + T_A and R = [r]B + T_R, S = r +
// k·a: crypto/ed25519 accepts exactly when T_R = -[k]T_A, which some
// message gives iff T_R is a multiple of T_A (43 of the 64 pairs; tried
// with up to 64 messages) and none does otherwise (8 messages each).
// VerifyEd25519 and a sigGroup must agree with it on every signature,
// and the fast path must accept every valid one. Each valid signature
// with R moved by a nonzero T (P = -T, of order 2, 4 or 8) must be
// rejected by all three.
func TestVerifyEd25519TorsionGrid(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(27, 28))
	torsion := edTorsion(t)
	pairs := 0
	for ia, TA := range torsion {
		multiples := map[string]bool{}
		for m := range 8 {
			multiples[string(new(edwards25519.Point).ScalarMult(edScalarOfBig(big.NewInt(int64(m))), TA).Bytes())] = true
		}
		for ir, TR := range torsion {
			possible, accepted := multiples[string(TR.Bytes())], false
			tries := 8
			if possible {
				tries = 64
			}
			for try := range tries {
				a, r := edRandomScalar(rng), edRandomScalar(rng)
				A := new(edwards25519.Point).ScalarBaseMult(a)
				A.Add(A, TA)
				R := new(edwards25519.Point).ScalarBaseMult(r)
				R.Add(R, TR)
				pub, msg := A.Bytes(), fmt.Appendf(nil, "grid %d %d %d", ia, ir, try)
				k := edChallenge(R.Bytes(), pub, msg)
				S := new(edwards25519.Scalar).MultiplyAdd(k, a, r)
				sig := append(R.Bytes(), S.Bytes()...)
				want := ed25519.Verify(pub, msg, sig)
				if want != edReferenceHolds(A, R, S, k) {
					t.Fatal("crypto/ed25519 disagrees with the reference equation")
				}
				edAgree(t, pub, msg, sig, want)
				if !want {
					continue
				}
				for j, T := range torsion[1:] {
					moved := append(new(edwards25519.Point).Add(R, T).Bytes(), S.Bytes()...)
					if ed25519.Verify(pub, msg, moved) {
						t.Fatalf("crypto/ed25519 accepts R + T%d", j+1)
					}
					edAgree(t, pub, msg, moved, false)
				}
				accepted = true
				break
			}
			if accepted != possible {
				t.Fatalf("T_A = %d·T8, T_R = %d·T8: accepted %v, want %v", ia, ir, accepted, possible)
			}
			if accepted {
				pairs++
			}
		}
	}
	if pairs != 43 {
		t.Fatalf("%d pairs accepted, want 43", pairs)
	}
}

// edAgree fails t unless VerifyEd25519 and a one-check sigGroup give
// want, and, when want is true and reduceChallenge does not refuse the
// challenge, unless edFastAccept accepts (so that a wrong fast path is
// not hidden by the fallback).
func edAgree(t *testing.T, pub, msg, sig []byte, want bool) {
	t.Helper()
	if got := VerifyEd25519(pub, msg, sig); got != want {
		t.Fatalf("pub %x msg %q sig %x: VerifyEd25519 %v, want %v", pub, msg, sig, got, want)
	}
	g := &sigGroup{checks: []sigCheck{{pub: pub, msg: msg, sig: sig}}}
	if got := g.verify(); got != want {
		t.Fatalf("pub %x msg %q sig %x: sigGroup %v, want %v", pub, msg, sig, got, want)
	}
	var k edKey
	fast := k.set(pub) && edFastAccept(&k, sha512.New(), pub, msg, sig)
	if fast && !want {
		t.Fatalf("pub %x msg %q sig %x: fast path accepts an invalid signature", pub, msg, sig)
	}
	if want && !fast && !edRefused(sigCheck{pub: pub, msg: msg, sig: sig}) {
		t.Fatalf("pub %x msg %q sig %x: valid, not accepted by the fast path", pub, msg, sig)
	}
}

// TestVerifyEd25519EdgeScalarsSmallOrderKeys signs with keys of small
// order (each of the 8, and every non-canonical encoding of one that
// SetBytes accepts) and the edge values S = 0, 1, L - 1: R = [S]B + T2
// for T2 = -[k]A, found by trying messages (k depends on R, so T2 is
// guessed and the message varied until it fits). Every such signature is
// valid; with S + 1 or R + B it is not.
func TestVerifyEd25519EdgeScalarsSmallOrderKeys(t *testing.T) {
	torsion := edTorsion(t)
	var encs [][]byte
	for _, T := range torsion {
		encs = append(encs, T.Bytes())
	}
	for j := range 19 { // y = p + j, both signs, and y = ±1 with the sign bit
		for _, sign := range []byte{0, 0x80} {
			e := bytes.Repeat([]byte{0xff}, 32)
			e[0], e[31] = byte(0xed+j), 0x7f|sign
			encs = append(encs, e)
		}
	}
	for _, y := range []byte{1, 0} {
		e := make([]byte, 32)
		e[0], e[31] = y, 0x80
		if y == 0 {
			e = bytes.Repeat([]byte{0xff}, 32)
			e[0] = 0xec
		}
		encs = append(encs, e)
	}
	edges := []*edwards25519.Scalar{edwards25519.NewScalar(), scalarOne(), edScalarOfBig(new(big.Int).Sub(bigL, big.NewInt(1)))}
	n := 0
	for _, pub := range encs {
		A, err := new(edwards25519.Point).SetBytes(pub)
		if err != nil || new(edwards25519.Point).MultByCofactor(A).Equal(edwards25519.NewIdentityPoint()) != 1 {
			continue // not a point, or not of small order
		}
		for si, S := range edges {
			found := false
			for try := range 400 {
				T2 := torsion[try%8]
				R := new(edwards25519.Point).ScalarBaseMult(S)
				R.Add(R, T2)
				msg := fmt.Appendf(nil, "small-order key, S edge %d, try %d", si, try)
				k := edChallenge(R.Bytes(), pub, msg)
				if !edReferenceHolds(A, R, S, k) {
					continue
				}
				sig := append(R.Bytes(), S.Bytes()...)
				if !ed25519.Verify(pub, msg, sig) {
					t.Fatalf("pub %x: crypto/ed25519 rejects a signature whose equation holds", pub)
				}
				edAgree(t, pub, msg, sig, true)
				S1 := new(edwards25519.Scalar).Add(S, scalarOne())
				edAgree(t, pub, msg, append(R.Bytes(), S1.Bytes()...), false)
				RB := new(edwards25519.Point).Add(R, edwards25519.NewGeneratorPoint())
				// [S]B - [k']A = R + B would need [k']A = -T2 - B: A is of
				// small order and -T2 - B is not.
				edAgree(t, pub, msg, append(RB.Bytes(), S.Bytes()...), false)
				found, n = true, n+1
				break
			}
			if !found {
				t.Fatalf("pub %x, S edge %d: no message found", pub, si)
			}
		}
	}
	if n < 3*8 {
		t.Fatalf("only %d signatures", n)
	}
	t.Logf("%d signatures by small-order keys", n)
}

// TestSigGroupKeyOverflow checks sigGroup.verify's key reuse beyond
// maxGroupKeys (the tmp key): a group of signatures by 3·maxGroupKeys/2
// keys, each used twice in an interleaved order, verifies, every valid
// signature on the fast path; replacing any one by a "crossed" signature
// — made with another key's secret but with the challenge hashed over
// this key's bytes, which the other key's table would accept — makes the
// group fail.
func TestSigGroupKeyOverflow(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(29, 30))
	nk := 3 * maxGroupKeys / 2
	type signer struct {
		a   *edwards25519.Scalar
		pub []byte
	}
	signers := make([]signer, nk)
	for i := range signers {
		a := edRandomScalar(rng)
		signers[i] = signer{a, new(edwards25519.Point).ScalarBaseMult(a).Bytes()}
	}
	sign := func(a *edwards25519.Scalar, pub, msg []byte) []byte { return edSignWith(rng, a, pub, msg) }
	var order []int
	for i := range nk {
		order = append(order, i)
	}
	for i := nk - 1; i >= 0; i-- { // the second use of each key, reversed
		order = append(order, i)
	}
	var checks []sigCheck
	for j, i := range order {
		msg := fmt.Appendf(nil, "overflow %d", j)
		checks = append(checks, sigCheck{pub: signers[i].pub, msg: msg, sig: sign(signers[i].a, signers[i].pub, msg)})
	}
	fast := edFastAccepted.Load()
	if !(&sigGroup{checks: checks}).verify() {
		t.Fatal("valid group rejected")
	}
	want := 0
	for _, c := range checks {
		if !edRefused(c) {
			want++
		}
	}
	if got := edFastAccepted.Load() - fast; got != uint64(want) {
		t.Fatalf("%d of %d signatures on the fast path, want %d", got, len(checks), want)
	}
	for j := range checks {
		// Crossed with the key checked just before (whose table, or the
		// tmp key's, a mix-up would use) and with the next one.
		for _, other := range []int{(j + len(checks) - 1) % len(checks), (j + 1) % len(checks)} {
			o := signers[order[other]]
			if bytes.Equal(o.pub, checks[j].pub) {
				continue
			}
			bad := slices.Clone(checks)
			bad[j].sig = sign(o.a, checks[j].pub, checks[j].msg)
			if ed25519.Verify(bad[j].pub, bad[j].msg, bad[j].sig) {
				t.Fatal("crossed signature verifies")
			}
			if (&sigGroup{checks: bad}).verify() {
				t.Fatalf("group with check %d crossed with key %d accepted", j, order[other])
			}
		}
	}
}

// TestVerifyEd25519RefusedChallenge checks signatures whose challenge
// reduceChallenge refuses (about 5 in a million; these messages were
// found by trying), by a key of prime order and by one with a point of
// order 8 in it (R with 3·T8): the fast path must not accept them, and
// VerifyEd25519 and a sigGroup must still accept them through
// crypto/ed25519, and reject them with R moved by a point of small order.
func TestVerifyEd25519RefusedChallenge(t *testing.T) {
	seedA := sha512.Sum512([]byte("keyline edreview refused key"))
	seedR := sha512.Sum512([]byte("keyline edreview refused nonce"))
	a, _ := new(edwards25519.Scalar).SetUniformBytes(seedA[:])
	r, _ := new(edwards25519.Scalar).SetUniformBytes(seedR[:])
	torsion := edTorsion(t)
	for _, tc := range []struct{ tA, tR, i int }{{0, 0, 21696}, {1, 3, 565153}} {
		A := new(edwards25519.Point).ScalarBaseMult(a)
		A.Add(A, torsion[tc.tA])
		R := new(edwards25519.Point).ScalarBaseMult(r)
		R.Add(R, torsion[tc.tR])
		pub, msg := A.Bytes(), fmt.Appendf(nil, "refused challenge %d", tc.i)
		k := edChallenge(R.Bytes(), pub, msg)
		sig := append(R.Bytes(), new(edwards25519.Scalar).MultiplyAdd(k, a, r).Bytes()...)
		c := sigCheck{pub: pub, msg: msg, sig: sig}
		if !edRefused(c) {
			t.Fatalf("message %q: challenge not refused", msg)
		}
		if !ed25519.Verify(pub, msg, sig) {
			t.Fatalf("message %q: crypto/ed25519 rejects the signature", msg)
		}
		var key edKey
		if !key.set(pub) || edFastAccept(&key, sha512.New(), pub, msg, sig) {
			t.Fatalf("message %q: fast path accepts a refused challenge", msg)
		}
		edAgree(t, pub, msg, sig, true)
		for _, T := range torsion[1:] {
			moved := append(new(edwards25519.Point).Add(R, T).Bytes(), sig[32:]...)
			edAgree(t, pub, msg, moved, false)
		}
	}
}

// TestEdRelationGuardDegenerate checks that edRelationHolds refuses the
// pairs (c0, c1) that satisfy c0 ≡ c1·k (mod 8L) but break the rest of
// its contract, some of which would make the fast path accept forgeries:
// an even c1 (2c0, 2c1: Q = [2]P misses a P of order 2), c1 = ±L or 3L
// with c0 = c1·k mod 8L (Q = [L]P misses every P of order L: any R would
// do), c1 = 0, and c0 or |c1| raised by 8L (harmless, but outside the
// documented bounds).
func TestEdRelationGuardDegenerate(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(31, 32))
	le32 := func(x *big.Int) [32]byte {
		var b [32]byte
		if x.BitLen() > 256 || x.Sign() < 0 {
			t.Fatalf("%v does not fit", x)
		}
		putLEInt(&b, x)
		return b
	}
	for i := range 200 {
		kk := randBelow(rng, bigL)
		if i < 8 {
			kk = big.NewInt(int64(i)) // k = 0 included
		}
		kb := le32(kk)
		k := edScalarOfBig(kk)
		c0, c1, neg, ok := reduceChallenge(&kb)
		if !ok {
			continue
		}
		var c1s edwards25519.Scalar
		if !edRelationHolds(&c0, &c1, neg, &kb, k, &c1s) {
			t.Fatalf("k=%v: reduceChallenge's own result refused", kk)
		}
		a, b := leInt(c0[:]), leInt(c1[:])
		type pair struct {
			name   string
			c0, c1 *big.Int
			neg    bool
		}
		// c0 = c1·k mod 8L for a signed c1.
		rel := func(c1 *big.Int, neg bool) *big.Int {
			v := new(big.Int).Mul(c1, kk)
			if neg {
				v.Neg(v)
			}
			return v.Mod(v, big8L)
		}
		three := new(big.Int).Mul(big.NewInt(3), bigL)
		pairs := []pair{
			{"2c0, 2c1 (c1 even)", new(big.Int).Lsh(a, 1), new(big.Int).Lsh(b, 1), neg},
			{"c1 = L", rel(bigL, false), bigL, false},
			{"c1 = -L", rel(bigL, true), bigL, true},
			{"c1 = 3L", rel(three, false), three, false},
			{"c1 = 0", big.NewInt(0), big.NewInt(0), false},
			{"c0 + 8L", new(big.Int).Add(a, big8L), b, neg},
			{"|c1| + 8L", a, new(big.Int).Add(b, big8L), neg},
		}
		for _, p := range pairs {
			// The congruence holds: only the guard's other conditions can
			// refuse the pair.
			c1v := new(big.Int).Set(p.c1)
			if p.neg {
				c1v.Neg(c1v)
			}
			if d := new(big.Int).Sub(p.c0, c1v.Mul(c1v, kk)); d.Mod(d, big8L).Sign() != 0 {
				t.Fatalf("%s: test pair does not satisfy the congruence", p.name)
			}
			x0, x1 := le32(p.c0), le32(p.c1)
			if edRelationHolds(&x0, &x1, p.neg, &kb, k, &c1s) {
				t.Fatalf("k=%v: %s (c0=%v, c1=%v) passes the guard", kk, p.name, p.c0, p.c1)
			}
		}
	}
}

// TestSigGroupNeighbourKeys checks that sigGroup.verify tells apart keys
// whose encodings differ in one byte only (A and -A, which differ in the
// sign bit; A and a point whose encoding differs from A's in byte 0 or
// byte 15): a group with a valid signature by A and a "crossed" one for
// the neighbour key N (made with A's secret, challenge hashed over N's
// bytes, which A's table would accept) must fail in either order, and a
// group with A's valid signatures alone must pass.
func TestSigGroupNeighbourKeys(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(33, 34))
	sign := func(a *edwards25519.Scalar, pub, msg []byte) []byte { return edSignWith(rng, a, pub, msg) }
	tested := 0
	for range 20 {
		a := edRandomScalar(rng)
		pub := new(edwards25519.Point).ScalarBaseMult(a).Bytes()
		var neighbours [][]byte
		flip := bytes.Clone(pub)
		flip[31] ^= 0x80 // -A
		neighbours = append(neighbours, flip)
		for _, pos := range []int{0, 15} {
			for d := 1; d < 256; d++ {
				n := bytes.Clone(pub)
				n[pos] ^= byte(d)
				if _, err := new(edwards25519.Point).SetBytes(n); err == nil {
					neighbours = append(neighbours, n)
					break
				}
			}
		}
		valid := sigCheck{pub: pub, msg: []byte("by A"), sig: sign(a, pub, []byte("by A"))}
		valid2 := sigCheck{pub: pub, msg: []byte("by A again"), sig: sign(a, pub, []byte("by A again"))}
		if !(&sigGroup{checks: []sigCheck{valid, valid2}}).verify() {
			t.Fatal("valid group rejected")
		}
		for _, n := range neighbours {
			crossed := sigCheck{pub: n, msg: []byte("crossed"), sig: sign(a, n, []byte("crossed"))}
			if ed25519.Verify(crossed.pub, crossed.msg, crossed.sig) {
				t.Fatal("crossed signature verifies")
			}
			for _, g := range [][]sigCheck{{valid, crossed}, {crossed, valid}, {valid, crossed, valid2}} {
				if (&sigGroup{checks: g}).verify() {
					t.Fatalf("A = %x, neighbour %x: group with the crossed signature accepted", pub, n)
				}
			}
			// A memo keeps the keys its groups decoded for its later
			// groups: A decoded by one group must not serve the
			// neighbour's check in the next, nor the other way round.
			m := new(SignatureMemo)
			if !(&sigGroup{checks: []sigCheck{valid}, memo: m}).verify() || len(m.keys) != 1 {
				t.Fatalf("memo group: valid signature rejected or key not kept (%d keys)", len(m.keys))
			}
			if (&sigGroup{checks: []sigCheck{crossed}, memo: m}).verify() {
				t.Fatalf("A = %x, neighbour %x: the memo's decoded A served the neighbour's check", pub, n)
			}
			if !(&sigGroup{checks: []sigCheck{valid2}, memo: m}).verify() || len(m.keys) != 2 {
				t.Fatalf("memo group: A's second signature rejected after the neighbour's (%d keys)", len(m.keys))
			}
			tested++
		}
	}
	if tested < 50 {
		t.Fatalf("only %d neighbour keys", tested)
	}
}

// TestEdArithmeticExceptional checks the addition formulas on the inputs
// where incomplete formulas fail: P + P, P - P, P + (-P), P - (-P) and
// the identity as either operand, in cached and affine form, for the
// points of small order, B, 2^128·B and random points with torsion.
func TestEdArithmeticExceptional(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(35, 36))
	var k128 [32]byte
	k128[16] = 1
	points := append(edTorsion(t), edwards25519.NewGeneratorPoint(),
		new(edwards25519.Point).ScalarBaseMult(edScalarOf(t, &k128)))
	for range 8 {
		points = append(points, edRandomPoint(t, rng))
	}
	id := edwards25519.NewIdentityPoint()
	for i, p := range points {
		for _, q := range []*edwards25519.Point{p, new(edwards25519.Point).Negate(p), id} {
			for _, first := range []*edwards25519.Point{p, id} {
				edCheckAdditions(t, first, q, fmt.Sprintf("point %d, an exceptional pair", i))
			}
		}
	}
}

// TestVerifyEd25519StructuredKeys checks signatures whose secret key and
// nonce are structured so that the multi-scalar multiplication meets
// equal or opposite points (A = ±B, A = 2^128·B, the point the second
// fixed table is built on, R = identity, R = ±B, R = A): each valid one
// must be accepted by the fast path, and each with S + 1 rejected by
// VerifyEd25519 and a sigGroup.
func TestVerifyEd25519StructuredKeys(t *testing.T) {
	one := big.NewInt(1)
	p128 := new(big.Int).Lsh(one, 128)
	Lm1 := new(big.Int).Sub(bigL, one)
	secrets := []*big.Int{one, Lm1, big.NewInt(2), p128, new(big.Int).Add(p128, one), new(big.Int).Sub(p128, one), new(big.Int).Mul(big.NewInt(3), p128)}
	nonces := []*big.Int{big.NewInt(0), one, Lm1, p128}
	for i, av := range secrets {
		a := edScalarOfBig(av)
		A := new(edwards25519.Point).ScalarBaseMult(a)
		pub := A.Bytes()
		for j, rv := range append(nonces, av) {
			r := edScalarOfBig(rv)
			R := new(edwards25519.Point).ScalarBaseMult(r)
			msg := fmt.Appendf(nil, "structured %d %d", i, j)
			k := edChallenge(R.Bytes(), pub, msg)
			S := new(edwards25519.Scalar).MultiplyAdd(k, a, r)
			sig := append(R.Bytes(), S.Bytes()...)
			if !ed25519.Verify(pub, msg, sig) {
				t.Fatalf("secret %v nonce %v: crypto/ed25519 rejects", av, rv)
			}
			edAgree(t, pub, msg, sig, true)
			S1 := new(edwards25519.Scalar).Add(S, scalarOne())
			edAgree(t, pub, msg, append(R.Bytes(), S1.Bytes()...), false)
		}
	}
}

// FuzzEdFastCheck compares edFastCheck with the reference equation on a
// challenge k the fuzzer picks directly (any 32 bytes, reduced mod L, or
// taken as they are if below L, so that structured k reach
// reduceChallenge), a key A = [a]B + T_A and R = [S]B - [k]A + T_R + [e]B
// with T_A, T_R points of small order and e small: it must accept exactly
// when the equation holds (T_R and e zero) and k is not refused.
func FuzzEdFastCheck(f *testing.F) {
	f.Add(make([]byte, 32), []byte("a"), []byte("s"), uint8(0), uint8(0), uint8(0))
	f.Add(bytes.Repeat([]byte{0xff}, 32), []byte("a"), []byte("s"), uint8(3), uint8(0), uint8(0))
	f.Add(leKey(new(big.Int).Rsh(big8L, 115))[:], []byte("a"), []byte("s"), uint8(1), uint8(0), uint8(0))
	f.Add(leKey(new(big.Int).Add(big2to128, big.NewInt(1)))[:], []byte("b"), []byte("t"), uint8(5), uint8(4), uint8(0))
	torsion := edTorsion(f)
	f.Fuzz(func(t *testing.T, kraw, aseed, sseed []byte, tA, tR, e uint8) {
		if len(kraw) != 32 {
			return
		}
		var k edwards25519.Scalar
		if _, err := k.SetCanonicalBytes(kraw); err != nil {
			var wide [64]byte
			copy(wide[:], kraw)
			k.SetUniformBytes(wide[:])
		}
		ha, hs := sha512.Sum512(aseed), sha512.Sum512(sseed)
		a, _ := new(edwards25519.Scalar).SetUniformBytes(ha[:])
		S, _ := new(edwards25519.Scalar).SetUniformBytes(hs[:])
		A := new(edwards25519.Point).ScalarBaseMult(a)
		A.Add(A, torsion[tA%8])
		R := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(&k, new(edwards25519.Point).Negate(A), S)
		R.Add(R, torsion[tR%8])
		R.Add(R, new(edwards25519.Point).ScalarBaseMult(edScalarOfBig(big.NewInt(int64(e%4)))))
		var key edKey
		if !key.set(A.Bytes()) {
			t.Fatal("A does not decode")
		}
		var kb [32]byte
		copy(kb[:], k.Bytes())
		_, _, _, ok := reduceChallenge(&kb)
		want := edReferenceHolds(A, R, S, &k)
		if want != (tR%8 == 0 && e%4 == 0) {
			t.Fatal("reference equation wrong")
		}
		if got := edFastCheck(&key, R, S, &k); got != (want && ok) {
			t.Fatalf("k=%x tA=%d tR=%d e=%d: edFastCheck %v, equation %v, reduceChallenge ok %v", kb, tA%8, tR%8, e%4, got, want, ok)
		}
	})
}

// edSignWith returns an Ed25519 signature over msg by the secret scalar a,
// its challenge hashed with pub (which need not be a's public key: a
// signature "crossed" to another key), with a nonce from rng.
func edSignWith(rng *mrand.Rand, a *edwards25519.Scalar, pub, msg []byte) []byte {
	r := edRandomScalar(rng)
	R := new(edwards25519.Point).ScalarBaseMult(r).Bytes()
	k := edChallenge(R, pub, msg)
	return append(R, new(edwards25519.Scalar).MultiplyAdd(k, a, r).Bytes()...)
}
