package devices

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"golang.org/x/crypto/hkdf"
)

// RootKey is an account's Ed25519 root key (RK). It is derived from the
// paper key and exists only while the paper key is typed in (account
// create, recover, rotate-key): no keystore ever holds it. It certifies
// account signing keys (SigningKeyCert). Safety numbers and pins depend
// only on its public key and the user id, so they change only on a reset.
type RootKey struct {
	priv ed25519.PrivateKey
}

// DeriveRootKey derives the root key from a recovery secret:
// seed = HKDF-SHA256(ikm = secret, salt = empty, info = "keyline identity-key v1"),
// 32 bytes, used as the Ed25519 seed (RFC 8032). (The info string is the
// one of the former identity key, which the root key replaces.)
func DeriveRootKey(secret RecoverySecret) *RootKey {
	seed := make([]byte, ed25519.SeedSize)
	r := hkdf.New(sha256.New, secret[:], nil, []byte(ctxRootHKDF))
	if _, err := io.ReadFull(r, seed); err != nil {
		panic("devices: hkdf: " + err.Error()) // cannot happen: 32 bytes is far below the HKDF limit
	}
	defer clear(seed)
	return &RootKey{priv: ed25519.NewKeyFromSeed(seed)}
}

// Public returns the root public key.
func (k *RootKey) Public() [32]byte {
	var p [32]byte
	copy(p[:], k.priv[32:])
	return p
}

// Wipe overwrites the private key in memory. The key must not be used
// afterwards.
func (k *RootKey) Wipe() { clear(k.priv[:32]) }

func (k *RootKey) sign(msg []byte) (sig [64]byte) {
	copy(sig[:], ed25519.Sign(k.priv, msg))
	return sig
}

// DeviceID identifies a device: the first 16 bytes of
// SHA-256("keyline device-id v1" || 0x00 || Ed25519 signing public key).
// Because it is bound to the key, a revoked device's key can never come
// back under a new id.
type DeviceID [16]byte

// DeviceIDFor returns the device id of an Ed25519 device signing public key.
func DeviceIDFor(signingKey [32]byte) DeviceID {
	h := domainHash(ctxDeviceID, signingKey[:])
	var id DeviceID
	copy(id[:], h[:16])
	return id
}

// String returns the id in lowercase hex.
func (id DeviceID) String() string { return hex.EncodeToString(id[:]) }

// DeviceKey is a device's private keys: an Ed25519 signing key and an X25519
// key agreement key.
type DeviceKey struct {
	sign ed25519.PrivateKey
	dh   *ecdh.PrivateKey
}

// NewDeviceKey generates device keys from rand (crypto/rand.Reader in
// production): 32 bytes of Ed25519 seed, then 32 bytes of X25519 private key.
func NewDeviceKey(rand io.Reader) (*DeviceKey, error) {
	var seed, x [32]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("devices: reading device key: %w", err)
	}
	if _, err := io.ReadFull(rand, x[:]); err != nil {
		return nil, fmt.Errorf("devices: reading device key: %w", err)
	}
	return DeviceKeyFromSeeds(seed, x)
}

// DeviceKeyFromSeeds returns the device key with the given Ed25519 seed and
// X25519 private key (RFC 7748 scalar bytes, clamped when used).
func DeviceKeyFromSeeds(signingSeed, x25519Private [32]byte) (*DeviceKey, error) {
	dh, err := ecdh.X25519().NewPrivateKey(x25519Private[:])
	if err != nil {
		return nil, fmt.Errorf("devices: X25519 key: %w", err)
	}
	return &DeviceKey{sign: ed25519.NewKeyFromSeed(signingSeed[:]), dh: dh}, nil
}

// ID returns the device id.
func (k *DeviceKey) ID() DeviceID { return DeviceIDFor(k.SigningPublic()) }

// SigningPublic returns the Ed25519 public key.
func (k *DeviceKey) SigningPublic() [32]byte {
	var p [32]byte
	copy(p[:], k.sign[32:])
	return p
}

// X25519Public returns the X25519 public key.
func (k *DeviceKey) X25519Public() [32]byte {
	var p [32]byte
	copy(p[:], k.dh.PublicKey().Bytes())
	return p
}

// SigningSeed returns the Ed25519 seed.
func (k *DeviceKey) SigningSeed() [32]byte {
	var s [32]byte
	copy(s[:], k.sign.Seed())
	return s
}

// X25519Private returns the X25519 private key bytes.
func (k *DeviceKey) X25519Private() [32]byte {
	var s [32]byte
	copy(s[:], k.dh.Bytes())
	return s
}

// ECDH returns the X25519 private key for key agreement.
func (k *DeviceKey) ECDH() *ecdh.PrivateKey { return k.dh }

func (k *DeviceKey) sig(msg []byte) (sig [64]byte) {
	copy(sig[:], ed25519.Sign(k.sign, msg))
	return sig
}
