package cli

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyline/keyline/verifier/cosign"
)

// Fixed cosignature/v1 vkeys for the seed corpus (public halves only); the
// second has a name containing '=', which parseWitnessFlag must not split.
const (
	fuzzVkey1   = "w1.example+5a305d21+BMpqrr03+4xM0EWJcAepLi0F/8il+cyFwFk4GuTqykOd"
	fuzzVkeyOdd = "witness=odd.example+128092ae+BEc4iDYr7ta+zIfDdF3kh//cMjOG/Gci/wINTcxJ4V/P"
)

// renderConfig writes settings as a key=value config file, every value
// quoted, or reports false if a key cannot be written in that form (it
// holds '=' or a newline, starts with '#' or '{', or is not trimmed).
func renderConfig(kv [][2]string) ([]byte, bool) {
	var b strings.Builder
	for _, p := range kv {
		k := p[0]
		if k == "" || strings.ContainsAny(k, "=\n") || k[0] == '#' || k[0] == '{' || strings.TrimSpace(k) != k {
			return nil, false
		}
		b.WriteString(k + " = " + strconv.Quote(p[1]) + "\n")
	}
	return []byte(b.String()), true
}

// FuzzParseConfig: parseConfig never panics; every key it returns is
// already normalized; and its result, written back as a key=value file,
// parses to exactly the same settings.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		"# comment\nserver = dir.example:7411\n\ndata_dir: \"/tmp/x y\"\njson=true\n",
		`{"witness-quorum": 2, "json": false, "server": "a:1"}`,
		`{"Data_Dir": "/d", "timeout": 1.5e1, "tls": true}`,
		"timeout=30s\r\nqr-invert = \"tab\\there\"\n",
		"a=1\nnot a setting\n",
		`x="unterminated`,
		"=empty key\n",
		`{"nested": {"a": 1}}`,
		`{"list": [1,2]}`,
		"{broken json",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		kv, err := parseConfig(data)
		if err != nil {
			if kv != nil {
				t.Fatalf("error %v with settings %q", err, kv)
			}
			return
		}
		for _, p := range kv {
			if normKey(p[0]) != p[0] {
				t.Fatalf("key %q is not normalized (normKey gives %q)", p[0], normKey(p[0]))
			}
		}
		text, ok := renderConfig(kv)
		if !ok {
			return
		}
		kv2, err := parseConfig(text)
		if err != nil {
			t.Fatalf("re-parsing %q (from %q): %v", text, data, err)
		}
		if len(kv) == 0 && len(kv2) == 0 {
			return
		}
		if !reflect.DeepEqual(kv, kv2) {
			t.Fatalf("round trip of %q:\n first %q\nsecond %q (via %q)", data, kv, kv2, text)
		}
	})
}

// FuzzParseWitnessFlag: parseWitnessFlag never panics; what it accepts
// has an http(s) URL without a trailing slash and a vkey that parses; and
// URL=VKEY formed from its result parses back to the same witness.
func FuzzParseWitnessFlag(f *testing.F) {
	for _, s := range []string{
		"http://127.0.0.1:7412=" + fuzzVkey1,
		"https://w.example/path/?a=b=" + fuzzVkey1,
		"https://w.example/=" + fuzzVkeyOdd,
		"http://x=" + fuzzVkeyOdd + "=" + fuzzVkey1,
		"ftp://x=" + fuzzVkey1,
		fuzzVkey1,
		"http://x=notakey",
		"http://=" + fuzzVkey1,
		"https:///=" + fuzzVkey1,
		"http://x",
		"=",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		wc, err := parseWitnessFlag(s)
		if err != nil {
			if wc.URL != "" || wc.VKey != "" {
				t.Fatalf("error %v with result %+v", err, wc)
			}
			return
		}
		if !strings.HasPrefix(wc.URL, "http://") && !strings.HasPrefix(wc.URL, "https://") {
			t.Fatalf("%q: accepted URL %q", s, wc.URL)
		}
		if strings.HasSuffix(wc.URL, "/") {
			t.Fatalf("%q: URL %q keeps a trailing slash", s, wc.URL)
		}
		if _, err := cosign.NewVerifierFromVkey(wc.VKey); err != nil {
			t.Fatalf("%q: accepted vkey %q does not parse: %v", s, wc.VKey, err)
		}
		if !strings.HasSuffix(s, "="+wc.VKey) {
			t.Fatalf("%q: vkey %q is not the suffix after an '='", s, wc.VKey)
		}
		wc2, err := parseWitnessFlag(wc.URL + "=" + wc.VKey)
		if err != nil || wc2.URL != wc.URL || wc2.VKey != wc.VKey {
			t.Fatalf("%q -> %+v -> %+v, %v", s, wc, wc2, err)
		}
	})
}

// FuzzParsePending: the pending-update record parser never panics, and a
// record it accepts is written back (writePending's encoding) to one it
// accepts with the same contents.
func FuzzParsePending(f *testing.F) {
	_, st, err := demoAccount("alice", "phone", time.Unix(1700000000, 0))
	if err != nil {
		f.Fatal(err)
	}
	enc, _ := st.MarshalBinary()
	h, _ := st.Hash()
	good, _ := json.Marshal(pendingOp{Format: 1, Op: "account create", UserID: "alice", Version: 1, StateHash: hex.EncodeToString(h[:]), State: base64.StdEncoding.EncodeToString(enc), NewAccount: true, StartedAt: time.Unix(1700000000, 0).UTC()})
	f.Add(good)
	f.Add([]byte(`{"format":1}`))
	f.Add([]byte(`{"format":2,"op":"x"}`))
	f.Add(append(append([]byte{}, good...), good...))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parsePending(b)
		if err != nil {
			return
		}
		again, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		q, err := parsePending(again)
		if err != nil {
			t.Fatalf("re-encoded record rejected: %v", err)
		}
		if again2, _ := json.Marshal(q); string(again2) != string(again) {
			t.Fatalf("round trip changed the record:\n%s\n%s", again, again2)
		}
	})
}
