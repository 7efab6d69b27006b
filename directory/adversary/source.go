package adversary

import (
	"bytes"
	"context"
	"errors"
	"sync"

	"github.com/keyline/keyline/verifier"
)

// Mode is what a Source serves.
type Mode int

const (
	// Honest passes every call to the honest directory unchanged (apart
	// from the witness cosignatures the Source attaches, see Cosign).
	Honest Mode = iota
	// Other serves another history: a forked directory or a Forgery set
	// with ServeOther.
	Other
	// Frozen serves, for every call, the answers recorded when Freeze was
	// called: an old checkpoint and old lookups (rollback, stale
	// checkpoint).
	Frozen
	// Tamper serves the honest answers passed through the Tamper hooks.
	Tamper
)

// String returns the mode's name.
func (m Mode) String() string {
	switch m {
	case Honest:
		return "honest"
	case Other:
		return "other"
	case Frozen:
		return "frozen"
	case Tamper:
		return "tamper"
	}
	return "unknown"
}

// Source is a malicious directory as a verifier.Source: it answers from the
// honest directory, another history, frozen old answers, or tampered
// answers, as its Mode says. Safe for concurrent use.
type Source struct {
	honest verifier.Source

	mu      sync.Mutex
	mode    Mode
	other   verifier.Source
	frozen  map[string]*verifier.LookupBundle
	frozCP  []byte
	cosigs  map[string][]byte // checkpoint note -> cosignature lines
	lookupT func(userID string, b *verifier.LookupBundle)
	cpT     func(note []byte) []byte
}

// NewSource returns a Source in mode Honest wrapping honest (for example
// (*directory.Server).Source()).
func NewSource(honest verifier.Source) *Source {
	return &Source{honest: honest, cosigs: map[string][]byte{}}
}

// SetMode switches what the Source serves from now on.
func (s *Source) SetMode(m Mode) {
	s.mu.Lock()
	s.mode = m
	s.mu.Unlock()
}

// ServeOther makes o the history served in mode Other and switches to it.
func (s *Source) ServeOther(o verifier.Source) {
	s.mu.Lock()
	s.other, s.mode = o, Other
	s.mu.Unlock()
}

// SetTamper sets the hooks of mode Tamper and switches to it: lookup
// changes every lookup bundle in place, checkpoint maps every served
// checkpoint note (either may be nil).
func (s *Source) SetTamper(lookup func(userID string, b *verifier.LookupBundle), checkpoint func(note []byte) []byte) {
	s.mu.Lock()
	s.lookupT, s.cpT, s.mode = lookup, checkpoint, Tamper
	s.mu.Unlock()
}

// Freeze records the honest directory's current checkpoint and the lookup
// bundles of userIDs (without consistency proofs); mode Frozen serves
// them from then on, whatever the honest directory publishes. Freeze does
// not switch the mode.
func (s *Source) Freeze(ctx context.Context, userIDs ...string) error {
	cp, err := s.honest.Checkpoint(ctx)
	if err != nil {
		return err
	}
	fr := map[string]*verifier.LookupBundle{}
	for _, u := range userIDs {
		b, err := s.honest.Lookup(ctx, u, 0)
		if err != nil {
			return err
		}
		if !bytes.Equal(b.Checkpoint, cp) {
			return errors.New("adversary: the honest directory published an epoch while freezing")
		}
		fr[u] = b
	}
	s.mu.Lock()
	s.frozen, s.frozCP = fr, cp
	s.mu.Unlock()
	return nil
}

// Cosign records witness cosignature lines for a checkpoint note; whenever
// the Source serves that note (in any mode) it appends them, as a
// directory that collects cosignatures does.
func (s *Source) Cosign(note, sigLines []byte) {
	s.mu.Lock()
	s.cosigs[string(note)] = append(s.cosigs[string(note)], sigLines...)
	s.mu.Unlock()
}

func (s *Source) state() (Mode, verifier.Source) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mode == Other && s.other != nil {
		return Other, s.other
	}
	return s.mode, s.honest
}

// withCosigs appends the recorded cosignature lines of n.
func (s *Source) withCosigs(n []byte) []byte {
	s.mu.Lock()
	c := s.cosigs[string(n)]
	t := s.cpT
	mode := s.mode
	s.mu.Unlock()
	out := append(bytes.Clone(n), c...)
	if mode == Tamper && t != nil {
		out = t(out)
	}
	return out
}

// Lookup implements verifier.Source.
func (s *Source) Lookup(ctx context.Context, userID string, knownSize uint64) (*verifier.LookupBundle, error) {
	mode, src := s.state()
	if mode == Frozen {
		s.mu.Lock()
		b := s.frozen[userID]
		s.mu.Unlock()
		if b == nil {
			return nil, errors.New("adversary: no frozen answer for " + userID)
		}
		c := *b
		c.Checkpoint = s.withCosigs(b.Checkpoint)
		return &c, nil
	}
	b, err := src.Lookup(ctx, userID, knownSize)
	if err != nil {
		return nil, err
	}
	if !b.Held() {
		b.Checkpoint = s.withCosigs(b.Checkpoint)
	}
	if mode == Tamper {
		s.mu.Lock()
		t := s.lookupT
		s.mu.Unlock()
		if t != nil {
			t(userID, b)
		}
	}
	return b, nil
}

// History implements verifier.Source.
func (s *Source) History(ctx context.Context, userID string, fromVersion uint64) (*verifier.HistoryBundle, error) {
	_, src := s.state()
	h, err := src.History(ctx, userID, fromVersion)
	if err != nil {
		return nil, err
	}
	h.Checkpoint = s.withCosigs(h.Checkpoint)
	return h, nil
}

// Checkpoint implements verifier.Source.
func (s *Source) Checkpoint(ctx context.Context) ([]byte, error) {
	mode, src := s.state()
	if mode == Frozen {
		s.mu.Lock()
		cp := s.frozCP
		s.mu.Unlock()
		return s.withCosigs(cp), nil
	}
	cp, err := src.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	return s.withCosigs(cp), nil
}

// ConsistencyProof implements verifier.Source.
func (s *Source) ConsistencyProof(ctx context.Context, oldSize, newSize uint64) ([][]byte, error) {
	_, src := s.state()
	return src.ConsistencyProof(ctx, oldSize, newSize)
}

// Entries implements verifier.Source.
func (s *Source) Entries(ctx context.Context, start, end uint64) ([][]byte, error) {
	_, src := s.state()
	return src.Entries(ctx, start, end)
}

var _ verifier.Source = (*Source)(nil)
