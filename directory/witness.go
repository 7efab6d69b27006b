package directory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/note"

	"github.com/keyline/keyline/verifier/cosign"
	tlogwitness "github.com/keyline/keyline/verifier/witness"
)

// A Cosigner is a witness (C2SP tlog-witness): AddCheckpoint submits a
// signed checkpoint with a consistency proof from oldSize, the size the
// witness last cosigned (0 at first), and returns the witness's note
// signature lines ("— <name> <base64>\n" each). A witness that knows a
// different size returns a *WitnessConflictError.
type Cosigner interface {
	AddCheckpoint(ctx context.Context, oldSize uint64, proof [][]byte, signedCheckpoint []byte) (sigLines []byte, err error)
}

// WitnessConflictError is a witness's 409 Conflict: it has cosigned a
// checkpoint of Size, not of the old size sent.
type WitnessConflictError struct{ Size uint64 }

func (e *WitnessConflictError) Error() string {
	return fmt.Sprintf("witness conflict: witness is at tree size %d", e.Size)
}

// witness is one configured witness and the size it last cosigned.
type witness struct {
	cfg      WitnessConfig
	verifier *cosign.Verifier
	client   Cosigner
	mu       sync.Mutex
	size     uint64
}

func newWitnesses(cfgs []WitnessConfig) ([]*witness, error) {
	var ws []*witness
	for i, c := range cfgs {
		v, err := cosign.NewVerifierFromVkey(c.VKey)
		if err != nil {
			return nil, fmt.Errorf("%w: witness %d: %v", ErrConfig, i, err)
		}
		cl := c.Client
		if cl == nil {
			cl = &HTTPWitness{URL: strings.TrimSuffix(c.URL, "/")}
		}
		ws = append(ws, &witness{cfg: c, verifier: v, client: cl})
	}
	return ws, nil
}

// cosign asks every witness, in parallel and within WitnessTimeout, to
// cosign cp, and returns cp with every valid cosignature line appended.
// Failures are logged; cp is returned with whatever was gathered.
func (s *Server) cosign(ctx context.Context, cp []byte) []byte {
	if len(s.witnesses) == 0 {
		return cp
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WitnessTimeout)
	defer cancel()
	n, err := note.Open(cp, note.VerifierList(s.keys.verifier))
	if err != nil {
		return cp
	}
	size, err := checkpointSize(n.Text)
	if err != nil {
		return cp
	}
	lines := make([][]byte, len(s.witnesses))
	var wg sync.WaitGroup
	for i, w := range s.witnesses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := s.cosignOne(ctx, w, cp, size)
			if err != nil {
				s.cfg.Logf("directory: witness %s: %v", w.verifier.Name(), err)
				return
			}
			lines[i] = l
		}()
	}
	wg.Wait()
	out := bytes.Clone(cp)
	for _, l := range lines {
		out = append(out, l...)
	}
	return out
}

func (s *Server) cosignOne(ctx context.Context, w *witness, cp []byte, size uint64) ([]byte, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for attempt := 0; attempt < 2; attempt++ {
		old := w.size
		if old > size {
			old = 0
		}
		proof, err := s.backend.ConsistencyProof(ctx, old, size)
		if err != nil {
			return nil, err
		}
		raw, err := w.client.AddCheckpoint(ctx, old, proof, cp)
		var conflict *WitnessConflictError
		if errors.As(err, &conflict) && attempt == 0 && conflict.Size <= size {
			w.size = conflict.Size
			continue
		}
		if err != nil {
			return nil, err
		}
		line, err := validCosignature(cp, raw, w.verifier)
		if err != nil {
			return nil, err
		}
		w.size = size
		return line, nil
	}
	return nil, errors.New("witness conflict persists")
}

// validCosignature returns the first line of raw that is a valid
// cosignature of cp by v.
func validCosignature(cp, raw []byte, v *cosign.Verifier) ([]byte, error) {
	for _, line := range strings.SplitAfter(string(raw), "\n") {
		if !strings.HasPrefix(line, "— ") || !strings.HasSuffix(line, "\n") {
			continue
		}
		n, err := note.Open(append(bytes.Clone(cp), line...), note.VerifierList(v))
		if err != nil {
			continue
		}
		for _, sig := range n.Sigs {
			if sig.Hash == v.KeyHash() && sig.Name == v.Name() {
				return []byte(line), nil
			}
		}
	}
	return nil, fmt.Errorf("no valid cosignature by %s in the witness's answer", v.Name())
}

func checkpointSize(text string) (uint64, error) {
	lines := strings.SplitN(text, "\n", 3)
	if len(lines) < 3 {
		return 0, errors.New("short checkpoint")
	}
	return strconv.ParseUint(lines[1], 10, 64)
}

// HTTPWitness is a C2SP tlog-witness reached over HTTP with the
// verifier/witness client: add-checkpoint requests go to URL +
// "/add-checkpoint".
type HTTPWitness struct {
	URL    string
	Client *http.Client // nil: http.DefaultClient
}

// AddCheckpoint implements Cosigner. A 409 answer becomes a
// *WitnessConflictError with the witness's size.
func (h *HTTPWitness) AddCheckpoint(ctx context.Context, oldSize uint64, proof [][]byte, signedCheckpoint []byte) ([]byte, error) {
	lines, err := tlogwitness.AddCheckpoint(ctx, h.Client, h.URL, oldSize, proof, signedCheckpoint)
	var ce *tlogwitness.ConflictError
	if errors.As(err, &ce) {
		return nil, &WitnessConflictError{Size: ce.Size}
	}
	return lines, err
}
