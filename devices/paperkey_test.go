package devices

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
)

func TestWordlist(t *testing.T) {
	if n := len(bip39Words); n != 2048 {
		t.Fatalf("word list has %d words, want 2048", n)
	}
	if got := hex.EncodeToString(func() []byte { h := sha256.Sum256([]byte(wordlistEnglish)); return h[:] }()); got != wordlistSHA256 {
		t.Fatalf("word list SHA-256 %s, want published %s", got, wordlistSHA256)
	}
	if !slices.IsSorted(bip39Words) {
		t.Fatal("word list not sorted")
	}
	if len(bip39Index) != 2048 {
		t.Fatal("word list has duplicates")
	}
	for _, w := range bip39Words {
		if w == "" || strings.Trim(w, "abcdefghijklmnopqrstuvwxyz") != "" {
			t.Fatalf("bad word %q", w)
		}
	}
}

// bip39Vectors are the 256-bit English vectors (entropy -> mnemonic) of the
// official BIP39 test vectors, trezor/python-mnemonic vectors.json.
var bip39Vectors = []struct{ entropy, mnemonic string }{
	{"0000000000000000000000000000000000000000000000000000000000000000", "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon art"},
	{"7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f", "legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth title"},
	{"8080808080808080808080808080808080808080808080808080808080808080", "letter advice cage absurd amount doctor acoustic avoid letter advice cage absurd amount doctor acoustic avoid letter advice cage absurd amount doctor acoustic bless"},
	{"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", "zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo vote"},
	{"3e141609b97933b66a060dcddc71fad1d91677db872031e85f4c015c5e7e8982", "dignity pass list indicate nasty swamp pool script soccer toe leaf photo multiply desk host tomato cradle drill spread actor shine dismiss champion exotic"},
	{"2c85efc7f24ee4573d2b81a6ec66cee209b2dcbd09d8eddc51e0215b0b68e416", "clutch control vehicle tonight unusual clog visa ice plunge glimpse recipe series open hour vintage deposit universe tip job dress radar refuse motion taste"},
	{"4fa1a8bc3e6d80ee1316050e862c1812031493212b7ec3f3bb1b08f168cabeef", "exile ask congress lamp submit jacket era scheme attend cousin alcohol catch course end lucky hurt sentence oven short ball bird grab wing top"},
	{"15da872c95a13dd738fbf50e427583ad61f18fd99f628c417a61cf8343c90419", "beyond stage sleep clip because twist token leaf atom beauty genius food business side grid unable middle armed observe pair crouch tonight away coconut"},
}

func TestPaperKeyBIP39Vectors(t *testing.T) {
	for _, v := range bip39Vectors {
		e, _ := hex.DecodeString(v.entropy)
		s := RecoverySecret(e)
		if got := s.PaperKey(); got != v.mnemonic {
			t.Errorf("PaperKey(%s) = %q, want %q", v.entropy, got, v.mnemonic)
		}
		got, err := ParsePaperKey(v.mnemonic)
		if err != nil {
			t.Fatalf("ParsePaperKey(%q): %v", v.mnemonic, err)
		}
		if got != s {
			t.Errorf("ParsePaperKey(%q) = %x, want %s", v.mnemonic, got, v.entropy)
		}
	}
}

func TestPaperKeyRoundTripAndForgiving(t *testing.T) {
	for i := 0; i < 50; i++ {
		s, err := NewRecoverySecret(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		words := s.PaperKey()
		messy := "  " + strings.ToUpper(strings.ReplaceAll(words, " ", " \n\t ")) + "\n"
		got, err := ParsePaperKey(messy)
		if err != nil || got != s {
			t.Fatalf("ParsePaperKey(messy) = %x, %v; want %x", got, err, s)
		}
	}
}

func TestPaperKeyErrors(t *testing.T) {
	good := strings.Fields(bip39Vectors[4].mnemonic)
	with := func(i int, w string) string {
		c := slices.Clone(good)
		c[i] = w
		return strings.Join(c, " ")
	}
	cases := []struct {
		name, in, substr string
	}{
		{"unknown word", with(6, "abandn"), `word 7 "abandn" is not in the BIP39 English list`},
		{"unknown first word", with(0, "Bitcoin"), `word 1 "bitcoin"`},
		{"too few", strings.Join(good[:23], " "), "got 23 words, want 24"},
		{"too many", strings.Join(append(slices.Clone(good), "zoo"), " "), "got 25 words, want 24"},
		{"empty", "", "got 0 words"},
		{"checksum", with(23, "zoo"), "checksum mismatch"},
		{"swapped words", strings.Join(append([]string{good[1], good[0]}, good[2:]...), " "), "checksum mismatch"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParsePaperKey(c.in)
			wantErr(t, err, ErrPaperKey, c.substr)
		})
	}
}

func TestRootKeyDerivation(t *testing.T) {
	a, b := testRK("x"), testRK("x")
	if a.Public() != b.Public() {
		t.Fatal("derivation not deterministic")
	}
	if testRK("y").Public() == a.Public() {
		t.Fatal("different secrets gave the same RK")
	}
	// The seed is HKDF output, not the secret itself.
	s := testSecret("x")
	if bytes.Equal(s[:], a.priv.Seed()) {
		t.Fatal("RK seed equals the recovery secret")
	}
	a.Wipe()
	if !bytes.Equal(a.priv.Seed(), make([]byte, 32)) {
		t.Fatal("Wipe left the seed in memory")
	}
}
