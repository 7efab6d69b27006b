package devices

import (
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
)

const (
	pairingFormat = 0x02
	// PairingCodePrefix starts every text pairing code.
	PairingCodePrefix = "KL2-"
	// PairingQRPrefix starts every pairing QR payload.
	PairingQRPrefix = "keyline-pair:"
	pairingCheckLen = 4
	// maxPairingCodeLen bounds the input ParsePairingCode accepts.
	maxPairingCodeLen = 4096
	// DefaultPairingTTL is how long a pairing request stays valid.
	DefaultPairingTTL = 10 * time.Minute
	// MaxPairingTTL bounds a request's validity (expiry - creation time).
	MaxPairingTTL = 24 * time.Hour
)

var pairingBase32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// PairingRequest is what a new device sends to a trusted device (one
// holding the account signing key): the account it wants to join, its
// DeviceCert complete except for the ASK's signature, and an expiry; the
// whole request is signed by the device.
type PairingRequest struct {
	UserID      string      // canonical user id of the account to join
	IdentityKey [32]byte    // the root key the device back-signed for
	Cert        *DeviceCert // body and BackSignature; Signature is not carried
	Expires     time.Time   // whole seconds, UTC; after Cert.Created, at most MaxPairingTTL later
	Signature   [64]byte    // device over "keyline pairing-request v1" || 0x00 || body
}

// NewPairingRequest builds the request of device k, named name, to join
// the account userID whose root key is rkPub, valid for ttl from now.
func NewPairingRequest(k *DeviceKey, userID string, rkPub [32]byte, name string, now time.Time, ttl time.Duration) (*PairingRequest, error) {
	if err := checkUserID(userID); err != nil {
		return nil, err
	}
	c, err := k.NewCert(name, rkPub, now)
	if err != nil {
		return nil, err
	}
	p := &PairingRequest{UserID: userID, IdentityKey: rkPub, Cert: c, Expires: c.Created.Add(ttl.Truncate(time.Second))}
	b, err := p.body()
	if err != nil {
		return nil, err
	}
	p.Signature = k.sig(signedMessage(ctxPairingRequest, b))
	return p, nil
}

func (p *PairingRequest) body() ([]byte, error) {
	if err := checkUserID(p.UserID); err != nil {
		return nil, err
	}
	if p.Cert == nil {
		return nil, fmt.Errorf("%w: pairing request has no cert", ErrMalformed)
	}
	if err := p.Cert.checkFields(); err != nil {
		return nil, err
	}
	if err := p.checkExpiry(); err != nil {
		return nil, err
	}
	var w builder
	w.u8(pairingFormat)
	w.string16(p.UserID)
	w.raw(p.IdentityKey[:])
	p.Cert.appendBody(&w)
	w.raw(p.Cert.BackSignature[:])
	w.time(p.Expires)
	return w.b, nil
}

func (p *PairingRequest) checkExpiry() error {
	if err := checkTime("pairing request expiry", p.Expires); err != nil {
		return err
	}
	if !p.Expires.After(p.Cert.Created) || p.Expires.Sub(p.Cert.Created) > MaxPairingTTL {
		return fmt.Errorf("%w: pairing request expiry %v is not within (creation %v, +%v]", ErrMalformed, p.Expires, p.Cert.Created, MaxPairingTTL)
	}
	return nil
}

// MarshalBinary returns the canonical encoding of the request: body ||
// device signature.
func (p *PairingRequest) MarshalBinary() ([]byte, error) {
	b, err := p.body()
	if err != nil {
		return nil, err
	}
	return append(b, p.Signature[:]...), nil
}

// ParsePairingRequest decodes the binary encoding of a request. It checks
// the format only; ApprovePairing checks signatures and expiry.
func ParsePairingRequest(b []byte) (*PairingRequest, error) {
	r := &reader{what: "PairingRequest", b: b}
	p := new(PairingRequest)
	r.format(pairingFormat)
	p.UserID = r.string16("user id", MaxUserIDLen)
	p.IdentityKey = r.array32("root key")
	p.Cert = readDeviceCertBody(r)
	if p.Cert != nil {
		p.Cert.BackSignature = r.array64("back-signature")
	}
	p.Expires = r.time("expiry")
	p.Signature = r.array64("device signature")
	if r.err == nil {
		if err := checkUserID(p.UserID); err != nil {
			r.failErr(err)
		} else if err := p.checkExpiry(); err != nil {
			r.failErr(err)
		}
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	return p, nil
}

// withCheck returns payload || first 4 bytes of
// SHA-256("keyline pairing-code checksum v1" || 0x00 || payload).
func withCheck(payload []byte) []byte {
	h := domainHash(ctxPairingCheck, payload)
	return append(payload[:len(payload):len(payload)], h[:pairingCheckLen]...)
}

// Code returns the request as a text code: "KL2-" then the RFC 4648 base32
// (no padding) of encoding || checksum, in dash-separated groups of 5.
func (p *PairingRequest) Code() (string, error) {
	b, err := p.MarshalBinary()
	if err != nil {
		return "", err
	}
	s := pairingBase32.EncodeToString(withCheck(b))
	var sb strings.Builder
	sb.WriteString(PairingCodePrefix)
	for i := 0; i < len(s); i += 5 {
		if i > 0 {
			sb.WriteByte('-')
		}
		sb.WriteString(s[i:min(i+5, len(s))])
	}
	return sb.String(), nil
}

// QR returns the request as a QR payload: "keyline-pair:" then the
// base64url (no padding) of encoding || checksum.
func (p *PairingRequest) QR() (string, error) {
	b, err := p.MarshalBinary()
	if err != nil {
		return "", err
	}
	return PairingQRPrefix + base64.RawURLEncoding.EncodeToString(withCheck(b)), nil
}

// ParsePairingCode parses a text code (case, spaces, newlines and dashes
// between groups are ignored) or a QR payload. Errors wrap ErrPairingCode
// and say whether the prefix, the characters or the checksum was wrong.
func ParsePairingCode(s string) (*PairingRequest, error) {
	if len(s) > maxPairingCodeLen {
		return nil, fmt.Errorf("%w: %d characters, over the limit of %d", ErrPairingCode, len(s), maxPairingCodeLen)
	}
	s = strings.TrimSpace(s)
	var raw []byte
	var err error
	switch {
	case strings.HasPrefix(s, PairingQRPrefix):
		enc := s[len(PairingQRPrefix):]
		if i := strings.IndexFunc(enc, notBase64URL); i >= 0 {
			return nil, fmt.Errorf("%w: QR payload is not base64url: character %d %q", ErrPairingCode, i+1, enc[i])
		}
		raw, err = base64.RawURLEncoding.Strict().DecodeString(enc)
		if err != nil {
			return nil, fmt.Errorf("%w: QR payload is not base64url: %v", ErrPairingCode, err)
		}
	default:
		t := strings.ToUpper(strings.Join(strings.Fields(s), ""))
		if !strings.HasPrefix(t, PairingCodePrefix) {
			return nil, fmt.Errorf("%w: code does not start with %q", ErrPairingCode, PairingCodePrefix)
		}
		t = strings.ReplaceAll(t[len(PairingCodePrefix):], "-", "")
		for i, ch := range t {
			if !('A' <= ch && ch <= 'Z' || '2' <= ch && ch <= '7') {
				return nil, fmt.Errorf("%w: character %d %q is not base32 (A-Z, 2-7)", ErrPairingCode, i+1, ch)
			}
		}
		raw, err = pairingBase32.DecodeString(t)
		if err != nil || pairingBase32.EncodeToString(raw) != t {
			return nil, fmt.Errorf("%w: code has a wrong length or last character (characters missing or added)", ErrPairingCode)
		}
	}
	if len(raw) < pairingCheckLen {
		return nil, fmt.Errorf("%w: too short", ErrPairingCode)
	}
	payload := raw[:len(raw)-pairingCheckLen]
	if subtle.ConstantTimeCompare(withCheck(payload), raw) != 1 {
		return nil, fmt.Errorf("%w: checksum mismatch (code mistyped or damaged)", ErrPairingCode)
	}
	p, err := ParsePairingRequest(payload)
	if err != nil {
		return nil, withCause(ErrPairingCode, err)
	}
	return p, nil
}

// Fingerprint returns the short string both devices show for the user to
// compare: 5 groups of 4 digits, from the first 25 bytes of
// SHA-256("keyline pairing fingerprint v1" || 0x00 || encoding), each 5-byte
// chunk read as a big-endian uint40 mod 10000.
func (p *PairingRequest) Fingerprint() (string, error) {
	b, err := p.MarshalBinary()
	if err != nil {
		return "", err
	}
	h := domainHash(ctxPairingFP, b)
	groups := make([]string, 5)
	for i := range groups {
		groups[i] = fmt.Sprintf("%04d", uint40(h[i*5:])%10000)
	}
	return strings.Join(groups, " "), nil
}

// notBase64URL reports characters outside the base64url alphabet (Go's
// decoder would silently skip CR and LF).
func notBase64URL(r rune) bool {
	return !('A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-' || r == '_')
}

func uint40(b []byte) uint64 {
	var buf [8]byte
	copy(buf[3:], b[:5])
	return binary.BigEndian.Uint64(buf[:])
}

// ApprovePairing is run on a trusted device holding the account signing
// key ask. It checks that req is for prev's account and root key, that it
// has not expired at now (ErrPairingExpired), that it is signed by the
// device it describes, that fingerprint (what the user saw on the new
// device) matches req's, and that the back-signature verifies; then it
// returns the signed AccountState prev.Version+1 with the new device added
// (AddDevice; ErrStaleSigningKey if ask was rotated out), listed as
// trusted if trusted is set (the caller then hands it the ASK with
// SealHandover).
func ApprovePairing(prev *AccountState, ask *AccountSigningKey, req *PairingRequest, fingerprint string, trusted bool, now time.Time) (*AccountState, error) {
	if req.UserID != prev.UserID {
		return nil, fmt.Errorf("%w: pairing request is for %q, this account is %q", ErrUserMismatch, req.UserID, prev.UserID)
	}
	if req.IdentityKey != prev.IdentityKey {
		return nil, fmt.Errorf("%w: pairing request was made for another root key", ErrIdentityChanged)
	}
	if err := checkSigner(prev, ask); err != nil {
		return nil, err
	}
	body, err := req.body()
	if err != nil {
		return nil, err
	}
	if now.After(req.Expires) {
		return nil, fmt.Errorf("%w: it expired at %s (now %s); make a new request on the new device", ErrPairingExpired, req.Expires.Format(time.RFC3339), now.UTC().Truncate(time.Second).Format(time.RFC3339))
	}
	if !verifySignature(nil, req.Cert.SigningKey[:], signedMessage(ctxPairingRequest, body), req.Signature[:]) {
		return nil, fmt.Errorf("%w: pairing request signature does not verify", ErrDeviceCert)
	}
	want, err := req.Fingerprint()
	if err != nil {
		return nil, err
	}
	got := strings.Join(strings.Fields(fingerprint), "")
	if subtle.ConstantTimeCompare([]byte(got), []byte(strings.ReplaceAll(want, " ", ""))) != 1 {
		return nil, fmt.Errorf("%w: fingerprint %q does not match the request's", ErrPairingCode, fingerprint)
	}
	cbody, err := req.Cert.body()
	if err != nil {
		return nil, err
	}
	if !verifySignature(nil, req.Cert.SigningKey[:], signedMessage(ctxDeviceBacksig, prev.IdentityKey[:], cbody), req.Cert.BackSignature[:]) {
		return nil, fmt.Errorf("%w: pairing request back-signature does not verify", ErrDeviceCert)
	}
	return addDevice(prev, ask, req.Cert, trusted, now)
}
