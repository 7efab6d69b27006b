package devices

import (
	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// Point arithmetic on edwards25519, the twisted Edwards curve
//
//	-x^2 + y^2 = 1 + d x^2 y^2,  d = -121665/121666 (mod p = 2^255 - 19),
//
// for the fast signature check of edverify.go, in the coordinate systems
// of Hisil, Wong, Carter and Dawson, "Twisted Edwards Curves Revisited"
// (2008), with a = -1, as RFC 8032 section 5.1.4 gives them. Because d is
// not a square mod p the addition formulas are complete: they hold for
// every pair of curve points (the identity and the points of small order
// included) and no denominator below is ever 0. Nothing here is constant
// time; every input is public.

// An edExtended is the point (X/Z, Y/Z) with T = XY/Z.
type edExtended struct{ X, Y, Z, T field.Element }

// An edProjective is the point (X/Z, Y/Z).
type edProjective struct{ X, Y, Z field.Element }

// An edCompleted is the point (X/Z, Y/T): the result of an addition or a
// doubling before its last multiplications, which differ by the form
// wanted next (3 for edProjective, 4 for edExtended).
type edCompleted struct{ X, Y, Z, T field.Element }

// An edCached is a point (X/Z, Y/Z) as an addition's second operand wants
// it: Y+X, Y-X, Z and 2d·T.
type edCached struct{ YplusX, YminusX, Z, T2d field.Element }

// An edAffineCached is an edCached with Z = 1: y+x, y-x and 2d·x·y.
type edAffineCached struct{ YplusX, YminusX, T2d field.Element }

// edD2 is 2d = -2·121665/121666 mod p (TestEdD2 checks it), little-endian.
var edD2 = func() field.Element {
	var d2 field.Element
	if _, err := d2.SetBytes([]byte{
		0x59, 0xf1, 0xb2, 0x26, 0x94, 0x9b, 0xd6, 0xeb, 0x56, 0xb1, 0x83, 0x82, 0x9a, 0x14, 0xe0, 0x00,
		0x30, 0xd1, 0xf3, 0xee, 0xf2, 0x80, 0x8e, 0x19, 0xe7, 0xfc, 0xdf, 0x56, 0xdc, 0xd9, 0x06, 0x24,
	}); err != nil {
		panic(err)
	}
	return d2
}()

// setPoint sets v to the coordinates of an edwards25519.Point.
func (v *edExtended) setPoint(p *edwards25519.Point) *edExtended {
	X, Y, Z, T := p.ExtendedCoordinates()
	v.X.Set(X)
	v.Y.Set(Y)
	v.Z.Set(Z)
	v.T.Set(T)
	return v
}

// identity sets v to the neutral element (0, 1).
func (v *edProjective) identity() *edProjective {
	v.X.Zero()
	v.Y.One()
	v.Z.One()
	return v
}

// isIdentity reports whether v is the neutral element (0, 1): X = 0 and
// Y = Z (Z is never 0).
func (v *edProjective) isIdentity() bool {
	var zero field.Element
	return v.X.Equal(zero.Zero()) == 1 && v.Y.Equal(&v.Z) == 1
}

// fromCompleted sets v to p: X = X·T, Y = Y·Z, Z = Z·T.
func (v *edProjective) fromCompleted(p *edCompleted) *edProjective {
	v.X.Multiply(&p.X, &p.T)
	v.Y.Multiply(&p.Y, &p.Z)
	v.Z.Multiply(&p.Z, &p.T)
	return v
}

// fromCompleted sets v to p: X = X·T, Y = Y·Z, Z = Z·T, T = X·Y.
func (v *edExtended) fromCompleted(p *edCompleted) *edExtended {
	v.X.Multiply(&p.X, &p.T)
	v.Y.Multiply(&p.Y, &p.Z)
	v.Z.Multiply(&p.Z, &p.T)
	v.T.Multiply(&p.X, &p.Y)
	return v
}

// fromExtended sets v to p in cached form.
func (v *edCached) fromExtended(p *edExtended) *edCached {
	v.YplusX.Add(&p.Y, &p.X)
	v.YminusX.Subtract(&p.Y, &p.X)
	v.Z.Set(&p.Z)
	v.T2d.Multiply(&p.T, &edD2)
	return v
}

// fromAffine sets v to the point (x, y).
func (v *edAffineCached) fromAffine(x, y *field.Element) *edAffineCached {
	v.YplusX.Add(y, x)
	v.YminusX.Subtract(y, x)
	v.T2d.Multiply(x, y)
	v.T2d.Multiply(&v.T2d, &edD2)
	return v
}

// double sets v to 2p (RFC 8032 5.1.4, "dbl-2008-hwcd"): with A = X^2,
// B = Y^2, C = 2Z^2, H = A + B, E = H - (X+Y)^2, G = A - B, F = C + G,
// 2p = (E/G, H/F).
func (v *edCompleted) double(p *edProjective) *edCompleted {
	var a, b, c, xy field.Element
	a.Square(&p.X)
	b.Square(&p.Y)
	c.Square(&p.Z)
	c.Add(&c, &c)
	xy.Add(&p.X, &p.Y)
	xy.Square(&xy)
	v.Y.Add(&a, &b)         // H
	v.X.Subtract(&v.Y, &xy) // E
	v.Z.Subtract(&a, &b)    // G
	v.T.Add(&c, &v.Z)       // F
	return v
}

// add sets v to p + q ("add-2008-hwcd-3" with q cached): with
// A = (Y1-X1)(Y2-X2), B = (Y1+X1)(Y2+X2), C = T1·2d·T2, D = 2·Z1·Z2,
// E = B - A, F = D - C, G = D + C, H = B + A, p + q = (E/G, H/F).
func (v *edCompleted) add(p *edExtended, q *edCached) *edCompleted {
	var d field.Element
	d.Multiply(&p.Z, &q.Z)
	return v.addParts(p, &q.YplusX, &q.YminusX, &q.T2d, d.Add(&d, &d), false)
}

// sub sets v to p - q: add with -q = (-x, y), whose cached form swaps
// Y+X with Y-X and negates 2dT (so F and G swap their signs of C).
func (v *edCompleted) sub(p *edExtended, q *edCached) *edCompleted {
	var d field.Element
	d.Multiply(&p.Z, &q.Z)
	return v.addParts(p, &q.YplusX, &q.YminusX, &q.T2d, d.Add(&d, &d), true)
}

// addAffine sets v to p + q, add with Z2 = 1 (D = 2·Z1).
func (v *edCompleted) addAffine(p *edExtended, q *edAffineCached) *edCompleted {
	var d field.Element
	return v.addParts(p, &q.YplusX, &q.YminusX, &q.T2d, d.Add(&p.Z, &p.Z), false)
}

// subAffine sets v to p - q, sub with Z2 = 1.
func (v *edCompleted) subAffine(p *edExtended, q *edAffineCached) *edCompleted {
	var d field.Element
	return v.addParts(p, &q.YplusX, &q.YminusX, &q.T2d, d.Add(&p.Z, &p.Z), true)
}

// addParts is the formula of add for q given by its Y+X, Y-X and 2d·T and
// D = 2·Z1·Z2, or of sub (neg): with -q, Y+X and Y-X swap and C changes
// sign, so F and G swap.
func (v *edCompleted) addParts(p *edExtended, qYplusX, qYminusX, qT2d, d *field.Element, neg bool) *edCompleted {
	if neg {
		qYplusX, qYminusX = qYminusX, qYplusX
	}
	var ypx, ymx, a, b, c field.Element
	ypx.Add(&p.Y, &p.X)
	ymx.Subtract(&p.Y, &p.X)
	b.Multiply(&ypx, qYplusX)
	a.Multiply(&ymx, qYminusX)
	c.Multiply(&p.T, qT2d)
	v.X.Subtract(&b, &a)
	v.Y.Add(&b, &a)
	if neg {
		v.Z.Subtract(d, &c)
		v.T.Add(d, &c)
	} else {
		v.Z.Add(d, &c)
		v.T.Subtract(d, &c)
	}
	return v
}
