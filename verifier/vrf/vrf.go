// Package vrf implements ECVRF-EDWARDS25519-SHA512-TAI, the elliptic curve
// verifiable random function of RFC 9381 (section 5, cipher suite 0x03), on
// top of filippo.io/edwards25519 and crypto/sha512.
//
// A PrivateKey proves, for an input alpha, the output beta = ProofToHash(pi)
// with an 80-byte proof pi. Anyone holding the 32-byte PublicKey checks the
// proof with Verify and learns beta; nobody without the private key can
// compute beta for an alpha. Keyline uses alpha = user id and derives the map
// index with Index(beta), so the log and the map never reveal user ids.
//
// Verify performs full validation (RFC 9381 section 5.3 with validate_key =
// TRUE): the public key and Gamma must be canonical RFC 8032 point encodings,
// the public key must not have small order, and s must be reduced mod q.
package vrf

import (
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// Sizes of the encodings defined by RFC 9381 for this suite.
const (
	SeedSize      = 32 // RFC 8032 secret key (the "seed")
	PublicKeySize = 32 // RFC 8032 point encoding of Y = x*B
	ProofSize     = 80 // Gamma (32) || c (16) || s (32)
	OutputSize    = 64 // beta, the SHA-512 output of ProofToHash
	IndexSize     = 32 // Keyline map index, see Index
)

const (
	suiteString = 0x03 // ECVRF-EDWARDS25519-SHA512-TAI
	cLen        = 16
)

// IndexContext is the domain-separation context of Index.
const IndexContext = "keyline/vrf/index"

// Errors returned by this package. Callers match them with errors.Is.
var (
	// ErrInvalidPublicKey means the public key is not a canonical encoding
	// of a point of edwards25519, or the point has small order.
	ErrInvalidPublicKey = errors.New("vrf: invalid public key")
	// ErrMalformedProof means the proof does not decode: wrong length,
	// Gamma not a canonical point encoding, or s not reduced mod q.
	ErrMalformedProof = errors.New("vrf: malformed proof")
	// ErrInvalidProof means the proof decodes but does not verify for
	// this public key and alpha.
	ErrInvalidProof = errors.New("vrf: proof does not verify")
	// ErrInvalidSeed means a secret key seed has the wrong length or encoding.
	ErrInvalidSeed = errors.New("vrf: invalid seed")
	// ErrEncodeToCurve means try-and-increment found no point in 256 tries
	// (probability about 2^-256; never observed).
	ErrEncodeToCurve = errors.New("vrf: encode_to_curve failed")
)

// PrivateKey is an ECVRF secret key. The zero value is not usable; build it
// with GenerateKey or NewKeyFromSeed.
type PrivateKey struct {
	seed   [SeedSize]byte
	x      edwards25519.Scalar // secret scalar, clamped h[0:32] reduced mod q
	prefix [32]byte            // h[32:64], the nonce-generation key (RFC 8032 5.1.6)
	pub    PublicKey
}

// PublicKey is an ECVRF public key: a point Y of edwards25519 that is not of
// small order, with its canonical 32-byte encoding.
type PublicKey struct {
	enc [PublicKeySize]byte
	y   edwards25519.Point
	// table is Y's keyTable for Verify, built at the key's
	// plainVerifies+1st verification (keyTable).
	table    atomic.Pointer[keyTable]
	verifies atomic.Uint32
}

// plainVerifies is how many verifications a PublicKey does without its
// keyTable before it builds it. Building costs about 3 of the table's
// savings per verification (about 1.1 and 0.35 ed25519 verifications), so
// a key used a few times (a one-shot lookup verifies one proof) does not
// pay for a table it would not amortize, and a long-lived one loses at
// most what the table costs.
const plainVerifies = 3

// keyTable returns pk's keyTable, building it at pk's plainVerifies+1st
// call; it returns nil at the calls before. Concurrent callers may build
// it twice; one table is kept.
func (pk *PublicKey) keyTable() *keyTable {
	if t := pk.table.Load(); t != nil {
		return t
	}
	if pk.verifies.Add(1) <= plainVerifies {
		return nil
	}
	pk.table.CompareAndSwap(nil, newKeyTable(&pk.y))
	return pk.table.Load()
}

// GenerateKey returns a new private key with a seed read from rand.
func GenerateKey(rand io.Reader) (*PrivateKey, error) {
	var seed [SeedSize]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("vrf: reading random seed: %w", err)
	}
	return NewKeyFromSeed(seed[:])
}

// NewKeyFromSeed derives the private key from a 32-byte RFC 8032 secret key,
// as RFC 9381 section 5.5 specifies for this suite: h = SHA-512(seed),
// x = clamp(h[0:32]), Y = x*B.
func NewKeyFromSeed(seed []byte) (*PrivateKey, error) {
	if len(seed) != SeedSize {
		return nil, fmt.Errorf("%w: length %d, want %d", ErrInvalidSeed, len(seed), SeedSize)
	}
	sk := new(PrivateKey)
	copy(sk.seed[:], seed)
	h := sha512.Sum512(seed)
	if _, err := sk.x.SetBytesWithClamping(h[:32]); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidSeed, err)
	}
	copy(sk.prefix[:], h[32:])
	sk.pub.y.ScalarBaseMult(&sk.x)
	copy(sk.pub.enc[:], sk.pub.y.Bytes())
	return sk, nil
}

// Seed returns a copy of the 32-byte secret seed.
func (sk *PrivateKey) Seed() []byte { return append([]byte(nil), sk.seed[:]...) }

// Public returns the public key of sk.
func (sk *PrivateKey) Public() *PublicKey {
	pk := new(PublicKey)
	pk.enc = sk.pub.enc
	pk.y.Set(&sk.pub.y)
	return pk
}

// NewPublicKey decodes a 32-byte public key. It rejects non-canonical
// encodings, encodings of points not on the curve, and points of small
// order (RFC 9381 section 5.4.5, validate_key).
func NewPublicKey(b []byte) (*PublicKey, error) {
	if len(b) != PublicKeySize {
		return nil, fmt.Errorf("%w: length %d, want %d", ErrInvalidPublicKey, len(b), PublicKeySize)
	}
	pk := new(PublicKey)
	if !decodePoint(&pk.y, b) {
		return nil, fmt.Errorf("%w: not a canonical point encoding", ErrInvalidPublicKey)
	}
	var t edwards25519.Point
	if t.MultByCofactor(&pk.y).Equal(edwards25519.NewIdentityPoint()) == 1 {
		return nil, fmt.Errorf("%w: point of small order", ErrInvalidPublicKey)
	}
	copy(pk.enc[:], b)
	return pk, nil
}

// Bytes returns the canonical 32-byte encoding of pk.
func (pk *PublicKey) Bytes() []byte { return append([]byte(nil), pk.enc[:]...) }

// Equal reports whether pk and other encode the same key.
func (pk *PublicKey) Equal(other *PublicKey) bool {
	return other != nil && pk.enc == other.enc
}

// decodePoint is RFC 8032 section 5.1.3 decoding (string_to_point): it
// accepts only canonical encodings (y < p, and no "negative zero" x), which
// edwards25519.Point.SetBytes alone does not enforce.
func decodePoint(p *edwards25519.Point, b []byte) bool {
	if len(b) != 32 || !isCanonicalEncoding(b) {
		return false
	}
	_, err := p.SetBytes(b)
	return err == nil
}

// isCanonicalEncoding reports whether the 32-byte little-endian encoding b
// has y < p = 2^255 - 19 and does not set the sign bit on x = 0. x = 0 only
// for y = 1 and y = p - 1, so both checks work on the bytes alone.
func isCanonicalEncoding(b []byte) bool {
	// y >= p iff y = 0x7fff...ff(ed..ff): top byte 0x7f, middle bytes 0xff,
	// low byte >= 0xed.
	if b[31]&0x7f == 0x7f && b[0] >= 0xed {
		allFF := true
		for _, c := range b[1:31] {
			if c != 0xff {
				allFF = false
				break
			}
		}
		if allFF {
			return false
		}
	}
	if b[31]&0x80 != 0 {
		// Sign bit set: reject y = 1 and y = p - 1 (where x = 0).
		mid := b[1:31]
		zeros, ffs := true, true
		for _, c := range mid {
			zeros = zeros && c == 0
			ffs = ffs && c == 0xff
		}
		if b[0] == 0x01 && zeros && b[31]&0x7f == 0 {
			return false
		}
		if b[0] == 0xec && ffs && b[31]&0x7f == 0x7f {
			return false
		}
	}
	return true
}

// encodeToCurve is ECVRF_encode_to_curve_try_and_increment (RFC 9381
// section 5.4.1.1) with encode_to_curve_salt = PK_string. It returns the
// cofactor-cleared point H and the counter value that succeeded.
func encodeToCurve(pk []byte, alpha []byte) (*edwards25519.Point, int, error) {
	H := new(edwards25519.Point)
	ctr, err := encodeToCurveTo(H, pk, alpha)
	if err != nil {
		return nil, 0, err
	}
	return H, ctr, nil
}

// encodeToCurveTo is encodeToCurve setting H. The hash input
// suite || 0x01 || PK || alpha || ctr || 0x00 is built once, in a stack
// buffer for user-id-sized alphas, and only its counter byte changes
// between tries.
func encodeToCurveTo(H *edwards25519.Point, pk []byte, alpha []byte) (int, error) {
	var buf [256]byte
	in := append(buf[:0], suiteString, 0x01)
	in = append(in, pk...)
	in = append(in, alpha...)
	in = append(in, 0, 0x00)
	ctrAt := len(in) - 2
	var p edwards25519.Point
	for ctr := 0; ctr < 256; ctr++ {
		in[ctrAt] = byte(ctr)
		sum := sha512.Sum512(in)
		if decodePoint(&p, sum[:32]) {
			H.MultByCofactor(&p)
			return ctr, nil
		}
	}
	return 0, ErrEncodeToCurve
}

// nonce is ECVRF_nonce_generation_RFC8032 (RFC 9381 section 5.4.2.2):
// k = SHA-512(h[32:64] || point_to_string(H)) mod q. kString is returned
// for the test vectors.
func (sk *PrivateKey) nonce(hString []byte) (k *edwards25519.Scalar, kString [64]byte) {
	h := sha512.New()
	h.Write(sk.prefix[:])
	h.Write(hString)
	h.Sum(kString[:0])
	k, err := new(edwards25519.Scalar).SetUniformBytes(kString[:])
	if err != nil {
		panic("vrf: SetUniformBytes rejected 64 bytes: " + err.Error()) // unreachable
	}
	return k, kString
}

// challenge is ECVRF_challenge_generation (RFC 9381 section 5.4.3) with
// P1..P5 = Y, H, Gamma, U, V: the first cLen bytes of
// SHA-512(suite || 0x02 || P1 || ... || P5 || 0x00).
func challenge(points ...[]byte) [cLen]byte {
	var buf [2 + 5*32 + 1]byte
	in := append(buf[:0], suiteString, 0x02)
	for _, p := range points {
		in = append(in, p...)
	}
	in = append(in, 0x00)
	sum := sha512.Sum512(in)
	var c [cLen]byte
	copy(c[:], sum[:cLen])
	return c
}

// challengeScalar interprets the 16-byte challenge as a little-endian integer.
func challengeScalar(c [cLen]byte) *edwards25519.Scalar {
	s := new(edwards25519.Scalar)
	setChallengeScalar(s, c)
	return s
}

// setChallengeScalar sets s to the 16-byte challenge c read as a
// little-endian integer.
func setChallengeScalar(s *edwards25519.Scalar, c [cLen]byte) {
	var b [32]byte
	copy(b[:], c[:])
	if _, err := s.SetCanonicalBytes(b[:]); err != nil {
		panic("vrf: 128-bit challenge not canonical") // unreachable: c < 2^128 < q
	}
}

// Prove returns the VRF output beta (64 bytes) and the proof pi (80 bytes)
// for alpha (RFC 9381 section 5.1). Prove is deterministic.
func (sk *PrivateKey) Prove(alpha []byte) (beta, pi []byte) {
	pi, tr := sk.prove(alpha)
	return tr.beta, pi
}

// proveTrace holds the intermediate values of one Prove, for test vectors.
type proveTrace struct {
	ctr     int
	h       []byte
	kString [64]byte
	u, v    []byte
	beta    []byte
}

// prove computes the proof and beta with the fewest field inversions: the
// point encodings Gamma, U, V and 8*Gamma share one (encodePointsTo); H is
// encoded alone because the nonce, and so U and V, depend on it. Every
// scalar multiplication by a secret (x*H, k*B, k*H) is constant-time.
func (sk *PrivateKey) prove(alpha []byte) ([]byte, proveTrace) {
	var tr proveTrace
	H, ctr, err := encodeToCurve(sk.pub.enc[:], alpha)
	if err != nil {
		// Probability 2^-256 per alpha; treat as a broken invariant.
		panic(err)
	}
	tr.ctr = ctr
	hString := H.Bytes()
	tr.h = hString
	var gamma, u, v, cofactorGamma edwards25519.Point
	gamma.ScalarMult(&sk.x, H)
	k, kString := sk.nonce(hString)
	tr.kString = kString
	u.ScalarBaseMult(k)
	v.ScalarMult(k, H)
	cofactorGamma.MultByCofactor(&gamma)
	var enc [4][32]byte
	encodePointsTo(enc[:], []*edwards25519.Point{&gamma, &u, &v, &cofactorGamma})
	gammaString := enc[0][:]
	tr.u, tr.v = enc[1][:], enc[2][:]
	c := challenge(sk.pub.enc[:], hString, gammaString, tr.u, tr.v)
	s := new(edwards25519.Scalar).MultiplyAdd(challengeScalar(c), &sk.x, k)
	pi := make([]byte, 0, ProofSize)
	pi = append(pi, gammaString...)
	pi = append(pi, c[:]...)
	pi = append(pi, s.Bytes()...)
	tr.beta = betaOf(enc[3][:])
	return pi, tr
}

// encodePointsTo sets out[i] to point_to_string(ps[i]), as Point.Bytes
// would, with one field inversion for all of them instead of one each
// (Montgomery's trick: invert the product of the Z coordinates, then peel
// each 1/Z off it). Every step is constant-time. For up to four points it
// does not allocate.
func encodePointsTo(out [][32]byte, ps []*edwards25519.Point) {
	n := len(ps)
	var buf [4]field.Element
	below := buf[:]
	if n > len(buf) {
		below = make([]field.Element, n)
	}
	var acc field.Element
	acc.One()
	for i, p := range ps {
		_, _, Z, _ := p.ExtendedCoordinates()
		below[i].Set(&acc) // Z_0 * ... * Z_(i-1)
		acc.Multiply(&acc, Z)
	}
	var inv field.Element
	inv.Invert(&acc) // 1 / (Z_0 * ... * Z_(n-1)); no Z of a valid point is 0
	for i := n - 1; i >= 0; i-- {
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

// decodedProof is the result of ECVRF_decode_proof (RFC 9381 section 5.4.4).
type decodedProof struct {
	gamma edwards25519.Point
	c     [cLen]byte
	s     edwards25519.Scalar
}

func decodeProof(pi []byte) (*decodedProof, error) {
	d := new(decodedProof)
	if err := d.decode(pi); err != nil {
		return nil, err
	}
	return d, nil
}

// decode sets d to the decoding of pi.
func (d *decodedProof) decode(pi []byte) error {
	if len(pi) != ProofSize {
		return fmt.Errorf("%w: length %d, want %d", ErrMalformedProof, len(pi), ProofSize)
	}
	if !decodePoint(&d.gamma, pi[:32]) {
		return fmt.Errorf("%w: Gamma is not a canonical point encoding", ErrMalformedProof)
	}
	copy(d.c[:], pi[32:48])
	if _, err := d.s.SetCanonicalBytes(pi[48:80]); err != nil {
		return fmt.Errorf("%w: s is not reduced mod q", ErrMalformedProof)
	}
	return nil
}

// ProofToHash returns beta for a proof (RFC 9381 section 5.2):
// SHA-512(suite || 0x03 || point_to_string(8*Gamma) || 0x00). It does not
// verify the proof; use PublicKey.Verify for that.
func ProofToHash(pi []byte) ([]byte, error) {
	d, err := decodeProof(pi)
	if err != nil {
		return nil, err
	}
	return gammaToHash(&d.gamma), nil
}

func gammaToHash(gamma *edwards25519.Point) []byte {
	var cg edwards25519.Point
	cg.MultByCofactor(gamma)
	return betaOf(cg.Bytes())
}

// betaOf is proof_to_hash given point_to_string(8*Gamma).
func betaOf(cofactorGamma []byte) []byte {
	beta := betaArray(cofactorGamma)
	return beta[:]
}

// betaArray is betaOf as an array:
// SHA-512(suite || 0x03 || point_to_string(8*Gamma) || 0x00).
func betaArray(cofactorGamma []byte) [OutputSize]byte {
	var buf [2 + 32 + 1]byte
	in := append(buf[:0], suiteString, 0x03)
	in = append(in, cofactorGamma...)
	in = append(in, 0x00)
	return sha512.Sum512(in)
}

// Verify checks the proof pi for alpha under pk (RFC 9381 section 5.3) and
// returns beta. Every failure returns a nil beta and an error matching
// ErrMalformedProof or ErrInvalidProof.
func (pk *PublicKey) Verify(alpha, pi []byte) (beta []byte, err error) {
	b, err := pk.verify(alpha, pi)
	if err != nil {
		return nil, err
	}
	return b[:], nil
}

// verify is Verify returning beta as an array, with pk's keyTable once pk
// has one (verifyWith).
func (pk *PublicKey) verify(alpha, pi []byte) ([OutputSize]byte, error) {
	return pk.verifyWith(alpha, pi, pk.keyTable())
}

// verifyWith is verify computing U with the key table t (nil: without).
// Every input is public, so it uses variable-time scalar multiplication.
// The challenge c is a 128-bit integer, so both multiplications by it use
// c itself on a negated point rather than -c mod q, a 253-bit scalar:
//
//   - U = s*B + c*(-Y): with t, s*B from the base point tables
//     (ScalarBaseMult) minus c*Y from t (at most 33 additions and no
//     doubling); without, one double-scalar multiplication with the base
//     point table (Y is pk's decoded point, kept in pk);
//   - V = s*H + c*(-Gamma) as one two-point multiplication.
//
// H, U, V and 8*Gamma, whose encodings the challenge and beta need, are
// encoded with one field inversion for the four (encodePointsTo). Both
// ways give the same U, so the same result (TestVerifyKeyTable).
func (pk *PublicKey) verifyWith(alpha, pi []byte, t *keyTable) ([OutputSize]byte, error) {
	var d decodedProof
	if err := d.decode(pi); err != nil {
		return [OutputSize]byte{}, err
	}
	var H edwards25519.Point
	if _, err := encodeToCurveTo(&H, pk.enc[:], alpha); err != nil {
		return [OutputSize]byte{}, fmt.Errorf("%w: %v", ErrInvalidProof, err)
	}
	var c edwards25519.Scalar
	setChallengeScalar(&c, d.c)
	var u, v, negGamma, cofactorGamma edwards25519.Point
	if t != nil {
		var cY edwards25519.Point
		u.ScalarBaseMult(&d.s)
		u.Subtract(&u, t.mulChallenge(&cY, &d.c))
	} else {
		var negY edwards25519.Point
		u.VarTimeDoubleScalarBaseMult(&c, negY.Negate(&pk.y), &d.s)
	}
	negGamma.Negate(&d.gamma)
	scalars := [2]*edwards25519.Scalar{&d.s, &c}
	points := [2]*edwards25519.Point{&H, &negGamma}
	v.VarTimeMultiScalarMult(scalars[:], points[:])
	cofactorGamma.MultByCofactor(&d.gamma)
	var enc [4][32]byte
	encodePointsTo(enc[:], []*edwards25519.Point{&H, &u, &v, &cofactorGamma})
	if challenge(pk.enc[:], enc[0][:], pi[:32], enc[1][:], enc[2][:]) != d.c {
		return [OutputSize]byte{}, ErrInvalidProof
	}
	return betaArray(enc[3][:]), nil
}

// Index returns Keyline's map index for a VRF output:
// SHA-256("keyline/vrf/index" || 0x00 || beta). Hashing (rather than
// truncating beta) keeps the index domain-separated from every other use of
// beta. beta must be the 64-byte output of Prove, Verify or ProofToHash;
// clients should use VerifyIndex, which cannot be given anything else.
func Index(beta []byte) [IndexSize]byte {
	var buf [len(IndexContext) + 1 + OutputSize]byte
	in := append(buf[:0], IndexContext...)
	in = append(in, 0x00)
	in = append(in, beta...)
	return sha256.Sum256(in)
}

// VerifyIndex verifies pi for alpha under pk and returns Index(beta): the
// map index a lookup for alpha must be answered at.
func (pk *PublicKey) VerifyIndex(alpha, pi []byte) ([IndexSize]byte, error) {
	beta, err := pk.verify(alpha, pi)
	if err != nil {
		return [IndexSize]byte{}, err
	}
	return Index(beta[:]), nil
}
