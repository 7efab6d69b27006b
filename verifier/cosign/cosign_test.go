package cosign

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/cosign")

const body = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"

func fixedKey() ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	return ed25519.NewKeyFromSeed(seed)
}

func fixedClock() time.Time { return time.Unix(1679315147, 0) }

func TestMessageMatchesSpecExample(t *testing.T) {
	want := "cosignature/v1\ntime 1679315147\n" + body
	if got := string(Message([]byte(body), 1679315147)); got != want {
		t.Fatalf("Message = %q, want %q", got, want)
	}
}

func TestSignOpenRoundTrip(t *testing.T) {
	s, err := NewSigner("witness.example.com/w1", fixedKey(), fixedClock)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := note.Sign(&note.Note{Text: body}, s)
	if err != nil {
		t.Fatal(err)
	}
	_, vkey, err := EncodeKeys("witness.example.com/w1", fixedKey())
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifierFromVkey(vkey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		t.Fatalf("note.Open: %v", err)
	}
	if len(n.Sigs) != 1 || n.Sigs[0].Hash != v.KeyHash() {
		t.Fatalf("verified sigs = %+v", n.Sigs)
	}
	raw := mustSigBytes(t, n.Sigs[0].Base64)
	ts, err := Timestamp(raw[4:])
	if err != nil || ts != 1679315147 {
		t.Fatalf("Timestamp = %d, %v", ts, err)
	}

	golden := filepath.Join("..", "..", "testdata", "cosign", "cosigned-checkpoint.txt")
	if *update {
		if err := os.WriteFile(golden, signed, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("golden vector: %v (run with -update)", err)
	}
	if !bytes.Equal(signed, want) {
		t.Fatalf("cosigned note differs from golden vector:\n%s\nwant:\n%s", signed, want)
	}
}

func mustSigBytes(t *testing.T, b64 string) []byte {
	t.Helper()
	raw, err := decodeStd(b64)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestVerifyRejects(t *testing.T) {
	priv := fixedKey()
	s, _ := NewSigner("w1", priv, fixedClock)
	v, _ := NewVerifier("w1", priv.Public().(ed25519.PublicKey))
	sig, err := s.Sign([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if !v.Verify([]byte(body), sig) {
		t.Fatal("valid cosignature rejected")
	}
	mut := func(f func([]byte) []byte) []byte { return f(bytes.Clone(sig)) }
	cases := map[string]struct{ msg, sig []byte }{
		"other body":      {[]byte(strings.Replace(body, "20852163", "20852164", 1)), sig},
		"timestamp+1":     {[]byte(body), mut(func(b []byte) []byte { b[7]++; return b })},
		"timestamp>=2^63": {[]byte(body), mut(func(b []byte) []byte { binary.BigEndian.PutUint64(b, 1<<63|1679315147); return b })},
		"sig bit flip":    {[]byte(body), mut(func(b []byte) []byte { b[20] ^= 1; return b })},
		"truncated":       {[]byte(body), sig[:len(sig)-1]},
		"extended":        {[]byte(body), append(bytes.Clone(sig), 0)},
		"empty":           {[]byte(body), nil},
		"plain ed25519":   {[]byte(body), ed25519.Sign(priv, []byte(body))},
	}
	for name, c := range cases {
		if v.Verify(c.msg, c.sig) {
			t.Errorf("%s: accepted", name)
		}
	}
	other, _ := NewVerifier("w2", priv.Public().(ed25519.PublicKey))
	if other.KeyHash() == v.KeyHash() {
		t.Error("key ID does not commit to the name")
	}
}

func TestKeyParsingRejects(t *testing.T) {
	skey, vkey, err := EncodeKeys("w1", fixedKey())
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSignerFromSkey(skey, nil)
	if err != nil {
		t.Fatalf("valid skey: %v", err)
	}
	if s.Vkey() != vkey {
		t.Fatalf("Signer.Vkey() = %q, want %q", s.Vkey(), vkey)
	}
	ed, _, _ := note.GenerateKey(nil, "w1")
	_, edVkey, _ := note.GenerateKey(nil, "w1")
	bad := map[string]string{
		"empty":          "",
		"no plus":        "w1",
		"bad hex":        strings.Replace(vkey, "+", "+zz", 1),
		"wrong key id":   "w1+00000000+" + strings.SplitN(vkey, "+", 3)[2],
		"renamed":        "w2" + strings.TrimPrefix(vkey, "w1"),
		"ed25519 vkey":   edVkey,
		"skey as vkey":   strings.TrimPrefix(skey, "PRIVATE+KEY+"),
		"bad base64":     vkey + "!",
		"space in name":  "w 1" + strings.TrimPrefix(vkey, "w1"),
		"plain ed skey ": ed,
	}
	for name, k := range bad {
		if _, err := NewVerifierFromVkey(k); !errors.Is(err, ErrMalformedKey) {
			t.Errorf("%s: NewVerifierFromVkey(%q) err = %v, want ErrMalformedKey", name, k, err)
		}
	}
	if _, err := NewSignerFromSkey(ed, nil); !errors.Is(err, ErrMalformedKey) {
		t.Errorf("note Ed25519 skey accepted as cosigner skey: %v", err)
	}
}

func TestQuorumWithLogSignature(t *testing.T) {
	// A checkpoint signed by the log and cosigned by two of three witnesses.
	logSkey, logVkey, _ := note.GenerateKey(nil, "example.com/log")
	logSigner, _ := note.NewSigner(logSkey)
	logVerifier, _ := note.NewVerifier(logVkey)
	var signers []note.Signer
	var verifiers []note.Verifier
	for _, name := range []string{"w1", "w2", "w3"} {
		skey, vkey, err := GenerateKey(name)
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewSignerFromSkey(skey, nil)
		if err != nil {
			t.Fatal(err)
		}
		v, err := NewVerifierFromVkey(vkey)
		if err != nil {
			t.Fatal(err)
		}
		signers, verifiers = append(signers, s), append(verifiers, v)
	}
	signed, err := note.Sign(&note.Note{Text: body}, logSigner, signers[0], signers[2])
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(signed, note.VerifierList(append([]note.Verifier{logVerifier}, verifiers...)...))
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint32]bool{}
	for _, s := range n.Sigs {
		got[s.Hash] = true
	}
	if !got[logVerifier.KeyHash()] || !got[verifiers[0].KeyHash()] || got[verifiers[1].KeyHash()] || !got[verifiers[2].KeyHash()] {
		t.Fatalf("verified signers = %v", got)
	}
}

func FuzzVkey(f *testing.F) {
	_, vkey, _ := EncodeKeys("w1", fixedKey())
	f.Add(vkey)
	f.Add("a+00000000+BA==")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := NewVerifierFromVkey(s)
		if err != nil {
			return
		}
		// Re-encoding a parsed key gives the same key ID and name.
		if KeyID(v.Name(), v.PublicKey()) != v.KeyHash() {
			t.Fatalf("key ID mismatch for %q", s)
		}
	})
}

func FuzzVerify(f *testing.F) {
	priv := fixedKey()
	s, _ := NewSigner("w1", priv, fixedClock)
	sig, _ := s.Sign([]byte(body))
	f.Add([]byte(body), sig)
	f.Fuzz(func(t *testing.T, msg, sig []byte) {
		v, _ := NewVerifier("w1", priv.Public().(ed25519.PublicKey))
		ok := v.Verify(msg, sig)
		if ok && (len(sig) != SignatureSize) {
			t.Fatalf("accepted %d-byte cosignature", len(sig))
		}
	})
}

func decodeStd(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }
