package devices

import (
	"encoding/binary"
	"math/bits"
	"sync"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// The 4-point multi-scalar multiplication of the fast signature check
// (edverify.go): [s0]B + [s1](2^128·B) + [c0](-A) + [c1](-R) with scalars
// of about 128 bits, computed with one chain of doublings as long as the
// longest scalar, each scalar in width-w non-adjacent form over a table of
// odd multiples of its point.

// edNAFLen is the length of an edNAF: a width-w NAF of an integer below
// 2^256 has at most 257 digits.
const edNAFLen = 257

// An edNAF is a width-w non-adjacent form: sum of n[i]·2^i, each n[i]
// zero or odd with |n[i]| < 2^(w-1), at most one nonzero digit in any w
// consecutive ones.
type edNAF [edNAFLen]int8

// set sets n to the width-w NAF (2 <= w <= 8) of the little-endian integer
// k and returns the number of digits up to the highest nonzero one (0 for
// k = 0). With V = (k >> pos) + carry the part of k not yet written, an
// even V has digit 0 at pos (a run of them is skipped at once: the
// trailing zeros of V's low 64 bits); an odd one has digit d = V mod 2^w,
// taken in (-2^(w-1), 2^(w-1)), and V - d is a multiple of 2^w, so the
// next w-1 digits are 0 and carry is (V mod 2^w - d) / 2^w.
func (n *edNAF) set(k *[32]byte, w uint) int {
	var l [6]uint64 // k's limbs, and zero limbs for windows past bit 255
	for i := range 4 {
		l[i] = binary.LittleEndian.Uint64(k[8*i:])
	}
	*n = edNAF{}
	mask, half := uint64(1)<<w-1, uint64(1)<<(w-1)
	top, carry := 0, uint64(0)
	for pos := uint(0); pos < edNAFLen; {
		i, s := pos/64, pos%64
		chunk := l[i] >> s // bits pos .. pos+63 of k
		if s != 0 {
			chunk |= l[i+1] << (64 - s)
		}
		if chunk == ^uint64(0) && carry == 1 {
			pos += 64 // V's low 64 bits are 0 and the carry goes on
			continue
		}
		chunk += carry // V's low 64 bits; carry is in them now
		if chunk == 0 {
			pos += 64
			continue
		}
		if z := uint(bits.TrailingZeros64(chunk)); z > 0 {
			pos += z // carry is unchanged over a run of zero digits
			continue
		}
		if window := chunk & mask; window < half {
			n[pos], carry = int8(window), 0
		} else {
			n[pos], carry = int8(int64(window)-int64(1)<<w), 1
		}
		top = int(pos) + 1
		pos += w
	}
	return top
}

// negate negates every digit of n: the NAF of -k from the NAF of k.
func (n *edNAF) negate() {
	for i := range n {
		n[i] = -n[i]
	}
}

// edOddMultiples holds P, 3P, 5P, ..., 15P: the points a width-5 NAF's
// digits select.
type edOddMultiples [8]edCached

// set fills t from p: t[i] = (2i+1)P.
func (t *edOddMultiples) set(p *edExtended) {
	var ms [len(edOddMultiples{})]edExtended
	edOddMultiplesOf(p, ms[:])
	for i := range t {
		t[i].fromExtended(&ms[i])
	}
}

// edBaseOddMultiples holds the odd multiples P, 3P, ..., 127P of a fixed
// point in affine cached form: the points a width-8 NAF's digits select.
type edBaseOddMultiples [64]edAffineCached

// set fills t from p: t[i] = (2i+1)P, made affine with one field
// inversion for all entries (Montgomery's trick: invert the product of
// the Z coordinates, then peel each 1/Z off it).
func (t *edBaseOddMultiples) set(p *edExtended) {
	var ms [len(edBaseOddMultiples{})]edExtended
	edOddMultiplesOf(p, ms[:])
	var below [len(ms)]field.Element // below[i] = Z_0 ... Z_(i-1)
	var acc, inv field.Element
	acc.One()
	for i := range ms {
		below[i].Set(&acc)
		acc.Multiply(&acc, &ms[i].Z)
	}
	inv.Invert(&acc) // 1 / (Z_0 ... Z_(n-1))
	for i := len(ms) - 1; i >= 0; i-- {
		var zInv, x, y field.Element
		zInv.Multiply(&inv, &below[i]) // 1 / Z_i
		inv.Multiply(&inv, &ms[i].Z)   // 1 / (Z_0 ... Z_(i-1))
		x.Multiply(&ms[i].X, &zInv)
		y.Multiply(&ms[i].Y, &zInv)
		t[i].fromAffine(&x, &y)
	}
}

// edOddMultiplesOf sets out[i] to (2i+1)P, each the previous plus 2P.
func edOddMultiplesOf(p *edExtended, out []edExtended) {
	var pp edProjective
	pp.X.Set(&p.X)
	pp.Y.Set(&p.Y)
	pp.Z.Set(&p.Z)
	var c edCompleted
	var p2 edExtended
	var p2c edCached
	p2c.fromExtended(p2.fromCompleted(c.double(&pp)))
	out[0] = *p
	for i := 1; i < len(out); i++ {
		out[i].fromCompleted(c.add(&out[i-1], &p2c))
	}
}

// edBaseTables are the fixed tables of the base point B and of 2^128·B.
type edBaseTables struct {
	b, b128 edBaseOddMultiples
}

// edBase returns the fixed tables, built on first use.
var edBase = sync.OnceValue(newEdBaseTables)

// newEdBaseTables builds the fixed tables, 2^128·B by 128 doublings of B
// with this file's arithmetic (TestEdBaseTables checks every entry
// against edwards25519.ScalarBaseMult; BenchmarkEdBaseTables times it).
func newEdBaseTables() *edBaseTables {
	t := new(edBaseTables)
	var b edExtended
	b.setPoint(edwards25519.NewGeneratorPoint())
	t.b.set(&b)
	var r edProjective
	r.X.Set(&b.X)
	r.Y.Set(&b.Y)
	r.Z.Set(&b.Z)
	var c edCompleted
	for range 127 {
		r.fromCompleted(c.double(&r))
	}
	var b128 edExtended
	b128.fromCompleted(c.double(&r))
	t.b128.set(&b128)
	return t
}

// edStep sets t to u + d·P for a NAF digit d of P's table tab.
func edStep(t *edCompleted, u *edExtended, d int8, tab *edOddMultiples) {
	if d > 0 {
		t.add(u, &tab[d/2])
	} else {
		t.sub(u, &tab[-d/2])
	}
}

// edStepBase is edStep for a fixed point's affine table.
func edStepBase(t *edCompleted, u *edExtended, d int8, tab *edBaseOddMultiples) {
	if d > 0 {
		t.addAffine(u, &tab[d/2])
	} else {
		t.subAffine(u, &tab[-d/2])
	}
}

// edMSM sets v to
//
//	[s0]B + [s1](2^128·B) + [a]P + [r]Q
//
// given s0 and s1 as width-8 NAFs (over the fixed tables, edBase), a and
// r as width-5 NAFs over pTab and qTab (the odd multiples of P and Q),
// and top, the largest length of the four (edNAF.set's result). Horner's
// rule from the top digit down: one doubling per digit, one addition per
// nonzero digit.
func edMSM(v *edProjective, s0, s1, a, r *edNAF, top int, pTab, qTab *edOddMultiples) *edProjective {
	base := edBase()
	var t edCompleted
	var u edExtended
	v.identity()
	for i := top - 1; i >= 0; i-- {
		t.double(v)
		if d := s0[i]; d != 0 {
			u.fromCompleted(&t)
			edStepBase(&t, &u, d, &base.b)
		}
		if d := s1[i]; d != 0 {
			u.fromCompleted(&t)
			edStepBase(&t, &u, d, &base.b128)
		}
		if d := a[i]; d != 0 {
			u.fromCompleted(&t)
			edStep(&t, &u, d, pTab)
		}
		if d := r[i]; d != 0 {
			u.fromCompleted(&t)
			edStep(&t, &u, d, qTab)
		}
		v.fromCompleted(&t)
	}
	return v
}
