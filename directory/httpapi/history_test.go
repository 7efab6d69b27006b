package httpapi

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory/apierr"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/webverify"
)

// addDevice publishes the next version of uid's account, adding a device.
func (e *env) addDevice(uid, name string) {
	e.t.Helper()
	a := e.accts[uid]
	st, err := devices.AddDevice(a.state, a.ask, newCert(e.t, a.ik, name), time.Now())
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
	a.state = st
}

// historySource serves alice's history from another version than asked
// (skip > 0: without its first entries), truncated (drop > 0: without its
// last entries), or refuses it (missing).
type historySource struct {
	verifier.Source
	skip, drop int
	missing    bool
}

func (s historySource) History(ctx context.Context, user string, from uint64) (*verifier.HistoryBundle, error) {
	if s.missing {
		return nil, apierr.New(codes.Unavailable, apierr.Unavailable, "no history of %s today", user)
	}
	h, err := s.Source.History(ctx, user, from)
	if err != nil || user != "alice" {
		return h, err
	}
	c := *h
	c.Entries = c.Entries[min(s.skip, len(c.Entries)) : len(c.Entries)-min(s.drop, len(c.Entries))]
	return &c, nil
}

// TestWebverifyHistory: a contact above v1 is accepted by the browser's
// verifier only with its verified history from v1 (first lookup) or from
// the version last verified, fetched over HTTP as the page does; without
// it, or with a history that is missing or truncated, the lookup fails
// and no state is returned.
func TestWebverifyHistory(t *testing.T) {
	e := newEnv(t, nil, "alice", "bob")
	e.addDevice("alice", "laptop")
	e.addDevice("alice", "tablet")
	e.sync()
	trust, _ := json.Marshal(e.dir.Trust())
	_, _, body := get(t, e.ts.URL+"/v1/lookup/alice")

	// Without the history nothing is accepted: the verifier asks for it.
	r := webverify.VerifyLookup(string(body), string(trust), "", "alice", nil, time.Now())
	if r.OK || r.State != "" || r.Need != "/v1/history/alice?from_version=1" {
		t.Fatalf("v3 without its history: %+v", r)
	}

	// The user id is normalized first: the history asked for is alice's.
	if r := webverify.VerifyLookup(string(body), string(trust), "", "Alice", nil, time.Now()); r.OK || r.Need != "/v1/history/alice?from_version=1" {
		t.Fatalf("v3 of Alice without its history: %+v", r)
	}
	if r := webverify.VerifyLookup(string(body), string(trust), "", "al ice", nil, time.Now()); r.OK || r.ErrorKind != "ErrUserID" {
		t.Fatalf("a malformed user id: %+v", r)
	}

	// Honest: the history from v1 verifies.
	r = webverifyHTTP(t, e.ts.URL, string(body), string(trust), "", "alice")
	if !r.OK || r.Version != 3 || !strings.Contains(strings.Join(r.Checks, "\n"), "account history v1 to v3") {
		t.Fatalf("honest v3: %+v", r)
	}
	state := r.State
	st, err := verifier.ParseClientState([]byte(state))
	if err != nil || st.Contacts["alice"] == nil || st.Contacts["alice"].Version != 3 {
		t.Fatalf("state after v3: %v", err)
	}
	// The same version again: no history needed.
	if r := webverify.VerifyLookup(string(body), string(trust), state, "alice", nil, time.Now()); !r.OK || r.Need != "" {
		t.Fatalf("v3 again: %+v", r)
	}
	// A newer version: the history from the last verified one.
	e.addDevice("alice", "watch")
	e.sync()
	ks, err := webverify.KnownSize(string(trust), state)
	if err != nil {
		t.Fatal(err)
	}
	_, _, body = get(t, e.ts.URL+"/v1/lookup/alice?known_size="+strconv.FormatUint(ks, 10))
	if r := webverify.VerifyLookup(string(body), string(trust), state, "alice", nil, time.Now()); r.OK || r.Need != "/v1/history/alice?from_version=3" {
		t.Fatalf("v4 after v3: %+v", r)
	}
	if r := webverifyHTTP(t, e.ts.URL, string(body), string(trust), state, "alice"); !r.OK || r.Version != 4 || !strings.Contains(strings.Join(r.Checks, "\n"), "account history v3 to v4") {
		t.Fatalf("v4 after v3: %+v", r)
	}

	// A directory that does not serve the history, or serves it
	// truncated or from a later version, fails the lookup (new contact).
	_, _, body = get(t, e.ts.URL+"/v1/lookup/alice")
	for _, c := range []struct {
		name string
		src  historySource
		want string
	}{
		{"missing", historySource{missing: true}, "UNAVAILABLE"},
		{"truncated", historySource{drop: 1}, "does not end at the served v4"},
		{"empty", historySource{drop: 10}, "does not start at v1"},
		{"late start", historySource{skip: 1}, "does not start at v1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.src.Source = e.dir
			h, err := New(Options{Source: c.src, Trust: e.dir.Trust()})
			if err != nil {
				t.Fatal(err)
			}
			ts := httptest.NewServer(h)
			defer ts.Close()
			r := webverifyHTTP(t, ts.URL, string(body), string(trust), "", "alice")
			if r.OK || r.State != "" || r.ErrorKind != "ErrHistory" || !strings.Contains(r.Error, c.want) {
				t.Errorf("got %+v, want ErrHistory %q", r, c.want)
			}
		})
	}
	// A body that is not a history fails too.
	fetched := map[string]string{webverify.HistoryPath("alice", 1): `{"entries":"not a list"}`}
	if r := webverify.VerifyLookup(string(body), string(trust), "", "alice", fetched, time.Now()); r.OK || r.ErrorKind != "ErrHistory" || r.Need != "" {
		t.Errorf("malformed history: %+v", r)
	}

}
