package devices

import (
	"crypto/sha256"
	_ "embed"
	"fmt"
	"io"
	"strings"
)

// wordlistEnglish is the BIP39 English word list, 2048 words, one per line,
// byte-identical to bitcoin/bips bip-0039/english.txt (SHA-256
// 2f5eed53a4727b4bf8880d8f3f199efc90e58503646d9ff8eff3a2ed3b24dbda).
//
//go:embed wordlist_english.txt
var wordlistEnglish string

// wordlistSHA256 is the SHA-256 of the published BIP39 English word list.
const wordlistSHA256 = "2f5eed53a4727b4bf8880d8f3f199efc90e58503646d9ff8eff3a2ed3b24dbda"

var (
	bip39Words = strings.Split(strings.TrimSuffix(wordlistEnglish, "\n"), "\n")
	bip39Index = func() map[string]int {
		m := make(map[string]int, len(bip39Words))
		for i, w := range bip39Words {
			m[w] = i
		}
		return m
	}()
)

// PaperKeyWords is the number of words in a paper key.
const PaperKeyWords = 24

// RecoverySecret is the 256-bit secret from which the identity key is
// derived. It is shown to the user once, as a paper key.
type RecoverySecret [32]byte

// NewRecoverySecret reads a fresh secret from rand (crypto/rand.Reader in
// production).
func NewRecoverySecret(rand io.Reader) (RecoverySecret, error) {
	var s RecoverySecret
	if _, err := io.ReadFull(rand, s[:]); err != nil {
		return s, fmt.Errorf("devices: reading recovery secret: %w", err)
	}
	return s, nil
}

// PaperKey returns the secret as 24 lowercase BIP39 English words separated
// by single spaces: the 256 bits followed by the first 8 bits of their
// SHA-256, split into 24 groups of 11 bits, most significant first (BIP39).
func (s RecoverySecret) PaperKey() string {
	sum := sha256.Sum256(s[:])
	var buf [33]byte
	copy(buf[:], s[:])
	buf[32] = sum[0]
	words := make([]string, PaperKeyWords)
	for i := range words {
		words[i] = bip39Words[bits11(buf[:], i*11)]
	}
	return strings.Join(words, " ")
}

// bits11 returns the 11 bits of b starting at bit offset off (MSB first).
func bits11(b []byte, off int) int {
	v := 0
	for i := 0; i < 11; i++ {
		bit := off + i
		v = v<<1 | int(b[bit/8]>>(7-bit%8)&1)
	}
	return v
}

// ParsePaperKey parses a 24-word paper key. Case and whitespace are ignored
// (any run of spaces, tabs or newlines separates words). Errors wrap
// ErrPaperKey and name the first unknown word and its 1-based position, a
// wrong word count, or a checksum mismatch.
func ParsePaperKey(words string) (RecoverySecret, error) {
	var s RecoverySecret
	fields := strings.Fields(strings.ToLower(words))
	if len(fields) != PaperKeyWords {
		return s, fmt.Errorf("%w: got %d words, want %d", ErrPaperKey, len(fields), PaperKeyWords)
	}
	var buf [33]byte
	for i, w := range fields {
		idx, ok := bip39Index[w]
		if !ok {
			return s, fmt.Errorf("%w: word %d %q is not in the BIP39 English list", ErrPaperKey, i+1, w)
		}
		for j := 0; j < 11; j++ {
			if idx>>(10-j)&1 == 1 {
				bit := i*11 + j
				buf[bit/8] |= 1 << (7 - bit%8)
			}
		}
	}
	copy(s[:], buf[:32])
	sum := sha256.Sum256(s[:])
	if sum[0] != buf[32] {
		return RecoverySecret{}, fmt.Errorf("%w: checksum mismatch (a word is wrong or words are out of order)", ErrPaperKey)
	}
	return s, nil
}
