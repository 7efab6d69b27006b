package devices

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"fmt"
	"hash"
	"sync/atomic"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// Exact Ed25519 verification with a 2-D lattice reduction (Pornin,
// "Optimized Lattice Basis Reduction In Dimension 2, and Fast Schnorr and
// EdDSA Signature Verification", ePrint 2020/454).
//
// crypto/ed25519.Verify accepts (pub, msg, sig) iff the signature is 64
// bytes with sig[63]&224 == 0, A = pub decodes (non-canonical encodings
// accepted), S = sig[32:] < L, and the encoding of [S]B - [k]A equals
// sig[:32], where k = SHA-512(sig[:32] || pub || msg) mod L. With R the
// point sig[:32] encodes, that is: P = [S]B - [k]A - R is the identity
// and sig[:32] is R's canonical encoding. The fast path decodes A and R
// with filippo.io/edwards25519 (v1.2.0), whose Point.SetBytes, field and
// scalar code are those of Go 1.26's crypto/internal/fips140/edwards25519:
// the same points crypto/ed25519 uses.
//
// reduceChallenge gives c0 >= 0 and an odd c1, both about 2^127 in size,
// with c0 ≡ c1·k (mod 8L). Every point's order divides 8L, so
// [c1·k]A = [c0]A for any A (torsion included), and
//
//	Q = [c1·S mod L]B - [c0]A - [c1]R = [c1]P.
//
// c1 odd and 0 < |c1| < L make it prime to 8L, so Q is the identity iff P
// is. Writing c1·S mod L = s0 + 2^128·s1 makes Q a multi-scalar
// multiplication of four points with scalars of about 128 bits: half the
// doublings of [S]B - [k]A.
//
// The fast path only ever accepts: whenever one of its conditions fails
// (R does not decode or is not canonical, no reduction, the relation does
// not hold, Q is not the identity) crypto/ed25519.Verify decides. It
// accepts exactly what the rules above accept, so it stays exact only as
// long as crypto/ed25519 keeps them (Go 1.26's do; a toolchain that
// changed them, e.g. to refuse small-order or non-canonical keys, would
// fail TestVerifyEd25519MatchesEd25519 and TestSigGroupMatchesEd25519).

// edFastAccepted counts the signatures edFastAccept accepted, so that a
// test can tell the fast path from a silent fallback to ed25519.Verify.
var edFastAccepted atomic.Uint64

// VerifyEd25519 reports whether sig is a valid signature of msg by pub,
// exactly as ed25519.Verify(pub, msg, sig) does (including its panic if
// len(pub) != ed25519.PublicKeySize). A valid signature costs about 0.75
// to 0.8 of ed25519.Verify's time (BenchmarkVerifyEd25519; the first one
// in a process also builds the fixed tables, BenchmarkEdBaseTables); one
// the fast path does not accept, an invalid one in particular, costs the
// fast path plus ed25519.Verify (about 1.8 of it). It is not counted in
// SignaturesVerified, which counts the signatures of account structures
// this package checks (other packages use VerifyEd25519 for checkpoints
// and cosignatures).
func VerifyEd25519(pub ed25519.PublicKey, msg, sig []byte) bool {
	var k edKey
	if len(pub) == ed25519.PublicKeySize && k.set(pub) && edFastAccept(&k, sha512.New(), pub, msg, sig) {
		return true
	}
	return ed25519.Verify(pub, msg, sig)
}

// An Ed25519Verifier checks signatures by one Ed25519 public key, decoded
// once: for a key that verifies many signatures (a log key, a witness
// key), where VerifyEd25519 decodes the key on every call. It is safe for
// concurrent use.
type Ed25519Verifier struct {
	pub    ed25519.PublicKey
	key    edKey
	decode bool // pub decodes as a point: key is set
}

// NewEd25519Verifier returns the verifier of pub, a 32-byte Ed25519 public
// key. A key that does not decode as a point is accepted: its Verify
// gives ed25519.Verify's answer (false).
func NewEd25519Verifier(pub ed25519.PublicKey) (*Ed25519Verifier, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("devices: Ed25519 public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	v := &Ed25519Verifier{pub: bytes.Clone(pub)}
	v.decode = v.key.set(v.pub)
	return v, nil
}

// Verify reports whether sig is a valid signature of msg by the
// verifier's key: exactly ed25519.Verify(pub, msg, sig), as VerifyEd25519.
// Not counted in SignaturesVerified.
func (v *Ed25519Verifier) Verify(msg, sig []byte) bool {
	if v.decode && edFastAccept(&v.key, sha512.New(), v.pub, msg, sig) {
		return true
	}
	return ed25519.Verify(v.pub, msg, sig)
}

// An edKey is a public key A decoded for edFastAccept: the odd multiples
// A, 3A, ..., 15A for the width-5 NAF of c0.
type edKey struct {
	tab edOddMultiples
}

// set decodes pub as crypto/ed25519 does (edwards25519.Point.SetBytes,
// non-canonical encodings accepted) and reports whether it is a point.
func (k *edKey) set(pub []byte) bool {
	var a edwards25519.Point
	if _, err := a.SetBytes(pub); err != nil {
		return false
	}
	var e edExtended
	k.tab.set(e.setPoint(&a))
	return true
}

// edFastAccept reports whether the fast path proves that
// ed25519.Verify(pub, msg, sig) is true, for key decoded from pub; false
// means only that it did not (the caller asks ed25519.Verify). h is a
// SHA-512 hash to use (it is reset).
func edFastAccept(key *edKey, h hash.Hash, pub, msg, sig []byte) bool {
	if len(sig) != ed25519.SignatureSize || sig[63]&224 != 0 {
		return false
	}
	var S edwards25519.Scalar
	if _, err := S.SetCanonicalBytes(sig[32:]); err != nil {
		return false
	}
	var R edwards25519.Point
	if _, err := R.SetBytes(sig[:32]); err != nil || !edCanonical(sig[:32], &R) {
		return false
	}
	var digest [sha512.Size]byte
	h.Reset()
	h.Write(sig[:32])
	h.Write(pub)
	h.Write(msg)
	var k edwards25519.Scalar
	if _, err := k.SetUniformBytes(h.Sum(digest[:0])); err != nil {
		return false // unreachable: 64 bytes
	}
	if !edFastCheck(key, &R, &S, &k) {
		return false
	}
	edFastAccepted.Add(1)
	return true
}

// edFastCheck reports whether the fast path proves P = [S]B - [k]A - R to
// be the identity, for A the key's point, R any curve point, and S and k
// the integers below L that the scalars stand for (as in ed25519.Verify,
// A's torsion is multiplied by the integer k). It checks Q = [c1]P with
// reduceChallenge's short (c0, c1) (see the comment at the top of this
// file); false means that Q is not the identity or that k was refused,
// not necessarily that P is not the identity. TestEdFastCheckEdgeChallenges
// checks it against edwards25519 on edge challenges.
func edFastCheck(key *edKey, R *edwards25519.Point, S, k *edwards25519.Scalar) bool {
	var kb [32]byte
	copy(kb[:], k.Bytes())
	c0, c1, c1neg, ok := reduceChallenge(&kb)
	if !ok {
		return false
	}
	var c1s, t edwards25519.Scalar
	if !edRelationHolds(&c0, &c1, c1neg, &kb, k, &c1s) {
		return false
	}
	// Q = [s0]B + [s1](2^128·B) + [c0](-A) + [c1](-R), c1·S mod L = s0 + 2^128·s1.
	var cs [32]byte
	copy(cs[:], t.Multiply(&c1s, S).Bytes())
	var lowHalf, highHalf [32]byte
	copy(lowHalf[:16], cs[:16])
	copy(highHalf[:16], cs[16:])
	var n0, n1, na, nr edNAF
	top := n0.set(&lowHalf, 8)
	top = max(top, n1.set(&highHalf, 8))
	top = max(top, na.set(&c0, 5))
	na.negate() // -[c0]A
	top = max(top, nr.set(&c1, 5))
	if !c1neg { // -[c1]R is -[|c1|]R for c1 > 0, [|c1|]R for c1 < 0
		nr.negate()
	}
	var r edExtended
	var rTab edOddMultiples
	rTab.set(r.setPoint(R))
	var q edProjective
	return edMSM(&q, &n0, &n1, &na, &nr, top, &key.tab, &rTab).isIdentity()
}

// edRelationHolds is the fast path's guard on reduceChallenge's result:
// it reports whether c1 is odd, c0 < L, |c1| < L and c0 ≡ c1·k (mod 8L),
// c1 negative if neg, checked mod 8 on the low bytes and mod L with
// scalars (k is kb as a Scalar). Then c1 is prime to 8L. It sets c1s to
// c1 mod L.
func edRelationHolds(c0, c1 *[32]byte, neg bool, kb *[32]byte, k, c1s *edwards25519.Scalar) bool {
	if c1[0]&1 == 0 {
		return false
	}
	lo := c1[0] * kb[0]
	if neg {
		lo = -lo
	}
	if (c0[0]-lo)&7 != 0 {
		return false
	}
	var c0s, t edwards25519.Scalar
	if _, err := c0s.SetCanonicalBytes(c0[:]); err != nil {
		return false
	}
	if _, err := c1s.SetCanonicalBytes(c1[:]); err != nil {
		return false
	}
	if neg {
		c1s.Negate(c1s)
	}
	return t.Multiply(c1s, k).Equal(&c0s) == 1
}

// edCanonical reports whether enc, which decodes as p, is p's canonical
// encoding, the one Point.Bytes gives and crypto/ed25519 compares R'
// with: y < 2^255 - 19, and the sign bit clear if x = 0.
func edCanonical(enc []byte, p *edwards25519.Point) bool {
	// y >= p iff bits 0..254 are all ones from bit 5 up and byte 0 >= 0xed.
	if enc[31]&0x7f == 0x7f && enc[0] >= 0xed {
		high := true
		for _, b := range enc[1:31] {
			if b != 0xff {
				high = false
				break
			}
		}
		if high {
			return false
		}
	}
	if enc[31]&0x80 != 0 {
		X, _, _, _ := p.ExtendedCoordinates()
		var zero field.Element
		if X.Equal(zero.Zero()) == 1 {
			return false
		}
	}
	return true
}
