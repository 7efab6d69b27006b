package devices

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// testKDF keeps tests fast; real keystores use DefaultKDFParams.
var testKDF = KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

func testKeystore(t testing.TB) *Keystore {
	c := newChain(t)
	return &Keystore{UserID: "alice@example.org", Device: c.laptop, Signing: c.ask, State: c.v3}
}

func sameKeystore(t *testing.T, got, want *Keystore) {
	t.Helper()
	a, err := got.encodeContents()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := want.encodeContents()
	if !bytes.Equal(a, b) {
		t.Fatal("keystore contents differ")
	}
}

func TestKeystoreSaveLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keystore")
	ks := testKeystore(t)
	if err := SaveKeystore(path, ks, []byte("correct horse"), testKDF); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := LoadKeystore(path, []byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	sameKeystore(t, got, ks)
	if got.Signing == nil || got.Signing.Public() != ks.Signing.Public() || got.Signing.Seed() != ks.Signing.Seed() {
		t.Fatal("account signing key not kept")
	}
	if got.Device.ID() != ks.Device.ID() {
		t.Fatal("device key differs")
	}
	// Overwrite atomically; no temp files are left behind.
	noIK := &Keystore{UserID: ks.UserID, Device: ks.Device}
	if err := SaveKeystore(path, noIK, []byte("new pass"), testKDF); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory has %d entries, want 1", len(entries))
	}
	got, err = LoadKeystore(path, []byte("new pass"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Signing != nil || got.State != nil {
		t.Fatal("optional fields appeared")
	}
	_, err = LoadKeystore(path, []byte("correct horse"))
	wantErr(t, err, ErrWrongPassphrase, "")
	_, err = LoadKeystore(filepath.Join(dir, "missing"), []byte("x"))
	if !os.IsNotExist(errUnwrapAll(err)) {
		t.Fatalf("missing file: %v", err)
	}
}

func errUnwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

// TestKeystoreNeverHoldsRootKey: the contents hold the device keys, the
// ASK seed and the state, and neither the recovery secret nor the root
// key's seed or private key.
func TestKeystoreNeverHoldsRootKey(t *testing.T) {
	ks := testKeystore(t)
	pt, err := ks.encodeContents()
	if err != nil {
		t.Fatal(err)
	}
	sec := testSecret("alice")
	rk := testRK("alice")
	for name, b := range map[string][]byte{"recovery secret": sec[:], "root key seed": rk.priv.Seed()} {
		if bytes.Contains(pt, b) {
			t.Fatalf("keystore contents hold the %s", name)
		}
	}
	ask := ks.Signing.Seed()
	if !bytes.Contains(pt, ask[:]) {
		t.Fatal("keystore contents do not hold the ASK seed")
	}
}

func TestKeystoreOldFormatRefused(t *testing.T) {
	file, err := EncryptKeystore(testKeystore(t), []byte("pw"), testKDF)
	if err != nil {
		t.Fatal(err)
	}
	old := bytes.Clone(file)
	old[4] = 0x01
	_, err = DecryptKeystore(old, []byte("pw"))
	wantErr(t, err, ErrKeystore, "format version 1")
}

// TestKeystoreSigningKeyMismatch: a stored ASK seed that does not match its
// stored cert is refused.
func TestKeystoreSigningKeyMismatch(t *testing.T) {
	ks := testKeystore(t)
	other := testASK(t, testRK("alice"), "alice@example.org", 1, "other")
	ks.Signing = &AccountSigningKey{Cert: ks.Signing.Cert, priv: other.priv}
	pt, err := ks.encodeContents()
	if err != nil {
		t.Fatal(err)
	}
	_, err = decodeContents(pt)
	wantErr(t, err, ErrKeystore, "does not match")
}

func TestKeystoreRejects(t *testing.T) {
	ks := testKeystore(t)
	file, err := EncryptKeystore(ks, []byte("pw"), testKDF)
	if err != nil {
		t.Fatal(err)
	}
	mod := func(i int, v byte) []byte { b := bytes.Clone(file); b[i] = v; return b }
	cases := []struct {
		name   string
		file   []byte
		target error
		substr string
	}{
		{"empty", nil, ErrKeystore, "bad magic"},
		{"bad magic", mod(0, 'X'), ErrKeystore, "bad magic"},
		{"unknown format", mod(4, 9), ErrKeystore, "unknown format byte 0x09"},
		{"unknown KDF", mod(5, 7), ErrKeystore, "unknown KDF id 7"},
		{"time zero", append(append(bytes.Clone(file[:6]), 0, 0, 0, 0), file[10:]...), ErrKeystore, "time 0"},
		{"huge memory", append(append(bytes.Clone(file[:10]), 0xff, 0xff, 0xff, 0xff), file[14:]...), ErrKeystore, "memory"},
		{"zero threads", mod(14, 0), ErrKeystore, "threads 0"},
		{"truncated header", file[:30], ErrKeystore, "truncated"},
		{"no tag", file[:keystoreHeaderLen+3], ErrKeystore, "shorter than"},
		{"header tampered (salt)", mod(20, file[20]^1), ErrWrongPassphrase, ""},
		{"header tampered (time)", mod(9, 2), ErrWrongPassphrase, ""},
		{"ciphertext tampered", mod(len(file)-20, file[len(file)-20]^1), ErrWrongPassphrase, ""},
		{"tag truncated", file[:len(file)-1], ErrWrongPassphrase, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecryptKeystore(tc.file, []byte("pw"))
			wantErr(t, err, tc.target, tc.substr)
		})
	}
	_, err = DecryptKeystore(file, []byte("wrong"))
	wantErr(t, err, ErrWrongPassphrase, "wrong passphrase")
	_, err = EncryptKeystore(ks, []byte("pw"), KDFParams{Time: 1, MemoryKiB: 4, Threads: 1})
	wantErr(t, err, ErrKeystore, "memory 4 KiB")
}

func TestKeystoreContentsRejects(t *testing.T) {
	ks := testKeystore(t)
	pt, err := ks.encodeContents()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeContents(pt); err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(pt); n++ {
		_, err := decodeContents(pt[:n])
		wantErr(t, err, ErrKeystore, "")
	}
	_, err = decodeContents(append(bytes.Clone(pt), 0))
	wantErr(t, err, ErrKeystore, "trailing")
	bad := bytes.Clone(pt)
	bad[1+2+len(ks.UserID)+64] = 7
	_, err = decodeContents(bad)
	wantErr(t, err, ErrKeystore, "unknown signing key kind 7")
}

func TestSaveKeystoreFailsCleanly(t *testing.T) {
	dir := t.TempDir()
	err := SaveKeystore(filepath.Join(dir, "missing", "ks"), testKeystore(t), []byte("pw"), testKDF)
	if err == nil {
		t.Fatal("saved into a missing directory")
	}
	// Invalid contents are refused before anything is written.
	err = SaveKeystore(filepath.Join(dir, "ks"), &Keystore{UserID: "Bad"}, []byte("pw"), testKDF)
	wantErr(t, err, ErrUserID, "")
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("left %d files behind", len(entries))
	}
}
