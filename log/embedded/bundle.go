package embedded

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/keyline/keyline/internal/boltread"
	"github.com/transparency-dev/merkle/rfc6962"
)

// BundleWidth is the number of consecutive leaves stored in one bundle:
// bundle n holds leaves [n*BundleWidth, (n+1)*BundleWidth).
const BundleWidth = 256

// bundleLevel is the tree level of a bundle's root: nodes of lower levels
// lie inside one bundle and are not stored in the nodes bucket.
const bundleLevel = 8

// GroupWidth is the number of leaves of a group: a bundle stores the root
// hash of each of its groups (tree level groupLevel), so that a node inside
// a bundle is computed from at most GroupWidth leaves and a few group
// hashes.
const GroupWidth = 16

const (
	groupLevel   = 4
	bundleGroups = BundleWidth / GroupWidth
	bundleHashes = 32 * bundleGroups            // group hashes at the start of a bundle
	bundleHeader = bundleHashes + 4*BundleWidth // group hashes and end offsets
)

// ErrBundle is wrapped by every error of ParseBundle, BundleLeaf and
// BundleGroup.
var ErrBundle = errors.New("embedded: malformed leaf bundle")

// MarshalBundle encodes BundleWidth leaves, whose RFC 6962 leaf hashes are
// leafHashes, as a stored bundle:
//
//	[32] root of leaves [16g, 16g+16), for g = 0..15   (512 bytes)
//	u32 end offset of leaf j, big-endian, for j = 0..255 (1,024 bytes)
//	the leaves, concatenated
//
// Leaf j is bytes [end[j-1], end[j]) of the concatenation (end[-1] = 0), so
// one leaf is read without decoding the others.
func MarshalBundle(leafHashes, leaves [][]byte) ([]byte, error) {
	if len(leaves) != BundleWidth || len(leafHashes) != BundleWidth {
		return nil, fmt.Errorf("%w: %d leaves and %d hashes, want %d", ErrBundle, len(leaves), len(leafHashes), BundleWidth)
	}
	n := 0
	for j, l := range leaves {
		if len(leafHashes[j]) != 32 {
			return nil, fmt.Errorf("%w: leaf hash %d is %d bytes", ErrBundle, j, len(leafHashes[j]))
		}
		n += len(l)
	}
	if n > 1<<32-1 {
		return nil, fmt.Errorf("%w: %d bytes of leaves, over the u32 offsets", ErrBundle, n)
	}
	b := make([]byte, 0, bundleHeader+n)
	for g := range bundleGroups {
		b = append(b, perfectRoot(leafHashes[g*GroupWidth:(g+1)*GroupWidth])...)
	}
	end := 0
	for _, l := range leaves {
		end += len(l)
		b = binary.BigEndian.AppendUint32(b, uint32(end))
	}
	for _, l := range leaves {
		b = append(b, l...)
	}
	return b, nil
}

// perfectRoot returns the RFC 6962 root of hashes, whose number is a power
// of two.
func perfectRoot(hashes [][]byte) []byte {
	if len(hashes) == 1 {
		return hashes[0]
	}
	h := len(hashes) / 2
	return rfc6962.DefaultHasher.HashChildren(perfectRoot(hashes[:h]), perfectRoot(hashes[h:]))
}

// BundleGroup returns the stored root hash of group g (leaves [16g,
// 16g+16)) of the stored bundle b, aliasing b.
func BundleGroup(b []byte, g int) ([]byte, error) {
	if g < 0 || g >= bundleGroups {
		return nil, fmt.Errorf("%w: group %d of a bundle of %d", ErrBundle, g, bundleGroups)
	}
	if len(b) < bundleHeader {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrBundle, len(b), bundleHeader)
	}
	return b[32*g : 32*g+32 : 32*g+32], nil
}

// BundleLeaf returns leaf j of the stored bundle b, aliasing b. It checks
// the header entries it uses and that the last offset ends the bundle.
func BundleLeaf(b []byte, j int) ([]byte, error) { return bundleLeaf(boltread.Bytes(b), j) }

// bundleLeaf is BundleLeaf on a stored bundle read in parts: from memory
// (the map) or with pread (boltread), which then reads the header entries
// it needs and the leaf, not the whole bundle.
func bundleLeaf(b boltread.Value, j int) ([]byte, error) {
	if j < 0 || j >= BundleWidth {
		return nil, fmt.Errorf("%w: leaf %d of a bundle of %d", ErrBundle, j, BundleWidth)
	}
	if b.Len() < bundleHeader {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrBundle, b.Len(), bundleHeader)
	}
	dataLen := uint64(b.Len() - bundleHeader)
	// The offsets of leaves j-1, j and the last.
	from := bundleHashes + 4*max(j-1, 0)
	offs, err := b.Slice(from, 8)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBundle, err)
	}
	lastB, err := b.Slice(bundleHashes+4*(BundleWidth-1), 4)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBundle, err)
	}
	if last := binary.BigEndian.Uint32(lastB); uint64(last) != dataLen {
		return nil, fmt.Errorf("%w: last leaf ends at %d, the bundle holds %d bytes of leaves", ErrBundle, last, dataLen)
	}
	var start, end uint32
	if j > 0 {
		start, end = binary.BigEndian.Uint32(offs), binary.BigEndian.Uint32(offs[4:])
	} else {
		end = binary.BigEndian.Uint32(offs)
	}
	if start > end || uint64(end) > dataLen {
		return nil, fmt.Errorf("%w: leaf %d spans [%d, %d) of %d bytes", ErrBundle, j, start, end, dataLen)
	}
	l, err := b.Slice(bundleHeader+int(start), int(end-start))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBundle, err)
	}
	return l, nil
}

// ParseBundle decodes a stored bundle into its 16 group hashes and its
// BundleWidth leaves, which alias b. Offsets must not decrease and the last
// must end the bundle. It does not check the group hashes against the
// leaves (CheckStored does).
func ParseBundle(b []byte) (groups, leaves [][]byte, err error) {
	if len(b) < bundleHeader {
		return nil, nil, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrBundle, len(b), bundleHeader)
	}
	groups = make([][]byte, bundleGroups)
	for g := range groups {
		groups[g] = b[32*g : 32*g+32 : 32*g+32]
	}
	offs, data := b[bundleHashes:bundleHeader], b[bundleHeader:]
	leaves = make([][]byte, BundleWidth)
	var start uint32
	for j := range leaves {
		end := binary.BigEndian.Uint32(offs[4*j:])
		if end < start || uint64(end) > uint64(len(data)) {
			return nil, nil, fmt.Errorf("%w: leaf %d spans [%d, %d) of %d bytes", ErrBundle, j, start, end, len(data))
		}
		leaves[j] = data[start:end:end]
		start = end
	}
	if uint64(start) != uint64(len(data)) {
		return nil, nil, fmt.Errorf("%w: last leaf ends at %d, the bundle holds %d bytes of leaves", ErrBundle, start, len(data))
	}
	return groups, leaves, nil
}
