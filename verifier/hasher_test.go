package verifier

import (
	"bytes"
	"crypto/rand"
	"testing"

	"github.com/transparency-dev/merkle/rfc6962"
)

// TestLogHasherMatchesRFC6962 checks the stack-buffer HashChildren gives
// the library's result for hashes and for odd lengths.
func TestLogHasherMatchesRFC6962(t *testing.T) {
	for _, n := range [][2]int{{32, 32}, {0, 32}, {31, 33}, {64, 1}} {
		l, r := make([]byte, n[0]), make([]byte, n[1])
		rand.Read(l)
		rand.Read(r)
		if got, want := hasher.HashChildren(l, r), rfc6962.DefaultHasher.HashChildren(l, r); !bytes.Equal(got, want) {
			t.Fatalf("lengths %v: %x, want %x", n, got, want)
		}
	}
	if !bytes.Equal(hasher.HashLeaf([]byte("x")), rfc6962.DefaultHasher.HashLeaf([]byte("x"))) {
		t.Fatal("HashLeaf differs")
	}
}
