package httpapi

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/webverify"
)

// env is an in-process directory with its HTTP server.
type env struct {
	t     testing.TB
	dir   *directory.Server
	h     *Handler
	ts    *httptest.Server
	trust *verifier.Trust
	accts map[string]*account
	// resetWindow is the directory's reset window (1s unless the test
	// sets one): reset waits it out so that the reset is in effect.
	resetWindow time.Duration
}

type account struct {
	ik    *devices.RootKey // the account's root key (tests keep it)
	ask   *devices.AccountSigningKey
	state *devices.AccountState
}

// newKeys returns a fresh root key and its generation-1 signing key.
func newKeys(t testing.TB, uid string) (*devices.RootKey, *devices.AccountSigningKey) {
	rk := devices.DeriveRootKey(devices.RecoverySecret(seed(t)))
	ask, err := devices.NewAccountSigningKey(rk, uid, 1, rand.Reader, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return rk, ask
}

func newEnv(t testing.TB, opts *Options, users ...string) *env {
	t.Helper()
	return newEnvConfig(t, directory.Config{}, opts, users...)
}

// newEnvConfig is newEnv with directory settings (DataDir, EpochInterval
// and NoSync are set here).
func newEnvConfig(t testing.TB, cfg directory.Config, opts *Options, users ...string) *env {
	t.Helper()
	cfg.DataDir, cfg.EpochInterval, cfg.NoSync = t.TempDir(), 10*time.Millisecond, true
	if cfg.ResetWindow == 0 {
		cfg.ResetWindow = time.Second
	}
	d, err := directory.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	e := &env{t: t, dir: d, accts: map[string]*account{}, resetWindow: cfg.ResetWindow}
	if e.trust, err = d.Trust().Trust(); err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		e.create(u)
	}
	o := Options{}
	if opts != nil {
		o = *opts
	}
	if o.Source == nil {
		o.Source = d
	}
	o.Trust, o.QueueDepth = d.Trust(), d.QueueDepth
	if e.h, err = New(o); err != nil {
		t.Fatal(err)
	}
	if err := e.h.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.ts = httptest.NewServer(e.h)
	t.Cleanup(e.ts.Close)
	return e
}

func seed(t testing.TB) [32]byte {
	var s [32]byte
	if _, err := rand.Read(s[:]); err != nil {
		t.Fatal(err)
	}
	return s
}

func newCert(t testing.TB, ik *devices.RootKey, name string) *devices.DeviceCert {
	dk, err := devices.NewDeviceKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c, err := dk.NewCert(name, ik.Public(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// create publishes a new account for uid.
func (e *env) create(uid string) { e.createLocked(nil, uid) }

// createLocked is create for concurrent callers: mu (if set) guards e.accts.
func (e *env) createLocked(mu *sync.Mutex, uid string) {
	e.t.Helper()
	ik, ask := newKeys(e.t, uid)
	st, err := devices.NewAccount(ask, ik.Public(), uid, newCert(e.t, ik, "phone"), time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	b, err := st.MarshalBinary()
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.dir.Update(context.Background(), b); err != nil {
		e.t.Fatal(err)
	}
	if mu != nil {
		mu.Lock()
		defer mu.Unlock()
	}
	e.accts[uid] = &account{ik: ik, ask: ask, state: st}
}

// reset replaces uid's root key by a directory reset and waits until it
// is in effect: past the reset window, with a later epoch (another
// account is created) that the HTTP server follows.
func (e *env) reset(uid string) {
	e.t.Helper()
	e.resetPending(uid)
	time.Sleep(e.resetWindow + 1100*time.Millisecond)
	s := seed(e.t)
	e.create(fmt.Sprintf("after-reset-%x", s[:4]))
	e.sync()
}

// resetPending replaces uid's root key by a directory reset, still pending,
// and returns the logged ResetAuthorization.
func (e *env) resetPending(uid string) *devices.ResetAuthorization {
	e.t.Helper()
	a := e.accts[uid]
	ik, ask := newKeys(e.t, uid)
	st, err := devices.NewResetState(a.state, ik.Public(), ask, newCert(e.t, ik, "new phone"), time.Now().Add(time.Second))
	if err != nil {
		e.t.Fatal(err)
	}
	b, err := st.MarshalBinary()
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := e.dir.Reset(context.Background(), e.dir.AdminToken(), uid, b, "lost")
	if err != nil {
		e.t.Fatal(err)
	}
	e.accts[uid] = &account{ik: ik, ask: ask, state: st}
	leaf, err := klog.ParseLeaf(res.Leaf)
	if err != nil {
		e.t.Fatal(err)
	}
	auth, err := devices.ParseResetAuthorization(leaf.(*klog.AccountUpdate).Payload)
	if err != nil {
		e.t.Fatal(err)
	}
	return auth
}

// sync makes the HTTP server follow the latest checkpoint.
func (e *env) sync() {
	e.t.Helper()
	if err := e.h.Sync(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

// webverifyHTTP verifies a lookup bundle with webverify as the page
// (web/app.js) does: while the result names a directory resource it needs,
// GET it from base and verify again with it. It fails the test if the
// verifier asks for a resource twice or more than 64 times.
func webverifyHTTP(t testing.TB, base, bundle, trust, state, user string) *webverify.Result {
	t.Helper()
	fetched := map[string]string{}
	for range 64 {
		r := webverify.VerifyLookup(bundle, trust, state, user, fetched, time.Now())
		if r.Need == "" {
			return r
		}
		if r.OK || r.State != "" {
			t.Fatalf("a result that needs %s is OK or has a state: %+v", r.Need, r)
		}
		if _, again := fetched[r.Need]; again {
			t.Fatalf("the verifier asks for %s again", r.Need)
		}
		resp, err := http.Get(base + r.Need)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		fetched[r.Need] = string(b)
	}
	t.Fatalf("the verifier of %s needs more than 64 resources", user)
	return nil
}
