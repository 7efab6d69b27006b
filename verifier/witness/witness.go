// Package witness is a C2SP tlog-witness (https://c2sp.org/tlog-witness)
// server and client. The witness cosigns a log's checkpoint (C2SP
// tlog-cosignature, package verifier/cosign) only if it is consistent with
// the latest checkpoint it cosigned for that log and an Auditor has replayed
// the log up to exactly that checkpoint and found no violation.
package witness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	klog "github.com/keyline/keyline/log"
)

// An Auditor vouches for a log's contents. Verify must return nil only if
// the auditor has replayed the log up to exactly cp.Size leaves, the root of
// those leaves is cp.Hash, and no rule was violated (see docs/DESIGN.md,
// "Rules an auditor enforces"). It may block until it has caught up, bounded
// by ctx. If it has not (yet) reached cp.Size it returns an error wrapping
// ErrAuditPending; any other error means the checkpoint must never be
// cosigned.
type Auditor interface {
	Verify(ctx context.Context, cp klog.Checkpoint) error
}

// ErrAuditPending is wrapped by Auditor errors meaning "not caught up yet,
// retry later" (HTTP 503).
var ErrAuditPending = errors.New("witness: auditor has not reached this checkpoint yet")

// Log is a log the witness accepts checkpoints from.
type Log struct {
	Origin string
	// Verifiers are the log's trusted keys. A checkpoint is accepted if any
	// of them signed it; signatures by other keys are ignored.
	Verifiers []note.Verifier
}

// LogFromVkey returns the Log whose key is the note verifier key vkey; the
// origin is the key's name.
func LogFromVkey(vkey string) (Log, error) {
	v, err := klog.NewNoteVerifier(vkey)
	if err != nil {
		return Log{}, fmt.Errorf("witness: log key: %w", err)
	}
	return Log{Origin: v.Name(), Verifiers: []note.Verifier{v}}, nil
}

// Config configures a Witness.
type Config struct {
	// Signer makes the witness' cosignatures (a *cosign.Signer).
	Signer note.Signer
	Logs   []Log
	Store  Store
	// Auditor must vouch for every checkpoint before it is cosigned.
	Auditor Auditor
	// AuditTimeout bounds one Auditor.Verify call (0: 30 s).
	AuditTimeout time.Duration
}

// Witness is an http.Handler serving POST /add-checkpoint. Use
// http.StripPrefix to serve it under a submission prefix.
type Witness struct {
	signer       note.Signer
	logs         map[string]Log
	store        Store
	auditor      Auditor
	auditTimeout time.Duration
	// mu serializes check-and-persist within the process; the Store's
	// transaction makes it atomic on disk.
	mu sync.Mutex
}

// New returns a Witness. Every field of cfg but AuditTimeout is required.
func New(cfg Config) (*Witness, error) {
	if cfg.Signer == nil || cfg.Store == nil || cfg.Auditor == nil {
		return nil, errors.New("witness: Signer, Store and Auditor are required")
	}
	w := &Witness{signer: cfg.Signer, logs: map[string]Log{}, store: cfg.Store, auditor: cfg.Auditor, auditTimeout: cfg.AuditTimeout}
	if w.auditTimeout <= 0 {
		w.auditTimeout = 30 * time.Second
	}
	for _, l := range cfg.Logs {
		if l.Origin == "" || len(l.Verifiers) == 0 {
			return nil, fmt.Errorf("witness: log %q needs an origin and at least one key", l.Origin)
		}
		if _, dup := w.logs[l.Origin]; dup {
			return nil, fmt.Errorf("witness: log %q configured twice", l.Origin)
		}
		w.logs[l.Origin] = l
	}
	return w, nil
}

// StatusError is an add-checkpoint failure with its HTTP status code.
type StatusError struct {
	Code int
	// Size is the latest cosigned size, for 409 Conflict.
	Size uint64
	Err  error
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("witness: %d %s: %v", e.Code, http.StatusText(e.Code), e.Err)
}

func (e *StatusError) Unwrap() error { return e.Err }

func status(code int, format string, args ...any) *StatusError {
	return &StatusError{Code: code, Err: fmt.Errorf(format, args...)}
}

// splitNote returns the text of a signed note (up to and including the
// newline before the last blank line, as note.Open splits it).
func splitNote(n []byte) ([]byte, bool) {
	i := bytes.LastIndex(n, []byte("\n\n"))
	if i < 0 {
		return nil, false
	}
	return n[:i+1], true
}

// AddCheckpoint runs the add-checkpoint protocol on a parsed request and
// returns the cosignature lines. Errors are *StatusError with the status
// the specification requires:
//
//	404 unknown origin; 403 no valid signature by a trusted log key;
//	400 malformed, or old size > checkpoint size;
//	409 old size != latest cosigned size, or same size with another root
//	    (StatusError.Size is the latest cosigned size);
//	422 the consistency proof does not verify, or the auditor found a
//	    violation; 503 the auditor has not caught up yet.
//
// The check against the stored checkpoint, the audit, the cosignature and
// the durable update are one Store transaction under one lock, so
// concurrent requests can never roll the stored checkpoint back.
func (w *Witness) AddCheckpoint(ctx context.Context, r *Request) ([]byte, error) {
	text, ok := splitNote(r.Checkpoint)
	if !ok {
		return nil, status(http.StatusBadRequest, "checkpoint is not a signed note")
	}
	cp, err := klog.ParseCheckpoint(text)
	if err != nil {
		return nil, status(http.StatusBadRequest, "%v", err)
	}
	l, ok := w.logs[cp.Origin]
	if !ok {
		return nil, status(http.StatusNotFound, "unknown log origin %q", cp.Origin)
	}
	if _, err := klog.OpenNote(r.Checkpoint, note.VerifierList(l.Verifiers...)); err != nil {
		var unv *note.UnverifiedNoteError
		var inv *note.InvalidSignatureError
		if errors.As(err, &unv) || errors.As(err, &inv) {
			return nil, status(http.StatusForbidden, "no valid signature by a trusted key of %q: %v", cp.Origin, err)
		}
		return nil, status(http.StatusBadRequest, "signed note: %v", err)
	}
	if r.OldSize > cp.Size {
		return nil, status(http.StatusBadRequest, "old size %d is larger than the checkpoint size %d", r.OldSize, cp.Size)
	}
	var lines []byte
	w.mu.Lock()
	defer w.mu.Unlock()
	err = w.store.Update(cp.Origin, func(latest []byte) ([]byte, error) {
		var prev klog.Checkpoint
		if latest != nil {
			t, ok := splitNote(latest)
			if !ok {
				return nil, fmt.Errorf("witness: stored checkpoint for %q is corrupt", cp.Origin)
			}
			if prev, err = klog.ParseCheckpoint(t); err != nil {
				return nil, fmt.Errorf("witness: stored checkpoint for %q is corrupt: %w", cp.Origin, err)
			}
		}
		if r.OldSize != prev.Size {
			return nil, &StatusError{Code: http.StatusConflict, Size: prev.Size, Err: fmt.Errorf("old size %d, latest cosigned size is %d", r.OldSize, prev.Size)}
		}
		switch {
		case cp.Size == prev.Size && latest != nil:
			if cp.Hash != prev.Hash {
				return nil, &StatusError{Code: http.StatusConflict, Size: prev.Size, Err: fmt.Errorf("size %d was cosigned with another root", cp.Size)}
			}
			if len(r.Proof) != 0 {
				return nil, status(http.StatusUnprocessableEntity, "non-empty consistency proof between equal sizes")
			}
		case r.OldSize == 0:
			if len(r.Proof) != 0 {
				return nil, status(http.StatusUnprocessableEntity, "consistency proof must be empty from size 0")
			}
		default:
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, prev.Size, cp.Size, r.Proof, prev.Hash[:], cp.Hash[:]); err != nil {
				return nil, status(http.StatusUnprocessableEntity, "consistency proof %d -> %d: %v", prev.Size, cp.Size, err)
			}
		}
		actx, cancel := context.WithTimeout(ctx, w.auditTimeout)
		defer cancel()
		if err := w.auditor.Verify(actx, cp); err != nil {
			if errors.Is(err, ErrAuditPending) || errors.Is(err, context.DeadlineExceeded) {
				return nil, &StatusError{Code: http.StatusServiceUnavailable, Err: err}
			}
			return nil, &StatusError{Code: http.StatusUnprocessableEntity, Err: fmt.Errorf("audit of %s size %d failed: %w", cp.Origin, cp.Size, err)}
		}
		signed, err := note.Sign(&note.Note{Text: string(text)}, w.signer)
		if err != nil {
			return nil, fmt.Errorf("witness: cosigning: %w", err)
		}
		lines = signed[len(text)+1:]
		return r.Checkpoint, nil
	})
	if err != nil {
		var se *StatusError
		if errors.As(err, &se) {
			return nil, se
		}
		return nil, &StatusError{Code: http.StatusInternalServerError, Err: err}
	}
	return lines, nil
}

// ServeHTTP implements POST /add-checkpoint.
func (w *Witness) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	if req.URL.Path != "/add-checkpoint" {
		http.NotFound(rw, req)
		return
	}
	if req.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		http.Error(rw, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var body bytes.Buffer
	if _, err := body.ReadFrom(http.MaxBytesReader(rw, req.Body, MaxRequestSize)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(rw, fmt.Sprintf("request body over %d bytes", MaxRequestSize), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(rw, "reading request: "+err.Error(), http.StatusBadRequest)
		return
	}
	r, err := ParseRequest(body.Bytes())
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	lines, err := w.AddCheckpoint(req.Context(), r)
	if err != nil {
		se := err.(*StatusError)
		switch se.Code {
		case http.StatusConflict:
			rw.Header().Set("Content-Type", "text/x.tlog.size")
			rw.WriteHeader(http.StatusConflict)
			rw.Write([]byte(strconv.FormatUint(se.Size, 10) + "\n"))
		case http.StatusServiceUnavailable:
			rw.Header().Set("Retry-After", "5")
			http.Error(rw, se.Err.Error(), se.Code)
		case http.StatusInternalServerError:
			http.Error(rw, "internal error", se.Code)
		default:
			http.Error(rw, se.Err.Error(), se.Code)
		}
		return
	}
	rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rw.WriteHeader(http.StatusOK)
	rw.Write(lines)
}

// NewServer returns an http.Server for h with bounded header size and
// read, write and idle timeouts.
func NewServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}

// ListenAndServe serves h on addr until ctx is done, then shuts down
// gracefully (waiting up to 10 s for requests in flight).
func ListenAndServe(ctx context.Context, addr string, h http.Handler) error {
	srv := NewServer(addr, h)
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			return err
		}
		<-errc
		return nil
	}
}
