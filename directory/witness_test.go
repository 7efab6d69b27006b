package directory

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier/cosign"
)

// fakeWitness is an in-process C2SP tlog-witness: it checks the log
// signature, the old size it knows (409 otherwise) and the consistency
// proof, then cosigns.
type fakeWitness struct {
	mu      sync.Mutex
	logV    note.Verifier
	origin  string
	signer  *cosign.Signer
	vkey    string
	size    uint64
	root    [32]byte
	calls   int
	broken  bool
	changed int // 409s sent
}

func newFakeWitness(t *testing.T, name string) *fakeWitness {
	skey, vkey, err := cosign.GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	sg, err := cosign.NewSignerFromSkey(skey, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeWitness{signer: sg, vkey: vkey}
}

func (w *fakeWitness) AddCheckpoint(ctx context.Context, oldSize uint64, p [][]byte, cp []byte) ([]byte, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	if w.broken || w.logV == nil {
		return nil, errors.New("witness down")
	}
	c, n, err := klog.OpenCheckpoint(cp, w.logV, w.origin)
	if err != nil {
		return nil, err
	}
	if oldSize != w.size {
		w.changed++
		return nil, &WitnessConflictError{Size: w.size}
	}
	if w.size > 0 {
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, w.size, c.Size, p, w.root[:], c.Hash[:]); err != nil {
			return nil, err
		}
	}
	sig, err := w.signer.Sign([]byte(n.Text))
	if err != nil {
		return nil, err
	}
	w.size, w.root = c.Size, c.Hash
	id := binary.BigEndian.AppendUint32(nil, w.signer.KeyHash())
	return []byte(fmt.Sprintf("— %s %s\n", w.signer.Name(), base64.StdEncoding.EncodeToString(append(id, sig...)))), nil
}

func TestWitnessCosigning(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	w1, w2, w3 := newFakeWitness(t, "w1.example"), newFakeWitness(t, "w2.example"), newFakeWitness(t, "w3.example")
	w3.broken = true
	withWitnesses := func(c *Config) {
		c.Witnesses = []WitnessConfig{{VKey: w1.vkey, Client: w1}, {VKey: w2.vkey, Client: w2}, {VKey: w3.vkey, Client: w3}}
		c.WitnessQuorum = 2
	}
	// The witnesses need the log key: open once to create it.
	s := openTest(t, dir, withWitnesses)
	trust := trustOf(t, s)
	for _, w := range []*fakeWitness{w1, w2, w3} {
		w.mu.Lock()
		w.logV, w.origin = trust.Log, trust.Origin
		w.mu.Unlock()
	}
	if trust.Quorum != 2 || len(trust.Witnesses) != 3 {
		t.Fatalf("trust.json: quorum %d, %d witnesses", trust.Quorum, len(trust.Witnesses))
	}
	a := newTestAccount(t, "jo")
	res, err := s.Update(ctx, a.bytes(t))
	if err != nil {
		t.Fatal(err)
	}
	vc, err := trust.OpenCheckpoint(res.Checkpoint)
	if err != nil {
		t.Fatalf("acknowledged checkpoint lacks the quorum: %v", err)
	}
	if len(vc.Cosigners) != 2 || strings.Contains(strings.Join(vc.Cosigners, ","), "w3") {
		t.Fatalf("cosigners %v", vc.Cosigners)
	}
	mustLookup(t, s.Source(), trust, "jo") // OpenCheckpoint with quorum 2 inside
	s.Close()

	// After a restart the directory does not know the witnesses' sizes:
	// it learns them from the 409 and retries with a proof.
	s = openTest(t, dir, withWitnesses)
	next := a.addDevice(t, "two")
	res, err = s.Update(ctx, mustMarshal(t, next))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := trust.OpenCheckpoint(res.Checkpoint); err != nil {
		t.Fatal(err)
	}
	if w1.changed == 0 {
		t.Fatal("the restart did not exercise the 409 path")
	}
	// A checkpoint whose cosignature was tampered with loses the quorum.
	bad := []byte(strings.Replace(string(res.Checkpoint), "— w1.example ", "— w1.example A", 1))
	if _, err := trust.OpenCheckpoint(bad); err == nil {
		t.Fatal("tampered cosignature accepted")
	}
}

// TestHTTPWitness: the HTTP client speaks add-checkpoint and maps 409 to
// WitnessConflictError.
func TestHTTPWitness(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = r.URL.Path + " " + string(b)
		if strings.HasPrefix(string(b), "old 0\n") {
			w.Header().Set("Content-Type", "text/x.tlog.size")
			w.WriteHeader(http.StatusConflict)
			fmt.Fprint(w, "7\n")
			return
		}
		fmt.Fprint(w, "— w.example AAAA\n")
	}))
	defer srv.Close()
	h := &HTTPWitness{URL: srv.URL}
	cp := []byte("o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— o AAAA\n")
	_, err := h.AddCheckpoint(context.Background(), 0, nil, cp)
	var ce *WitnessConflictError
	if !errors.As(err, &ce) || ce.Size != 7 {
		t.Fatalf("409: %v", err)
	}
	if !strings.HasPrefix(got, "/add-checkpoint old 0\n\n") {
		t.Fatalf("request %q", got)
	}
	lines, err := h.AddCheckpoint(context.Background(), 7, [][]byte{make([]byte, 32)}, cp)
	if err != nil || string(lines) != "— w.example AAAA\n" {
		t.Fatalf("200: %q %v", lines, err)
	}
}
