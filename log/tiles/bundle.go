package tiles

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// MaxBundledLeaf is the largest leaf an entry bundle can hold.
const MaxBundledLeaf = 1<<16 - 1

// ErrLeafTooLarge is returned by MarshalBundle for a leaf over
// MaxBundledLeaf bytes.
var ErrLeafTooLarge = errors.New("tiles: leaf too large for an entry bundle")

// ErrBundle is wrapped by every error of ParseBundle.
var ErrBundle = errors.New("tiles: malformed entry bundle")

// MarshalBundle encodes leaves as an entry bundle: for each leaf, its
// length as a big-endian uint16, then its bytes.
func MarshalBundle(leaves [][]byte) ([]byte, error) {
	n := 0
	for i, l := range leaves {
		if len(l) > MaxBundledLeaf {
			return nil, fmt.Errorf("%w: leaf %d of the bundle has %d bytes, over %d", ErrLeafTooLarge, i, len(l), MaxBundledLeaf)
		}
		n += 2 + len(l)
	}
	b := make([]byte, 0, n)
	for _, l := range leaves {
		b = binary.BigEndian.AppendUint16(b, uint16(len(l)))
		b = append(b, l...)
	}
	return b, nil
}

// ParseBundle decodes an entry bundle that must hold exactly want leaves
// (the bundle's width). The leaves alias b.
func ParseBundle(b []byte, want int) ([][]byte, error) {
	if want < 1 || want > Width {
		return nil, fmt.Errorf("%w: asked for %d entries, want 1..%d", ErrBundle, want, Width)
	}
	leaves := make([][]byte, 0, want)
	for len(b) > 0 {
		if len(leaves) == want {
			return nil, fmt.Errorf("%w: %d trailing bytes after %d entries", ErrBundle, len(b), want)
		}
		if len(b) < 2 {
			return nil, fmt.Errorf("%w: truncated length of entry %d", ErrBundle, len(leaves))
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b)-2 < n {
			return nil, fmt.Errorf("%w: entry %d truncated: %d of %d bytes", ErrBundle, len(leaves), len(b)-2, n)
		}
		leaves = append(leaves, b[2:2+n:2+n])
		b = b[2+n:]
	}
	if len(leaves) != want {
		return nil, fmt.Errorf("%w: %d entries, want %d", ErrBundle, len(leaves), want)
	}
	return leaves, nil
}
