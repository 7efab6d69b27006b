package logtest

import (
	"bytes"
	"fmt"
	"math/bits"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// InclusionClaim is everything an RFC 9162 inclusion proof verifier is given.
type InclusionClaim struct {
	Index, Size uint64
	LeafHash    []byte
	Proof       [][]byte
	Root        []byte
}

// Verify checks the claim with proof.VerifyInclusion and RFC 6962 SHA-256.
func (c InclusionClaim) Verify() error {
	return proof.VerifyInclusion(rfc6962.DefaultHasher, c.Index, c.Size, c.LeafHash, c.Proof, c.Root)
}

// ConsistencyClaim is everything an RFC 9162 consistency proof verifier is given.
type ConsistencyClaim struct {
	Size1, Size2 uint64
	Proof        [][]byte
	Root1, Root2 []byte
}

// Verify checks the claim with proof.VerifyConsistency and RFC 6962 SHA-256.
func (c ConsistencyClaim) Verify() error {
	return proof.VerifyConsistency(rfc6962.DefaultHasher, c.Size1, c.Size2, c.Proof, c.Root1, c.Root2)
}

// InclusionProbe is a mutated inclusion claim that a verifier must reject.
type InclusionProbe struct {
	Name  string
	Claim InclusionClaim
}

// ConsistencyProbe is a mutated consistency claim that a verifier must reject.
type ConsistencyProbe struct {
	Name  string
	Claim ConsistencyClaim
}

// bitFlips are the bit positions flipped in every hash: the low and high bit
// of the first and last byte and one bit in the middle.
var bitFlips = []struct {
	byteIdx int // negative counts from the end
	mask    byte
}{{0, 0x01}, {0, 0x80}, {15, 0x08}, {-1, 0x01}, {-1, 0x80}}

func flip(h []byte, byteIdx int, mask byte) []byte {
	out := bytes.Clone(h)
	if len(out) == 0 {
		return []byte{mask}
	}
	i := byteIdx
	if i < 0 {
		i += len(out)
	}
	if i >= len(out) {
		i = len(out) - 1
	}
	out[i] ^= mask
	return out
}

func cloneHashes(p [][]byte) [][]byte {
	out := make([][]byte, len(p))
	for i, h := range p {
		out[i] = bytes.Clone(h)
	}
	return out
}

// proofMutations returns named mutations of a proof's hash list that change
// it: bit flips in every hash, wrong hash lengths, truncation, garbage
// extension, dropping, duplicating and swapping hashes.
func proofMutations(p [][]byte) (names []string, proofs [][][]byte) {
	add := func(name string, q [][]byte) { names = append(names, name); proofs = append(proofs, q) }
	for i := range p {
		for _, f := range bitFlips {
			q := cloneHashes(p)
			q[i] = flip(q[i], f.byteIdx, f.mask)
			add(fmt.Sprintf("flip proof[%d] byte %d mask %#02x", i, f.byteIdx, f.mask), q)
		}
		q := cloneHashes(p)
		q[i] = q[i][:len(q[i])-1]
		add(fmt.Sprintf("short proof[%d]", i), q)
		q = cloneHashes(p)
		q[i] = append(q[i], 0)
		add(fmt.Sprintf("long proof[%d]", i), q)
		q = cloneHashes(p)
		q[i] = make([]byte, len(q[i]))
		if !bytes.Equal(q[i], p[i]) {
			add(fmt.Sprintf("zero proof[%d]", i), q)
		}
		q = append(cloneHashes(p[:i]), cloneHashes(p[i+1:])...)
		add(fmt.Sprintf("drop proof[%d]", i), q)
		q = append(cloneHashes(p[:i+1]), cloneHashes(p[i:])...)
		add(fmt.Sprintf("duplicate proof[%d]", i), q)
		if i+1 < len(p) && !bytes.Equal(p[i], p[i+1]) {
			q = cloneHashes(p)
			q[i], q[i+1] = q[i+1], q[i]
			add(fmt.Sprintf("swap proof[%d] and proof[%d]", i, i+1), q)
		}
	}
	if len(p) > 0 {
		add("empty proof", [][]byte{})
		add("truncate last", cloneHashes(p[:len(p)-1]))
		add("truncate first", cloneHashes(p[1:]))
	}
	garbage := bytes.Repeat([]byte{0xA5}, 32)
	add("extend with garbage hash", append(cloneHashes(p), garbage))
	add("prepend garbage hash", append([][]byte{garbage}, cloneHashes(p)...))
	add("extend with empty hash", append(cloneHashes(p), []byte{}))
	return names, proofs
}

// inclusionShape is what proof.VerifyInclusion's computation depends on
// besides the hashes: two (index, size) pairs with the same shape make the
// verifier compute the same function, so no verifier can tell them apart.
func inclusionShape(index, size uint64) [3]uint64 {
	inner := uint64(bits.Len64(index ^ (size - 1)))
	border := uint64(bits.OnesCount64(index >> inner))
	return [3]uint64{inner, border, index & (1<<inner - 1)}
}

// InclusionProbes returns mutations of c, each of which an RFC 9162 verifier
// must reject if c itself verifies. Index and size changes that leave the
// verifier's computation identical (same path shape) are not generated, as no
// verifier can detect them from the proof alone.
func InclusionProbes(c InclusionClaim) []InclusionProbe {
	var out []InclusionProbe
	add := func(name string, m InclusionClaim) { out = append(out, InclusionProbe{name, m}) }
	base := func() InclusionClaim {
		return InclusionClaim{c.Index, c.Size, bytes.Clone(c.LeafHash), cloneHashes(c.Proof), bytes.Clone(c.Root)}
	}
	names, proofs := proofMutations(c.Proof)
	for i := range names {
		m := base()
		m.Proof = proofs[i]
		add(names[i], m)
	}
	for _, f := range bitFlips {
		m := base()
		m.LeafHash = flip(m.LeafHash, f.byteIdx, f.mask)
		add(fmt.Sprintf("flip leaf hash byte %d mask %#02x", f.byteIdx, f.mask), m)
		m = base()
		m.Root = flip(m.Root, f.byteIdx, f.mask)
		add(fmt.Sprintf("flip root byte %d mask %#02x", f.byteIdx, f.mask), m)
	}
	m := base()
	m.LeafHash = m.LeafHash[:len(m.LeafHash)-1]
	add("short leaf hash", m)
	m = base()
	m.Root = append(m.Root, 0)
	add("long root", m)
	if len(c.Proof) > 0 {
		m = base()
		m.LeafHash, m.Proof[0] = m.Proof[0], m.LeafHash
		add("swap leaf hash and proof[0]", m)
		m = base()
		m.Root = bytes.Clone(c.Proof[len(c.Proof)-1])
		add("root replaced by last proof hash", m)
	}
	type is struct{ index, size uint64 }
	cands := []is{
		{c.Index + 1, c.Size}, {c.Index - 1, c.Size}, {c.Index ^ 1, c.Size}, {c.Index ^ 2, c.Size},
		{c.Size, c.Size}, {c.Index + c.Size, c.Size}, {1<<63 + c.Index, c.Size},
		{c.Index, c.Size + 1}, {c.Index, c.Size - 1}, {c.Index, c.Size * 2}, {c.Index, c.Index},
		{c.Index, c.Size + 1<<20}, {c.Index, 0}, {c.Index + 1, c.Size + 1},
	}
	seen := map[is]bool{{c.Index, c.Size}: true}
	for _, x := range cands {
		if seen[x] {
			continue
		}
		seen[x] = true
		if x.index < x.size && x.size > 0 && inclusionShape(x.index, x.size) == inclusionShape(c.Index, c.Size) {
			continue // indistinguishable to any verifier
		}
		m := base()
		m.Index, m.Size = x.index, x.size
		add(fmt.Sprintf("index %d size %d (was %d, %d)", x.index, x.size, c.Index, c.Size), m)
	}
	return out
}

// consistencyShape is what proof.VerifyConsistency's computation depends on
// besides the hashes, for 0 < size1 < size2.
func consistencyShape(size1, size2 uint64) [4]uint64 {
	shift := uint(bits.TrailingZeros64(size1))
	inner := uint64(bits.Len64((size1 - 1) ^ (size2 - 1)))
	border := uint64(bits.OnesCount64((size1 - 1) >> inner))
	start := uint64(1)
	if size1 == 1<<shift {
		start = 0
	}
	inner -= uint64(shift)
	mask := (size1 - 1) >> shift
	return [4]uint64{start, inner, border, mask & (1<<inner - 1)}
}

// ConsistencyProbes returns mutations of c, each of which an RFC 9162
// verifier must reject if c itself verifies and 0 < c.Size1 < c.Size2. Size
// changes that leave the verifier's computation identical are not generated.
func ConsistencyProbes(c ConsistencyClaim) []ConsistencyProbe {
	var out []ConsistencyProbe
	add := func(name string, m ConsistencyClaim) { out = append(out, ConsistencyProbe{name, m}) }
	base := func() ConsistencyClaim {
		return ConsistencyClaim{c.Size1, c.Size2, cloneHashes(c.Proof), bytes.Clone(c.Root1), bytes.Clone(c.Root2)}
	}
	names, proofs := proofMutations(c.Proof)
	for i := range names {
		m := base()
		m.Proof = proofs[i]
		add(names[i], m)
	}
	for _, f := range bitFlips {
		m := base()
		m.Root1 = flip(m.Root1, f.byteIdx, f.mask)
		add(fmt.Sprintf("flip old root byte %d mask %#02x", f.byteIdx, f.mask), m)
		m = base()
		m.Root2 = flip(m.Root2, f.byteIdx, f.mask)
		add(fmt.Sprintf("flip new root byte %d mask %#02x", f.byteIdx, f.mask), m)
	}
	if !bytes.Equal(c.Root1, c.Root2) {
		m := base()
		m.Root1, m.Root2 = m.Root2, m.Root1
		add("swap old and new roots", m)
		m = base()
		m.Root1 = bytes.Clone(c.Root2)
		add("old root replaced by new root", m)
		m = base()
		m.Root2 = bytes.Clone(c.Root1)
		add("new root replaced by old root", m)
	}
	type ss struct{ s1, s2 uint64 }
	cands := []ss{
		{c.Size1 + 1, c.Size2}, {c.Size1 - 1, c.Size2}, {c.Size1, c.Size2 + 1}, {c.Size1, c.Size2 - 1},
		{c.Size2, c.Size1}, {c.Size1, c.Size1}, {c.Size2, c.Size2}, {0, c.Size2}, {c.Size1 * 2, c.Size2 * 2},
		{c.Size1 + 1, c.Size2 + 1}, {c.Size1, c.Size2 * 2}, {c.Size1 ^ 1, c.Size2},
	}
	seen := map[ss]bool{{c.Size1, c.Size2}: true}
	for _, x := range cands {
		if seen[x] {
			continue
		}
		seen[x] = true
		if c.Size1 > 0 && c.Size1 < c.Size2 && x.s1 > 0 && x.s1 < x.s2 &&
			consistencyShape(x.s1, x.s2) == consistencyShape(c.Size1, c.Size2) {
			continue // indistinguishable to any verifier
		}
		if len(c.Proof) == 0 && (x.s1 == 0 || x.s1 == x.s2) {
			continue // empty proofs are valid for these sizes
		}
		m := base()
		m.Size1, m.Size2 = x.s1, x.s2
		add(fmt.Sprintf("sizes %d, %d (was %d, %d)", x.s1, x.s2, c.Size1, c.Size2), m)
	}
	return out
}

// CheckInclusionProbes fails t unless c verifies and every probe of
// InclusionProbes(c) is rejected. It returns the number of probes.
func CheckInclusionProbes(t testing.TB, c InclusionClaim) int {
	t.Helper()
	if err := c.Verify(); err != nil {
		t.Fatalf("unmutated inclusion proof (index %d, size %d) rejected: %v", c.Index, c.Size, err)
	}
	probes := InclusionProbes(c)
	for _, p := range probes {
		if p.Claim.Verify() == nil {
			t.Errorf("inclusion probe %q (index %d, size %d) accepted", p.Name, c.Index, c.Size)
		}
	}
	return len(probes)
}

// CheckConsistencyProbes fails t unless c verifies and every probe of
// ConsistencyProbes(c) is rejected. It returns the number of probes.
func CheckConsistencyProbes(t testing.TB, c ConsistencyClaim) int {
	t.Helper()
	if err := c.Verify(); err != nil {
		t.Fatalf("unmutated consistency proof (%d -> %d) rejected: %v", c.Size1, c.Size2, err)
	}
	probes := ConsistencyProbes(c)
	for _, p := range probes {
		if p.Claim.Verify() == nil {
			t.Errorf("consistency probe %q (%d -> %d) accepted", p.Name, c.Size1, c.Size2)
		}
	}
	return len(probes)
}
