package witness

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/log/embedded"
	"github.com/keyline/keyline/verifier/cosign"
)

const origin = "keyline.test/log"

// fakeAuditor vouches for exactly the (size, root) pairs of the real log,
// like an auditor that replayed it; bad sizes are refused as violations.
type fakeAuditor struct {
	lg      *embedded.Log
	pending uint64 // sizes >= pending are not audited yet (0: none)
	bad     map[uint64]bool
	mu      sync.Mutex
	calls   int
}

func (a *fakeAuditor) Verify(ctx context.Context, cp klog.Checkpoint) error {
	a.mu.Lock()
	a.calls++
	pending, bad := a.pending, a.bad[cp.Size]
	a.mu.Unlock()
	if pending != 0 && cp.Size >= pending {
		return fmt.Errorf("at size %d: %w", pending-1, ErrAuditPending)
	}
	if bad {
		return errors.New("violation: version skip")
	}
	root, err := a.lg.RootHash(ctx, cp.Size)
	if err != nil {
		return err
	}
	if !bytes.Equal(root, cp.Hash[:]) {
		return errors.New("root differs from the replayed log")
	}
	return nil
}

type env struct {
	t       *testing.T
	lg      *embedded.Log
	signer  note.Signer
	w       *Witness
	wv      *cosign.Verifier
	aud     *fakeAuditor
	store   *BoltStore
	srv     *httptest.Server
	storeFn string
}

func newEnv(t *testing.T) *env {
	dir := t.TempDir()
	lg, err := embedded.Open(filepath.Join(dir, "log.db"), &embedded.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	skey, vkey, _ := klog.GenerateKey(rand.Reader, origin)
	signer, _ := note.NewSigner(skey)
	l, err := LogFromVkey(vkey)
	if err != nil {
		t.Fatal(err)
	}
	_, wpriv, _ := ed25519.GenerateKey(rand.Reader)
	ws, _ := cosign.NewSigner("witness.test", wpriv, nil)
	wv, _ := cosign.NewVerifier("witness.test", wpriv.Public().(ed25519.PublicKey))
	fn := filepath.Join(dir, "witness.db")
	st, err := OpenBoltStore(fn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	aud := &fakeAuditor{lg: lg, bad: map[uint64]bool{}}
	w, err := New(Config{Signer: ws, Logs: []Log{l}, Store: st, Auditor: aud})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(w)
	t.Cleanup(srv.Close)
	return &env{t: t, lg: lg, signer: signer, w: w, wv: wv, aud: aud, store: st, srv: srv, storeFn: fn}
}

// grow appends n leaves and returns the signed checkpoint of the new size.
func (e *env) grow(n int) ([]byte, uint64) {
	e.t.Helper()
	ctx := context.Background()
	var leaves [][]byte
	for i := 0; i < n; i++ {
		leaves = append(leaves, []byte(fmt.Sprintf("leaf %d %d", time.Now().UnixNano(), i)))
	}
	old, err := e.lg.Size(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.lg.Append(ctx, old, leaves); err != nil {
		e.t.Fatal(err)
	}
	size, _ := e.lg.Size(ctx)
	return e.signed(size), size
}

func (e *env) signed(size uint64) []byte {
	root, err := e.lg.RootHash(context.Background(), size)
	if err != nil {
		e.t.Fatal(err)
	}
	c := klog.Checkpoint{Origin: origin, Size: size}
	copy(c.Hash[:], root)
	text, _ := c.Marshal()
	n, err := note.Sign(&note.Note{Text: string(text)}, e.signer)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) proof(old, size uint64) [][]byte {
	if old == 0 {
		return nil
	}
	p, err := e.lg.ConsistencyProof(context.Background(), old, size)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) post(body []byte) (int, string, http.Header) {
	e.t.Helper()
	resp, err := http.Post(e.srv.URL+"/add-checkpoint", "text/plain", bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String(), resp.Header
}

func (e *env) req(old uint64, p [][]byte, cp []byte) []byte {
	b, err := (&Request{OldSize: old, Proof: p, Checkpoint: cp}).Marshal()
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func TestAddCheckpointProtocol(t *testing.T) {
	e := newEnv(t)
	cp1, s1 := e.grow(5)
	code, body, _ := e.post(e.req(0, nil, cp1))
	if code != 200 {
		t.Fatalf("first: %d %s", code, body)
	}
	// The answer is a valid cosignature on the checkpoint.
	n, err := note.Open(append(append([]byte(nil), cp1...), body...), note.VerifierList(e.wv))
	if err != nil || len(n.Sigs) != 1 {
		t.Fatalf("cosignature does not verify: %v", err)
	}
	cp2, s2 := e.grow(7)
	// 409: wrong old size, body is the stored size.
	code, body, hdr := e.post(e.req(0, nil, cp2))
	if code != 409 || body != fmt.Sprintf("%d\n", s1) || hdr.Get("Content-Type") != "text/x.tlog.size" {
		t.Fatalf("409: %d %q %v", code, body, hdr)
	}
	// 422: bad proof.
	p := e.proof(s1, s2)
	bad := append([][]byte(nil), p...)
	bad[0] = bytes.Repeat([]byte{7}, 32)
	if code, body, _ = e.post(e.req(s1, bad, cp2)); code != 422 {
		t.Fatalf("bad proof: %d %s", code, body)
	}
	// 400: old > new.
	if code, _, _ = e.post(e.req(s2+1, nil, cp2)); code != 400 {
		t.Fatalf("old > new: %d", code)
	}
	// 400: malformed.
	for _, m := range []string{"", "old 01\n\n" + string(cp2), "old 1\nnot base64\n\n" + string(cp2), "old 5\n" + string(cp2)} {
		if code, _, _ = e.post([]byte(m)); code != 400 {
			t.Fatalf("malformed %q: %d", m[:min(len(m), 12)], code)
		}
	}
	// 404: unknown origin.
	skey, _, _ := klog.GenerateKey(rand.Reader, "other.test/log")
	os, _ := note.NewSigner(skey)
	text := "other.test/log\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
	other, _ := note.Sign(&note.Note{Text: text}, os)
	if code, _, _ = e.post(e.req(0, nil, other)); code != 404 {
		t.Fatalf("unknown origin: %d", code)
	}
	// 403: right origin, signed by another key.
	skey2, _, _ := klog.GenerateKey(rand.Reader, origin)
	s2n, _ := note.NewSigner(skey2)
	tx, _ := note.Open(cp2, note.VerifierList(e.w.logs[origin].Verifiers...))
	forged, _ := note.Sign(&note.Note{Text: tx.Text}, s2n)
	if code, _, _ = e.post(e.req(s1, p, forged)); code != 403 {
		t.Fatalf("untrusted signature: %d", code)
	}
	// 503: auditor behind; 422: auditor found a violation. Nothing stored.
	e.aud.pending = s2
	if code, _, _ = e.post(e.req(s1, p, cp2)); code != 503 {
		t.Fatalf("audit pending: %d", code)
	}
	e.aud.pending = 0
	e.aud.bad[s2] = true
	if code, _, _ = e.post(e.req(s1, p, cp2)); code != 422 {
		t.Fatalf("audit violation: %d", code)
	}
	delete(e.aud.bad, s2)
	// 200 with the right proof.
	if code, body, _ = e.post(e.req(s1, p, cp2)); code != 200 {
		t.Fatalf("advance: %d %s", code, body)
	}
	// Same size, same root: cosigned again.
	if code, _, _ = e.post(e.req(s2, nil, cp2)); code != 200 {
		t.Fatalf("same checkpoint again: %d", code)
	}
	// Same size, different root: 409.
	c := klog.Checkpoint{Origin: origin, Size: s2}
	c.Hash[0] = 9
	ct, _ := c.Marshal()
	fork, _ := note.Sign(&note.Note{Text: string(ct)}, e.signer)
	if code, body, _ = e.post(e.req(s2, nil, fork)); code != 409 || body != fmt.Sprintf("%d\n", s2) {
		t.Fatalf("fork: %d %q", code, body)
	}
	// Wrong method.
	resp, _ := http.Get(e.srv.URL + "/add-checkpoint")
	if resp.StatusCode != 405 {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
	resp.Body.Close()
	// Too large.
	if code, _, _ = e.post(bytes.Repeat([]byte("a"), MaxRequestSize+1)); code != 413 {
		t.Fatalf("large: %d", code)
	}
	// Durable: reopen the store and see s2.
	e.store.Close()
	st, err := OpenBoltStore(e.storeFn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	latest, _ := st.Latest(origin)
	if !bytes.Equal(latest, cp2) {
		t.Fatalf("stored %q", latest)
	}
}

func TestClient(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cp1, s1 := e.grow(3)
	lines, err := AddCheckpoint(ctx, nil, e.srv.URL+"/", 0, nil, cp1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(append(append([]byte(nil), cp1...), lines...), note.VerifierList(e.wv)); err != nil {
		t.Fatal(err)
	}
	cp2, s2 := e.grow(4)
	_, err = AddCheckpoint(ctx, nil, e.srv.URL, 0, nil, cp2)
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Size != s1 {
		t.Fatalf("want conflict at %d, got %v", s1, err)
	}
	if _, err = AddCheckpoint(ctx, nil, e.srv.URL, ce.Size, e.proof(ce.Size, s2), cp2); err != nil {
		t.Fatal(err)
	}
	_, err = AddCheckpoint(ctx, nil, e.srv.URL, s2, [][]byte{make([]byte, 32)}, cp2)
	var re *ResponseError
	if !errors.As(err, &re) || re.StatusCode != 422 {
		t.Fatalf("want 422, got %v", err)
	}
}

// TestConcurrentNoRollback submits checkpoints of many sizes from many
// goroutines, each retrying from the size a 409 names. The stored size must
// end at the maximum, and no 200 may be given for a size smaller than one
// stored before the request was answered.
func TestConcurrentNoRollback(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	type cp struct {
		size uint64
		note []byte
	}
	var cps []cp
	for i := 0; i < 20; i++ {
		n, s := e.grow(1 + i%3)
		cps = append(cps, cp{s, n})
	}
	// Record every size the store commits, in commit order.
	rec := &recordingStore{Store: e.store}
	w, err := New(Config{Signer: e.w.signer, Logs: []Log{e.w.logs[origin]}, Store: rec, Auditor: e.aud})
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Config.Handler = w
	var mu sync.Mutex
	var maxOK uint64
	var violations []string
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				c := cps[(g*7+j*3)%len(cps)]
				old := uint64(0)
				for try := 0; try < 5; try++ {
					_, err := AddCheckpoint(ctx, nil, e.srv.URL, old, e.proof(old, max(old, c.size)), c.note)
					var ce *ConflictError
					if errors.As(err, &ce) {
						if ce.Size > c.size {
							break // already past: correctly refused
						}
						old = ce.Size
						continue
					}
					var re *ResponseError
					if errors.As(err, &re) && re.StatusCode == 400 {
						break
					}
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if c.size < maxOK {
						violations = append(violations, fmt.Sprintf("200 for size %d after %d", c.size, maxOK))
					}
					maxOK = max(maxOK, c.size)
					mu.Unlock()
					break
				}
			}
		}(g)
	}
	wg.Wait()
	if len(violations) > 0 {
		t.Logf("200 answers arrived out of order (not a rollback by itself): %v", violations)
	}
	for i := 1; i < len(rec.sizes); i++ {
		if rec.sizes[i] < rec.sizes[i-1] {
			t.Fatalf("stored size went back: %v", rec.sizes)
		}
	}
	if len(rec.sizes) < 2 {
		t.Fatalf("only %d commits", len(rec.sizes))
	}
	// Push the largest one through and check the stored state.
	last := cps[len(cps)-1]
	latest, _ := e.store.Latest(origin)
	text, _ := splitNote(latest)
	c, _ := klog.ParseCheckpoint(text)
	if c.Size != maxOK {
		t.Fatalf("stored size %d, largest cosigned %d", c.Size, maxOK)
	}
	if _, err := AddCheckpoint(ctx, nil, e.srv.URL, c.Size, e.proof(c.Size, last.size), last.note); err != nil && c.Size != last.size {
		t.Fatal(err)
	}
	latest, _ = e.store.Latest(origin)
	if !bytes.Equal(latest, last.note) {
		t.Fatalf("final stored checkpoint is not the max")
	}
	if strings.Count(string(latest), "\n") < 4 {
		t.Fatal("stored note lost its signature")
	}
}

type recordingStore struct {
	Store
	mu    sync.Mutex
	sizes []uint64
}

func (r *recordingStore) Update(origin string, f func([]byte) ([]byte, error)) error {
	return r.Store.Update(origin, func(cur []byte) ([]byte, error) {
		next, err := f(cur)
		if err == nil {
			text, _ := splitNote(next)
			c, perr := klog.ParseCheckpoint(text)
			if perr != nil {
				return nil, perr
			}
			r.mu.Lock()
			r.sizes = append(r.sizes, c.Size)
			r.mu.Unlock()
		}
		return next, err
	})
}
