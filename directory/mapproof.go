package directory

import "github.com/keyline/keyline/verifier/vmap"

// lookupMapProof is the encoding of a lookup's map proof p
// (docs/protocol.md §7.1): for a present account the inclusion proof
// without its value (vmap.InclusionDerived), since the verifier derives the
// value from the AccountUpdate the bundle carries; a non-inclusion proof
// as it is.
func lookupMapProof(p *vmap.Proof) ([]byte, error) {
	if p.Kind == vmap.Inclusion {
		d, err := p.WithoutValue()
		if err != nil {
			return nil, err
		}
		p = d
	}
	return p.MarshalBinary()
}
