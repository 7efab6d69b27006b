package webverify

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/vrf"
)

// The honest, tampered and changed-pin paths are tested end to end with a
// real directory in directory/httpapi (TestJSONLookup, TestBrowser), the
// history check there too (TestWebverifyHistory: honest, missing,
// truncated) and against a malicious directory in directory/adversary
// (TestAttackStolenDeviceAfterRecovery: ErrStaleSigningKey); these are the
// input errors and the fetched-resource source.

func newTrust(t *testing.T) string {
	_, vkey, err := klog.GenerateKey(rand.Reader, "example.org/dir")
	if err != nil {
		t.Fatal(err)
	}
	vk, err := vrf.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rk, _, _ := ed25519.GenerateKey(rand.Reader)
	b, _ := json.Marshal(verifier.TrustFile{Origin: "example.org/dir", LogKey: vkey, VRFKey: base64.StdEncoding.EncodeToString(vk.Public().Bytes()), ResetKey: base64.StdEncoding.EncodeToString(rk)})
	if _, err := verifier.ParseTrust(b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestInputErrors(t *testing.T) {
	testTrust := newTrust(t)
	now := time.Now()
	for _, c := range []struct {
		name, bundle, trust, state, kind string
	}{
		{"bad trust", `{}`, `{"origin":""}`, "", "ErrTrustConfig"},
		{"bad state", `{}`, testTrust, `{"format":9}`, "ErrState"},
		{"bad bundle", `{"nope":1}`, testTrust, "", "ErrMalformedBundle"},
		{"checkpoint omitted, none held", `{"vrf_proof":"AA==","map_proof":"AA==","account_update_index":0}`, testTrust, "", "ErrBundleForm"},
		{"bad checkpoint", `{"checkpoint":"AA==","vrf_proof":"","map_proof":"","epoch_record":"","epoch_record_inclusion":[],"account_update_index":0}`, testTrust, "", "ErrCheckpoint"},
	} {
		r := VerifyLookup(c.bundle, c.trust, c.state, "alice", nil, now)
		if r.OK || r.ErrorKind != c.kind || r.State != "" || r.Error == "" {
			t.Errorf("%s: %+v, want error kind %s", c.name, r, c.kind)
		}
		if _, err := json.Marshal(r); err != nil {
			t.Error(err)
		}
	}
	if n, err := KnownSize(testTrust, ""); err != nil || n != 0 {
		t.Errorf("KnownSize of an empty state = %d, %v", n, err)
	}
	if sn := NewSafetyNumber("alice", "zz", "bob", strings.Repeat("00", 32)); sn.OK || sn.Error == "" {
		t.Errorf("safety number with a bad key: %+v", sn)
	}
	if sn := NewSafetyNumber("Alice!", strings.Repeat("11", 32), "bob", strings.Repeat("00", 32)); sn.OK {
		t.Errorf("safety number with a bad user id: %+v", sn)
	}
	st, err := MarkVerified("", "bob", strings.Repeat("ab", 32), now)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := verifier.ParseClientState([]byte(st))
	if err != nil || cs.Contacts["bob"] == nil || !cs.Contacts["bob"].Verified {
		t.Errorf("MarkVerified state: %v", err)
	}
	if _, err := MarkVerified("", "bob", "short", now); err == nil {
		t.Error("MarkVerified with a bad key succeeded")
	}
}

func TestFetchedSource(t *testing.T) {
	ctx := context.Background()
	s := &fetchedSource{fetched: map[string]string{
		"/v1/history/bob?from_version=2": `{"error":{"code":"NOT_FOUND","reason":"","message":"no such account"}}`,
		"/v1/history/bob?from_version=3": `{"entries":"nope"}`,
		"/v1/consistency?old=5&new=9":    `{"proof":["AAAA"]}`,
	}}
	var need *needError
	if _, err := s.History(ctx, "alice", 1); !errors.As(err, &need) || need.path != "/v1/history/alice?from_version=1" {
		t.Errorf("unfetched history: %v", err)
	}
	if s.from != 1 {
		t.Errorf("first history version asked = %d, want 1", s.from)
	}
	if _, err := s.History(ctx, "bob", 2); !errors.Is(err, verifier.ErrHistory) || errors.As(err, &need) || !strings.Contains(err.Error(), "NOT_FOUND") {
		t.Errorf("error answer: %v", err)
	}
	if _, err := s.History(ctx, "bob", 3); !errors.Is(err, verifier.ErrHistory) {
		t.Errorf("malformed history: %v", err)
	}
	if p, err := s.ConsistencyProof(ctx, 5, 9); err != nil || len(p) != 1 || len(p[0]) != 3 {
		t.Errorf("consistency proof: %v %v", p, err)
	}
	if _, err := s.ConsistencyProof(ctx, 5, 10); !errors.As(err, &need) || need.path != ConsistencyPath(5, 10) {
		t.Errorf("unfetched consistency proof: %v", err)
	}
	if HistoryPath("a b/c", 7) != "/v1/history/a%20b%2Fc?from_version=7" {
		t.Errorf("HistoryPath does not escape the user: %s", HistoryPath("a b/c", 7))
	}
	for _, err := range []error{
		func() error { _, err := s.Lookup(ctx, "bob", 0); return err }(),
		func() error { _, err := s.Checkpoint(ctx); return err }(),
		func() error { _, err := s.Entries(ctx, 0, 1); return err }(),
	} {
		if err == nil || errors.As(err, &need) {
			t.Errorf("a method the history check does not use: %v", err)
		}
	}
}
