package webverify

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/vrf"
)

// The honest, tampered and changed-pin paths are tested end to end with a
// real directory in directory/httpapi (TestJSONLookup, TestBrowser); these
// are the input errors.

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
