package devices

import (
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
)

const (
	safetyIterations = 5200
	safetyQRVersion  = 0x01
	// SafetyQRPrefix starts every safety-number QR payload.
	SafetyQRPrefix = "keyline-safety:"
)

// SafetyNumber is the numeric fingerprint two users compare to verify each
// other's identity keys. It depends only on both identity keys and user
// ids, so it survives device changes and changes only on an identity reset.
type SafetyNumber struct {
	local, remote [32]byte
}

// safetyFingerprint is one party's fingerprint:
//
//	h = SHA-512("keyline safety-number v1" || 0x00 || IK || string16 user id)
//	repeat 5200 times: h = SHA-512(h || IK)
//
// and the result is the first 32 bytes of h.
func safetyFingerprint(ik [32]byte, userID string) [32]byte {
	var w builder
	w.raw([]byte(ctxSafetyNumber))
	w.u8(0)
	w.raw(ik[:])
	w.string16(userID)
	h := sha512.Sum512(w.b)
	buf := make([]byte, 0, 64+32)
	for i := 0; i < safetyIterations; i++ {
		buf = append(append(buf[:0], h[:]...), ik[:]...)
		h = sha512.Sum512(buf)
	}
	var fp [32]byte
	copy(fp[:], h[:32])
	return fp
}

// safetyDigits turns a fingerprint into 30 digits: six 5-byte big-endian
// chunks of its first 30 bytes, each mod 100000, zero-padded to 5 digits.
func safetyDigits(fp [32]byte) string {
	var sb strings.Builder
	for i := 0; i < 6; i++ {
		fmt.Fprintf(&sb, "%05d", uint40(fp[i*5:])%100000)
	}
	return sb.String()
}

// NewSafetyNumber computes the safety number between the local user (id and
// identity public key) and a remote one. Both user ids must be canonical.
func NewSafetyNumber(localUser string, localIK [32]byte, remoteUser string, remoteIK [32]byte) (*SafetyNumber, error) {
	if err := checkUserID(localUser); err != nil {
		return nil, err
	}
	if err := checkUserID(remoteUser); err != nil {
		return nil, err
	}
	return &SafetyNumber{local: safetyFingerprint(localIK, localUser), remote: safetyFingerprint(remoteIK, remoteUser)}, nil
}

// Digits returns the 60 digits: the two parties' 30-digit strings, the
// lexicographically smaller first, so both sides see the same number.
func (s *SafetyNumber) Digits() string {
	a, b := safetyDigits(s.local), safetyDigits(s.remote)
	if b < a {
		a, b = b, a
	}
	return a + b
}

// String returns Digits in 12 space-separated groups of 5.
func (s *SafetyNumber) String() string {
	d := s.Digits()
	groups := make([]string, 12)
	for i := range groups {
		groups[i] = d[i*5 : i*5+5]
	}
	return strings.Join(groups, " ")
}

// QR returns the payload to show as a QR code: "keyline-safety:" then the
// base64url (no padding) of 0x01 || local fingerprint || remote fingerprint
// (32 bytes each).
func (s *SafetyNumber) QR() string {
	return SafetyQRPrefix + base64.RawURLEncoding.EncodeToString(encodeSafetyQR(s.local, s.remote))
}

func encodeSafetyQR(a, b [32]byte) []byte {
	out := make([]byte, 0, 65)
	out = append(out, safetyQRVersion)
	out = append(out, a[:]...)
	return append(out, b[:]...)
}

// parseSafetyQR decodes a safety-number QR payload into the scanner's
// (sender's) local and remote fingerprints.
func parseSafetyQR(payload string) (local, remote [32]byte, err error) {
	if !strings.HasPrefix(payload, SafetyQRPrefix) {
		return local, remote, fmt.Errorf("%w: not a Keyline safety-number payload (want prefix %q)", ErrMalformed, SafetyQRPrefix)
	}
	enc := payload[len(SafetyQRPrefix):]
	if i := strings.IndexFunc(enc, notBase64URL); i >= 0 {
		return local, remote, fmt.Errorf("%w: safety-number payload is not base64url: character %d %q", ErrMalformed, i+1, enc[i])
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(enc)
	if err != nil {
		return local, remote, fmt.Errorf("%w: safety-number payload is not base64url: %v", ErrMalformed, err)
	}
	r := &reader{what: "safety-number payload", b: b}
	r.format(safetyQRVersion)
	local = r.array32("first fingerprint")
	remote = r.array32("second fingerprint")
	return local, remote, r.done()
}

// VerifyQR checks a payload scanned from the other party's screen. It
// returns nil only if the other party computed the same pair of identities
// (its local is our remote and vice versa); otherwise an error wrapping
// ErrSafetyNumberMismatch, or ErrMalformed for an unreadable payload.
func (s *SafetyNumber) VerifyQR(scanned string) error {
	theirLocal, theirRemote, err := parseSafetyQR(strings.TrimSpace(scanned))
	if err != nil {
		return err
	}
	ok := subtle.ConstantTimeCompare(theirLocal[:], s.remote[:]) & subtle.ConstantTimeCompare(theirRemote[:], s.local[:])
	if ok != 1 {
		return fmt.Errorf("%w: the scanned code does not match this conversation's identity keys", ErrSafetyNumberMismatch)
	}
	return nil
}
