package devices

import (
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxDeviceNameLen is the maximum length of a device name in bytes.
const MaxDeviceNameLen = 64

const certFormat = 0x02

// DeviceCert binds a device's keys to an account. It carries two
// signatures: the device's back-signature over (RK public key, body),
// proving the device holds its signing key and agreed to join the account
// of that root key, and the account signing key's (ASK) signature over the
// body. The back-signature names RK, not the ASK, so a rotation can re-sign
// the certs of the devices it keeps without their help.
type DeviceCert struct {
	ID            DeviceID  // DeviceIDFor(SigningKey)
	Name          string    // 1..64 bytes of UTF-8, no control characters
	SigningKey    [32]byte  // Ed25519 public key
	X25519Key     [32]byte  // X25519 public key
	Created       time.Time // whole seconds, UTC
	BackSignature [64]byte  // device over "keyline device-cert backsig v2" || 0x00 || RK || body
	Signature     [64]byte  // ASK over "keyline device-cert v2" || 0x00 || body
}

// NewCert returns a DeviceCert for this device, named name, created at
// created (truncated to whole seconds), back-signed for the root key
// rkPub. The ASK signature is left empty for AccountSigningKey.IssueCert.
func (k *DeviceKey) NewCert(name string, rkPub [32]byte, created time.Time) (*DeviceCert, error) {
	c := &DeviceCert{
		ID:         k.ID(),
		Name:       name,
		SigningKey: k.SigningPublic(),
		X25519Key:  k.X25519Public(),
		Created:    created.Truncate(time.Second).UTC(),
	}
	if err := c.checkFields(); err != nil {
		return nil, err
	}
	if err := k.BackSign(c, rkPub); err != nil {
		return nil, err
	}
	return c, nil
}

// BackSign sets c.BackSignature: the device's signature over (rkPub, body).
// c must describe this device's keys.
func (k *DeviceKey) BackSign(c *DeviceCert, rkPub [32]byte) error {
	if c.SigningKey != k.SigningPublic() || c.X25519Key != k.X25519Public() {
		return fmt.Errorf("%w: cert keys are not this device's keys", ErrDeviceCert)
	}
	body, err := c.body()
	if err != nil {
		return err
	}
	c.BackSignature = k.sig(signedMessage(ctxDeviceBacksig, rkPub[:], body))
	return nil
}

// IssueCert checks c's back-signature for the root key rkPub and sets
// c.Signature, the ASK's signature over the cert body.
func (a *AccountSigningKey) IssueCert(rkPub [32]byte, c *DeviceCert) error {
	if err := c.checkKeys(rkPub, a.Public()); err != nil {
		return err
	}
	body, err := c.body()
	if err != nil {
		return err
	}
	if !verifySignature(nil, c.SigningKey[:], signedMessage(ctxDeviceBacksig, rkPub[:], body), c.BackSignature[:]) {
		return fmt.Errorf("%w: device %s: back-signature does not verify for this root key", ErrDeviceCert, c.ID)
	}
	c.Signature = a.sign(signedMessage(ctxDeviceCert, body))
	return nil
}

// VerifyDeviceCert checks that c is well formed, that its device id matches
// its signing key, that its keys are usable and distinct from each other,
// from rkPub and from askPub, that the ASK askPub signed it, and that the
// device back-signed (rkPub, body). Errors wrap ErrDeviceCert (or
// ErrDeviceName).
func VerifyDeviceCert(rkPub, askPub [32]byte, c *DeviceCert) error {
	return groupVerified(func(g *sigGroup) error { return verifyDeviceCert(g, &rkPub, &askPub, c, false) })
}

// verifyDeviceCert is VerifyDeviceCert with its signatures checked through
// g (verifySignature). If covered is true, c's ASK signature is not
// verified: the caller must verify, in the same check (through the same g),
// a signature by askPub over a message containing c's whole encoding with
// that signature (appendTo), as verifyAccountState does under lookupRule
// with the state's own signature (see lookupRule for why that is sound).
// Every other check, the back-signature included, is made either way.
func verifyDeviceCert(g *sigGroup, rkPub, askPub *[32]byte, c *DeviceCert, covered bool) error {
	if c == nil {
		return fmt.Errorf("%w: nil cert", ErrDeviceCert)
	}
	if err := c.checkKeys(*rkPub, *askPub); err != nil {
		return err
	}
	body, err := c.body()
	if err != nil {
		return err
	}
	if !covered && !verifySignature(g, askPub[:], signedMessage(ctxDeviceCert, body), c.Signature[:]) {
		return fmt.Errorf("%w: device %s: account signing key signature does not verify", ErrDeviceCert, c.ID)
	}
	if !verifySignature(g, c.SigningKey[:], signedMessage(ctxDeviceBacksig, rkPub[:], body), c.BackSignature[:]) {
		return fmt.Errorf("%w: device %s: back-signature does not verify", ErrDeviceCert, c.ID)
	}
	return nil
}

// checkKeys checks the key fields of c that do not need signatures.
func (c *DeviceCert) checkKeys(rkPub, askPub [32]byte) error {
	if err := c.checkFields(); err != nil {
		return err
	}
	if DeviceIDFor(c.SigningKey) != c.ID {
		return fmt.Errorf("%w: device id %s does not match its signing key (want %s)", ErrDeviceCert, c.ID, DeviceIDFor(c.SigningKey))
	}
	if c.SigningKey == c.X25519Key {
		return fmt.Errorf("%w: device %s: signing key equals X25519 key", ErrDeviceCert, c.ID)
	}
	if c.SigningKey == rkPub || c.SigningKey == askPub {
		return fmt.Errorf("%w: device %s: signing key equals the root key or the account signing key", ErrDeviceCert, c.ID)
	}
	if c.X25519Key == rkPub || c.X25519Key == askPub {
		return fmt.Errorf("%w: device %s: X25519 key equals the root key or the account signing key", ErrDeviceCert, c.ID)
	}
	if isLowOrderX25519(c.X25519Key) {
		return fmt.Errorf("%w: device %s: X25519 key is a low-order point", ErrDeviceCert, c.ID)
	}
	return nil
}

// checkFields checks the bounds the encoding requires.
func (c *DeviceCert) checkFields() error {
	if err := checkDeviceName(c.Name); err != nil {
		return err
	}
	return checkTime("device cert creation time", c.Created)
}

func checkDeviceName(name string) error {
	if len(name) == 0 {
		return fmt.Errorf("%w: empty", ErrDeviceName)
	}
	if len(name) > MaxDeviceNameLen {
		return fmt.Errorf("%w: %d bytes, over the limit of %d", ErrDeviceName, len(name), MaxDeviceNameLen)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("%w: not valid UTF-8", ErrDeviceName)
	}
	for i, r := range name {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: control character %U at byte %d", ErrDeviceName, r, i)
		}
	}
	return nil
}

// body returns the signed part of the cert encoding.
func (c *DeviceCert) body() ([]byte, error) {
	if err := c.checkFields(); err != nil {
		return nil, err
	}
	var w builder
	c.appendBody(&w)
	return w.b, nil
}

func (c *DeviceCert) appendBody(w *builder) {
	w.u8(certFormat)
	w.raw(c.ID[:])
	w.string16(c.Name)
	w.raw(c.SigningKey[:])
	w.raw(c.X25519Key[:])
	w.time(c.Created)
}

func (c *DeviceCert) appendTo(w *builder) {
	c.appendBody(w)
	w.raw(c.BackSignature[:])
	w.raw(c.Signature[:])
}

// MarshalBinary returns the canonical encoding of c: body || back-signature
// || ASK signature (docs/protocol.md).
func (c *DeviceCert) MarshalBinary() ([]byte, error) {
	if err := c.checkFields(); err != nil {
		return nil, err
	}
	var w builder
	c.appendTo(&w)
	return w.b, nil
}

// ParseDeviceCert decodes a DeviceCert encoding. It checks the format only;
// use VerifyDeviceCert to check keys and signatures.
func ParseDeviceCert(b []byte) (*DeviceCert, error) {
	r := &reader{what: "DeviceCert", b: b}
	c := readDeviceCert(r)
	if err := r.done(); err != nil {
		return nil, err
	}
	return c, nil
}

func readDeviceCert(r *reader) *DeviceCert {
	c := readDeviceCertBody(r)
	if c == nil {
		return nil
	}
	c.BackSignature = r.array64("back-signature")
	c.Signature = r.array64("signing key signature")
	if r.err != nil {
		return nil
	}
	return c
}

func readDeviceCertBody(r *reader) *DeviceCert {
	c := new(DeviceCert)
	r.format(certFormat)
	copy(c.ID[:], r.take(16, "device id"))
	c.Name = r.string16("device name", MaxDeviceNameLen)
	c.SigningKey = r.array32("signing key")
	c.X25519Key = r.array32("X25519 key")
	c.Created = r.time("creation time")
	if r.err == nil {
		if err := checkDeviceName(c.Name); err != nil {
			r.failErr(err)
		}
	}
	if r.err != nil {
		return nil
	}
	return c
}
