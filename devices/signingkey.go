package devices

import (
	"crypto/ed25519"
	"fmt"
	"io"
	"time"
)

const signingKeyCertFormat = 0x01

// SigningKeyCert is the root key's certificate for an account signing key
// (ASK): user id, generation, the ASK's Ed25519 public key and a creation
// time, signed by RK over
// "keyline signing-key-cert v1" || 0x00 || body.
//
// Generation 1 is certified when the account is created (or reset); each
// rotation (account recover, account rotate-key) certifies generation g+1,
// and from then on anything signed by an older generation is refused
// (ErrStaleSigningKey).
type SigningKeyCert struct {
	UserID     string    // canonical user id
	Generation uint32    // >= 1
	Key        [32]byte  // ASK Ed25519 public key
	Created    time.Time // whole seconds, UTC
	Signature  [64]byte  // RK over "keyline signing-key-cert v1" || 0x00 || body
}

func (c *SigningKeyCert) checkFields() error {
	if err := checkUserID(c.UserID); err != nil {
		return err
	}
	if c.Generation == 0 {
		return fmt.Errorf("%w: signing key generation 0 (generations start at 1)", ErrMalformed)
	}
	return checkTime("signing key cert creation time", c.Created)
}

func (c *SigningKeyCert) appendBody(w *builder) {
	w.u8(signingKeyCertFormat)
	w.string16(c.UserID)
	w.u32(c.Generation)
	w.raw(c.Key[:])
	w.time(c.Created)
}

func (c *SigningKeyCert) body() ([]byte, error) {
	if err := c.checkFields(); err != nil {
		return nil, err
	}
	var w builder
	c.appendBody(&w)
	return w.b, nil
}

// MarshalBinary returns the canonical encoding: body || RK signature.
func (c *SigningKeyCert) MarshalBinary() ([]byte, error) {
	b, err := c.body()
	if err != nil {
		return nil, err
	}
	return append(b, c.Signature[:]...), nil
}

// ParseSigningKeyCert decodes a SigningKeyCert encoding. It checks the
// format only; use VerifySigningKeyCert.
func ParseSigningKeyCert(b []byte) (*SigningKeyCert, error) {
	r := &reader{what: "SigningKeyCert", b: b}
	c := readSigningKeyCert(r)
	if err := r.done(); err != nil {
		return nil, err
	}
	return c, nil
}

func readSigningKeyCert(r *reader) *SigningKeyCert {
	c := new(SigningKeyCert)
	r.format(signingKeyCertFormat)
	c.UserID = r.string16("user id", MaxUserIDLen)
	c.Generation = r.u32("generation")
	c.Key = r.array32("signing key")
	c.Created = r.time("creation time")
	c.Signature = r.array64("root key signature")
	if r.err == nil {
		if err := c.checkFields(); err != nil {
			r.failErr(err)
		}
	}
	if r.err != nil {
		return nil
	}
	return c
}

// VerifySigningKeyCert checks that c is well formed, names userID, and is
// signed by the root key rkPub, and that the ASK is not RK itself. Errors
// wrap ErrSigningKeyCert (or ErrMalformed, ErrUserMismatch).
func VerifySigningKeyCert(rkPub [32]byte, userID string, c *SigningKeyCert) error {
	return verifySigningKeyCert(nil, &rkPub, userID, c)
}

// verifySigningKeyCert is VerifySigningKeyCert with its signature checked
// through g (verifySignature).
func verifySigningKeyCert(g *sigGroup, rkPub *[32]byte, userID string, c *SigningKeyCert) error {
	if c == nil {
		return fmt.Errorf("%w: no signing key cert", ErrSigningKeyCert)
	}
	b, err := c.body()
	if err != nil {
		return err
	}
	if c.UserID != userID {
		return fmt.Errorf("%w: signing key cert is for %q, the account is %q", ErrUserMismatch, c.UserID, userID)
	}
	if c.Key == *rkPub {
		return fmt.Errorf("%w: generation %d: the signing key is the root key", ErrSigningKeyCert, c.Generation)
	}
	if !verifySignature(g, rkPub[:], signedMessage(ctxSigningKeyCert, b), c.Signature[:]) {
		return fmt.Errorf("%w: generation %d: root key signature does not verify", ErrSigningKeyCert, c.Generation)
	}
	return nil
}

// equal reports whether a and b have the same encoding.
func (c *SigningKeyCert) equal(o *SigningKeyCert) bool {
	if c == nil || o == nil {
		return c == o
	}
	return c.UserID == o.UserID && c.Generation == o.Generation && c.Key == o.Key &&
		c.Created.Equal(o.Created) && c.Signature == o.Signature
}

// AccountSigningKey is an account signing key (ASK): a random Ed25519 key
// together with the SigningKeyCert that certifies it. It signs
// AccountStates and DeviceCerts. Trusted devices keep it in their
// keystore.
type AccountSigningKey struct {
	Cert *SigningKeyCert
	priv ed25519.PrivateKey
}

// NewAccountSigningKey generates an ASK from rand (32 bytes of Ed25519
// seed) and certifies it with rk as generation gen of userID, created at
// now (truncated to whole seconds).
func NewAccountSigningKey(rk *RootKey, userID string, gen uint32, rand io.Reader, now time.Time) (*AccountSigningKey, error) {
	var seed [32]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("devices: reading signing key: %w", err)
	}
	defer clear(seed[:])
	priv := ed25519.NewKeyFromSeed(seed[:])
	c := &SigningKeyCert{UserID: userID, Generation: gen, Created: now.Truncate(time.Second).UTC()}
	copy(c.Key[:], priv[32:])
	b, err := c.body()
	if err != nil {
		return nil, err
	}
	c.Signature = rk.sign(signedMessage(ctxSigningKeyCert, b))
	if err := VerifySigningKeyCert(rk.Public(), userID, c); err != nil {
		return nil, err
	}
	return &AccountSigningKey{Cert: c, priv: priv}, nil
}

// AccountSigningKeyFromSeed returns the ASK with Ed25519 seed seed and
// certificate cert; the seed's public key must be cert.Key.
func AccountSigningKeyFromSeed(cert *SigningKeyCert, seed [32]byte) (*AccountSigningKey, error) {
	if cert == nil {
		return nil, fmt.Errorf("%w: no signing key cert", ErrSigningKeyCert)
	}
	priv := ed25519.NewKeyFromSeed(seed[:])
	if [32]byte(priv[32:]) != cert.Key {
		return nil, fmt.Errorf("%w: signing key seed does not match the generation %d cert", ErrSigningKeyCert, cert.Generation)
	}
	return &AccountSigningKey{Cert: cert, priv: priv}, nil
}

// Public returns the ASK public key.
func (k *AccountSigningKey) Public() [32]byte { return k.Cert.Key }

// Generation returns the ASK's generation.
func (k *AccountSigningKey) Generation() uint32 { return k.Cert.Generation }

// Seed returns the Ed25519 seed.
func (k *AccountSigningKey) Seed() [32]byte {
	var s [32]byte
	copy(s[:], k.priv.Seed())
	return s
}

func (k *AccountSigningKey) sign(msg []byte) (sig [64]byte) {
	copy(sig[:], ed25519.Sign(k.priv, msg))
	return sig
}
