package vrf

import "filippo.io/edwards25519"

// challengeDigits is the number of signed radix-16 digits of a 128-bit
// challenge: 32 nibbles, plus the carry out of the last one.
const challengeDigits = 2*cLen + 1

// keyTable holds the multiples j * 16^i * Y (j = 1..8, i = 0..32) of a
// public key's point Y, so that c*Y for a 128-bit challenge c costs at
// most 33 point additions and no doublings (mulChallenge). It is built
// once per PublicKey (newKeyTable: 33 doublings and 231 additions, 42 KB)
// and read only afterwards.
type keyTable [challengeDigits][8]edwards25519.Point

// newKeyTable returns the keyTable of y.
func newKeyTable(y *edwards25519.Point) *keyTable {
	t := new(keyTable)
	p := new(edwards25519.Point).Set(y) // 16^i * Y
	for i := range t {
		row := &t[i]
		row[0].Set(p)
		row[1].Double(p)
		for j := 2; j < len(row); j++ {
			row[j].Add(&row[j-1], p)
		}
		p.Double(&row[7]) // 16 * 16^i * Y = 2 * (8 * 16^i * Y)
	}
	return t
}

// challengeRadix16 returns the signed radix-16 digits e[i] of the 128-bit
// little-endian integer c: c = sum(e[i] * 16^i), every e[i] in [-8, 8).
func challengeRadix16(c *[cLen]byte) [challengeDigits]int8 {
	var e [challengeDigits]int8
	for i, b := range c {
		e[2*i] = int8(b & 15)
		e[2*i+1] = int8(b >> 4)
	}
	var carry int8
	for i := 0; i < 2*cLen; i++ {
		e[i] += carry
		carry = (e[i] + 8) >> 4
		e[i] -= carry << 4
	}
	e[2*cLen] = carry
	return e
}

// mulChallenge sets v = c*Y, c a 128-bit challenge (little endian), by
// adding or subtracting one table entry per non-zero digit. It runs in
// variable time; c and Y are public.
func (t *keyTable) mulChallenge(v *edwards25519.Point, c *[cLen]byte) *edwards25519.Point {
	v.Set(edwards25519.NewIdentityPoint())
	for i, d := range challengeRadix16(c) {
		switch {
		case d > 0:
			v.Add(v, &t[i][d-1])
		case d < 0:
			v.Subtract(v, &t[i][-d-1])
		}
	}
	return v
}
