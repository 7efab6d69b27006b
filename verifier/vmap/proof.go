package vmap

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// MaxSiblings bounds the number of siblings in a proof: one per branching
// depth 0..255.
const MaxSiblings = 256

// ProofKind says what a proof ends in.
type ProofKind uint8

const (
	// Inclusion: the path ends in the leaf for the index; the proof
	// carries its value.
	Inclusion ProofKind = 0
	// AbsentLeaf: the path ends in a leaf for a different index that
	// sits where the index would be.
	AbsentLeaf ProofKind = 1
	// AbsentNode: the path ends in an interior node whose prefix the
	// index does not share, so the index is in none of its leaves.
	AbsentNode ProofKind = 2
	// AbsentEmpty: the map is empty (no siblings).
	AbsentEmpty ProofKind = 3
	// InclusionDerived: the path ends in the leaf for the index, like
	// Inclusion, but the proof omits the value: the verifier derives it
	// from data it holds (a lookup's AccountUpdate) and passes it to
	// VerifyDerived. Verify alone cannot check it (ErrValueRequired).
	InclusionDerived ProofKind = 4
)

func (k ProofKind) String() string {
	switch k {
	case Inclusion:
		return "inclusion"
	case AbsentLeaf:
		return "absent-leaf"
	case AbsentNode:
		return "absent-node"
	case AbsentEmpty:
		return "absent-empty"
	case InclusionDerived:
		return "inclusion-derived"
	}
	return fmt.Sprintf("ProofKind(%d)", uint8(k))
}

// Sibling is the hash of the other child of the interior node that branches
// at bit Depth on the path to the index.
type Sibling struct {
	Depth uint8
	Hash  Hash
}

// Proof is a map inclusion or non-inclusion proof for one index. Siblings
// are ordered from the root down (strictly increasing Depth). The terminal
// fields used depend on Kind:
//
//	Inclusion:   Value
//	AbsentLeaf:  LeafIndex, LeafValue
//	AbsentNode:  NodeDepth, NodePrefix, NodeLeft, NodeRight
//	AbsentEmpty: none
//	InclusionDerived: none (the verifier supplies the value)
type Proof struct {
	Kind     ProofKind
	Siblings []Sibling

	Value Value

	LeafIndex Index
	LeafValue Value

	NodeDepth  uint8
	NodePrefix Index
	NodeLeft   Hash
	NodeRight  Hash
}

// Errors of proof decoding and verification. Callers match with errors.Is.
var (
	// ErrMalformedProof means a proof encoding or structure is invalid.
	ErrMalformedProof = errors.New("vmap: malformed proof")
	// ErrRootMismatch means the proof does not lead to the given root.
	ErrRootMismatch = errors.New("vmap: proof does not match root")
	// ErrWrongPath means the proof's terminal is not where the index's path
	// leads, so it proves nothing about this index.
	ErrWrongPath = errors.New("vmap: proof is not for this index")
	// ErrNotIncluded means a valid proof shows the index is absent.
	ErrNotIncluded = errors.New("vmap: index not in map")
	// ErrIncluded means a valid proof shows the index is present.
	ErrIncluded = errors.New("vmap: index is in map")
	// ErrValueMismatch means the index is present with a different value.
	ErrValueMismatch = errors.New("vmap: value differs")
	// ErrValueRequired means the proof omits the value (InclusionDerived)
	// and was given to a function that has none to check it with; use
	// VerifyDerived or VerifyInclusion.
	ErrValueRequired = errors.New("vmap: inclusion proof omits the value; verify it with the value derived by the caller")
)

// lastDepth returns the depth of the deepest sibling, or -1.
func (p *Proof) lastDepth() int {
	if len(p.Siblings) == 0 {
		return -1
	}
	return int(p.Siblings[len(p.Siblings)-1].Depth)
}

// checkStructure enforces the index-independent rules (the same ones the
// decoder enforces), so a Proof built in memory is held to the same
// standard as a decoded one.
func (p *Proof) checkStructure() error {
	if p.Kind > InclusionDerived {
		return fmt.Errorf("%w: unknown kind %d", ErrMalformedProof, p.Kind)
	}
	if len(p.Siblings) > MaxSiblings {
		return fmt.Errorf("%w: %d siblings, max %d", ErrMalformedProof, len(p.Siblings), MaxSiblings)
	}
	for i := 1; i < len(p.Siblings); i++ {
		if p.Siblings[i].Depth <= p.Siblings[i-1].Depth {
			return fmt.Errorf("%w: sibling %d depth %d not above previous depth %d",
				ErrMalformedProof, i, p.Siblings[i].Depth, p.Siblings[i-1].Depth)
		}
	}
	switch p.Kind {
	case AbsentNode:
		if int(p.NodeDepth) <= p.lastDepth() {
			return fmt.Errorf("%w: terminal node depth %d not below last sibling depth %d",
				ErrMalformedProof, p.NodeDepth, p.lastDepth())
		}
		if maskPrefix(p.NodePrefix, int(p.NodeDepth)) != p.NodePrefix {
			return fmt.Errorf("%w: terminal node prefix has bits set past depth %d", ErrMalformedProof, p.NodeDepth)
		}
	case AbsentEmpty:
		if len(p.Siblings) != 0 {
			return fmt.Errorf("%w: empty-map proof with %d siblings", ErrMalformedProof, len(p.Siblings))
		}
	case InclusionDerived:
		if p.Value != (Value{}) {
			return fmt.Errorf("%w: %s proof carries a value (its encoding has none)", ErrMalformedProof, p.Kind)
		}
	}
	return nil
}

// MarshalBinary returns the canonical encoding of p (docs/protocol.md):
//
//	u8 kind || u16 count || count × (u8 depth || [32] hash) || terminal
//
// with terminal = [32] value (Inclusion), [32] index || [32] value
// (AbsentLeaf), u8 depth || [32] prefix || [32] left || [32] right
// (AbsentNode), or nothing (AbsentEmpty, InclusionDerived).
func (p *Proof) MarshalBinary() ([]byte, error) {
	if err := p.checkStructure(); err != nil {
		return nil, err
	}
	return p.appendEncoding(make([]byte, 0, p.EncodedSize())), nil
}

// EncodedSize is the length of p's encoding in bytes.
func (p *Proof) EncodedSize() int {
	n := 3 + 33*len(p.Siblings)
	switch p.Kind {
	case Inclusion:
		n += 32
	case AbsentLeaf:
		n += 64
	case AbsentNode:
		n += 97
	}
	return n
}

func (p *Proof) appendEncoding(b []byte) []byte {
	b = append(b, byte(p.Kind))
	b = binary.BigEndian.AppendUint16(b, uint16(len(p.Siblings)))
	for _, s := range p.Siblings {
		b = append(b, s.Depth)
		b = append(b, s.Hash[:]...)
	}
	switch p.Kind {
	case Inclusion:
		b = append(b, p.Value[:]...)
	case AbsentLeaf:
		b = append(b, p.LeafIndex[:]...)
		b = append(b, p.LeafValue[:]...)
	case AbsentNode:
		b = append(b, p.NodeDepth)
		b = append(b, p.NodePrefix[:]...)
		b = append(b, p.NodeLeft[:]...)
		b = append(b, p.NodeRight[:]...)
	}
	return b
}

// ParseProof decodes a proof strictly: unknown kind, a count over
// MaxSiblings, depths not strictly increasing, a terminal node not below
// the last sibling or with prefix bits set past its depth, siblings in an
// empty-map proof, truncation and trailing bytes are all rejected.
func ParseProof(b []byte) (*Proof, error) {
	if len(b) < 3 {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the 3-byte header", ErrMalformedProof, len(b))
	}
	p := &Proof{Kind: ProofKind(b[0])}
	if p.Kind > InclusionDerived {
		return nil, fmt.Errorf("%w: unknown kind %d", ErrMalformedProof, b[0])
	}
	n := int(binary.BigEndian.Uint16(b[1:3]))
	if n > MaxSiblings {
		return nil, fmt.Errorf("%w: %d siblings, max %d", ErrMalformedProof, n, MaxSiblings)
	}
	b = b[3:]
	if len(b) < 33*n {
		return nil, fmt.Errorf("%w: truncated in siblings (%d of %d bytes)", ErrMalformedProof, len(b), 33*n)
	}
	if n > 0 {
		p.Siblings = make([]Sibling, n)
	}
	for i := range p.Siblings {
		p.Siblings[i].Depth = b[0]
		copy(p.Siblings[i].Hash[:], b[1:33])
		b = b[33:]
	}
	need := map[ProofKind]int{Inclusion: 32, AbsentLeaf: 64, AbsentNode: 97, AbsentEmpty: 0, InclusionDerived: 0}[p.Kind]
	if len(b) < need {
		return nil, fmt.Errorf("%w: truncated terminal (%d of %d bytes)", ErrMalformedProof, len(b), need)
	}
	if len(b) > need {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformedProof, len(b)-need)
	}
	switch p.Kind {
	case Inclusion:
		copy(p.Value[:], b)
	case AbsentLeaf:
		copy(p.LeafIndex[:], b[:32])
		copy(p.LeafValue[:], b[32:])
	case AbsentNode:
		p.NodeDepth = b[0]
		copy(p.NodePrefix[:], b[1:33])
		copy(p.NodeLeft[:], b[33:65])
		copy(p.NodeRight[:], b[65:97])
	}
	if err := p.checkStructure(); err != nil {
		return nil, err
	}
	return p, nil
}

// Verify checks p against root for index. It returns the value and
// found = true if p proves index maps to that value, or found = false if p
// proves index is absent. Any other outcome is an error: ErrMalformedProof,
// ErrWrongPath (the terminal is not on index's path), ErrRootMismatch, or
// ErrValueRequired for an InclusionDerived proof, which carries no value to
// report (use VerifyDerived).
func Verify(root Hash, index Index, p *Proof) (value Value, found bool, err error) {
	if p == nil {
		return Value{}, false, fmt.Errorf("%w: nil proof", ErrMalformedProof)
	}
	if err := p.checkStructure(); err != nil {
		return Value{}, false, err
	}
	if p.Kind == InclusionDerived {
		return Value{}, false, ErrValueRequired
	}
	last := p.lastDepth()
	var h Hash
	switch p.Kind {
	case Inclusion:
		h = LeafHash(index, p.Value)
		found, value = true, p.Value
	case AbsentLeaf:
		if p.LeafIndex == index {
			return Value{}, false, fmt.Errorf("%w: absent-leaf proof names the index itself", ErrWrongPath)
		}
		if commonPrefixLen(&p.LeafIndex, &index) <= last {
			return Value{}, false, fmt.Errorf("%w: terminal leaf is not below the last branch (depth %d)", ErrWrongPath, last)
		}
		h = LeafHash(p.LeafIndex, p.LeafValue)
	case AbsentNode:
		cp := commonPrefixLen(&p.NodePrefix, &index)
		if cp <= last {
			return Value{}, false, fmt.Errorf("%w: terminal node is not below the last branch (depth %d)", ErrWrongPath, last)
		}
		if cp >= int(p.NodeDepth) {
			return Value{}, false, fmt.Errorf("%w: index is under the terminal node (prefix depth %d)", ErrWrongPath, p.NodeDepth)
		}
		h = NodeHash(p.NodeDepth, p.NodePrefix, p.NodeLeft, p.NodeRight)
	case AbsentEmpty:
		h = EmptyRoot
	}
	if walk(index, p.Siblings, h) != root {
		return Value{}, false, ErrRootMismatch
	}
	return value, found, nil
}

// walk hashes h, the node at the end of index's path, up through siblings
// (ordered from the root down) and returns the root it implies.
func walk(index Index, siblings []Sibling, h Hash) Hash {
	for i := len(siblings) - 1; i >= 0; i-- {
		s := &siblings[i]
		if bit(&index, int(s.Depth)) == 0 {
			h = NodeHash(s.Depth, index, h, s.Hash)
		} else {
			h = NodeHash(s.Depth, index, s.Hash, h)
		}
	}
	return h
}

// VerifyDerived checks that p, an InclusionDerived proof, proves index maps
// to value under root: the terminal is LeafHash(index, value) and the
// siblings lead from it to root. value is the caller's, derived from what it
// holds (for a lookup, MapValue of the AccountUpdate served). A wrong value
// is indistinguishable from a wrong path: both are ErrRootMismatch. Any
// other kind of proof is ErrMalformedProof.
func VerifyDerived(root Hash, index Index, p *Proof, value Value) error {
	if p == nil {
		return fmt.Errorf("%w: nil proof", ErrMalformedProof)
	}
	if err := p.checkStructure(); err != nil {
		return err
	}
	if p.Kind != InclusionDerived {
		return fmt.Errorf("%w: %s proof given to VerifyDerived, want %s", ErrMalformedProof, p.Kind, InclusionDerived)
	}
	if walk(index, p.Siblings, LeafHash(index, value)) != root {
		return ErrRootMismatch
	}
	return nil
}

// WithoutValue returns p, an Inclusion proof, as an InclusionDerived proof:
// the same siblings (shared with p), no value. It is for a prover whose
// verifier derives the value itself (a lookup of a present account,
// docs/protocol.md §7.1); the encoding is 32 bytes shorter.
func (p *Proof) WithoutValue() (*Proof, error) {
	if p == nil || p.Kind != Inclusion {
		kind := "nil"
		if p != nil {
			kind = p.Kind.String()
		}
		return nil, fmt.Errorf("vmap: WithoutValue of a %s proof, want %s", kind, Inclusion)
	}
	return &Proof{Kind: InclusionDerived, Siblings: p.Siblings}, nil
}

// VerifyInclusion checks that p proves index maps to value under root. p
// may be an Inclusion proof or an InclusionDerived one (checked with
// VerifyDerived).
func VerifyInclusion(root Hash, index Index, value Value, p *Proof) error {
	if p != nil && p.Kind == InclusionDerived {
		return VerifyDerived(root, index, p, value)
	}
	got, found, err := Verify(root, index, p)
	if err != nil {
		return err
	}
	if !found {
		return ErrNotIncluded
	}
	if got != value {
		return fmt.Errorf("%w: proof has %x, want %x", ErrValueMismatch, got[:8], value[:8])
	}
	return nil
}

// VerifyNonInclusion checks that p proves index is absent under root.
func VerifyNonInclusion(root Hash, index Index, p *Proof) error {
	_, found, err := Verify(root, index, p)
	if err != nil {
		return err
	}
	if found {
		return ErrIncluded
	}
	return nil
}
