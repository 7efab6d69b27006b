package devices

import "math/big"

// challengeBits bounds the scalars reduceChallenge returns: when it
// reports ok, c0 < 2^challengeBits and |c1| < 2^challengeBits. For a
// random k the result is below 2^128 in about 83% of cases, 2^130 in 99%,
// and 2^132 or more in under 0.1% (2^136: 1 in 100000); a longer result costs the verifier one
// doubling per bit, a refusal (ok false) a full crypto/ed25519.Verify.
const challengeBits = 136

// order8L is 8L, L = 2^252 + 27742317777372353535851937790883648493 the
// order of the prime-order subgroup of edwards25519: the order of every
// point of the curve divides 8L.
var order8L, _ = new(big.Int).SetString("57896044618658097711785492504343953926856930875039260848015607506283634007912", 10)

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
// ok is false, and the other results zero, if k >= L or that row's r or
// |t| is 2^challengeBits or more; the caller then verifies the long way.
func reduceChallenge(k *[32]byte) (c0, c1 [32]byte, c1neg bool, ok bool) {
	kk := leBytesToInt(k[:])
	if kk.Cmp(scalarOrderL()) >= 0 {
		return c0, c1, false, false
	}
	lim := new(big.Int).Lsh(big.NewInt(1), 128)
	r0, t0 := new(big.Int).Set(order8L), new(big.Int)
	r1, t1 := kk, big.NewInt(1)
	for r1.Cmp(lim) >= 0 {
		q, r2 := new(big.Int).QuoRem(r0, r1, new(big.Int))
		t2 := new(big.Int).Sub(t0, q.Mul(q, t1))
		r0, r1, t0, t1 = r1, r2, t1, t2
	}
	r, t := r1, t1
	if t.Bit(0) == 0 {
		q, r2 := new(big.Int).QuoRem(r0, r1, new(big.Int))
		t2 := new(big.Int).Sub(t0, q.Mul(q, t1))
		r, t = r0, t0
		if bigMax(r2, t2).Cmp(bigMax(r0, t0)) < 0 {
			r, t = r2, t2
		}
	}
	if r.BitLen() > challengeBits || t.BitLen() > challengeBits {
		return c0, c1, false, false
	}
	intToLEBytes(&c0, r)
	intToLEBytes(&c1, t)
	return c0, c1, t.Sign() < 0, true
}

// bigMax returns max(|a|, |b|).
func bigMax(a, b *big.Int) *big.Int {
	if a.CmpAbs(b) >= 0 {
		return new(big.Int).Abs(a)
	}
	return new(big.Int).Abs(b)
}

// scalarOrderL returns L.
func scalarOrderL() *big.Int { return new(big.Int).Rsh(order8L, 3) }

// leBytesToInt returns the integer whose little-endian encoding is b.
func leBytesToInt(b []byte) *big.Int {
	be := make([]byte, len(b))
	for i := range b {
		be[len(b)-1-i] = b[i]
	}
	return new(big.Int).SetBytes(be)
}

// intToLEBytes writes |x| (which fits) into out, little-endian.
func intToLEBytes(out *[32]byte, x *big.Int) {
	var be [32]byte
	new(big.Int).Abs(x).FillBytes(be[:])
	for i := range be {
		out[i] = be[31-i]
	}
}
