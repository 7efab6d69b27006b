package verifier

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/keyline/keyline/verifier/cosign"
)

// nonCanonical returns encodings of the bytes of canonical s that lenient
// base64 decoders accept: with a line break inside, without padding, and
// with non-zero padding bits.
func nonCanonical(s string) []string {
	out := []string{s[:len(s)/2] + "\n" + s[len(s)/2:]}
	if t := strings.TrimRight(s, "="); t != s {
		out = append(out, t)
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
		if last := strings.IndexByte(alphabet, t[len(t)-1]); last+1 < len(alphabet) {
			out = append(out, t[:len(t)-1]+string(alphabet[last+1])+s[len(t):])
		}
	}
	return out
}

// keyPart splits a "<name>+<hex>+<base64>" key before its base64.
func keyPart(k string) (prefix, b64 string) {
	p := strings.SplitN(k, "+", 3)
	return p[0] + "+" + p[1] + "+", p[2]
}

// TestTrustCanonicalBase64: every key in trust.json must be the canonical
// base64 of its bytes.
func TestTrustCanonicalBase64(t *testing.T) {
	d := newTestDir(t)
	f := trustFileOf(d)
	if _, err := f.Trust(); err != nil {
		t.Fatal(err)
	}
	n := 0
	mutate := func(what string, get func(*TrustFile) *string, prefixed bool) {
		prefix, b64 := "", *get(&f)
		if prefixed {
			prefix, b64 = keyPart(b64)
		}
		for _, bad := range nonCanonical(b64) {
			g := f
			g.Witnesses = append([]string(nil), f.Witnesses...)
			*get(&g) = prefix + bad
			n++
			if _, err := g.Trust(); err == nil {
				t.Errorf("%s with non-canonical base64 %q accepted", what, bad)
			}
		}
	}
	mutate("log_key", func(f *TrustFile) *string { return &f.LogKey }, true)
	mutate("vrf_key", func(f *TrustFile) *string { return &f.VRFKey }, false)
	mutate("reset_key", func(f *TrustFile) *string { return &f.ResetKey }, false)
	mutate("witness", func(f *TrustFile) *string { return &f.Witnesses[0] }, true)
	if n < 8 {
		t.Fatalf("only %d variants", n)
	}
	// The cosigner vkey parser alone.
	prefix, b64 := keyPart(d.wvkeys[0])
	for _, bad := range nonCanonical(b64) {
		if _, err := cosign.NewVerifierFromVkey(prefix + bad); err == nil {
			t.Errorf("cosigner vkey with %q accepted", bad)
		}
	}
}

// TestCosignatureCanonicalBase64: a checkpoint whose witness cosignature is
// re-encoded non-canonically (the same bytes, which note.Open accepts) is
// refused.
func TestCosignatureCanonicalBase64(t *testing.T) {
	d := newTestDir(t)
	d.publish(d.create("alice"))
	if _, err := d.trust.OpenCheckpoint(d.cp); err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(d.cp), "\n")
	tested := 0
	for i, l := range lines {
		name := d.witnesses[0].Name()
		if !strings.HasPrefix(l, "— "+name+" ") {
			continue
		}
		sig := strings.TrimSuffix(strings.TrimPrefix(l, "— "+name+" "), "\n")
		for _, bad := range nonCanonical(sig) {
			if strings.Contains(bad, "\n") {
				continue
			}
			m := strings.Join(lines[:i], "") + "— " + name + " " + bad + "\n" + strings.Join(lines[i+1:], "")
			wv, err := cosign.NewVerifierFromVkey(d.wvkeys[0])
			if err != nil {
				t.Fatal(err)
			}
			if _, err := note.Open([]byte(m), note.VerifierList(d.trust.Log, wv)); err != nil {
				continue
			}
			tested++
			if _, err := d.trust.OpenCheckpoint([]byte(m)); err == nil {
				t.Errorf("cosignature %q accepted", bad)
			}
		}
	}
	if tested == 0 {
		t.Fatal("no lenient-decodable variant: the test checks nothing")
	}
}

// TestClientStateCanonicalBase64: the client state file's base64 values
// must be canonical.
func TestClientStateCanonicalBase64(t *testing.T) {
	st := &ClientState{Checkpoint: []byte("o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— o AAAA\n"), Contacts: map[string]*Contact{}}
	if err := st.Pin("bob", [32]byte{1, 2, 3}, true, time.Unix(1700000000, 0)); err != nil {
		t.Fatal(err)
	}
	good, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseClientState(good); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(good, &raw); err != nil {
		t.Fatal(err)
	}
	cp := raw["checkpoint"].(string)
	ik := raw["contacts"].(map[string]any)["bob"].(map[string]any)["ik"].(string)
	for _, v := range []string{cp, ik} {
		if _, err := base64.StdEncoding.DecodeString(v); err != nil {
			t.Fatal(err)
		}
		for _, bad := range nonCanonical(v) {
			q, _ := json.Marshal(bad)
			orig, _ := json.Marshal(v)
			m := bytes.Replace(good, orig, q, 1)
			if bytes.Equal(m, good) {
				t.Fatalf("value %q not found in the state file", v)
			}
			if _, err := ParseClientState(m); err == nil {
				t.Errorf("state with %q accepted", bad)
			}
		}
	}
}
