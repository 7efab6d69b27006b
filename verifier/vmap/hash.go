// Package vmap is Keyline's verifiable map: a compressed prefix (Patricia)
// Merkle tree from 256-bit indexes to 32-byte values, with inclusion and
// non-inclusion proofs whose length is the depth of the index's path (about
// log2(N) for N random indexes, never more than 256).
//
// The tree algorithm runs over a small key-value Store so the same code
// serves the in-memory map of tests and auditors (MemStore) and the
// directory's persistent bbolt map (directory/mapdb). Proof verification
// (Verify, VerifyInclusion, VerifyNonInclusion) is pure and needs no store.
//
// The exact hashing and encodings are specified in docs/protocol.md.
package vmap

import (
	"crypto/sha256"
	"encoding/binary"
)

// Domain-separation contexts (protocol.md section 2): every hash here is
// SHA-256(context || 0x00 || body).
const (
	EmptyContext = "keyline/vmap/empty" // root of the empty map
	LeafContext  = "keyline/vmap/leaf"  // leaf: index || value
	NodeContext  = "keyline/vmap/node"  // interior node: depth || prefix || left || right
	ValueContext = "keyline/vmap/value" // MapValue: version || logIndex || entryHash
)

// HashSize is the size of every hash, index and value in the map.
const HashSize = 32

// Hash is a SHA-256 output: a node hash or a map root.
type Hash = [HashSize]byte

// Index is a 256-bit map key (the VRF index of a user id); bit 0 is the most
// significant bit of byte 0.
type Index = [HashSize]byte

// Value is a 32-byte map value (Keyline stores MapValue outputs).
type Value = [HashSize]byte

func ctxHash(ctx string, parts ...[]byte) Hash {
	var buf [32 + 1 + 1 + 32 + 64]byte
	b := append(buf[:0], ctx...)
	b = append(b, 0)
	for _, p := range parts {
		b = append(b, p...)
	}
	return sha256.Sum256(b)
}

// EmptyRoot is the root of the map with no entries:
// SHA-256("keyline/vmap/empty" || 0x00).
var EmptyRoot = ctxHash(EmptyContext)

// LeafHash is the hash of the leaf holding value at index:
// SHA-256("keyline/vmap/leaf" || 0x00 || index || value). A leaf's hash does
// not depend on its depth: a subtree holding exactly one entry is that leaf.
func LeafHash(index Index, value Value) Hash {
	return ctxHash(LeafContext, index[:], value[:])
}

// NodeHash is the hash of an interior node whose children first differ at
// bit depth (0..255) and whose entries all share prefix's first depth bits:
// SHA-256("keyline/vmap/node" || 0x00 || u8 depth || prefix || left || right),
// where prefix is 32 bytes with every bit from depth on cleared. NodeHash
// clears those bits itself.
func NodeHash(depth uint8, prefix Index, left, right Hash) Hash {
	p := maskPrefix(prefix, int(depth))
	return ctxHash(NodeContext, []byte{depth}, p[:], left[:], right[:])
}

// MapValue is the value Keyline stores for an account:
// SHA-256("keyline/vmap/value" || 0x00 || u64 version || u64 logIndex ||
// entryHash), binding the account's latest version, the log index of its
// AccountUpdate and that entry's hash.
func MapValue(version, logIndex uint64, entryHash [32]byte) Value {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], version)
	binary.BigEndian.PutUint64(b[8:], logIndex)
	return ctxHash(ValueContext, b[:], entryHash[:])
}

// bit returns bit i (0 = most significant bit of byte 0) of x.
func bit(x *Index, i int) int {
	return int(x[i>>3]>>(7-uint(i&7))) & 1
}

// commonPrefixLen returns the number of leading bits a and b share (0..256).
func commonPrefixLen(a, b *Index) int {
	for i := 0; i < HashSize; i++ {
		if d := a[i] ^ b[i]; d != 0 {
			n := 0
			for d&0x80 == 0 {
				d <<= 1
				n++
			}
			return i*8 + n
		}
	}
	return 256
}

// maskPrefix returns x with every bit from position depth on cleared.
func maskPrefix(x Index, depth int) Index {
	if depth >= 256 {
		return x
	}
	byteIdx := depth >> 3
	x[byteIdx] &= ^byte(0xff >> uint(depth&7))
	for i := byteIdx + 1; i < HashSize; i++ {
		x[i] = 0
	}
	return x
}
