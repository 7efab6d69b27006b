package devices

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"testing"
	"time"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// edOrder8 is a point of order 8; its multiples are the 8 points of small
// order (the torsion subgroup is cyclic).
func edOrder8(t testing.TB) *edwards25519.Point {
	p, err := new(edwards25519.Point).SetBytes([]byte{0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f,
		0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// edTorsion returns the 8 points of small order, [i]T for T of order 8.
func edTorsion(t testing.TB) []*edwards25519.Point {
	T := edOrder8(t)
	out := []*edwards25519.Point{edwards25519.NewIdentityPoint()}
	for i := 1; i < 8; i++ {
		out = append(out, new(edwards25519.Point).Add(out[i-1], T))
	}
	return out
}

// edRandomPoint returns [a]B + T for a random a and a random small-order
// T (the identity one time in eight).
func edRandomPoint(t testing.TB, rng *mrand.Rand) *edwards25519.Point {
	var b [64]byte
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	a, _ := new(edwards25519.Scalar).SetUniformBytes(b[:])
	p := new(edwards25519.Point).ScalarBaseMult(a)
	return p.Add(p, edTorsion(t)[rng.IntN(8)])
}

// edPointOf converts v to an edwards25519.Point, failing if it is not
// on the curve (SetExtendedCoordinates checks it, T included).
func edPointOf(t testing.TB, v *edExtended) *edwards25519.Point {
	t.Helper()
	p, err := new(edwards25519.Point).SetExtendedCoordinates(&v.X, &v.Y, &v.Z, &v.T)
	if err != nil {
		t.Fatalf("not a curve point: %v", err)
	}
	return p
}

// edExtendedOfProjective is (XZ : YZ : Z^2 : XY), v in extended form.
func edExtendedOfProjective(v *edProjective) *edExtended {
	var e edExtended
	e.X.Multiply(&v.X, &v.Z)
	e.Y.Multiply(&v.Y, &v.Z)
	e.Z.Square(&v.Z)
	e.T.Multiply(&v.X, &v.Y)
	return &e
}

// edAffineOf returns p's affine coordinates x, y.
func edAffineOf(p *edwards25519.Point) (x, y *field.Element) {
	X, Y, Z, _ := p.ExtendedCoordinates()
	var zInv field.Element
	zInv.Invert(Z)
	return new(field.Element).Multiply(X, &zInv), new(field.Element).Multiply(Y, &zInv)
}

func edProjectiveOf(p *edwards25519.Point) *edProjective {
	var e edExtended
	e.setPoint(p)
	var v edProjective
	v.X, v.Y, v.Z = e.X, e.Y, e.Z
	return &v
}

// TestEdD2 checks 2d against -2·121665/121666 mod p computed with big.Int.
func TestEdD2(t *testing.T) {
	p := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	d := new(big.Int).ModInverse(big.NewInt(121666), p)
	d.Mul(d, big.NewInt(-2*121665)).Mod(d, p)
	want := make([]byte, 32)
	d.FillBytes(want)
	for i, j := 0, 31; i < j; i, j = i+1, j-1 {
		want[i], want[j] = want[j], want[i]
	}
	if got := edD2.Bytes(); !bytes.Equal(got, want) {
		t.Fatalf("2d = %x, want %x", got, want)
	}
}

// edCheckAdditions checks p + q and p - q in every form of the addition
// (q cached or affine) against edwards25519's Add and Subtract.
func edCheckAdditions(t *testing.T, p, q *edwards25519.Point, what string) {
	t.Helper()
	var pe, qe, got edExtended
	pe.setPoint(p)
	qe.setPoint(q)
	var qc edCached
	var qa edAffineCached
	qc.fromExtended(&qe)
	qa.fromAffine(edAffineOf(q))
	sum := new(edwards25519.Point).Add(p, q)
	diff := new(edwards25519.Point).Subtract(p, q)
	for name, tc := range map[string]struct {
		c    *edCompleted
		want *edwards25519.Point
	}{
		"add":       {new(edCompleted).add(&pe, &qc), sum},
		"sub":       {new(edCompleted).sub(&pe, &qc), diff},
		"addAffine": {new(edCompleted).addAffine(&pe, &qa), sum},
		"subAffine": {new(edCompleted).subAffine(&pe, &qa), diff},
	} {
		if edPointOf(t, got.fromCompleted(tc.c)).Equal(tc.want) != 1 {
			t.Fatalf("%s: %s wrong", what, name)
		}
	}
}

// TestEdArithmetic checks doubling, addition and subtraction in every
// form against edwards25519 on random points, points with a small-order
// component, the points of small order and the identity.
func TestEdArithmetic(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(5, 6))
	points := edTorsion(t)
	for range 60 {
		points = append(points, edRandomPoint(t, rng))
	}
	for i, p := range points {
		var c edCompleted
		var got edExtended
		got.fromCompleted(c.double(edProjectiveOf(p)))
		if edPointOf(t, &got).Equal(new(edwards25519.Point).Add(p, p)) != 1 {
			t.Fatalf("point %d: double wrong", i)
		}
		var proj edProjective
		proj.fromCompleted(&c)
		if edPointOf(t, edExtendedOfProjective(&proj)).Equal(new(edwards25519.Point).Add(p, p)) != 1 {
			t.Fatalf("point %d: double to projective wrong", i)
		}
		edCheckAdditions(t, p, points[rng.IntN(len(points))], fmt.Sprintf("point %d", i))
	}
	var id edProjective
	if !id.identity().isIdentity() || edProjectiveOf(points[1]).isIdentity() || edProjectiveOf(points[9]).isIdentity() {
		t.Fatal("isIdentity wrong")
	}
	// The identity scaled: (0 : Z : Z) for any Z != 0.
	var z field.Element
	z.Mult32(z.One(), 12345)
	id.Y, id.Z = z, z
	if !id.isIdentity() {
		t.Fatal("(0 : Z : Z) is not the identity")
	}
}

// edScalarOf returns the integer k < L as a Scalar.
func edScalarOf(t testing.TB, k *[32]byte) *edwards25519.Scalar {
	s, err := new(edwards25519.Scalar).SetCanonicalBytes(k[:])
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestEdOddMultiples checks the tables of A and R (and edEachOddMultiple)
// against edwards25519 scalar multiplication, torsion included.
func TestEdOddMultiples(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(7, 8))
	for _, p := range append(edTorsion(t), edRandomPoint(t, rng), edRandomPoint(t, rng)) {
		var pe edExtended
		var tab edOddMultiples
		tab.set(pe.setPoint(p))
		for i := range tab {
			want := new(edwards25519.Point).ScalarMult(edScalarOf(t, &[32]byte{byte(2*i + 1)}), p)
			// tab[i] + identity, back in extended form.
			var id edExtended
			id.setPoint(edwards25519.NewIdentityPoint())
			var c edCompleted
			var got edExtended
			if edPointOf(t, got.fromCompleted(c.add(&id, &tab[i]))).Equal(want) != 1 {
				t.Fatalf("%x: entry %d is not %d·P", p.Bytes(), i, 2*i+1)
			}
		}
	}
}

// TestEdBaseTables checks every entry of the fixed tables: (2i+1)·B and
// (2i+1)·2^128·B, against edwards25519.ScalarBaseMult.
func TestEdBaseTables(t *testing.T) {
	base := edBase()
	var id edExtended
	id.setPoint(edwards25519.NewIdentityPoint())
	for i := range base.b {
		for _, tc := range []struct {
			tab   *edBaseOddMultiples
			shift uint
		}{{&base.b, 0}, {&base.b128, 128}} {
			var k [32]byte
			new(big.Int).Lsh(big.NewInt(int64(2*i+1)), tc.shift).FillBytes(k[:])
			for a, b := 0, 31; a < b; a, b = a+1, b-1 {
				k[a], k[b] = k[b], k[a]
			}
			want := new(edwards25519.Point).ScalarBaseMult(edScalarOf(t, &k))
			var c edCompleted
			var got edExtended
			if edPointOf(t, got.fromCompleted(c.addAffine(&id, &tc.tab[i]))).Equal(want) != 1 {
				t.Fatalf("entry %d of the 2^%d·B table is wrong", i, tc.shift)
			}
		}
	}
}

// edNAFValue is the integer a NAF stands for; edNAFCheck also checks its
// form: digits odd and below 2^(w-1) in magnitude, w-1 zeros after each
// nonzero one, and top one past the last nonzero digit.
func edNAFCheck(t *testing.T, n *edNAF, top int, w uint) *big.Int {
	t.Helper()
	v, last := new(big.Int), -1
	for i := edNAFLen - 1; i >= 0; i-- {
		d := int(n[i])
		if d == 0 {
			continue
		}
		if last < 0 {
			last = i
		}
		if d%2 == 0 || d >= 1<<(w-1) || d <= -(1<<(w-1)) {
			t.Fatalf("digit %d = %d out of form (w = %d)", i, d, w)
		}
		for j := i + 1; j < i+int(w) && j < edNAFLen; j++ {
			if n[j] != 0 {
				t.Fatalf("digits %d and %d both nonzero (w = %d)", i, j, w)
			}
		}
		v.Add(v, new(big.Int).Lsh(big.NewInt(int64(d)), uint(i)))
	}
	if top != last+1 {
		t.Fatalf("top %d, last nonzero digit %d", top, last)
	}
	return v
}

// TestEdNAF checks edNAF.set for widths 2 to 8 on random integers of
// every size up to 2^256 - 1 and edge values.
func TestEdNAF(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(9, 10))
	var ks [][32]byte
	ks = append(ks, [32]byte{}, [32]byte{1}, [32]byte{0xff})
	var all, alt [32]byte
	for i := range all {
		all[i], alt[i] = 0xff, 0xaa
	}
	ks = append(ks, all, alt)
	for range 3000 {
		var k [32]byte
		n := rng.IntN(33)
		for i := range n {
			k[i] = byte(rng.Uint32())
		}
		if rng.IntN(4) == 0 { // long runs of ones
			for i := range n {
				k[i] |= 0xf7
			}
		}
		ks = append(ks, k)
	}
	for _, k := range ks {
		want := new(big.Int)
		for i := 31; i >= 0; i-- {
			want.Lsh(want, 8).Or(want, big.NewInt(int64(k[i])))
		}
		for w := uint(2); w <= 8; w++ {
			var n edNAF
			top := n.set(&k, w)
			if got := edNAFCheck(t, &n, top, w); got.Cmp(want) != 0 {
				t.Fatalf("NAF_%d(%x) = %v, want %v", w, k, got, want)
			}
			n.negate()
			if got := edNAFCheck(t, &n, top, w); got.Cmp(new(big.Int).Neg(want)) != 0 {
				t.Fatalf("-NAF_%d(%x) = %v", w, k, got)
			}
		}
	}
}

// TestEdMSM checks edMSM against edwards25519.VarTimeMultiScalarMult on
// random scalars below 2^130 (signed for P and Q) and points P, Q with
// small-order components, and that a sum that cancels gives the identity.
func TestEdMSM(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(11, 12))
	randScalar := func(bits int) [32]byte {
		var k [32]byte
		for i := range k {
			k[i] = byte(rng.Uint32())
		}
		for i := bits; i < 256; i++ {
			k[i/8] &^= 1 << (i % 8)
		}
		return k
	}
	g, g128 := edwards25519.NewGeneratorPoint(), new(edwards25519.Point)
	var k128 [32]byte
	k128[16] = 1
	g128.ScalarBaseMult(edScalarOf(t, &k128))
	for i := range 200 {
		k0, k1 := randScalar(rng.IntN(129)), randScalar(rng.IntN(129))
		ka, kr := randScalar(rng.IntN(131)), randScalar(rng.IntN(131))
		P, Q := edRandomPoint(t, rng), edRandomPoint(t, rng)
		if i < 8 {
			P = edTorsion(t)[i]
		}
		negA, negR := rng.IntN(2) == 1, rng.IntN(2) == 1
		var n0, n1, na, nr edNAF
		top := max(n0.set(&k0, 8), n1.set(&k1, 8), na.set(&ka, 5), nr.set(&kr, 5))
		Pm, Qm := P, Q // the points the signed scalars multiply
		if negA {
			na.negate()
			Pm = new(edwards25519.Point).Negate(P)
		}
		if negR {
			nr.negate()
			Qm = new(edwards25519.Point).Negate(Q)
		}
		var pe, qe edExtended
		var pt, qt edOddMultiples
		pt.set(pe.setPoint(P))
		qt.set(qe.setPoint(Q))
		var got edProjective
		edMSM(&got, &n0, &n1, &na, &nr, top, &pt, &qt)
		want := new(edwards25519.Point).VarTimeMultiScalarMult(
			[]*edwards25519.Scalar{edScalarOf(t, &k0), edScalarOf(t, &k1), edScalarOf(t, &ka), edScalarOf(t, &kr)},
			[]*edwards25519.Point{g, g128, Pm, Qm})
		if edPointOf(t, edExtendedOfProjective(&got)).Equal(want) != 1 {
			t.Fatalf("case %d: MSM wrong", i)
		}
		if got.isIdentity() != (want.Equal(edwards25519.NewIdentityPoint()) == 1) {
			t.Fatalf("case %d: isIdentity wrong", i)
		}
		// [ka]P - [ka]P with P's table on both sides: the identity.
		var nb edNAF
		nb = na
		nb.negate()
		if !edMSM(&got, new(edNAF), new(edNAF), &na, &nb, top, &pt, &pt).isIdentity() {
			t.Fatalf("case %d: [a]P - [a]P is not the identity", i)
		}
	}
}

// edNonCanonicalR returns signatures whose equation holds, [S]B - [k]A =
// R, but whose R bytes are a non-canonical encoding of R (y >= p, or the
// sign bit set with x = 0): crypto/ed25519 rejects every one, since it
// compares bytes with the canonical encoding, so a fast path without the
// canonical-R check would accept them. A is a point of order 8, alone or
// plus a random [a]B (S = k·a).
func edNonCanonicalR(t *testing.T, rng *mrand.Rand, torsion []*edwards25519.Point) []sigCheck {
	t.Helper()
	ff := func(first, last byte) []byte {
		b := bytes.Repeat([]byte{0xff}, 32)
		b[0], b[31] = first, last
		return b
	}
	identityNeg := make([]byte, 32)
	identityNeg[0], identityNeg[31] = 1, 0x80
	encs := [][]byte{
		identityNeg,    // y = 1, x = 0, sign bit set
		ff(0xee, 0x7f), // y = p + 1: the identity
		ff(0xee, 0xff), // the same, sign bit set
		ff(0xec, 0xff), // y = p - 1, x = 0 (order 2), sign bit set
		ff(0xed, 0x7f), // y = p: y = 0, order 4
		ff(0xed, 0xff), // the other point with y = 0
	}
	var out []sigCheck
	for _, enc := range encs {
		R, err := new(edwards25519.Point).SetBytes(enc)
		if err != nil {
			t.Fatalf("%x does not decode: %v", enc, err)
		}
		if bytes.Equal(R.Bytes(), enc) {
			t.Fatalf("%x is canonical", enc)
		}
		for _, mixed := range []bool{false, true} {
			a := edwards25519.NewScalar()
			if mixed {
				var ab [64]byte
				rand.Read(ab[:])
				a.SetUniformBytes(ab[:])
			}
			A := new(edwards25519.Point).ScalarBaseMult(a)
			A.Add(A, torsion[1])
			pub := A.Bytes()
			minusA := new(edwards25519.Point).Negate(A)
			found := false
			for range 1024 {
				msg := fmt.Appendf(nil, "non-canonical R %d", rng.Uint64())
				k := edChallenge(enc, pub, msg)
				S := new(edwards25519.Scalar).Multiply(k, a)
				if new(edwards25519.Point).VarTimeDoubleScalarBaseMult(k, minusA, S).Equal(R) == 1 {
					out = append(out, sigCheck{pub: pub, msg: msg, sig: append(bytes.Clone(enc), S.Bytes()...)})
					found = true
					break
				}
			}
			if !found {
				t.Fatalf("no message for R = %x", enc)
			}
		}
	}
	return out
}

// edByteFlips returns a valid signature and the same with one random bit
// flipped in each byte of the signature, the key and the message.
func edByteFlips(rng *mrand.Rand) []sigCheck {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	msg := make([]byte, 40)
	rand.Read(msg)
	sig := ed25519.Sign(priv, msg)
	out := []sigCheck{{pub: pub, msg: msg, sig: sig}}
	for part, b := range [][]byte{sig, pub, msg} {
		for i := range b {
			c := sigCheck{pub: bytes.Clone(pub), msg: bytes.Clone(msg), sig: bytes.Clone(sig)}
			[][]byte{c.sig, c.pub, c.msg}[part][i] ^= 1 << rng.IntN(8)
			out = append(out, c)
		}
	}
	return out
}

// TestVerifyEd25519MatchesEd25519 is the differential test of
// VerifyEd25519 against crypto/ed25519.Verify on ed25519TestChecks (valid,
// altered, small-order, mixed-order, non-canonical, speccheck) and
// random signatures by keys with a small-order component.
func TestVerifyEd25519MatchesEd25519(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(13, 14))
	checks := ed25519TestChecks(t, rng)
	for _, c := range checks {
		if got, want := VerifyEd25519(c.pub, c.msg, c.sig), ed25519.Verify(c.pub, c.msg, c.sig); got != want {
			t.Fatalf("pub %x msg %x sig %x: VerifyEd25519 %v, crypto/ed25519 %v", c.pub, c.msg, c.sig, got, want)
		}
	}
	n := SignaturesVerified()
	VerifyEd25519(checks[0].pub, checks[0].msg, checks[0].sig)
	if SignaturesVerified() != n {
		t.Fatal("VerifyEd25519 is counted in SignaturesVerified, which counts account signatures only")
	}
	verifySignature(nil, checks[0].pub, checks[0].msg, checks[0].sig)
	if SignaturesVerified() != n+1 {
		t.Fatal("verifySignature is not counted in SignaturesVerified")
	}
	// A key of the wrong length panics, as in crypto/ed25519.
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("VerifyEd25519 with a 31-byte key did not panic")
			}
		}()
		VerifyEd25519(make([]byte, 31), nil, make([]byte, 64))
	}()
	if VerifyEd25519(checks[0].pub, checks[0].msg, checks[0].sig[:63]) {
		t.Fatal("a 63-byte signature verifies")
	}
}

// TestVerifyEd25519MixedOrder compares VerifyEd25519 with crypto/ed25519
// on signatures by keys A = [a]B + T with R = [r]B + T2 and S = r + k·a,
// T and T2 random points of small order: crypto/ed25519 accepts exactly
// when [k](-T) = T2, about one in eight, so both answers occur often.
func TestVerifyEd25519MixedOrder(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(19, 20))
	torsion := edTorsion(t)
	accepted := 0
	for i := range 400 {
		var ab, rb [64]byte
		for j := range ab {
			ab[j], rb[j] = byte(rng.Uint32()), byte(rng.Uint32())
		}
		a, _ := new(edwards25519.Scalar).SetUniformBytes(ab[:])
		r, _ := new(edwards25519.Scalar).SetUniformBytes(rb[:])
		A := new(edwards25519.Point).ScalarBaseMult(a)
		A.Add(A, torsion[rng.IntN(8)])
		R := new(edwards25519.Point).ScalarBaseMult(r)
		R.Add(R, torsion[rng.IntN(8)])
		pub, msg := A.Bytes(), fmt.Appendf(nil, "mixed %d", i)
		k := edChallenge(R.Bytes(), pub, msg)
		sig := append(R.Bytes(), new(edwards25519.Scalar).MultiplyAdd(k, a, r).Bytes()...)
		want := ed25519.Verify(pub, msg, sig)
		if got := VerifyEd25519(pub, msg, sig); got != want {
			t.Fatalf("pub %x msg %x sig %x: VerifyEd25519 %v, crypto/ed25519 %v", pub, msg, sig, got, want)
		}
		if want {
			accepted++
		}
	}
	if accepted < 20 || accepted > 150 {
		t.Fatalf("crypto/ed25519 accepted %d of 400", accepted)
	}
}

// TestEdFastPathTaken checks that valid signatures are accepted by the
// fast path itself, not by the fallback: every check of ed25519TestChecks
// that crypto/ed25519 accepts (mixed-order keys and R included), 300
// fresh signatures, and a sigGroup verifying an AccountState. Otherwise a
// fast path that never accepts would pass every differential test.
func TestEdFastPathTaken(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(15, 16))
	checks := ed25519TestChecks(t, rng)
	for range 300 {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		msg := make([]byte, rng.IntN(100))
		rand.Read(msg)
		checks = append(checks, sigCheck{pub: pub, msg: msg, sig: ed25519.Sign(priv, msg)})
	}
	valid, refused := 0, 0
	h := sha512.New()
	for _, c := range checks {
		if len(c.pub) != 32 || !ed25519.Verify(c.pub, c.msg, c.sig) {
			continue
		}
		valid++
		var k edKey
		if !k.set(c.pub) || !edFastAccept(&k, h, c.pub, c.msg, c.sig) {
			if edRefused(c) { // about 5 challenges in a million
				refused++
				continue
			}
			t.Fatalf("pub %x msg %x sig %x: valid, not accepted by the fast path", c.pub, c.msg, c.sig)
		}
	}
	if valid < 350 || refused > 1 {
		t.Fatalf("%d valid signatures, %d challenges refused by reduceChallenge", valid, refused)
	}
	// A sigGroup: every signature of a state on the fast path.
	c := newChain(t)
	var g sigGroup
	if err := verifyAccountState(&g, c.v3, fullRule); err != nil { // records the checks
		t.Fatal(err)
	}
	want := 0
	for _, c := range g.checks {
		if !edRefused(c) {
			want++
		}
	}
	sigs, fast := SignaturesVerified(), edFastAccepted.Load()
	if err := VerifyAccountState(c.v3); err != nil {
		t.Fatal(err)
	}
	if ns, nf := SignaturesVerified()-sigs, edFastAccepted.Load()-fast; ns < 4 || ns != uint64(len(g.checks)) || nf != uint64(want) {
		t.Fatalf("VerifyAccountState: %d signatures, %d on the fast path; want %d, %d", ns, nf, len(g.checks), want)
	}
}

// edRefused reports whether reduceChallenge refuses the challenge k of c
// (then the fast path leaves c to ed25519.Verify).
func edRefused(c sigCheck) bool {
	k := edChallenge(c.sig[:32], c.pub, c.msg)
	var kb [32]byte
	copy(kb[:], k.Bytes())
	_, _, _, ok := reduceChallenge(&kb)
	return !ok
}

// FuzzVerifyEd25519 compares VerifyEd25519 with crypto/ed25519.Verify on
// a signature of msg by a key from seed, altered at one byte (pos and x
// pick it; x = 0 leaves it valid), or on arbitrary key and signature
// bytes (raw).
func FuzzVerifyEd25519(f *testing.F) {
	f.Add([]byte("seed"), []byte("message"), uint16(0), byte(0), false)
	f.Add([]byte("seed"), []byte("message"), uint16(5), byte(1), false)
	f.Add([]byte("seed"), []byte("message"), uint16(70), byte(0x80), false)
	f.Add(make([]byte, 96), []byte{}, uint16(0), byte(0), true)
	f.Fuzz(func(t *testing.T, seed, msg []byte, pos uint16, x byte, raw bool) {
		var pub, sig []byte
		if raw {
			if len(seed) != 96 {
				return
			}
			pub, sig = seed[:32], seed[32:]
		} else {
			s := sha512.Sum512(seed)
			priv := ed25519.NewKeyFromSeed(s[:32])
			pub, sig = priv.Public().(ed25519.PublicKey), ed25519.Sign(priv, msg)
			all := append(append(bytes.Clone(sig), pub...), msg...)
			all[int(pos)%len(all)] ^= x
			sig, pub, msg = all[:64], all[64:96], all[96:]
		}
		if got, want := VerifyEd25519(pub, msg, sig), ed25519.Verify(pub, msg, sig); got != want {
			t.Fatalf("pub %x msg %x sig %x: VerifyEd25519 %v, crypto/ed25519 %v", pub, msg, sig, got, want)
		}
	})
}

// BenchmarkVerifyEd25519 compares, in one run, crypto/ed25519.Verify,
// VerifyEd25519 (valid and invalid signatures: an invalid one pays the
// fast path and ed25519.Verify), the two alternating in one loop
// (interleaved), and sigGroup.verify of one key's signatures on four
// messages (an AccountState's pattern) alternating with ed25519.Verify of
// the same four (group4). x-ed25519 is the time over ed25519.Verify's.
func BenchmarkVerifyEd25519(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	msg := []byte("keyline reference message")
	sig := ed25519.Sign(priv, msg)
	bad := bytes.Clone(sig)
	bad[40] ^= 1
	b.Run("ed25519", func(b *testing.B) {
		for b.Loop() {
			if !ed25519.Verify(pub, msg, sig) {
				b.Fatal("verify")
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			if !VerifyEd25519(pub, msg, sig) {
				b.Fatal("verify")
			}
		}
	})
	b.Run("fast-invalid", func(b *testing.B) {
		for b.Loop() {
			if VerifyEd25519(pub, msg, bad) {
				b.Fatal("verify")
			}
		}
	})
	// Both in one loop, alternating, so that load from other processes
	// falls on both alike: x-ed25519 is the fast path's time over
	// ed25519.Verify's.
	b.Run("interleaved", func(b *testing.B) {
		var fast, ed time.Duration
		for b.Loop() {
			t0 := time.Now()
			ok1 := VerifyEd25519(pub, msg, sig)
			t1 := time.Now()
			ok2 := ed25519.Verify(pub, msg, sig)
			t2 := time.Now()
			if !ok1 || !ok2 {
				b.Fatal("verify")
			}
			fast, ed = fast+t1.Sub(t0), ed+t2.Sub(t1)
		}
		b.ReportMetric(float64(fast.Nanoseconds())/float64(b.N), "fast-ns")
		b.ReportMetric(float64(ed.Nanoseconds())/float64(b.N), "ed25519-ns")
		b.ReportMetric(float64(fast)/float64(ed), "x-ed25519")
	})
	b.Run("group4", func(b *testing.B) {
		var g sigGroup
		for i := range 4 {
			m := fmt.Appendf(nil, "message %d", i)
			g.checks = append(g.checks, sigCheck{pub: pub, msg: m, sig: ed25519.Sign(priv, m)})
		}
		var fast, ed time.Duration
		for b.Loop() {
			t0 := time.Now()
			ok := g.verify()
			t1 := time.Now()
			for _, c := range g.checks {
				ok = ed25519.Verify(c.pub, c.msg, c.sig) && ok
			}
			t2 := time.Now()
			if !ok {
				b.Fatal("verify")
			}
			fast, ed = fast+t1.Sub(t0), ed+t2.Sub(t1)
		}
		b.ReportMetric(float64(fast.Nanoseconds())/float64(4*b.N), "group-ns/sig")
		b.ReportMetric(float64(ed.Nanoseconds())/float64(4*b.N), "ed25519-ns")
		b.ReportMetric(float64(fast)/float64(ed), "x-ed25519")
	})
}

// BenchmarkEdBaseTables measures building the fixed tables of B and
// 2^128·B, which the first fast verification in a process pays.
func BenchmarkEdBaseTables(b *testing.B) {
	for b.Loop() {
		newEdBaseTables()
	}
}

// TestEdRelationGuard checks the fast path's guard on reduceChallenge's
// output against math/big: on reduceChallenge's results for random k and
// on the same with a flipped bit of c0 or c1 or the sign, edRelationHolds
// must report exactly whether c1 is odd, c0 and |c1| are below L and
// c0 ≡ c1·k (mod 8L).
func TestEdRelationGuard(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(17, 18))
	L := new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), 252), edBig("27742317777372353535851937790883648493"))
	eightL := new(big.Int).Lsh(L, 3)
	le := func(b []byte) *big.Int {
		r := make([]byte, len(b))
		for i := range b {
			r[len(b)-1-i] = b[i]
		}
		return new(big.Int).SetBytes(r)
	}
	holds, refused, mod8 := 0, 0, 0
	for i := range 3000 {
		var ub [64]byte
		for j := range ub {
			ub[j] = byte(rng.Uint32())
		}
		k, _ := new(edwards25519.Scalar).SetUniformBytes(ub[:])
		var kb [32]byte
		copy(kb[:], k.Bytes())
		c0, c1, neg, ok := reduceChallenge(&kb)
		if !ok {
			continue // a few in a million: the fast path leaves them to ed25519.Verify
		}
		if i%2 == 1 { // perturb
			switch bit := rng.IntN(4); bit {
			case 3: // c1 + 2 and c0 + ±2k mod L: the relation mod L only
				v := le(c0[:])
				d := new(big.Int).Lsh(le(kb[:]), 1)
				if neg {
					d.Neg(d)
				}
				v.Add(v, d).Mod(v, L)
				c0 = [32]byte{}
				v.FillBytes(c0[:])
				for a, b := 0, 31; a < b; a, b = a+1, b-1 {
					c0[a], c0[b] = c0[b], c0[a]
				}
				w := new(big.Int).Add(le(c1[:]), big.NewInt(2))
				w.FillBytes(c1[:])
				for a, b := 0, 31; a < b; a, b = a+1, b-1 {
					c1[a], c1[b] = c1[b], c1[a]
				}
			case 0:
				b := rng.IntN(256)
				c0[b/8] ^= 1 << (b % 8)
			case 1:
				b := rng.IntN(256)
				c1[b/8] ^= 1 << (b % 8)
			case 2:
				neg = !neg
			}
		}
		c1v := le(c1[:])
		if neg {
			c1v.Neg(c1v)
		}
		diff := new(big.Int).Sub(le(c0[:]), new(big.Int).Mul(c1v, le(kb[:])))
		want := c1[0]&1 == 1 && le(c0[:]).Cmp(L) < 0 && le(c1[:]).Cmp(L) < 0 && diff.Mod(diff, eightL).Sign() == 0
		var c1s edwards25519.Scalar
		if got := edRelationHolds(&c0, &c1, neg, &kb, k, &c1s); got != want {
			t.Fatalf("k %x c0 %x c1 %x neg %v: guard %v, want %v", kb, c0, c1, neg, got, want)
		}
		if want {
			holds++
		} else {
			refused++
		}
		c0s, err0 := new(edwards25519.Scalar).SetCanonicalBytes(c0[:])
		c1m, err1 := new(edwards25519.Scalar).SetCanonicalBytes(c1[:])
		if err0 == nil && err1 == nil && neg {
			c1m.Negate(c1m)
		}
		if !want && err0 == nil && err1 == nil && c1[0]&1 == 1 && new(edwards25519.Scalar).Multiply(c1m, k).Equal(c0s) == 1 {
			mod8++ // refused on the mod 8 check alone
		}
	}
	if holds < 1500 || refused < 1200 || mod8 < 100 {
		t.Fatalf("%d held, %d refused, %d by the mod 8 check alone", holds, refused, mod8)
	}
}

func edBig(s string) *big.Int {
	v, ok := new(big.Int).SetString(s, 10)
	if !ok {
		panic(s)
	}
	return v
}

// edChallenge is the Ed25519 challenge k = SHA-512(R || A || M) mod L of a
// signature with R's encoding r by the key encoded as pub over msg.
func edChallenge(r, pub, msg []byte) *edwards25519.Scalar {
	h := sha512.New()
	h.Write(r)
	h.Write(pub)
	h.Write(msg)
	k, err := new(edwards25519.Scalar).SetUniformBytes(h.Sum(nil))
	if err != nil {
		panic(err) // unreachable: 64 bytes
	}
	return k
}
