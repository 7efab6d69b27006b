package httpapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/keyline/keyline/devices"
	"github.com/keyline/keyline/directory"
	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/auditor"
	"github.com/keyline/keyline/verifier/jsonapi"
	"github.com/keyline/keyline/verifier/webverify"
)

func get(t testing.TB, url string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// c2spTiles is an independent tlog.TileReader for C2SP paths: tlog's path
// for height-8 tiles is tile/8/<L>/<N>[.p/<W>], C2SP drops the "8/".
type c2spTiles struct {
	t   testing.TB
	url string
}

func (r c2spTiles) Height() int { return 8 }
func (r c2spTiles) ReadTiles(ts []tlog.Tile) ([][]byte, error) {
	var out [][]byte
	for _, tt := range ts {
		code, _, b := get(r.t, r.url+"/tile/"+strings.TrimPrefix(tt.Path(), "tile/8/"))
		if code != 200 {
			return nil, fmt.Errorf("%s: %d", tt.Path(), code)
		}
		out = append(out, b)
	}
	return out, nil
}
func (r c2spTiles) SaveTiles([]tlog.Tile, [][]byte) {}

// TestTilesIndependentClient reads the served log with x/mod/sumdb/tlog:
// the checkpoint verifies against trust.json, the tiles hash to its root,
// and inclusion proofs computed from them verify for every leaf read from
// the entry bundles.
func TestTilesIndependentClient(t *testing.T) {
	e := newEnv(t, nil, "alice", "bob", "carol")
	for i := 0; i < 5; i++ {
		e.create(fmt.Sprintf("user%d", i))
	}
	e.sync()
	code, hdr, cpb := get(t, e.ts.URL+"/checkpoint")
	if code != 200 || hdr.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("/checkpoint: %d %q", code, hdr.Get("Content-Type"))
	}
	cp, err := e.trust.OpenCheckpoint(cpb)
	if err != nil {
		t.Fatal(err)
	}
	tree := tlog.Tree{N: int64(cp.Size), Hash: tlog.Hash(cp.Hash)}
	thr := tlog.TileHashReader(tree, c2spTiles{t, e.ts.URL})
	root, err := tlog.TreeHash(int64(cp.Size), thr)
	if err != nil || root != tree.Hash {
		t.Fatalf("tlog TreeHash over the served tiles: %v", err)
	}
	// Entry bundle: the level-0 tile's width, leaves that parse.
	tw := int(cp.Size % 256)
	code, hdr, bundle := get(t, e.ts.URL+fmt.Sprintf("/tile/entries/000.p/%d", tw))
	if code != 200 || hdr.Get("Cache-Control") != "public, max-age=60" {
		t.Fatalf("partial bundle: %d %q", code, hdr.Get("Cache-Control"))
	}
	var leaves [][]byte
	for b := bundle; len(b) > 0; {
		n := int(b[0])<<8 | int(b[1])
		leaves = append(leaves, b[2:2+n])
		b = b[2+n:]
	}
	if len(leaves) != tw {
		t.Fatalf("bundle has %d leaves, want %d", len(leaves), tw)
	}
	updates := 0
	for i, l := range leaves {
		if _, err := klog.ParseLeaf(l); err != nil {
			t.Fatalf("leaf %d: %v", i, err)
		}
		if l[0] == byte(klog.KindAccountUpdate) {
			updates++
		}
		p, err := tlog.ProveRecord(int64(cp.Size), int64(i), thr)
		if err != nil {
			t.Fatal(err)
		}
		hs := make([][]byte, len(p))
		for j := range p {
			hs[j] = p[j][:]
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(i), cp.Size, rfc6962.DefaultHasher.HashLeaf(l), hs, cp.Hash[:]); err != nil {
			t.Fatalf("leaf %d: %v", i, err)
		}
	}
	if updates != 8 {
		t.Errorf("%d account updates in the bundle, want 8", updates)
	}
	if code, _, _ := get(t, e.ts.URL+fmt.Sprintf("/tile/entries/000.p/%d", tw+1)); code != 404 {
		t.Errorf("bundle past the checkpoint: %d, want 404", code)
	}
}

// TestAuditOverTiles runs the auditor with the tiles Source.
func TestAuditOverTiles(t *testing.T) {
	e := newEnv(t, nil, "alice", "bob")
	e.reset("bob")
	e.sync()
	au, err := auditor.Open(t.TempDir(), e.trust, NewTilesSource(e.ts.URL+"/", nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer au.Close()
	st, err := au.Run(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, size := e.h.Tiles().Checkpoint(); st.Checkpoint == nil || st.Checkpoint.Size != size || st.Replayed != size || st.Resets != 1 {
		t.Errorf("audit over tiles: %+v, want size %d and 1 reset", st, size)
	}
	if _, err := NewTilesSource(e.ts.URL, nil).Lookup(context.Background(), "bob", 0); !errors.Is(err, ErrTilesOnly) {
		t.Errorf("Lookup over tiles: %v", err)
	}
}

// TestJSONLookup fetches bundles over HTTP and verifies them with the
// verifier, natively and through webverify (the browser's path).
func TestJSONLookup(t *testing.T) {
	e := newEnv(t, nil, "alice", "bob")
	code, hdr, body := get(t, e.ts.URL+"/v1/lookup/Bob")
	if code != 200 || hdr.Get("Content-Type") != "application/json" || hdr.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("lookup: %d %v", code, hdr)
	}
	b, err := jsonapi.ParseLookup(body)
	if err != nil {
		t.Fatal(err)
	}
	res, err := verifier.VerifyLookup(e.trust, nil, "bob", b, time.Now())
	if err != nil || !res.Found || res.IdentityKey != e.accts["bob"].ik.Public() {
		t.Fatalf("VerifyLookup: %v", err)
	}
	trust, _ := json.Marshal(e.dir.Trust())

	// webverify: first use pins, then the state carries the checkpoint.
	wr := webverify.VerifyLookup(string(body), string(trust), "", "bob", nil, time.Now())
	if !wr.OK || !wr.Found || wr.Pin != "new" || wr.SafetyChanged || len(wr.Devices) != 1 || wr.State == "" {
		t.Fatalf("webverify: %+v", wr)
	}
	state := wr.State
	ks, err := webverify.KnownSize(string(trust), state)
	if err != nil || ks == 0 {
		t.Fatalf("KnownSize = %d, %v", ks, err)
	}
	e.create("carol") // the log grows: the next lookup needs a consistency proof
	_, _, body = get(t, e.ts.URL+"/v1/lookup/bob?known_size="+strconv.FormatUint(ks, 10))
	wr = webverify.VerifyLookup(string(body), string(trust), state, "bob", nil, time.Now())
	if !wr.OK || wr.Pin != "match" {
		t.Fatalf("second lookup: %+v", wr)
	}
	state = wr.State

	// At the served size the bundle omits the checkpoint; the state holds
	// it and its EpochRecord.
	ks, held, err := webverify.Known(string(trust), state)
	if err != nil || !held {
		t.Fatalf("Known = %d %v, %v", ks, held, err)
	}
	_, _, body = get(t, e.ts.URL+"/v1/lookup/alice?known_size="+strconv.FormatUint(ks, 10))
	if hb, err := jsonapi.ParseLookup(body); err != nil || !hb.Held() || strings.Contains(string(body), `"epoch_record"`) {
		t.Fatalf("lookup at the known size is not a held bundle (%v): %s", err, body)
	}
	if wr := webverify.VerifyLookup(string(body), string(trust), state, "alice", nil, time.Now()); !wr.OK || !wr.Found || wr.Checkpoint.Size != ks || !strings.Contains(strings.Join(wr.Checks, "\n"), "not sent") {
		t.Fatalf("held lookup: %+v", wr)
	}
	// Without a held checkpoint the same bundle is refused.
	if wr := webverify.VerifyLookup(string(body), string(trust), "", "alice", nil, time.Now()); wr.OK || wr.ErrorKind != "ErrBundleForm" {
		t.Fatalf("held bundle without a held checkpoint: %+v", wr)
	}

	// Without the consistency proof the verifier refuses to advance.
	e.create("dave")
	_, _, body = get(t, e.ts.URL+"/v1/lookup/bob")
	if wr := webverify.VerifyLookup(string(body), string(trust), state, "bob", nil, time.Now()); wr.OK || wr.ErrorKind != "ErrConsistency" {
		t.Errorf("lookup without consistency proof: %+v", wr)
	}

	// A tampered bundle fails.
	var j map[string]any
	json.Unmarshal(body, &j)
	mp, _ := base64.StdEncoding.DecodeString(j["map_proof"].(string))
	mp[len(mp)-1] ^= 1
	j["map_proof"] = base64.StdEncoding.EncodeToString(mp)
	tampered, _ := json.Marshal(j)
	if wr := webverify.VerifyLookup(string(tampered), string(trust), "", "bob", nil, time.Now()); wr.OK || wr.ErrorKind == "" {
		t.Errorf("tampered bundle: %+v", wr)
	}

	// A reset changes the pinned key: a red state, and an error once verified.
	sn := webverify.NewSafetyNumber("alice", fmt.Sprintf("%x", e.accts["alice"].ik.Public()), "bob", wr.IdentityKey)
	if !sn.OK || len(sn.Digits) != 60 || len(sn.Groups) != 12 || !strings.HasPrefix(sn.QRSVG, "<svg") {
		t.Fatalf("safety number: %+v", sn)
	}
	want, _ := devices.NewSafetyNumber("alice", e.accts["alice"].ik.Public(), "bob", e.accts["bob"].ik.Public())
	if sn.Digits != want.Digits() || sn.QR != want.QR() {
		t.Errorf("safety number differs from devices.NewSafetyNumber")
	}
	verified, err := webverify.MarkVerified(state, "bob", fmt.Sprintf("%x", e.accts["bob"].ik.Public()), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e.reset("bob")
	ks, _ = webverify.KnownSize(string(trust), state)
	_, _, body = get(t, e.ts.URL+"/v1/lookup/bob?known_size="+strconv.FormatUint(ks, 10))
	wr = webverifyHTTP(t, e.ts.URL, string(body), string(trust), state, "bob")
	if !wr.OK || !wr.SafetyChanged || wr.Pin != "changed" || wr.Reset == "" {
		t.Errorf("unverified pin after a reset: %+v", wr)
	}
	wr = webverifyHTTP(t, e.ts.URL, string(body), string(trust), verified, "bob")
	if wr.OK || !wr.SafetyChanged || wr.ErrorKind != "ErrSafetyNumberChanged" || wr.State != "" {
		t.Errorf("verified pin after a reset: %+v", wr)
	}

	// Unknown user: a verified absence.
	_, _, body = get(t, e.ts.URL+"/v1/lookup/nobody")
	if wr := webverify.VerifyLookup(string(body), string(trust), "", "nobody", nil, time.Now()); !wr.OK || wr.Found {
		t.Errorf("unknown user: %+v", wr)
	}
}

func TestJSONErrorsAndReads(t *testing.T) {
	e := newEnv(t, nil, "alice")
	for _, c := range []struct {
		path   string
		status int
		reason string
	}{
		{"/v1/lookup/" + strings.Repeat("x", 300), 400, "BAD_USER_ID"},
		{"/v1/lookup/alice?known_size=-1", 400, "MALFORMED_REQUEST"},
		{"/v1/lookup/alice?known_size=999999", 400, "OUT_OF_RANGE"},
		{"/v1/history/alice?from_version=x", 400, "MALFORMED_REQUEST"},
		{"/v1/consistency?old=1", 400, "MALFORMED_REQUEST"},
		{"/v1/consistency?old=5&new=2", 400, "OUT_OF_RANGE"},
		{"/v1/entries?start=99999&end=100000", 400, "OUT_OF_RANGE"},
	} {
		code, _, body := get(t, e.ts.URL+c.path)
		var je jsonapi.Error
		if err := json.Unmarshal(body, &je); err != nil || code != c.status || je.Error.Reason != c.reason {
			t.Errorf("GET %s: %d %s, want %d %s", c.path, code, body, c.status, c.reason)
		}
	}
	_, _, body := get(t, e.ts.URL+"/v1/history/alice")
	h, err := jsonapi.ParseHistory(body)
	if err != nil || len(h.Entries) != 1 {
		t.Fatalf("history: %v", err)
	}
	_, _, body = get(t, e.ts.URL+"/v1/checkpoint")
	cpb, err := jsonapi.ParseCheckpoint(body)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := e.trust.OpenCheckpoint(cpb)
	if err != nil {
		t.Fatal(err)
	}
	_, _, body = get(t, e.ts.URL+fmt.Sprintf("/v1/consistency?old=1&new=%d", cp.Size))
	p, err := jsonapi.ParseProof(body)
	if err != nil {
		t.Fatal(err)
	}
	first, err := e.dir.Entries(context.Background(), 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, 1, cp.Size, p, rfc6962.DefaultHasher.HashLeaf(first[0]), cp.Hash[:]); err != nil {
		t.Errorf("consistency proof over JSON: %v", err)
	}
	_, _, body = get(t, e.ts.URL+"/v1/entries?start=0&end=2")
	var ents jsonapi.Entries
	if err := json.Unmarshal(body, &ents); err != nil || len(ents.Entries) != 2 {
		t.Errorf("entries: %s", body)
	}
	code, _, body := get(t, e.ts.URL+"/v1/trust")
	if tf, err := verifier.ParseTrust(body); code != 200 || err != nil || tf.Origin != e.trust.Origin {
		t.Errorf("trust: %d %v", code, err)
	}
}

// metricValue returns the value of the first sample line of name with
// labels containing sub.
func metricValue(t testing.TB, body, name, sub string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + name + `(\{[^}]*\})? (\S+)$`)
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		if strings.Contains(m[1], sub) {
			v, err := strconv.ParseFloat(m[2], 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("metric %s{%s} not found", name, sub)
	return 0
}

func TestMetricsAndHealth(t *testing.T) {
	e := newEnv(t, nil, "alice", "bob")
	e.resetPending("bob") // logged (and counted) at once, in effect later
	e.sync()
	get(t, e.ts.URL+"/v1/lookup/alice")
	code, _, body := get(t, e.ts.URL+"/metrics")
	if code != 200 {
		t.Fatal(code)
	}
	m := string(body)
	_, size := e.h.Tiles().Checkpoint()
	if got := metricValue(t, m, "keyline_log_size", ""); got != float64(size) {
		t.Errorf("keyline_log_size %v, want %d", got, size)
	}
	if metricValue(t, m, "keyline_resets", "") != 1 || metricValue(t, m, "keyline_account_updates", "") != 3 {
		t.Errorf("resets/updates wrong:\n%s", m)
	}
	if metricValue(t, m, "keyline_queue_capacity", "") != 20000 || metricValue(t, m, "keyline_queue_depth", "") != 0 {
		t.Error("queue metrics wrong")
	}
	if metricValue(t, m, "keyline_epoch", "") < 3 {
		t.Error("keyline_epoch too small")
	}
	if metricValue(t, m, "keyline_request_duration_seconds_count", `method="Lookup",transport="http"`) != 1 {
		t.Error("lookup latency not recorded")
	}
	if age := metricValue(t, m, "keyline_checkpoint_age_seconds", ""); age < 0 || age > 60 {
		t.Errorf("checkpoint age %v", age)
	}
	if code, _, _ := get(t, e.ts.URL+"/healthz"); code != 200 {
		t.Errorf("healthz %d", code)
	}
	if code, _, body := get(t, e.ts.URL+"/readyz"); code != 200 {
		t.Errorf("readyz %d %s", code, body)
	}
	// Not ready before the first sync, nor when the epoch is too old.
	h2, err := New(Options{Source: e.dir, Trust: e.dir.Trust()})
	if err != nil {
		t.Fatal(err)
	}
	if err := h2.Ready(); err == nil {
		t.Error("ready before any sync")
	}
	h3, _ := New(Options{Source: e.dir, Trust: e.dir.Trust(), Now: func() time.Time { return time.Now().Add(48 * time.Hour) }})
	h3.Sync(context.Background())
	if err := h3.Ready(); err == nil || !strings.Contains(err.Error(), "max_checkpoint_age") {
		t.Errorf("stale epoch: Ready() = %v", err)
	}

	// Status page.
	code, _, body = get(t, e.ts.URL+"/")
	page := string(body)
	for _, want := range []string{fmt.Sprintf(`<td id="size">%d</td>`, size), `1 reset in the log`, "<svg", `href="/checkpoint"`, "bob", "lost"} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	if code != 200 {
		t.Errorf("status %d", code)
	}
}

// lyingSource serves a checkpoint whose log does not match.
type lyingSource struct {
	verifier.Source
	swap bool
}

func (l *lyingSource) Entries(ctx context.Context, start, end uint64) ([][]byte, error) {
	ls, err := l.Source.Entries(ctx, start, end)
	if err == nil && l.swap && len(ls) > 0 {
		ls[0] = bytes.Clone(ls[0])
		ls[0][len(ls[0])-1] ^= 1
	}
	return ls, err
}

// TestFollowerRefusesMismatch: leaves that do not match the checkpoint are
// never served as tiles, and the server is not ready.
func TestFollowerRefusesMismatch(t *testing.T) {
	ls := &lyingSource{swap: true}
	e := newEnv(t, nil, "alice")
	ls.Source = e.dir
	h, err := New(Options{Source: ls, Trust: e.dir.Trust()})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Sync(context.Background()); err == nil {
		t.Fatal("sync with a forged leaf succeeded")
	}
	if err := h.Ready(); err == nil || !h.Snapshot().Corrupt {
		t.Errorf("Ready() = %v after a mismatch", err)
	}
	if cp, _ := h.Tiles().Checkpoint(); cp != nil {
		t.Error("a checkpoint is served")
	}
}

// TestStatusPendingReset shows a reset as pending during its window (page,
// status.json, metric), and as cancelled once the owner's old signing key
// publishes the entry after it.
func TestStatusPendingReset(t *testing.T) {
	e := newEnvConfig(t, directory.Config{ResetWindow: time.Hour}, nil, "alice", "bob")
	oldASK := e.accts["bob"].ask
	auth := e.resetPending("bob")
	e.sync()
	status := func() (page string, js struct {
		Pending int `json:"pending_resets"`
		Recent  []struct {
			UserID      string    `json:"user_id"`
			Status      string    `json:"status"`
			EffectiveAt time.Time `json:"effective_at"`
		} `json:"recent_resets"`
	}, metric float64) {
		_, _, body := get(t, e.ts.URL+"/")
		page = string(body)
		_, _, body = get(t, e.ts.URL+"/status.json")
		if err := json.Unmarshal(body, &js); err != nil {
			t.Fatalf("status.json: %v\n%s", err, body)
		}
		_, _, body = get(t, e.ts.URL+"/metrics")
		return page, js, metricValue(t, string(body), "keyline_resets_pending", "")
	}
	page, js, m := status()
	if !strings.Contains(page, `id="pending-resets"`) || !strings.Contains(page, `<td class="reset-status">pending</td>`) {
		t.Errorf("status page does not show the pending reset:\n%s", page)
	}
	if js.Pending != 1 || len(js.Recent) != 1 || js.Recent[0].Status != "pending" || js.Recent[0].UserID != "bob" || !js.Recent[0].EffectiveAt.Equal(auth.EffectiveAt) {
		t.Errorf("status.json during the window: %+v", js)
	}
	if m != 1 {
		t.Errorf("keyline_resets_pending = %v, want 1", m)
	}

	// The owner cancels with the signing key the reset would replace.
	next, err := devices.Resign(auth.PreviousState(), oldASK, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cancel, err := devices.LinkAfterReset(next, auth, oldASK)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cancel.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.dir.Update(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	e.sync()
	page, js, m = status()
	if strings.Contains(page, `id="pending-resets"`) || !strings.Contains(page, `<td class="reset-status">cancelled</td>`) {
		t.Errorf("status page after the cancellation:\n%s", page)
	}
	if js.Pending != 0 || len(js.Recent) != 1 || js.Recent[0].Status != "cancelled" || m != 0 {
		t.Errorf("after the cancellation: status.json %+v, keyline_resets_pending %v", js, m)
	}
}
