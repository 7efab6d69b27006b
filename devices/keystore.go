package devices

import (
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

// KDFParams are the argon2id parameters of a keystore, stored in its header.
type KDFParams struct {
	Time      uint32 // passes, 1..64
	MemoryKiB uint32 // memory in KiB, 8*Threads..1048576 (1 GiB)
	Threads   uint8  // parallelism, 1..16
}

// DefaultKDFParams are the parameters for real keystores: time 3, 64 MiB,
// 2 threads.
var DefaultKDFParams = KDFParams{Time: 3, MemoryKiB: 64 * 1024, Threads: 2}

func (p KDFParams) check() error {
	switch {
	case p.Threads < 1 || p.Threads > 16:
		return fmt.Errorf("argon2id threads %d outside 1..16", p.Threads)
	case p.Time < 1 || p.Time > 64:
		return fmt.Errorf("argon2id time %d outside 1..64", p.Time)
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > 1<<20:
		return fmt.Errorf("argon2id memory %d KiB outside %d..%d", p.MemoryKiB, 8*uint32(p.Threads), 1<<20)
	}
	return nil
}

// Keystore is what a device keeps on disk. It never holds the root key
// or the paper key's recovery secret.
type Keystore struct {
	UserID string     // canonical user id of the account
	Device *DeviceKey // this device's keys
	// Signing is the account signing key (ASK) with its cert, if this is a
	// trusted device. Optional.
	Signing *AccountSigningKey
	// State is the latest own AccountState this device knows. Optional.
	State *AccountState
}

const (
	keystoreMagic      = "KLKS"
	keystoreFormat     = 0x02
	keystoreKDFArgon2  = 0x01
	keystoreSaltLen    = 16
	keystoreHeaderLen  = 4 + 1 + 1 + 4 + 4 + 1 + keystoreSaltLen + chacha20poly1305.NonceSizeX
	contentsFormat     = 0x02
	signingNone        = 0
	signingKey         = 1
	maxKeystoreState   = 1 << 20
	maxKeystoreFileLen = keystoreHeaderLen + 1<<21
)

// encodeContents returns the plaintext encoding of ks.
func (ks *Keystore) encodeContents() ([]byte, error) {
	if err := checkUserID(ks.UserID); err != nil {
		return nil, err
	}
	if ks.Device == nil {
		return nil, fmt.Errorf("devices: %w: keystore has no device key", ErrKeystore)
	}
	var w builder
	w.u8(contentsFormat)
	w.string16(ks.UserID)
	seed, x := ks.Device.SigningSeed(), ks.Device.X25519Private()
	w.raw(seed[:])
	w.raw(x[:])
	if ks.Signing == nil {
		w.u8(signingNone)
	} else {
		cert, err := ks.Signing.Cert.MarshalBinary()
		if err != nil {
			return nil, err
		}
		w.u8(signingKey)
		w.u16(uint16(len(cert)))
		w.raw(cert)
		seed := ks.Signing.Seed()
		w.raw(seed[:])
		clear(seed[:])
	}
	if ks.State == nil {
		w.u32(0)
	} else {
		st, err := ks.State.MarshalBinary()
		if err != nil {
			return nil, err
		}
		w.u32(uint32(len(st)))
		w.raw(st)
	}
	return w.b, nil
}

func decodeContents(b []byte) (*Keystore, error) {
	r := &reader{what: "keystore contents", b: b}
	ks := new(Keystore)
	r.format(contentsFormat)
	ks.UserID = r.string16("user id", MaxUserIDLen)
	seed := r.array32("device signing seed")
	x := r.array32("device X25519 key")
	var signCert *SigningKeyCert
	var signSeed [32]byte
	switch kind := r.u8("signing key kind"); kind {
	case signingNone:
	case signingKey:
		n := int(r.u16("signing key cert length"))
		if b := r.take(n, "signing key cert"); r.err == nil {
			c, err := ParseSigningKeyCert(b)
			if err != nil {
				r.failErr(err)
			}
			signCert = c
		}
		signSeed = r.array32("signing key seed")
	default:
		r.fail("unknown signing key kind %d", kind)
	}
	n := r.u32("state length")
	if r.err == nil && n > maxKeystoreState {
		r.fail("state length %d over the limit of %d", n, maxKeystoreState)
	}
	if n > 0 && r.err == nil {
		st, err := ParseAccountState(r.take(int(n), "state"))
		if err != nil && r.err == nil {
			r.failErr(err)
		}
		ks.State = st
	}
	if r.err == nil {
		if err := checkUserID(ks.UserID); err != nil {
			r.failErr(err)
		}
	}
	if err := r.done(); err != nil {
		return nil, fmt.Errorf("devices: %w: %w", ErrKeystore, err)
	}
	dk, err := DeviceKeyFromSeeds(seed, x)
	if err != nil {
		return nil, fmt.Errorf("devices: %w: %w", ErrKeystore, err)
	}
	ks.Device = dk
	if signCert != nil {
		ask, err := AccountSigningKeyFromSeed(signCert, signSeed)
		clear(signSeed[:])
		if err != nil {
			return nil, fmt.Errorf("devices: %w: %w", ErrKeystore, err)
		}
		ks.Signing = ask
	}
	return ks, nil
}

// keystoreHeader is the cleartext header of a keystore file.
type keystoreHeader struct {
	params KDFParams
	salt   [keystoreSaltLen]byte
	nonce  [chacha20poly1305.NonceSizeX]byte
}

func (h *keystoreHeader) encode() []byte {
	var w builder
	w.raw([]byte(keystoreMagic))
	w.u8(keystoreFormat)
	w.u8(keystoreKDFArgon2)
	w.u32(h.params.Time)
	w.u32(h.params.MemoryKiB)
	w.u8(h.params.Threads)
	w.raw(h.salt[:])
	w.raw(h.nonce[:])
	return w.b
}

// parseKeystoreFile splits a keystore file into its header and ciphertext.
func parseKeystoreFile(file []byte) (*keystoreHeader, []byte, error) {
	if len(file) > maxKeystoreFileLen {
		return nil, nil, fmt.Errorf("devices: %w: %d bytes, over the limit of %d", ErrKeystore, len(file), maxKeystoreFileLen)
	}
	if len(file) < len(keystoreMagic) || string(file[:len(keystoreMagic)]) != keystoreMagic {
		return nil, nil, fmt.Errorf("devices: %w: not a Keyline keystore (bad magic)", ErrKeystore)
	}
	r := &reader{what: "keystore header", b: file, off: len(keystoreMagic)}
	h := new(keystoreHeader)
	if len(file) > len(keystoreMagic) && file[len(keystoreMagic)] < keystoreFormat {
		return nil, nil, fmt.Errorf("devices: %w: keystore format version %d is from an older Keyline (it may hold the root key); this version reads only format %d: create the account again, or recover it with the paper key on this device (account recover)", ErrKeystore, file[len(keystoreMagic)], keystoreFormat)
	}
	r.format(keystoreFormat)
	if kdf := r.u8("KDF id"); r.err == nil && kdf != keystoreKDFArgon2 {
		r.fail("unknown KDF id %d", kdf)
	}
	h.params.Time = r.u32("argon2id time")
	h.params.MemoryKiB = r.u32("argon2id memory")
	h.params.Threads = r.u8("argon2id threads")
	copy(h.salt[:], r.take(keystoreSaltLen, "salt"))
	copy(h.nonce[:], r.take(chacha20poly1305.NonceSizeX, "nonce"))
	if r.err == nil {
		if err := h.params.check(); err != nil {
			r.fail("%v", err)
		}
	}
	ct := r.take(len(file)-r.off, "ciphertext")
	if r.err == nil && len(ct) < chacha20poly1305.Overhead {
		r.fail("ciphertext shorter than the %d-byte tag", chacha20poly1305.Overhead)
	}
	if err := r.done(); err != nil {
		return nil, nil, fmt.Errorf("devices: %w: %w", ErrKeystore, err)
	}
	return h, ct, nil
}

func keystoreKey(passphrase []byte, h *keystoreHeader) []byte {
	return argon2.IDKey(passphrase, h.salt[:], h.params.Time, h.params.MemoryKiB, h.params.Threads, chacha20poly1305.KeySize)
}

// EncryptKeystore returns the keystore file for ks: header (magic "KLKS",
// format, KDF id, argon2id params, salt, nonce) then the XChaCha20-Poly1305
// encryption of ks's contents under argon2id(passphrase, salt), with the
// header as associated data.
func EncryptKeystore(ks *Keystore, passphrase []byte, params KDFParams) ([]byte, error) {
	return encryptKeystore(ks, passphrase, params, rand.Reader)
}

func encryptKeystore(ks *Keystore, passphrase []byte, params KDFParams, rnd io.Reader) ([]byte, error) {
	if err := params.check(); err != nil {
		return nil, fmt.Errorf("devices: %w: %v", ErrKeystore, err)
	}
	pt, err := ks.encodeContents()
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	h := &keystoreHeader{params: params}
	if _, err := io.ReadFull(rnd, h.salt[:]); err != nil {
		return nil, fmt.Errorf("devices: keystore salt: %w", err)
	}
	if _, err := io.ReadFull(rnd, h.nonce[:]); err != nil {
		return nil, fmt.Errorf("devices: keystore nonce: %w", err)
	}
	key := keystoreKey(passphrase, h)
	defer clear(key)
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	hdr := h.encode()
	return aead.Seal(hdr, h.nonce[:], pt, hdr), nil
}

// DecryptKeystore decrypts a keystore file. A wrong passphrase (or a
// modified file) yields ErrWrongPassphrase; a file that is not a valid
// keystore yields ErrKeystore.
func DecryptKeystore(file, passphrase []byte) (*Keystore, error) {
	h, ct, err := parseKeystoreFile(file)
	if err != nil {
		return nil, err
	}
	key := keystoreKey(passphrase, h)
	defer clear(key)
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	hdr := file[:len(file)-len(ct)]
	pt, err := aead.Open(nil, h.nonce[:], ct, hdr)
	if err != nil {
		return nil, fmt.Errorf("devices: %w", ErrWrongPassphrase)
	}
	defer clear(pt)
	return decodeContents(pt)
}

// SaveKeystore encrypts ks (EncryptKeystore) and writes it to path
// atomically with mode 0600: a temporary file in the same directory is
// written, fsynced and renamed over path, then the directory is fsynced.
func SaveKeystore(path string, ks *Keystore, passphrase []byte, params KDFParams) error {
	data, err := EncryptKeystore(ks, passphrase, params)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, data)
}

// LoadKeystore reads and decrypts the keystore at path (DecryptKeystore).
func LoadKeystore(path string, passphrase []byte) (*Keystore, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("devices: keystore: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeystoreFileLen+1))
	if err != nil {
		return nil, fmt.Errorf("devices: keystore: %w", err)
	}
	return DecryptKeystore(data, passphrase)
}

func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("devices: keystore: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return fmt.Errorf("devices: keystore: %w", err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("devices: keystore: %w", err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("devices: keystore: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("devices: keystore: %w", err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("devices: keystore: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("devices: keystore: %w", err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("devices: keystore: syncing directory: %w", err)
	}
	return nil
}
