package witness

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/keyline/keyline/verifier/cosign"
)

// TestParseSpecExample parses the example request of C2SP tlog-witness
// (testdata/verifier/witness-request.txt) and re-encodes it exactly.
func TestParseSpecExample(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "verifier", "witness-request.txt"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.OldSize != 20852014 || len(r.Proof) != 4 || !bytes.HasPrefix(r.Checkpoint, []byte("example.com/behind-the-sofa\n20852163\n")) {
		t.Fatalf("%+v", r)
	}
	out, _ := r.Marshal()
	if !bytes.Equal(out, b) {
		t.Fatal("re-encoding differs")
	}
	// 64 proof lines are one too many.
	many := []byte("old 1\n" + string(bytes.Repeat([]byte("PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n"), 64)) + "\nx")
	if _, err := ParseRequest(many); err == nil {
		t.Fatal("64 proof lines accepted")
	}
}

// TestUnknownSignaturesIgnored: cosignatures by keys the witness does not
// know do not affect the answer.
func TestUnknownSignaturesIgnored(t *testing.T) {
	e := newEnv(t)
	cp, _ := e.grow(3)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := cosign.NewSigner("other-witness.test", priv, nil)
	n, _ := note.Open(cp, note.VerifierList(e.w.logs[origin].Verifiers...))
	with, _ := note.Sign(&note.Note{Text: n.Text}, e.signer, other)
	if code, body, _ := e.post(e.req(0, nil, with)); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
}

func TestListenAndServe(t *testing.T) {
	e := newEnv(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ListenAndServe(ctx, addr, e.w) }()
	cp, _ := e.grow(2)
	var lines []byte
	for i := 0; i < 50; i++ {
		if lines, err = AddCheckpoint(ctx, nil, "http://"+addr, 0, nil, cp); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || len(lines) == 0 {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
