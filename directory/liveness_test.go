package directory

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/auditor"
	"github.com/keyline/keyline/verifier/cosign"
	tlogwitness "github.com/keyline/keyline/verifier/witness"
)

// realWitness is the project's C2SP tlog-witness (verifier/witness with a
// real auditor replaying the directory) served over HTTP on a fixed
// loopback address, so that it can be stopped and started again there.
type realWitness struct {
	t    *testing.T
	addr string
	vkey string
	skey string
	h    http.Handler
	srv  *http.Server
}

// newRealWitness reserves a loopback address for a witness that is not
// running yet (connections to it are refused until start).
func newRealWitness(t *testing.T, name string) *realWitness {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	skey, vkey, err := cosign.GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	w := &realWitness{t: t, addr: addr, vkey: vkey}
	t.Cleanup(w.stop)
	w.h = http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { http.Error(rw, "not configured", 503) })
	w.skey = skey
	return w
}

// configure builds the witness for the directory s (its log key and
// origin from s's trust file; its auditor replays s).
func (w *realWitness) configure(s *Server) {
	t := w.t
	trust := trustOf(t, s)
	at := *trust
	at.Quorum = 0
	au, err := auditor.Open(t.TempDir(), &at, s.Source(), &auditor.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { au.Close() })
	store, err := tlogwitness.OpenBoltStore(filepath.Join(t.TempDir(), "witness.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	signer, err := cosign.NewSignerFromSkey(w.skey, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := tlogwitness.New(tlogwitness.Config{
		Signer: signer, Store: store, Auditor: au,
		Logs: []tlogwitness.Log{{Origin: trust.Origin, Verifiers: []note.Verifier{trust.Log}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	w.h = h
}

func (w *realWitness) url() string { return "http://" + w.addr }

func (w *realWitness) start() {
	lis, err := net.Listen("tcp", w.addr)
	if err != nil {
		w.t.Fatalf("witness cannot listen on its address again: %v", err)
	}
	w.srv = &http.Server{Handler: w.h}
	go w.srv.Serve(lis)
}

func (w *realWitness) stop() {
	if w.srv != nil {
		w.srv.Close()
		w.srv = nil
	}
}

// TestWitnessLiveness: with a witness quorum of 1 and a real witness that
// starts after the directory, and later goes down for a while,
//   - the directory keeps asking it (bounded backoff) until it cosigns: quorum
//     clients work again within one retry interval, with no update;
//   - while the newest checkpoint lacks the quorum, lookups are answered from
//     the last checkpoint that has it (quorum clients keep working), and the
//     update waiting for that epoch is acknowledged with a cosigned
//     checkpoint once the witness is back.
func TestWitnessLiveness(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	w := newRealWitness(t, "w1.example")
	const retryMax = 200 * time.Millisecond
	mod := func(c *Config) {
		c.Witnesses = []WitnessConfig{{URL: w.url(), VKey: w.vkey}}
		c.WitnessQuorum = 1
		c.WitnessTimeout = 2 * time.Second
		c.WitnessRetryMin = 20 * time.Millisecond
		c.WitnessRetryMax = retryMax
		c.EmptyEpochInterval = time.Hour // no empty epoch comes to help
	}
	// Open does not wait for witnesses: the genesis checkpoint has no
	// cosignature yet, and quorum clients refuse it.
	s := openTest(t, dir, mod)
	trust := trustOf(t, s)
	if _, err := s.Lookup(ctx, "nobody", 0); err != nil {
		t.Fatal(err)
	}
	if err := lookupErr(s, trust, "nobody"); !errors.Is(err, verifier.ErrWitnessQuorum) {
		t.Fatalf("uncosigned genesis checkpoint: %v, want ErrWitnessQuorum", err)
	}
	time.Sleep(5 * retryMax) // the directory is in its slowest retry rhythm

	// The witness starts late: without any update, quorum lookups work
	// within one retry interval (plus the round itself).
	w.configure(s)
	w.start()
	waitUntil(t, "a cosigned genesis checkpoint", 10*time.Second, func() error { return lookupErr(s, trust, "nobody") })

	alice := newTestAccount(t, "alice")
	if _, err := s.Update(ctx, alice.bytes(t)); err != nil {
		t.Fatal(err)
	}
	mustLookup(t, s.Source(), trust, "alice")

	// The witness goes down; an update comes. Its epoch is appended and
	// signed, but waits for the quorum: lookups keep being answered, with
	// the quorum, from the previous checkpoint.
	w.stop()
	bob := newTestAccount(t, "bob")
	type ack struct {
		r   *UpdateResult
		err error
	}
	acked := make(chan ack, 1)
	go func() {
		r, err := s.Update(ctx, bob.bytes(t))
		acked <- ack{r, err}
	}()
	before := s.view.Load().size
	waitUntil(t, "bob's epoch to be signed", 10*time.Second, func() error {
		if h := s.signed.Load(); h == nil || h.size <= before {
			return errors.New("not signed yet")
		}
		return nil
	})
	for i := 0; i < 5; i++ {
		mustLookup(t, s.Source(), trust, "alice")
		if v := mustLookup(t, s.Source(), trust, "bob"); v.found {
			t.Fatal("bob served from a checkpoint the witness has not cosigned")
		}
		select {
		case a := <-acked:
			t.Fatalf("update acknowledged without the witness quorum: %+v %v", a.r, a.err)
		case <-time.After(2 * retryMax):
		}
	}
	// The witness comes back: the waiting epoch gets cosigned, bob's
	// update is acknowledged with a quorum checkpoint and served.
	w.start()
	var a ack
	select {
	case a = <-acked:
	case <-time.After(10 * time.Second):
		t.Fatal("update not acknowledged after the witness came back")
	}
	if a.err != nil {
		t.Fatal(a.err)
	}
	if _, err := trust.OpenCheckpoint(a.r.Checkpoint); err != nil {
		t.Fatalf("acknowledged checkpoint lacks the quorum: %v", err)
	}
	if v := mustLookup(t, s.Source(), trust, "bob"); !v.found {
		t.Fatal("bob not found after his epoch was cosigned")
	}

	// A restart while the witness is down serves the recovered checkpoint
	// (cosigned before, at the same size) and asks again once it is back.
	w.stop()
	s.Close()
	s = openTest(t, dir, mod)
	w.start()
	waitUntil(t, "a cosigned checkpoint after the restart", 10*time.Second, func() error { return lookupErr(s, trust, "bob") })
}

func lookupErr(s *Server, trust *verifier.Trust, uid string) error {
	b, err := s.Lookup(context.Background(), uid, 0)
	if err != nil {
		return err
	}
	_, err = verifyLookup(trust, uid, b, 0, nil)
	return err
}

func waitUntil(t *testing.T, what string, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %v", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
