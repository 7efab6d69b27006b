package adversary

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/keyline/keyline/directory/httpapi"
	"github.com/keyline/keyline/verifier/webverify"
)

// page is the in-browser verifier (webverify, as web/app.js drives it)
// reading e.src over the HTTP API.
type page struct {
	url, trust string
}

func newPage(t *testing.T, e *env) *page {
	t.Helper()
	h, err := httpapi.New(httpapi.Options{Source: e.src, Trust: e.srv.Trust()})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	trust, err := json.Marshal(e.srv.Trust())
	if err != nil {
		t.Fatal(err)
	}
	return &page{url: ts.URL, trust: string(trust)}
}

func (p *page) get(t *testing.T, path string) string {
	t.Helper()
	resp, err := http.Get(p.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lookup fetches user's bundle with the known size of state and verifies
// it, fetching every resource the verifier names in Need.
func (p *page) lookup(t *testing.T, state, user string) *webverify.Result {
	t.Helper()
	ks, err := webverify.KnownSize(p.trust, state)
	if err != nil {
		t.Fatal(err)
	}
	bundle := p.get(t, "/v1/lookup/"+user+"?known_size="+strconv.FormatUint(ks, 10))
	fetched := map[string]string{}
	for range 64 {
		r := webverify.VerifyLookup(bundle, p.trust, state, user, fetched, time.Now())
		if r.Need == "" {
			return r
		}
		if _, again := fetched[r.Need]; again {
			t.Fatalf("the verifier asks for %s again", r.Need)
		}
		fetched[r.Need] = p.get(t, r.Need)
	}
	t.Fatalf("the verifier of %s needs more than 64 resources", user)
	return nil
}
