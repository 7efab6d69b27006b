package devices

import (
	"encoding/binary"
	"math/bits"
)

// challengeBits bounds the scalars reduceChallenge returns: when it
// reports ok, c0 < 2^challengeBits and |c1| < 2^challengeBits. For a
// random k the result is below 2^128 in about 83% of cases, below 2^130
// in 99%, and 2^132 or more in under 0.1% (2^136 or more, refused: 10
// of 2.2 million). A longer result costs the verifier one doubling per
// bit, a refusal (ok false) a full crypto/ed25519.Verify.
const challengeBits = 136

// limbs4 is a 256-bit unsigned integer, four 64-bit limbs, least
// significant first.
type limbs4 [4]uint64

var (
	// scalarL is L = 2^252 + 27742317777372353535851937790883648493, the
	// order of the prime-order subgroup of edwards25519.
	scalarL = limbs4{0x5812631a5cf5d3ed, 0x14def9dea2f79cd6, 0, 0x1000000000000000}
	// order8L is 8L: the order of every point of the curve divides it.
	order8L = limbs4{0xc09318d2e7ae9f68, 0xa6f7cef517bce6b2, 0, 0x8000000000000000}
)

// reduceChallenge splits a challenge scalar k (little-endian, k < L, as
// edwards25519.Scalar.Bytes returns it) into two short integers: c0 >= 0
// and an odd c1 with
//
//	c0 ≡ c1·k (mod 8L),  c0 < 2^challengeBits,  0 < |c1| < 2^challengeBits,
//
// returned as little-endian magnitudes, with c1neg the sign of c1 (true:
// c1 < 0). Because the order of every curve point divides 8L, [c1·k]A =
// [c0]A for any point A, so a verifier can check [c1]([S]B - [k]A - R) ==
// identity with ~128-bit scalars, and since c1 is odd and 0 < |c1| < L,
// gcd(c1, 8L) = 1 and that point is the identity iff [S]B - [k]A - R is
// (Pornin, "Optimized lattice basis reduction in dimension 2, and fast
// Schnorr and EdDSA signature verification", ePrint 2020/454).
//
// The result is a function of k defined by the extended Euclidean
// algorithm on (8L, k): its rows (r_j, t_j) start (8L, 0), (k, 1) and
// continue r_{j+1} = r_{j-1} mod r_j, t_{j+1} = t_{j-1} - q_j·t_j with
// q_j = floor(r_{j-1} / r_j), so that r_j ≡ t_j·k (mod 8L) and r_j >= 0.
// Let i be the first row with r_i < 2^128 (then |t_i| <= 8L/r_{i-1} <
// 2^128). If t_i is odd the result is (r_i, t_i). Otherwise t_{i-1} and
// t_{i+1} are odd (consecutive t's are coprime) and the result is the
// one of rows i-1 and i+1 with the smaller max(r, |t|), row i-1 on a tie.
// ok is false, and the other results zero, if k >= L, if that row's r or
// |t| is 2^challengeBits or more, or if the row fails the relation guard
// (see rowHolds); the caller then verifies the long way.
//
// The rows are computed with Lehmer's algorithm on 64-bit leading words
// (lehmerStep) and exact single steps (exactStep) where the leading words
// cannot decide the next quotient or the next remainder might be the
// first below 2^128. It does not allocate; TestReduceChallengeMatchesRef
// checks it against the definition above computed with math/big.
func reduceChallenge(k *[32]byte) (c0, c1 [32]byte, c1neg bool, ok bool) {
	var kl limbs4
	for i := range kl {
		kl[i] = binary.LittleEndian.Uint64(k[8*i:])
	}
	if cmpLimbs(&kl, &scalarL) >= 0 {
		return c0, c1, false, false
	}
	e := euclid{r0: order8L, r1: kl, t1: limbs4{1}, s0: limbs4{1}, odd1: true}
	for !below2to128(&e.r1) {
		if !e.lehmerStep() {
			e.exactStep()
		}
	}
	// e.r1 is row i; e.r0 is row i-1 (i >= 1, and r_0 = 8L >= 2^128).
	r, t, s, odd := e.r1, e.t1, e.s1, e.odd1
	if t[0]&1 == 0 {
		// i >= 2 (t_1 = 1), so r_i >= gcd(8L, k) > 0: row i+1 exists.
		prev, prevT, prevS := e.r0, e.t0, e.s0
		e.exactStep()
		r, t, s, odd = prev, prevT, prevS, e.odd1 // i-1 and i+1 alike
		if m := maxLimbs(&e.r1, &e.t1); cmpLimbs(m, maxLimbs(&prev, &prevT)) < 0 {
			r, t, s, odd = e.r1, e.t1, e.s1, e.odd1
		}
	}
	if bitLen(&r) > challengeBits || bitLen(&t) > challengeBits || !rowHolds(&kl, &r, &t, &s, odd) {
		return c0, c1, false, false
	}
	for i := range r {
		binary.LittleEndian.PutUint64(c0[8*i:], r[i])
		binary.LittleEndian.PutUint64(c1[8*i:], t[i])
	}
	// t_j < 0 exactly for even j >= 2; t_1 = 1.
	return c0, c1, !odd, true
}

// euclid holds two consecutive rows j-1 and j of the extended Euclidean
// algorithm on (8L, k): remainders r, and the magnitudes of the cofactors
// t and s of r_j = s_j·8L + t_j·k. The signs alternate with j: t_j > 0
// and s_j <= 0 for odd j, t_j <= 0 and s_j > 0 for even j (t_0 = 0,
// s_1 = 0), so the magnitudes follow |t_{j+1}| = |t_{j-1}| + q_j·|t_j|
// and likewise for s. odd1 is the parity of j, the index of r1.
type euclid struct {
	r0, r1, t0, t1, s0, s1 limbs4
	odd1                   bool
}

// lehmerStep advances e by as many rows as the 64-bit leading words of
// r0 and r1 (both shifted right by sh, so that x_0 = r0>>sh has its top
// bit set) determine, and reports whether it advanced at all. It stops
// before a row that might be below 2^128, so e.r1 >= 2^128 still holds
// after it; the caller takes exact steps when it reports false.
//
// It runs the Euclidean algorithm on x_0 = r0>>sh, x_1 = r1>>sh. The
// rows it reaches are x_j = (-1)^j (α_j x_0 - β_j x_1), with α_0 = 1,
// β_0 = 0, α_1 = 0, β_1 = 1 and α_{j+1} = α_{j-1} + q_j·α_j (β alike),
// while the true rows, divided by 2^sh, are Y_j = (-1)^j (α_j R0 -
// β_j R1) with R0 - x_0 and R1 - x_1 in [0, 1). So Y_j - x_j >= -β_j for
// even j and >= -α_j for odd j (strictly if that is not 0), and the
// single precision quotient q_j = floor(x_{j-1}/x_j) is the true one,
// given true rows j-1 and j, when Y_{j+1} = Y_{j-1} - q_j·Y_j is in
// [0, Y_j), which holds if (Jebelean's condition)
//
//	x_{j+1} >= (β_{j+1} if j+1 is even, else α_{j+1}), and
//	x_j - x_{j+1} >= (β_j + β_{j+1} if j is even, else α_j + α_{j+1})
//
// (that sum is >= 1 for j >= 1). The row is also taken only if x_{j+1}
// minus the first bound is at least 2^(128-sh) (1 if sh >= 128), so that
// the true row, 2^sh·Y_{j+1}, is at least 2^128.
// α and β stay below 2^64: α_{j+1}·x_j + α_j·x_{j+1} = x_1 and
// β_{j+1}·x_j + β_j·x_{j+1} = x_0.
func (e *euclid) lehmerStep() bool {
	sh := bitLen(&e.r0) - 64 // r0 > r1 >= 2^128, so sh > 64
	thr := uint64(1)
	if sh < 128 {
		thr = 1 << (128 - sh)
	}
	xp, xc := shiftedWord(&e.r0, sh), shiftedWord(&e.r1, sh) // x_{j-1}, x_j
	ap, bp, ac, bc := uint64(1), uint64(0), uint64(0), uint64(1)
	jOdd := true // parity of j, the index of xc
	m := 0
	for xc != 0 {
		q := xp / xc // a plain division: faster here than branching on small q
		xn := xp - q*xc
		an, bn := ap+q*ac, bp+q*bc
		bound, d1, d2 := an, ac, an // j+1 even: β_{j+1}; j odd: α_j + α_{j+1}
		if jOdd {
			bound = bn
		} else {
			d1, d2 = bc, bn
		}
		diff := xc - xn
		if xn < bound || xn-bound < thr || d1 > diff || d2 > diff-d1 {
			break
		}
		xp, xc, ap, bp, ac, bc = xc, xn, ac, bc, an, bn
		jOdd = !jOdd
		m++
	}
	if m == 0 {
		return false
	}
	// Rows m and m+1 (xp, xc) replace rows 0 and 1 (r0, r1): row j is
	// (-1)^j (α_j·row0 - β_j·row1), whose cofactor magnitudes add.
	// jOdd is now the parity of m+1.
	var r0, r1 limbs4
	if jOdd { // m even
		r0 = mulSubLimbs(ap, &e.r0, bp, &e.r1)
		r1 = mulSubLimbs(bc, &e.r1, ac, &e.r0)
	} else {
		r0 = mulSubLimbs(bp, &e.r1, ap, &e.r0)
		r1 = mulSubLimbs(ac, &e.r0, bc, &e.r1)
	}
	e.r0, e.r1 = r0, r1
	// Rows m and m+1 are above 2^128, so |t| <= 8L/2^128 and |s| <= k/2^128
	// stay below 2^128 in the rows this step reaches (r_{j-1}·|t_j| +
	// r_j·|t_{j-1}| = 8L, and = k for s).
	e.t0, e.t1 = mulAdd128(ap, &e.t0, bp, &e.t1), mulAdd128(ac, &e.t0, bc, &e.t1)
	e.s0, e.s1 = mulAdd128(ap, &e.s0, bp, &e.s1), mulAdd128(ac, &e.s0, bc, &e.s1)
	if m&1 == 1 {
		e.odd1 = !e.odd1
	}
	return true
}

// exactStep advances e by one row: q = floor(r0 / r1), by binary long
// division (one compare per bit of q, few for the usual small q),
// r_{j+1} = r0 - q·r1, |t_{j+1}| = |t0| + q·|t1|, |s_{j+1}| likewise.
// It requires r1 > 0.
func (e *euclid) exactStep() {
	r, t, s := e.r0, e.t0, e.s0
	for n := bitLen(&r) - bitLen(&e.r1); n >= 0; n-- {
		d := shlLimbs(&e.r1, n)
		if cmpLimbs(&r, &d) < 0 {
			continue
		}
		subLimbs(&r, &d)
		dt, ds := shlLimbs(&e.t1, n), shlLimbs(&e.s1, n)
		addLimbs(&t, &dt)
		addLimbs(&s, &ds)
	}
	e.r0, e.t0, e.s0 = e.r1, e.t1, e.s1
	e.r1, e.t1, e.s1 = r, t, s
	e.odd1 = !e.odd1
}

// rowHolds is the relation guard: it reports whether r = s·8L + t·k as
// integers, with the row's signs (t > 0 >= s for an odd row, t <= 0 < s
// for an even one), which implies r ≡ t·k (mod 8L) whatever computed the
// row. It checks r + |s|·8L == |t|·k (odd) or r + |t|·k == |s|·8L (even)
// on 448-bit products; t and s must be below 2^192 (they are below
// 2^challengeBits + 1 where it is called).
func rowHolds(k, r, t, s *limbs4, odd bool) bool {
	if t[3]|s[3] != 0 {
		return false
	}
	tk, s8L := mulWide(t, k), mulWide(s, &order8L)
	lhs, rhs := &s8L, &tk
	if !odd {
		lhs, rhs = &tk, &s8L
	}
	var c uint64
	for i := range lhs {
		var ri uint64
		if i < 4 {
			ri = r[i]
		}
		lhs[i], c = bits.Add64(lhs[i], ri, c)
	}
	return c == 0 && *lhs == *rhs
}

// mulWide returns the 448-bit product a·b for a < 2^192.
func mulWide(a, b *limbs4) [7]uint64 {
	var p [7]uint64
	for i := range 3 {
		var c uint64
		for j := range b {
			hi, lo := bits.Mul64(a[i], b[j])
			var cc uint64
			lo, cc = bits.Add64(lo, p[i+j], 0)
			hi += cc
			lo, cc = bits.Add64(lo, c, 0)
			hi += cc
			p[i+j], c = lo, hi
		}
		p[i+4] = c
	}
	return p
}

// mulSubLimbs returns a·x - b·y modulo 2^256: the exact value when it is
// in [0, 2^256), as the rows lehmerStep computes are.
func mulSubLimbs(a uint64, x *limbs4, b uint64, y *limbs4) limbs4 {
	var z limbs4
	var ca, cb, borrow uint64
	for i := range z {
		ha, la := bits.Mul64(a, x[i])
		hb, lb := bits.Mul64(b, y[i])
		var c uint64
		la, c = bits.Add64(la, ca, 0)
		ca = ha + c
		lb, c = bits.Add64(lb, cb, 0)
		cb = hb + c
		z[i], borrow = bits.Sub64(la, lb, borrow)
	}
	return z
}

// mulAdd128 returns a·x + b·y modulo 2^128, from the low two limbs of x
// and y: the exact value when it is below 2^128.
func mulAdd128(a uint64, x *limbs4, b uint64, y *limbs4) limbs4 {
	ha, la := bits.Mul64(a, x[0])
	hb, lb := bits.Mul64(b, y[0])
	lo, c := bits.Add64(la, lb, 0)
	return limbs4{lo, ha + hb + c + a*x[1] + b*y[1]}
}

// addLimbs sets x to x + y modulo 2^256.
func addLimbs(x, y *limbs4) {
	var c uint64
	for i := range x {
		x[i], c = bits.Add64(x[i], y[i], c)
	}
}

// subLimbs sets x to x - y modulo 2^256.
func subLimbs(x, y *limbs4) {
	var b uint64
	for i := range x {
		x[i], b = bits.Sub64(x[i], y[i], b)
	}
}

// shlLimbs returns x·2^n modulo 2^256, 0 <= n < 256.
func shlLimbs(x *limbs4, n int) limbs4 {
	var z limbs4
	w, b := n/64, uint(n%64)
	for i := 3; i >= w; i-- {
		z[i] = x[i-w] << b
		if b != 0 && i-w-1 >= 0 {
			z[i] |= x[i-w-1] >> (64 - b)
		}
	}
	return z
}

// shiftedWord returns the low 64 bits of x / 2^n, 0 <= n < 256.
func shiftedWord(x *limbs4, n int) uint64 {
	w, b := n/64, uint(n%64)
	v := x[w] >> b
	if b != 0 && w+1 < 4 {
		v |= x[w+1] << (64 - b)
	}
	return v
}

// cmpLimbs returns -1, 0 or 1 as x < y, x == y or x > y.
func cmpLimbs(x, y *limbs4) int {
	for i := 3; i >= 0; i-- {
		if x[i] != y[i] {
			if x[i] < y[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// maxLimbs returns the larger of x and y.
func maxLimbs(x, y *limbs4) *limbs4 {
	if cmpLimbs(x, y) >= 0 {
		return x
	}
	return y
}

// bitLen returns the length of x in bits (0 for 0).
func bitLen(x *limbs4) int {
	for i := 3; i >= 0; i-- {
		if x[i] != 0 {
			return 64*i + bits.Len64(x[i])
		}
	}
	return 0
}

// below2to128 reports whether x < 2^128.
func below2to128(x *limbs4) bool { return x[2]|x[3] == 0 }
