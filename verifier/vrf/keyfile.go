package vrf

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// seedFileHeader starts every VRF seed file. The file is exactly
//
//	"keyline-vrf-seed-v1 " || lowercase hex(seed, 64 chars) || "\n"
//
// (85 bytes). The directory creates it at first start in its data directory
// with mode 0600 and refuses to load it if group or others can access it.
const seedFileHeader = "keyline-vrf-seed-v1 "

const seedFileSize = len(seedFileHeader) + 2*SeedSize + 1

// MarshalSeedFile returns the seed file encoding of sk.
func (sk *PrivateKey) MarshalSeedFile() []byte {
	out := make([]byte, 0, seedFileSize)
	out = append(out, seedFileHeader...)
	out = hex.AppendEncode(out, sk.seed[:])
	return append(out, '\n')
}

// ParseSeedFile decodes a seed file (see MarshalSeedFile). It is strict:
// exactly one line, the header, 64 lowercase hex digits, a newline.
func ParseSeedFile(b []byte) (*PrivateKey, error) {
	if len(b) != seedFileSize {
		return nil, fmt.Errorf("%w: seed file is %d bytes, want %d", ErrInvalidSeed, len(b), seedFileSize)
	}
	if !bytes.HasPrefix(b, []byte(seedFileHeader)) {
		return nil, fmt.Errorf("%w: seed file does not start with %q", ErrInvalidSeed, seedFileHeader)
	}
	if b[len(b)-1] != '\n' {
		return nil, fmt.Errorf("%w: seed file does not end with a newline", ErrInvalidSeed)
	}
	hexSeed := b[len(seedFileHeader) : len(b)-1]
	for _, c := range hexSeed {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return nil, fmt.Errorf("%w: seed is not lowercase hex", ErrInvalidSeed)
		}
	}
	seed := make([]byte, SeedSize)
	if _, err := hex.Decode(seed, hexSeed); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidSeed, err)
	}
	return NewKeyFromSeed(seed)
}

// ErrSeedFilePermissions means a seed file is readable or writable by group
// or others.
var ErrSeedFilePermissions = errors.New("vrf: seed file permissions too open")

// LoadSeedFile reads the private key stored at path. It fails if the file
// mode grants any access to group or others (it must be 0600 or stricter).
func LoadSeedFile(path string) (*PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o, want 0600", ErrSeedFilePermissions, path, st.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, int64(seedFileSize)+1))
	if err != nil {
		return nil, err
	}
	sk, err := ParseSeedFile(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return sk, nil
}

// LoadOrCreateSeedFile loads the private key at path, or, if no file
// exists there, generates one from rand and writes it with mode 0600
// (create-exclusive, fsynced). created reports which happened.
func LoadOrCreateSeedFile(path string, rand io.Reader) (sk *PrivateKey, created bool, err error) {
	sk, err = LoadSeedFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return sk, false, err
	}
	sk, err = GenerateKey(rand)
	if err != nil {
		return nil, false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, err
	}
	if _, err := f.Write(sk.MarshalSeedFile()); err != nil {
		f.Close()
		os.Remove(path)
		return nil, false, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, false, err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, false, err
	}
	return sk, true, nil
}
