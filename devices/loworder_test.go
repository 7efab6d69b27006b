package devices

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"math/big"
	"testing"
)

// Field arithmetic for the completeness proof below: p = 2^255 - 19,
// Montgomery coefficient A = 486662.
var (
	fieldP = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	montA  = big.NewInt(486662)
)

func fmod(x *big.Int) *big.Int { return x.Mod(x, fieldP) }

func leU(k [32]byte) *big.Int {
	var be [32]byte
	for i := range k {
		be[31-i] = k[i]
	}
	return new(big.Int).SetBytes(be[:])
}

func uLE(u *big.Int) [32]byte {
	var k [32]byte
	b := u.Bytes()
	for i := range b {
		k[i] = b[len(b)-1-i]
	}
	return k
}

// poly is a polynomial over GF(p), coefficient i of x^i.
type poly []*big.Int

func (f poly) trim() poly {
	for len(f) > 0 && f[len(f)-1].Sign() == 0 {
		f = f[:len(f)-1]
	}
	return f
}

// polyMod returns f mod g (g non-zero).
func polyMod(f, g poly) poly {
	f = append(poly(nil), f...)
	for i := range f {
		f[i] = new(big.Int).Set(f[i])
	}
	g = g.trim()
	inv := new(big.Int).ModInverse(g[len(g)-1], fieldP)
	for f = f.trim(); len(f) >= len(g); f = f.trim() {
		c := fmod(new(big.Int).Mul(f[len(f)-1], inv))
		shift := len(f) - len(g)
		for i, gi := range g {
			f[shift+i] = fmod(f[shift+i].Sub(f[shift+i], new(big.Int).Mul(c, gi)))
		}
	}
	return f
}

func polyMulMod(a, b, m poly) poly {
	r := make(poly, len(a)+len(b))
	for i := range r {
		r[i] = new(big.Int)
	}
	for i, ai := range a {
		for j, bj := range b {
			r[i+j] = fmod(r[i+j].Add(r[i+j], new(big.Int).Mul(ai, bj)))
		}
	}
	return polyMod(r, m)
}

// rootCount returns the number of distinct roots of f in GF(p): the degree
// of gcd(f, x^p - x).
func rootCount(f poly) int {
	f = f.trim()
	xp := poly{big.NewInt(1)}
	base := poly{new(big.Int), big.NewInt(1)}
	for i := fieldP.BitLen() - 1; i >= 0; i-- {
		xp = polyMulMod(xp, xp, f)
		if fieldP.Bit(i) == 1 {
			xp = polyMulMod(xp, base, f)
		}
	}
	for len(xp) < 2 {
		xp = append(xp, new(big.Int))
	}
	xp[1] = fmod(new(big.Int).Sub(xp[1], big.NewInt(1)))
	a, b := f, xp.trim()
	for len(b) > 0 {
		a, b = b, polyMod(a, b)
	}
	return len(a) - 1
}

// doubleU returns the u-coordinate of 2P for a point P with u-coordinate u
// on the curve or its twist, and false if 2P is the point at infinity:
// u(2P) = (u^2-1)^2 / (4u(u^2+Au+1)).
func doubleU(u *big.Int) (*big.Int, bool) {
	u2 := fmod(new(big.Int).Mul(u, u))
	num := fmod(new(big.Int).Sub(u2, big.NewInt(1)))
	num = fmod(num.Mul(num, num))
	den := fmod(new(big.Int).Add(u2, new(big.Int).Mul(montA, u)))
	den = fmod(den.Add(den, big.NewInt(1)))
	den = fmod(den.Mul(den, new(big.Int).Mul(big.NewInt(4), u)))
	if den.Sign() == 0 {
		return nil, false
	}
	return fmod(num.Mul(num, new(big.Int).ModInverse(den, fieldP))), true
}

// halvingPoly is the polynomial whose roots are the u with u(2P) = t (nil:
// 2P at infinity): (u^2-1)^2 - 4t·u(u^2+Au+1), or u(u^2+Au+1).
func halvingPoly(t *big.Int) poly {
	if t == nil {
		return poly{big.NewInt(0), big.NewInt(1), new(big.Int).Set(montA), big.NewInt(1)}
	}
	ft := func(c int64, m *big.Int) *big.Int { return fmod(new(big.Int).Mul(big.NewInt(c), m)) }
	four := ft(4, t)
	// (u^2-1)^2 = u^4 - 2u^2 + 1; 4t·u(u^2+Au+1) = 4t u^3 + 4tA u^2 + 4t u.
	return poly{
		big.NewInt(1),
		fmod(new(big.Int).Neg(four)),
		fmod(new(big.Int).Sub(big.NewInt(-2), new(big.Int).Mul(four, montA))),
		fmod(new(big.Int).Neg(four)),
		big.NewInt(1),
	}
}

// TestLowOrderListComplete proves that the canonical u-coordinates in
// lowOrderX25519 are exactly the points of order dividing 8 on Curve25519
// and its twist (the only small orders: the group orders are 8·prime and
// 4·prime): starting from the point at infinity it counts, with
// gcd(f, x^p - x), every u whose double is a known small-order point, and
// checks that the list holds each of them.
func TestLowOrderListComplete(t *testing.T) {
	listed := map[string]bool{}
	for _, k := range lowOrderX25519 {
		u := leU(k)
		if u.Cmp(fieldP) < 0 {
			listed[u.String()] = true
		}
	}
	found := map[string]bool{}
	frontier := []*big.Int{nil} // nil: the point at infinity
	for len(frontier) > 0 {
		t0 := frontier[0]
		frontier = frontier[1:]
		want := rootCount(halvingPoly(t0))
		var got []*big.Int
		for s := range listed {
			u, _ := new(big.Int).SetString(s, 10)
			d, ok := doubleU(u)
			if (t0 == nil && !ok) || (t0 != nil && ok && d.Cmp(t0) == 0) {
				got = append(got, u)
			}
		}
		if len(got) != want {
			t.Fatalf("%d points double to %v, the list has %d of them", want, t0, len(got))
		}
		for _, u := range got {
			if !found[u.String()] {
				found[u.String()] = true
				frontier = append(frontier, u)
			}
		}
	}
	if len(found) != len(listed) || len(found) != 5 {
		t.Fatalf("found %d small-order u-coordinates, list has %d canonical ones (want 5)", len(found), len(listed))
	}
	// The non-canonical encodings: u+p < 2^255 only for u < 19.
	for s := range found {
		u, _ := new(big.Int).SetString(s, 10)
		if u.Cmp(big.NewInt(19)) < 0 && !isLowOrderX25519(uLE(new(big.Int).Add(u, fieldP))) {
			t.Errorf("non-canonical encoding of u=%v (u+p) is not refused", u)
		}
	}
}

// TestLowOrderRefused checks every listed key, with and without bit 255,
// is refused by DeviceCert.checkKeys and yields the all-zero X25519 secret
// (the scalar-multiplication check this list replaced), and that random
// keys are accepted by both.
func TestLowOrderRefused(t *testing.T) {
	probe, err := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{0x42}, 32))
	if err != nil {
		t.Fatal(err)
	}
	lowByECDH := func(k [32]byte) bool {
		pub, err := ecdh.X25519().NewPublicKey(k[:])
		if err != nil {
			return true
		}
		_, err = probe.ECDH(pub)
		return err != nil
	}
	rk := testRK("low-order")
	ask := testASK(t, rk, "low@example.org", 1, "low 1").Public()
	cert := mustCert(t, testDevice(t, "low-order"), "phone", rk.Public(), t0)
	for _, k := range lowOrderX25519 {
		for _, top := range []byte{0, 0x80} {
			k := k
			k[31] |= top
			if !lowByECDH(k) {
				t.Errorf("%x: not low order by X25519", k)
			}
			c := *cert
			c.X25519Key = k
			if err := c.checkKeys(rk.Public(), ask); err == nil || !bytes.Contains([]byte(err.Error()), []byte("low-order")) {
				t.Errorf("%x: checkKeys = %v, want low-order refusal", k, err)
			}
		}
	}
	for i := 0; i < 1000; i++ {
		var k [32]byte
		rand.Read(k[:])
		if isLowOrderX25519(k) != lowByECDH(k) {
			t.Fatalf("%x: list says %v, X25519 says %v", k, isLowOrderX25519(k), lowByECDH(k))
		}
	}
}
