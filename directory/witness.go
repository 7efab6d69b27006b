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
	"time"

	"golang.org/x/mod/sumdb/note"

	klog "github.com/keyline/keyline/log"
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
	lines := make([][]byte, len(s.witnesses))
	s.cosignRound(ctx, cp, lines)
	return withCosignatures(cp, lines)
}

// errClosing is returned by waits that Close interrupted.
var errClosing = errors.New("directory: closing")

// cosignQuorum gathers cosignatures of cp until at least WitnessQuorum
// witnesses have cosigned it: it asks every witness that has not cosigned
// yet, then waits (WitnessRetryMin, doubling up to WitnessRetryMax) and asks
// again. With WitnessQuorum 0, and during Open (before the sequencer
// runs; it then calls awaitViewQuorum), it makes one round, like cosign. It
// returns errClosing if Close is called meanwhile.
func (s *Server) cosignQuorum(ctx context.Context, cp []byte) ([]byte, error) {
	if !s.sequencing.Load() {
		return s.cosign(ctx, cp), nil
	}
	lines := make([][]byte, len(s.witnesses))
	delay := s.cfg.WitnessRetryMin
	for round := 1; ; round++ {
		s.cosignRound(ctx, cp, lines)
		got := countLines(lines)
		if got >= s.cfg.WitnessQuorum {
			if round > 1 {
				s.cfg.Logf("directory: witness quorum reached (%d of %d required) after %d rounds", got, s.cfg.WitnessQuorum, round)
			}
			return withCosignatures(cp, lines), nil
		}
		s.cfg.Logf("directory: checkpoint has %d of the %d required witness cosignatures; asking the other witnesses again in %v (lookups are served from the last checkpoint that has them)", got, s.cfg.WitnessQuorum, delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.closing:
			t.Stop()
			return nil, errClosing
		}
		delay = min(2*delay, s.cfg.WitnessRetryMax)
	}
}

// awaitViewQuorum makes the published view's checkpoint meet the witness
// quorum, asking the witnesses again with cosignQuorum and installing the
// cosigned view. It is needed after recovery, which installs its view
// after a single round so that Open does not wait for witnesses. It returns
// errClosing if Close is called meanwhile.
func (s *Server) awaitViewQuorum() error {
	v := s.view.Load()
	if v == nil || s.cfg.WitnessQuorum == 0 || s.quorumView.Load() == v {
		return nil
	}
	if s.cosignatures(v.checkpoint) >= s.cfg.WitnessQuorum {
		s.quorumView.Store(v) // checked once per view
		return nil
	}
	h := s.signed.Load()
	if h == nil || h.size != v.size {
		return nil
	}
	cp, err := s.cosignQuorum(context.Background(), h.note)
	if err != nil {
		return err
	}
	nv := &epochView{
		epoch: v.epoch, size: v.size, mapRoot: v.mapRoot, timestamp: v.timestamp,
		checkpoint: cp, record: v.record, recordProof: v.recordProof,
		next: make(chan struct{}), cons: map[uint64][][]byte{},
	}
	s.install(nv)
	return nil
}

// cosignatures counts the configured witnesses with a valid cosignature
// on cp.
func (s *Server) cosignatures(cp []byte) int {
	n := 0
	for _, w := range s.witnesses {
		if _, err := note.Open(cp, note.VerifierList(w.verifier)); err == nil {
			n++
		}
	}
	return n
}

// cosignRound asks every witness i with no line[i] yet, in parallel and
// within WitnessTimeout, to cosign cp, and stores each valid cosignature
// line in lines[i]. Failures are logged.
func (s *Server) cosignRound(ctx context.Context, cp []byte, lines [][]byte) {
	if len(s.witnesses) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WitnessTimeout)
	defer cancel()
	n, err := note.Open(cp, note.VerifierList(s.keys.verifier))
	if err != nil {
		return
	}
	size, err := checkpointSize(n.Text)
	if err != nil {
		return
	}
	var wg sync.WaitGroup
	for i, w := range s.witnesses {
		if lines[i] != nil {
			continue
		}
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
}

func countLines(lines [][]byte) int {
	n := 0
	for _, l := range lines {
		if l != nil {
			n++
		}
	}
	return n
}

// withCosignatures returns cp with lines appended in witness order.
func withCosignatures(cp []byte, lines [][]byte) []byte {
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
		n, err := klog.OpenNote(append(bytes.Clone(cp), line...), note.VerifierList(v))
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
