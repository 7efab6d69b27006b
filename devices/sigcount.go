package devices

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"hash"
	"sync/atomic"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// signaturesVerified counts the Ed25519 signatures verified by
// verifySignature and sigGroup.verify.
var signaturesVerified atomic.Uint64

// verifySignature is ed25519.Verify, counted: every Ed25519 signature this
// package checks goes through it, or is recorded in a sigGroup (g not
// nil), which then accepts it for now and verifies it later with the
// others (sigGroup.verify); a signature g's memo holds is accepted and
// not recorded.
func verifySignature(g *sigGroup, pub, msg, sig []byte) bool {
	if g != nil {
		if !g.memo.holds(pub, msg, sig) {
			g.checks = append(g.checks, sigCheck{pub: pub, msg: msg, sig: sig})
		}
		return true
	}
	signaturesVerified.Add(1)
	return ed25519.Verify(pub, msg, sig)
}

// SignaturesVerified returns how many Ed25519 signatures this package has
// verified in this process (valid or not), for benchmarks that report cost
// per signature (e.g. the auditor's signatures per log entry).
func SignaturesVerified() uint64 { return signaturesVerified.Load() }

// sigCheck is one recorded signature check.
type sigCheck struct{ pub, msg, sig []byte }

// A sigGroup collects the signature checks of one verification (an
// AccountState: its SigningKeyCert, its own signature, two per device
// cert) so that they are verified together by verify, each exactly as
// crypto/ed25519.Verify verifies it, with the work two checks share done
// once: a public key used by several (the account signing key signs the
// state and every device cert) is decoded once, and the points R' the
// checks compare with their signatures' R are encoded with one field
// inversion for all instead of one each. This is not batch verification:
// every signature is checked on its own equation, [S]B - [k]A == R with R
// compared as bytes, and the group fails if any one fails.
type sigGroup struct {
	checks []sigCheck
	memo   *SignatureMemo // signatures known to verify (nil: none)
	buf    [8]sigCheck
}

// groupVerified is (*SignatureMemo)(nil).verified: verify with a sigGroup
// and no memo.
func groupVerified(verify func(g *sigGroup) error) error {
	var m *SignatureMemo
	return m.verified(verify)
}

// verified runs verify, a verification that checks signatures with
// verifySignature(g, ...), with a sigGroup whose memo is m, then verifies
// the group and adds its signatures to m. If verify fails or a signature
// does not verify, it runs verify again without a group, one
// ed25519.Verify per signature, so the error is exactly the one that path
// gives (and the work is wasted only on failures). Running verify with a
// group is sound because verify's result with every recorded signature
// valid is its result without a group, and any invalid one makes the
// group fail; a signature m holds was verified before.
func (m *SignatureMemo) verified(verify func(g *sigGroup) error) error {
	var g sigGroup
	g.checks, g.memo = g.buf[:0], m
	if err := verify(&g); err == nil && g.verify() {
		m.add(g.checks)
		return nil
	}
	return verify(nil)
}

// A SignatureMemo holds Ed25519 signatures known to verify, each as its
// exact public key, signed message and signature bytes, so that one
// operation verifying related states (a client's lookup and the account
// history behind it, whose first version carries the same signing key
// cert and device certs) verifies each signature once. Its methods are the
// package functions of the same names, except that a signature the memo
// holds is not verified again and every signature they verify is added.
// Whether a signature verifies is a function of those bytes only, so the
// results are the package functions' results. A nil *SignatureMemo holds
// nothing. It is not safe for concurrent use; keep one for one operation.
type SignatureMemo struct {
	known []sigCheck
}

// NewSignatureMemo returns a memo of the signatures of the given states
// (their signing key certs, their own signatures, their device certs),
// each of which VerifyAccountState, VerifyCreate, VerifyTransition,
// VerifyTransitionFrom or VerifyReset has accepted in this process: they
// are not verified again. Like VerifyTransitionOfVerified, it is sound
// only for such states; never pass a state from an untrusted source.
func NewSignatureMemo(verified ...*AccountState) *SignatureMemo {
	m := new(SignatureMemo)
	for _, s := range verified {
		var g sigGroup // records every signature check, verifies none
		_ = verifyAccountState(&g, s)
		m.known = append(m.known, g.checks...)
	}
	return m
}

// VerifyAccountState is the package's VerifyAccountState with m.
func (m *SignatureMemo) VerifyAccountState(s *AccountState) error {
	return m.verified(func(g *sigGroup) error { return verifyAccountState(g, s) })
}

// VerifyCreate is the package's VerifyCreate with m.
func (m *SignatureMemo) VerifyCreate(next *AccountState) error {
	return m.verified(func(g *sigGroup) error { return verifyCreate(g, next) })
}

// VerifyTransitionFrom is the package's VerifyTransitionFrom with m.
func (m *SignatureMemo) VerifyTransitionFrom(prev, next *AccountState) error {
	return m.verified(func(g *sigGroup) error { return verifyTransitionFrom(g, prev, next) })
}

// holds reports whether m holds the signature sig by pub over msg.
func (m *SignatureMemo) holds(pub, msg, sig []byte) bool {
	if m == nil {
		return false
	}
	for _, k := range m.known {
		if bytes.Equal(k.sig, sig) && bytes.Equal(k.pub, pub) && bytes.Equal(k.msg, msg) {
			return true
		}
	}
	return false
}

// add adds verified signatures to m (none if m is nil).
func (m *SignatureMemo) add(checks []sigCheck) {
	if m != nil {
		m.known = append(m.known, checks...)
	}
}

// maxGroupKeys bounds the decoded public keys verify keeps for reuse.
const maxGroupKeys = 8

// verify reports whether every recorded signature verifies, by the checks
// of crypto/ed25519.Verify (Go's crypto/internal/fips140/ed25519
// verifyWithDom for pure Ed25519, on the same edwards25519 arithmetic):
// a 64-byte signature whose top three bits are clear, a public key that
// decodes as a point (non-canonical encodings accepted, as SetBytes
// does), S < q, k = SHA-512(R || A || M) mod q, and the encoding of
// [k](-A) + [S]B equal to R's bytes. TestSigGroupMatchesEd25519 checks it
// against crypto/ed25519 on valid, altered and edge-case signatures.
func (g *sigGroup) verify() bool {
	n := len(g.checks)
	if n == 0 {
		return true
	}
	signaturesVerified.Add(uint64(n))
	type key struct {
		enc    []byte
		minusA edwards25519.Point
	}
	var keyBuf [maxGroupKeys]key
	keys := keyBuf[:0]
	var rBuf [8]edwards25519.Point
	var encBuf [8][32]byte
	rs, encs := rBuf[:0], encBuf[:0]
	if n > len(rBuf) {
		rs, encs = make([]edwards25519.Point, 0, n), make([][32]byte, 0, n)
	}
	var kh hash.Hash
	var digest [sha512.Size]byte
	for _, c := range g.checks {
		if len(c.pub) != ed25519.PublicKeySize || len(c.sig) != ed25519.SignatureSize || c.sig[63]&224 != 0 {
			return false
		}
		var minusA *edwards25519.Point
		for i := range keys {
			if bytes.Equal(keys[i].enc, c.pub) {
				minusA = &keys[i].minusA
				break
			}
		}
		if minusA == nil {
			var a, tmp edwards25519.Point
			if _, err := a.SetBytes(c.pub); err != nil {
				return false
			}
			if len(keys) < maxGroupKeys {
				keys = append(keys, key{enc: c.pub})
				minusA = keys[len(keys)-1].minusA.Negate(&a)
			} else {
				minusA = tmp.Negate(&a)
			}
		}
		S, err := new(edwards25519.Scalar).SetCanonicalBytes(c.sig[32:])
		if err != nil {
			return false
		}
		if kh == nil {
			kh = sha512.New()
		} else {
			kh.Reset()
		}
		kh.Write(c.sig[:32])
		kh.Write(c.pub)
		kh.Write(c.msg)
		k, err := new(edwards25519.Scalar).SetUniformBytes(kh.Sum(digest[:0]))
		if err != nil {
			panic("devices: SetUniformBytes rejected 64 bytes") // unreachable
		}
		rs = append(rs, edwards25519.Point{})
		rs[len(rs)-1].VarTimeDoubleScalarBaseMult(k, minusA, S)
		encs = append(encs, [32]byte{})
	}
	encodePoints(encs, rs)
	for i, c := range g.checks {
		if !bytes.Equal(c.sig[:32], encs[i][:]) {
			return false
		}
	}
	return true
}

// encodePoints sets out[i] to the RFC 8032 encoding of ps[i], as
// Point.Bytes would, with one field inversion for all of them instead of
// one each (Montgomery's trick: invert the product of the Z coordinates,
// then peel each 1/Z off it). No Z of a point is 0.
func encodePoints(out [][32]byte, ps []edwards25519.Point) {
	var buf [8]field.Element
	below := buf[:]
	if len(ps) > len(buf) {
		below = make([]field.Element, len(ps))
	}
	var acc field.Element
	acc.One()
	for i := range ps {
		_, _, Z, _ := ps[i].ExtendedCoordinates()
		below[i].Set(&acc) // Z_0 * ... * Z_(i-1)
		acc.Multiply(&acc, Z)
	}
	var inv field.Element
	inv.Invert(&acc)
	for i := len(ps) - 1; i >= 0; i-- {
		X, Y, Z, _ := ps[i].ExtendedCoordinates()
		var zInv, x, y field.Element
		zInv.Multiply(&inv, &below[i]) // 1 / Z_i
		inv.Multiply(&inv, Z)          // 1 / (Z_0 * ... * Z_(i-1))
		x.Multiply(X, &zInv)
		y.Multiply(Y, &zInv)
		copy(out[i][:], y.Bytes())
		out[i][31] |= byte(x.IsNegative() << 7)
	}
}
