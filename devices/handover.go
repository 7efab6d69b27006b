package devices

import (
	"crypto/subtle"
	"encoding/base32"
	"fmt"
	"io"
	"strings"

	"github.com/cloudflare/circl/hpke"
)

const (
	handoverFormat = 0x01
	// HandoverCodePrefix starts every text signing key handover code.
	HandoverCodePrefix = "KLH1-"
	handoverEncLen     = 32      // X25519 encapsulated key
	handoverCTLen      = 32 + 16 // ASK seed + Poly1305 tag
	maxHandoverCodeLen = 1024
)

// handoverSuite is HPKE (RFC 9180) with DHKEM(X25519, HKDF-SHA256),
// HKDF-SHA256 and ChaCha20-Poly1305, used in base mode.
var handoverSuite = hpke.NewSuite(hpke.KEM_X25519_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_ChaCha20Poly1305)

// SigningKeyHandover carries an account signing key (ASK) from a trusted
// device to a newly approved one (device approve --trusted): the ASK's
// 32-byte Ed25519 seed, HPKE-encrypted (base mode) to the new device's
// X25519 key with
//
//	info = "keyline signing-key handover v1"
//	aad  = u8 0x01 || string16 UserID || [16] Device || u32 Generation
//
// The receiver checks the decrypted key against the generation's
// SigningKeyCert in the account's published state (OpenHandover).
type SigningKeyHandover struct {
	UserID     string
	Device     DeviceID // the recipient
	Generation uint32   // the ASK's generation
	Enc        [handoverEncLen]byte
	Ciphertext [handoverCTLen]byte
}

func (h *SigningKeyHandover) header() ([]byte, error) {
	if err := checkUserID(h.UserID); err != nil {
		return nil, err
	}
	if h.Generation == 0 {
		return nil, fmt.Errorf("devices: %w: handover of signing key generation 0", ErrMalformed)
	}
	var w builder
	w.u8(handoverFormat)
	w.string16(h.UserID)
	w.raw(h.Device[:])
	w.u32(h.Generation)
	return w.b, nil
}

// MarshalBinary returns the encoding: header (the aad above) || [32] Enc
// || [48] Ciphertext.
func (h *SigningKeyHandover) MarshalBinary() ([]byte, error) {
	b, err := h.header()
	if err != nil {
		return nil, err
	}
	b = append(b, h.Enc[:]...)
	return append(b, h.Ciphertext[:]...), nil
}

// ParseSigningKeyHandover decodes a handover encoding (format only).
func ParseSigningKeyHandover(b []byte) (*SigningKeyHandover, error) {
	r := &reader{what: "SigningKeyHandover", b: b}
	h := new(SigningKeyHandover)
	r.format(handoverFormat)
	h.UserID = r.string16("user id", MaxUserIDLen)
	copy(h.Device[:], r.take(16, "device id"))
	h.Generation = r.u32("generation")
	copy(h.Enc[:], r.take(handoverEncLen, "encapsulated key"))
	copy(h.Ciphertext[:], r.take(handoverCTLen, "ciphertext"))
	if r.err == nil {
		if _, err := h.header(); err != nil {
			r.failErr(err)
		}
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	return h, nil
}

// SealHandover encrypts ask's seed to the device of cert (its X25519 key),
// with randomness from rand (crypto/rand.Reader in production; the HPKE
// ephemeral key is derived from 32 bytes of it).
func SealHandover(ask *AccountSigningKey, cert *DeviceCert, rand io.Reader) (*SigningKeyHandover, error) {
	h := &SigningKeyHandover{UserID: ask.Cert.UserID, Device: cert.ID, Generation: ask.Generation()}
	aad, err := h.header()
	if err != nil {
		return nil, err
	}
	pk, err := hpke.KEM_X25519_HKDF_SHA256.Scheme().UnmarshalBinaryPublicKey(cert.X25519Key[:])
	if err != nil {
		return nil, fmt.Errorf("devices: %w: recipient X25519 key: %v", ErrHandover, err)
	}
	snd, err := handoverSuite.NewSender(pk, []byte(ctxSigningKeyHandover))
	if err != nil {
		return nil, fmt.Errorf("devices: %w: %v", ErrHandover, err)
	}
	enc, sealer, err := snd.Setup(rand)
	if err != nil {
		return nil, fmt.Errorf("devices: %w: %v", ErrHandover, err)
	}
	seed := ask.Seed()
	defer clear(seed[:])
	ct, err := sealer.Seal(seed[:], aad)
	if err != nil {
		return nil, fmt.Errorf("devices: %w: %v", ErrHandover, err)
	}
	if len(enc) != handoverEncLen || len(ct) != handoverCTLen {
		return nil, fmt.Errorf("devices: %w: unexpected HPKE sizes %d, %d", ErrHandover, len(enc), len(ct))
	}
	copy(h.Enc[:], enc)
	copy(h.Ciphertext[:], ct)
	return h, nil
}

// OpenHandover decrypts h with device key dk and returns the account
// signing key, which must be the one certified by state's SigningKeyCert
// (same user, same generation, same public key). Errors wrap ErrHandover
// (or ErrUserMismatch, ErrStaleSigningKey when state already uses a newer
// generation).
func OpenHandover(h *SigningKeyHandover, dk *DeviceKey, state *AccountState) (*AccountSigningKey, error) {
	if h.UserID != state.UserID {
		return nil, fmt.Errorf("devices: %w: handover is for %q, the account is %q", ErrUserMismatch, h.UserID, state.UserID)
	}
	if h.Device != dk.ID() {
		return nil, fmt.Errorf("devices: %w: handover is for device %s, this is %s", ErrHandover, h.Device, dk.ID())
	}
	if g := state.Generation(); h.Generation != g {
		if h.Generation < g {
			return nil, fmt.Errorf("devices: %w: handover carries generation %d, the account now uses %d", ErrStaleSigningKey, h.Generation, g)
		}
		return nil, fmt.Errorf("devices: %w: handover carries generation %d, the account's state has %d", ErrHandover, h.Generation, g)
	}
	aad, err := h.header()
	if err != nil {
		return nil, err
	}
	sk, err := hpke.KEM_X25519_HKDF_SHA256.Scheme().UnmarshalBinaryPrivateKey(dk.dh.Bytes())
	if err != nil {
		return nil, fmt.Errorf("devices: %w: %v", ErrHandover, err)
	}
	rcv, err := handoverSuite.NewReceiver(sk, []byte(ctxSigningKeyHandover))
	if err != nil {
		return nil, fmt.Errorf("devices: %w: %v", ErrHandover, err)
	}
	opener, err := rcv.Setup(h.Enc[:])
	if err != nil {
		return nil, fmt.Errorf("devices: %w: %v", ErrHandover, err)
	}
	pt, err := opener.Open(h.Ciphertext[:], aad)
	if err != nil {
		return nil, fmt.Errorf("devices: %w: does not decrypt for this device", ErrHandover)
	}
	defer clear(pt)
	if len(pt) != 32 {
		return nil, fmt.Errorf("devices: %w: plaintext is %d bytes", ErrHandover, len(pt))
	}
	ask, err := AccountSigningKeyFromSeed(state.SigningKey, [32]byte(pt))
	if err != nil {
		return nil, fmt.Errorf("devices: %w: %w", ErrHandover, err)
	}
	return ask, nil
}

var handoverBase32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// Code returns h as text: "KLH1-" then the base32 (no padding) of
// encoding || 4-byte checksum (as for pairing codes), in groups of 5.
func (h *SigningKeyHandover) Code() (string, error) {
	b, err := h.MarshalBinary()
	if err != nil {
		return "", err
	}
	s := handoverBase32.EncodeToString(withCheck(b))
	var sb strings.Builder
	sb.WriteString(HandoverCodePrefix)
	for i := 0; i < len(s); i += 5 {
		if i > 0 {
			sb.WriteByte('-')
		}
		sb.WriteString(s[i:min(i+5, len(s))])
	}
	return sb.String(), nil
}

// ParseHandoverCode parses a handover code (case, whitespace and dashes
// between groups ignored). Errors wrap ErrPairingCode.
func ParseHandoverCode(s string) (*SigningKeyHandover, error) {
	if len(s) > maxHandoverCodeLen {
		return nil, fmt.Errorf("devices: %w: %d characters, over the limit of %d", ErrPairingCode, len(s), maxHandoverCodeLen)
	}
	t := strings.ToUpper(strings.Join(strings.Fields(s), ""))
	if !strings.HasPrefix(t, HandoverCodePrefix) {
		return nil, fmt.Errorf("devices: %w: handover code does not start with %q", ErrPairingCode, HandoverCodePrefix)
	}
	t = strings.ReplaceAll(t[len(HandoverCodePrefix):], "-", "")
	raw, err := handoverBase32.DecodeString(t)
	if err != nil || handoverBase32.EncodeToString(raw) != t || len(raw) < pairingCheckLen {
		return nil, fmt.Errorf("devices: %w: handover code is not valid base32 of the right length", ErrPairingCode)
	}
	payload := raw[:len(raw)-pairingCheckLen]
	if subtle.ConstantTimeCompare(withCheck(payload), raw) != 1 {
		return nil, fmt.Errorf("devices: %w: handover code checksum mismatch (mistyped or damaged)", ErrPairingCode)
	}
	h, err := ParseSigningKeyHandover(payload)
	if err != nil {
		return nil, fmt.Errorf("devices: %w: %w", ErrPairingCode, err)
	}
	return h, nil
}
