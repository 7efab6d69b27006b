package devices

import (
	"crypto/ed25519"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
)

const (
	pairingFormat = 0x01
	// PairingCodePrefix starts every text pairing code.
	PairingCodePrefix = "KL1-"
	// PairingQRPrefix starts every pairing QR payload.
	PairingQRPrefix = "keyline-pair:"
	pairingCheckLen = 4
	// maxPairingCodeLen bounds the input ParsePairingCode accepts.
	maxPairingCodeLen = 4096
)

var pairingBase32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// PairingRequest is what a new device sends to a device holding the
// identity key: the account it wants to join and its DeviceCert, complete
// except for the identity key's signature.
type PairingRequest struct {
	UserID      string      // canonical user id of the account to join
	IdentityKey [32]byte    // the identity key the device back-signed for
	Cert        *DeviceCert // body and BackSignature; Signature is not carried
}

// NewPairingRequest builds the request of device k, named name, to join
// the account userID whose identity key is ikPub.
func NewPairingRequest(k *DeviceKey, userID string, ikPub [32]byte, name string, now time.Time) (*PairingRequest, error) {
	if err := checkUserID(userID); err != nil {
		return nil, err
	}
	c, err := k.NewCert(name, ikPub, now)
	if err != nil {
		return nil, err
	}
	return &PairingRequest{UserID: userID, IdentityKey: ikPub, Cert: c}, nil
}

// MarshalBinary returns the canonical encoding of the request.
func (p *PairingRequest) MarshalBinary() ([]byte, error) {
	if err := checkUserID(p.UserID); err != nil {
		return nil, err
	}
	if p.Cert == nil {
		return nil, fmt.Errorf("devices: %w: pairing request has no cert", ErrMalformed)
	}
	if err := p.Cert.checkFields(); err != nil {
		return nil, err
	}
	var w builder
	w.u8(pairingFormat)
	w.string16(p.UserID)
	w.raw(p.IdentityKey[:])
	p.Cert.appendBody(&w)
	w.raw(p.Cert.BackSignature[:])
	return w.b, nil
}

// ParsePairingRequest decodes the binary encoding of a request.
func ParsePairingRequest(b []byte) (*PairingRequest, error) {
	r := &reader{what: "PairingRequest", b: b}
	p := new(PairingRequest)
	r.format(pairingFormat)
	p.UserID = r.string16("user id", MaxUserIDLen)
	p.IdentityKey = r.array32("identity key")
	p.Cert = readDeviceCertBody(r)
	if p.Cert != nil {
		p.Cert.BackSignature = r.array64("back-signature")
	}
	if r.err == nil {
		if err := checkUserID(p.UserID); err != nil {
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

// Code returns the request as a text code: "KL1-" then the RFC 4648 base32
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
		return nil, fmt.Errorf("devices: %w: %d characters, over the limit of %d", ErrPairingCode, len(s), maxPairingCodeLen)
	}
	s = strings.TrimSpace(s)
	var raw []byte
	var err error
	switch {
	case strings.HasPrefix(s, PairingQRPrefix):
		enc := s[len(PairingQRPrefix):]
		if i := strings.IndexFunc(enc, notBase64URL); i >= 0 {
			return nil, fmt.Errorf("devices: %w: QR payload is not base64url: character %d %q", ErrPairingCode, i+1, enc[i])
		}
		raw, err = base64.RawURLEncoding.Strict().DecodeString(enc)
		if err != nil {
			return nil, fmt.Errorf("devices: %w: QR payload is not base64url: %v", ErrPairingCode, err)
		}
	default:
		t := strings.ToUpper(strings.Join(strings.Fields(s), ""))
		if !strings.HasPrefix(t, PairingCodePrefix) {
			return nil, fmt.Errorf("devices: %w: code does not start with %q", ErrPairingCode, PairingCodePrefix)
		}
		t = strings.ReplaceAll(t[len(PairingCodePrefix):], "-", "")
		for i, ch := range t {
			if !('A' <= ch && ch <= 'Z' || '2' <= ch && ch <= '7') {
				return nil, fmt.Errorf("devices: %w: character %d %q is not base32 (A-Z, 2-7)", ErrPairingCode, i+1, ch)
			}
		}
		raw, err = pairingBase32.DecodeString(t)
		if err != nil || pairingBase32.EncodeToString(raw) != t {
			return nil, fmt.Errorf("devices: %w: code has a wrong length or last character (characters missing or added)", ErrPairingCode)
		}
	}
	if len(raw) < pairingCheckLen {
		return nil, fmt.Errorf("devices: %w: too short", ErrPairingCode)
	}
	payload := raw[:len(raw)-pairingCheckLen]
	if subtle.ConstantTimeCompare(withCheck(payload), raw) != 1 {
		return nil, fmt.Errorf("devices: %w: checksum mismatch (code mistyped or damaged)", ErrPairingCode)
	}
	p, err := ParsePairingRequest(payload)
	if err != nil {
		return nil, fmt.Errorf("devices: %w: %w", ErrPairingCode, err)
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

// ApprovePairing is run on a device holding the identity key ik. It checks
// that req is for prev's account and identity key, that fingerprint (what
// the user saw on the new device) matches req's, and that the back-signature
// verifies; then it returns the signed AccountState prev.Version+1 with the
// new device added (AddDevice).
func ApprovePairing(prev *AccountState, ik *IdentityKey, req *PairingRequest, fingerprint string, now time.Time) (*AccountState, error) {
	if req.UserID != prev.UserID {
		return nil, fmt.Errorf("devices: %w: pairing request is for %q, this account is %q", ErrUserMismatch, req.UserID, prev.UserID)
	}
	if req.IdentityKey != prev.IdentityKey || ik.Public() != prev.IdentityKey {
		return nil, fmt.Errorf("devices: %w: pairing request was made for another identity key", ErrIdentityChanged)
	}
	want, err := req.Fingerprint()
	if err != nil {
		return nil, err
	}
	got := strings.Join(strings.Fields(fingerprint), "")
	if subtle.ConstantTimeCompare([]byte(got), []byte(strings.ReplaceAll(want, " ", ""))) != 1 {
		return nil, fmt.Errorf("devices: %w: fingerprint %q does not match the request's", ErrPairingCode, fingerprint)
	}
	body, err := req.Cert.body()
	if err != nil {
		return nil, err
	}
	if !ed25519.Verify(req.Cert.SigningKey[:], signedMessage(ctxDeviceBacksig, prev.IdentityKey[:], body), req.Cert.BackSignature[:]) {
		return nil, fmt.Errorf("devices: %w: pairing request back-signature does not verify", ErrDeviceCert)
	}
	return AddDevice(prev, ik, req.Cert, now)
}
