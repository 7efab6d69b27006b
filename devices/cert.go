package devices

import (
	"crypto/ed25519"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxDeviceNameLen is the maximum length of a device name in bytes.
const MaxDeviceNameLen = 64

const certFormat = 0x01

// DeviceCert binds a device's keys to an account's identity key. It carries
// two signatures: the device's back-signature over (IK public key, body),
// proving the device holds its signing key and agreed to join that identity,
// and IK's signature over the body.
type DeviceCert struct {
	ID            DeviceID  // DeviceIDFor(SigningKey)
	Name          string    // 1..64 bytes of UTF-8, no control characters
	SigningKey    [32]byte  // Ed25519 public key
	X25519Key     [32]byte  // X25519 public key
	Created       time.Time // whole seconds, UTC
	BackSignature [64]byte  // device over "keyline device-cert backsig v1" || 0x00 || IK || body
	Signature     [64]byte  // IK over "keyline device-cert v1" || 0x00 || body
}

// NewCert returns a DeviceCert for this device, named name, created at
// created (truncated to whole seconds), back-signed for the identity key
// ikPub. The IK signature is left empty for IdentityKey.IssueCert.
func (k *DeviceKey) NewCert(name string, ikPub [32]byte, created time.Time) (*DeviceCert, error) {
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
	if err := k.BackSign(c, ikPub); err != nil {
		return nil, err
	}
	return c, nil
}

// BackSign sets c.BackSignature: the device's signature over (ikPub, body).
// c must describe this device's keys.
func (k *DeviceKey) BackSign(c *DeviceCert, ikPub [32]byte) error {
	if c.SigningKey != k.SigningPublic() || c.X25519Key != k.X25519Public() {
		return fmt.Errorf("devices: %w: cert keys are not this device's keys", ErrDeviceCert)
	}
	body, err := c.body()
	if err != nil {
		return err
	}
	c.BackSignature = k.sig(signedMessage(ctxDeviceBacksig, ikPub[:], body))
	return nil
}

// IssueCert checks c's back-signature for this identity key and sets
// c.Signature, the identity key's signature over the cert body.
func (k *IdentityKey) IssueCert(c *DeviceCert) error {
	ik := k.Public()
	if err := c.checkKeys(ik); err != nil {
		return err
	}
	body, err := c.body()
	if err != nil {
		return err
	}
	if !ed25519.Verify(c.SigningKey[:], signedMessage(ctxDeviceBacksig, ik[:], body), c.BackSignature[:]) {
		return fmt.Errorf("devices: %w: device %s: back-signature does not verify for this identity key", ErrDeviceCert, c.ID)
	}
	c.Signature = k.sign(signedMessage(ctxDeviceCert, body))
	return nil
}

// VerifyDeviceCert checks that c is well formed, that its device id matches
// its signing key, that its keys are usable and distinct from each other
// and from ikPub, that ikPub signed it, and that the device back-signed
// (ikPub, body). Errors wrap ErrDeviceCert (or ErrDeviceName).
func VerifyDeviceCert(ikPub [32]byte, c *DeviceCert) error {
	if c == nil {
		return fmt.Errorf("devices: %w: nil cert", ErrDeviceCert)
	}
	if err := c.checkKeys(ikPub); err != nil {
		return err
	}
	body, err := c.body()
	if err != nil {
		return err
	}
	if !ed25519.Verify(ikPub[:], signedMessage(ctxDeviceCert, body), c.Signature[:]) {
		return fmt.Errorf("devices: %w: device %s: identity key signature does not verify", ErrDeviceCert, c.ID)
	}
	if !ed25519.Verify(c.SigningKey[:], signedMessage(ctxDeviceBacksig, ikPub[:], body), c.BackSignature[:]) {
		return fmt.Errorf("devices: %w: device %s: back-signature does not verify", ErrDeviceCert, c.ID)
	}
	return nil
}

// checkKeys checks the key fields of c that do not need signatures.
func (c *DeviceCert) checkKeys(ikPub [32]byte) error {
	if err := c.checkFields(); err != nil {
		return err
	}
	if DeviceIDFor(c.SigningKey) != c.ID {
		return fmt.Errorf("devices: %w: device id %s does not match its signing key (want %s)", ErrDeviceCert, c.ID, DeviceIDFor(c.SigningKey))
	}
	if c.SigningKey == c.X25519Key {
		return fmt.Errorf("devices: %w: device %s: signing key equals X25519 key", ErrDeviceCert, c.ID)
	}
	if c.SigningKey == ikPub {
		return fmt.Errorf("devices: %w: device %s: signing key equals the identity key", ErrDeviceCert, c.ID)
	}
	if c.X25519Key == ikPub {
		return fmt.Errorf("devices: %w: device %s: X25519 key equals the identity key", ErrDeviceCert, c.ID)
	}
	if isLowOrderX25519(c.X25519Key) {
		return fmt.Errorf("devices: %w: device %s: X25519 key is a low-order point", ErrDeviceCert, c.ID)
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
		return fmt.Errorf("devices: %w: empty", ErrDeviceName)
	}
	if len(name) > MaxDeviceNameLen {
		return fmt.Errorf("devices: %w: %d bytes, over the limit of %d", ErrDeviceName, len(name), MaxDeviceNameLen)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("devices: %w: not valid UTF-8", ErrDeviceName)
	}
	for i, r := range name {
		if unicode.IsControl(r) {
			return fmt.Errorf("devices: %w: control character %U at byte %d", ErrDeviceName, r, i)
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
// || IK signature (docs/protocol.md).
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
	c.Signature = r.array64("identity key signature")
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
