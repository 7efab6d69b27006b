// Package cosign implements Ed25519 witness cosignatures as specified by
// C2SP tlog-cosignature (https://c2sp.org/tlog-cosignature), signature type
// 0x04 ("cosignature/v1"), as golang.org/x/mod/sumdb/note signers and
// verifiers.
//
// A cosignature is a note signature line
//
//	— <name> base64(keyID || timestamp || ed25519 signature)
//
// where keyID is SHA-256(name || "\n" || 0x04 || public key)[:4], timestamp is
// a big-endian u64 of POSIX seconds, and the Ed25519 signature is over
//
//	"cosignature/v1\n" || "time " || decimal(timestamp) || "\n" || checkpoint body
//
// The checkpoint body is the whole note text including its final newline.
//
// Keys are written as C2SP signed-note vkeys and skeys:
// "<name>+<hex keyID>+<base64(0x04 || public key)>" and
// "PRIVATE+KEY+<name>+<hex keyID>+<base64(0x04 || seed)>".
package cosign

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"

	"github.com/keyline/keyline/devices"
)

// AlgCosignatureV1 is the signed-note signature type of Ed25519 cosignatures.
const AlgCosignatureV1 = 0x04

// SignatureSize is the size of a cosignature after the key ID: an 8-byte
// timestamp and a 64-byte Ed25519 signature.
const SignatureSize = 8 + ed25519.SignatureSize

// Errors returned by this package.
var (
	ErrMalformedKey       = errors.New("cosign: malformed key")
	ErrMalformedSignature = errors.New("cosign: malformed cosignature")
	ErrTimestamp          = errors.New("cosign: cosignature timestamp out of range")
)

// KeyID returns the C2SP key ID of an Ed25519 cosigner key.
func KeyID(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', AlgCosignatureV1})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// Message returns the message an Ed25519 cosignature signs for the note text
// body (which must end in a newline) at the given POSIX timestamp.
func Message(body []byte, timestamp uint64) []byte {
	m := make([]byte, 0, len(body)+40)
	m = append(m, "cosignature/v1\ntime "...)
	m = strconv.AppendUint(m, timestamp, 10)
	m = append(m, '\n')
	return append(m, body...)
}

// isValidName reports whether name is a valid signed-note key name: non-empty,
// printable UTF-8 with no spaces and no plus signs.
func isValidName(name string) bool {
	if name == "" || !utf8.ValidString(name) || strings.ContainsAny(name, "+") {
		return false
	}
	for _, r := range name {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// Signer makes cosignatures. It implements note.Signer.
type Signer struct {
	name  string
	id    uint32
	priv  ed25519.PrivateKey
	clock func() time.Time
}

// NewSigner returns a Signer for the key named name with the given Ed25519
// private key. Now is used for the timestamp; nil means time.Now.
func NewSigner(name string, priv ed25519.PrivateKey, now func() time.Time) (*Signer, error) {
	if !isValidName(name) {
		return nil, fmt.Errorf("%w: invalid key name %q", ErrMalformedKey, name)
	}
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: private key is %d bytes, want %d", ErrMalformedKey, len(priv), ed25519.PrivateKeySize)
	}
	if now == nil {
		now = time.Now
	}
	return &Signer{name: name, id: KeyID(name, priv.Public().(ed25519.PublicKey)), priv: priv, clock: now}, nil
}

// Name returns the key name.
func (s *Signer) Name() string { return s.name }

// KeyHash returns the C2SP key ID.
func (s *Signer) KeyHash() uint32 { return s.id }

// PublicKey returns the signer's Ed25519 public key.
func (s *Signer) PublicKey() ed25519.PublicKey { return s.priv.Public().(ed25519.PublicKey) }

// Vkey returns the signer's verifier key, as NewVerifierFromVkey parses it.
func (s *Signer) Vkey() string {
	_, vkey, _ := EncodeKeys(s.name, s.priv) // the name was checked by NewSigner
	return vkey
}

// Sign returns timestamp || ed25519 signature over Message(msg, timestamp).
func (s *Signer) Sign(msg []byte) ([]byte, error) {
	t := s.clock().Unix()
	if t < 0 {
		return nil, ErrTimestamp
	}
	ts := uint64(t)
	sig := make([]byte, 8, SignatureSize)
	binary.BigEndian.PutUint64(sig, ts)
	return append(sig, ed25519.Sign(s.priv, Message(msg, ts))...), nil
}

// Verifier checks cosignatures. It implements note.Verifier.
type Verifier struct {
	name string
	id   uint32
	pub  ed25519.PublicKey
	ed   *devices.Ed25519Verifier // pub, decoded once
}

// NewVerifier returns a Verifier for the cosigner key named name.
func NewVerifier(name string, pub ed25519.PublicKey) (*Verifier, error) {
	if !isValidName(name) {
		return nil, fmt.Errorf("%w: invalid key name %q", ErrMalformedKey, name)
	}
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: public key is %d bytes, want %d", ErrMalformedKey, len(pub), ed25519.PublicKeySize)
	}
	ed, err := devices.NewEd25519Verifier(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedKey, err)
	}
	return &Verifier{name: name, id: KeyID(name, pub), pub: pub, ed: ed}, nil
}

// Name returns the key name.
func (v *Verifier) Name() string { return v.name }

// KeyHash returns the C2SP key ID.
func (v *Verifier) KeyHash() uint32 { return v.id }

// PublicKey returns the cosigner's Ed25519 public key.
func (v *Verifier) PublicKey() ed25519.PublicKey { return v.pub }

// Verify reports whether sig is a valid cosignature of msg. Timestamps of 2^63
// or more are rejected, as the specification requires. The Ed25519
// signature is checked by a devices.Ed25519Verifier: ed25519.Verify's
// result.
func (v *Verifier) Verify(msg, sig []byte) bool {
	ts, err := Timestamp(sig)
	if err != nil {
		return false
	}
	return v.ed.Verify(Message(msg, ts), sig[8:])
}

// Timestamp returns the timestamp of a cosignature (the bytes after the key
// ID), checking its length and range.
func Timestamp(sig []byte) (uint64, error) {
	if len(sig) != SignatureSize {
		return 0, fmt.Errorf("%w: %d bytes, want %d", ErrMalformedSignature, len(sig), SignatureSize)
	}
	ts := binary.BigEndian.Uint64(sig)
	if ts > 1<<63-1 {
		return 0, ErrTimestamp
	}
	return ts, nil
}

// GenerateKey returns a new cosigner key pair encoded as an skey and a vkey.
func GenerateKey(name string) (skey, vkey string, err error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", err
	}
	return EncodeKeys(name, priv)
}

// EncodeKeys encodes an Ed25519 cosigner private key as an skey and its
// public key as a vkey.
func EncodeKeys(name string, priv ed25519.PrivateKey) (skey, vkey string, err error) {
	if !isValidName(name) {
		return "", "", fmt.Errorf("%w: invalid key name %q", ErrMalformedKey, name)
	}
	pub := priv.Public().(ed25519.PublicKey)
	id := KeyID(name, pub)
	enc := func(b []byte) string {
		return base64.StdEncoding.EncodeToString(append([]byte{AlgCosignatureV1}, b...))
	}
	skey = fmt.Sprintf("PRIVATE+KEY+%s+%08x+%s", name, id, enc(priv.Seed()))
	vkey = fmt.Sprintf("%s+%08x+%s", name, id, enc(pub))
	return skey, vkey, nil
}

// parseKey splits "<name>+<hex id>+<base64(0x04 || key)>" and checks the
// algorithm byte and key length.
func parseKey(s string, keyLen int) (name string, id uint32, key []byte, err error) {
	name, rest, ok1 := strings.Cut(s, "+")
	hexID, b64, ok2 := strings.Cut(rest, "+")
	if !ok1 || !ok2 || !isValidName(name) || len(hexID) != 8 {
		return "", 0, nil, fmt.Errorf("%w: want <name>+<8 hex digits>+<base64>", ErrMalformedKey)
	}
	id64, err := strconv.ParseUint(hexID, 16, 32)
	if err != nil {
		return "", 0, nil, fmt.Errorf("%w: key ID %q is not hex", ErrMalformedKey, hexID)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil || base64.StdEncoding.EncodeToString(raw) != b64 {
		return "", 0, nil, fmt.Errorf("%w: key material is not canonical base64", ErrMalformedKey)
	}
	if len(raw) != 1+keyLen || raw[0] != AlgCosignatureV1 {
		return "", 0, nil, fmt.Errorf("%w: not an Ed25519 cosignature/v1 key (type 0x04, %d bytes)", ErrMalformedKey, keyLen)
	}
	return name, uint32(id64), raw[1:], nil
}

// NewVerifierFromVkey parses a cosigner vkey and checks its key ID.
func NewVerifierFromVkey(vkey string) (*Verifier, error) {
	name, id, key, err := parseKey(vkey, ed25519.PublicKeySize)
	if err != nil {
		return nil, err
	}
	v, err := NewVerifier(name, ed25519.PublicKey(key))
	if err != nil {
		return nil, err
	}
	if v.id != id {
		return nil, fmt.Errorf("%w: key ID %08x does not match the key (want %08x)", ErrMalformedKey, id, v.id)
	}
	return v, nil
}

// NewSignerFromSkey parses a cosigner skey and checks its key ID.
func NewSignerFromSkey(skey string, now func() time.Time) (*Signer, error) {
	rest, ok := strings.CutPrefix(skey, "PRIVATE+KEY+")
	if !ok {
		return nil, fmt.Errorf("%w: skey must start with PRIVATE+KEY+", ErrMalformedKey)
	}
	name, id, seed, err := parseKey(rest, ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	s, err := NewSigner(name, ed25519.NewKeyFromSeed(seed), now)
	if err != nil {
		return nil, err
	}
	if s.id != id {
		return nil, fmt.Errorf("%w: key ID %08x does not match the key (want %08x)", ErrMalformedKey, id, s.id)
	}
	return s, nil
}

var (
	_ note.Signer   = (*Signer)(nil)
	_ note.Verifier = (*Verifier)(nil)
)
