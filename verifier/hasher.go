package verifier

import (
	"crypto/sha256"

	"github.com/transparency-dev/merkle/rfc6962"
)

// logHasher is RFC 6962's Merkle tree hasher (rfc6962.DefaultHasher) with
// HashChildren computed on a stack buffer: the library's allocates a new
// SHA-256 state per node, about 40 per verified lookup.
type logHasher struct{ *rfc6962.Hasher }

var hasher = logHasher{rfc6962.DefaultHasher}

// HashChildren returns SHA-256(0x01 || l || r) for 32-byte l and r, and
// falls back to the library for other lengths.
func (h logHasher) HashChildren(l, r []byte) []byte {
	if len(l) != sha256.Size || len(r) != sha256.Size {
		return h.Hasher.HashChildren(l, r)
	}
	var buf [1 + 2*sha256.Size]byte
	buf[0] = rfc6962.RFC6962NodeHashPrefix
	copy(buf[1:], l)
	copy(buf[1+sha256.Size:], r)
	s := sha256.Sum256(buf[:])
	return s[:]
}
