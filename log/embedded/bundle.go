package embedded

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// BundleWidth is the number of consecutive leaves stored in one bundle:
// bundle n holds leaves [n*BundleWidth, (n+1)*BundleWidth).
const BundleWidth = 256

// bundleLevel is the tree level of a bundle's root: nodes of lower levels
// lie inside one bundle and are recomputed from its leaves, never stored.
const bundleLevel = 8

// bundleHeader is the size of a bundle's offsets header.
const bundleHeader = 4 * BundleWidth

// ErrBundle is wrapped by every error of ParseBundle and BundleLeaf.
var ErrBundle = errors.New("embedded: malformed leaf bundle")

// MarshalBundle encodes BundleWidth leaves as a stored bundle: for each
// leaf, in order, the offset where it ends within the concatenated leaves,
// as a big-endian u32 (a header of 1,024 bytes), then the leaves
// concatenated. Leaf j is bytes [end[j-1], end[j]) of the concatenation
// (end[-1] = 0), so one leaf is read without decoding the others.
func MarshalBundle(leaves [][]byte) ([]byte, error) {
	if len(leaves) != BundleWidth {
		return nil, fmt.Errorf("%w: %d leaves, want %d", ErrBundle, len(leaves), BundleWidth)
	}
	n := 0
	for _, l := range leaves {
		n += len(l)
	}
	if n > 1<<32-1 {
		return nil, fmt.Errorf("%w: %d bytes of leaves, over the u32 offsets", ErrBundle, n)
	}
	b := make([]byte, bundleHeader, bundleHeader+n)
	end := 0
	for j, l := range leaves {
		end += len(l)
		binary.BigEndian.PutUint32(b[4*j:], uint32(end))
	}
	for _, l := range leaves {
		b = append(b, l...)
	}
	return b, nil
}

// BundleLeaf returns leaf j of the stored bundle b, aliasing b. It checks
// the header entries it uses and that the last offset ends the bundle.
func BundleLeaf(b []byte, j int) ([]byte, error) {
	if j < 0 || j >= BundleWidth {
		return nil, fmt.Errorf("%w: leaf %d of a bundle of %d", ErrBundle, j, BundleWidth)
	}
	if len(b) < bundleHeader {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrBundle, len(b), bundleHeader)
	}
	data := b[bundleHeader:]
	if last := binary.BigEndian.Uint32(b[bundleHeader-4:]); uint64(last) != uint64(len(data)) {
		return nil, fmt.Errorf("%w: last leaf ends at %d, the bundle holds %d bytes of leaves", ErrBundle, last, len(data))
	}
	var start uint32
	if j > 0 {
		start = binary.BigEndian.Uint32(b[4*(j-1):])
	}
	end := binary.BigEndian.Uint32(b[4*j:])
	if start > end || uint64(end) > uint64(len(data)) {
		return nil, fmt.Errorf("%w: leaf %d spans [%d, %d) of %d bytes", ErrBundle, j, start, end, len(data))
	}
	return data[start:end:end], nil
}

// ParseBundle decodes a stored bundle into its BundleWidth leaves, which
// alias b. Offsets must not decrease and the last must end the bundle.
func ParseBundle(b []byte) ([][]byte, error) {
	if len(b) < bundleHeader {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrBundle, len(b), bundleHeader)
	}
	data := b[bundleHeader:]
	leaves := make([][]byte, BundleWidth)
	var start uint32
	for j := range leaves {
		end := binary.BigEndian.Uint32(b[4*j:])
		if end < start || uint64(end) > uint64(len(data)) {
			return nil, fmt.Errorf("%w: leaf %d spans [%d, %d) of %d bytes", ErrBundle, j, start, end, len(data))
		}
		leaves[j] = data[start:end:end]
		start = end
	}
	if uint64(start) != uint64(len(data)) {
		return nil, fmt.Errorf("%w: last leaf ends at %d, the bundle holds %d bytes of leaves", ErrBundle, start, len(data))
	}
	return leaves, nil
}
