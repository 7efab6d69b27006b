package log

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// nonCanonical returns encodings of the bytes of canonical s that lenient
// decoders accept but DecodeBase64 must refuse: with a line break inside,
// with non-zero padding bits, and without padding.
func nonCanonical(s string) []string {
	out := []string{s[:len(s)/2] + "\n" + s[len(s)/2:], s[:len(s)/2] + "\r\n" + s[len(s)/2:]}
	if t := strings.TrimRight(s, "="); t != s {
		out = append(out, t) // padding dropped
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
		last := strings.IndexByte(alphabet, t[len(t)-1])
		if last+1 < len(alphabet) {
			out = append(out, t[:len(t)-1]+string(alphabet[last+1])+s[len(t):]) // padding bits set
		}
	}
	return out
}

func TestDecodeBase64Canonical(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 32, 64, 68} {
		b := make([]byte, n)
		rand.Read(b)
		s := base64.StdEncoding.EncodeToString(b)
		got, err := DecodeBase64(s)
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("canonical %q: %x %v", s, got, err)
		}
		for _, bad := range nonCanonical(s) {
			if _, err := DecodeBase64(bad); !errors.Is(err, ErrNonCanonicalBase64) {
				t.Errorf("%d bytes: non-canonical %q accepted (%v)", n, bad, err)
			}
			if lenient, err := base64.StdEncoding.DecodeString(bad); err == nil && !bytes.Equal(lenient, b) && !strings.HasSuffix(s, "=") {
				t.Errorf("test vector %q does not decode to the same bytes", bad)
			}
		}
	}
	for _, bad := range []string{"!!!!", "AA-_", " AAA", "AAAA ", "A==="} {
		if _, err := DecodeBase64(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzDecodeBase64(f *testing.F) {
	for _, s := range []string{"", "AA==", "AAA=", "AAAA", "AB==", "AA\n==", "AA", "+/+/", "-_-_"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := DecodeBase64(s)
		if err != nil {
			return
		}
		if base64.StdEncoding.EncodeToString(b) != s {
			t.Fatalf("%q accepted but is not canonical", s)
		}
	})
}

// TestCheckpointSignatureCanonical: a checkpoint whose signature line is a
// non-canonical encoding of the valid signature is refused, although
// note.Open alone accepts it; and a signer key with a non-canonical key is
// refused by NewNoteVerifier.
func TestCheckpointSignatureCanonical(t *testing.T) {
	skey, vkey, err := GenerateKey(rand.Reader, "example.test/log")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewNoteVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	c := Checkpoint{Origin: "example.test/log", Size: 3}
	msg, err := SignCheckpoint(c, signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := OpenCheckpoint(msg, v, c.Origin); err != nil {
		t.Fatal(err)
	}
	i := bytes.LastIndex(msg, []byte(" "))
	sig := strings.TrimSuffix(string(msg[i+1:]), "\n")
	variants := nonCanonical(sig)
	tested := 0
	for _, bad := range variants {
		if strings.ContainsAny(bad, "\r\n") {
			continue // a line break makes it another note line, not another encoding
		}
		m := append(bytes.Clone(msg[:i+1]), bad+"\n"...)
		if _, err := note.Open(m, note.VerifierList(v)); err != nil {
			continue // not even the lenient decoder takes it
		}
		tested++
		if _, _, err := OpenCheckpoint(m, v, c.Origin); !errors.Is(err, ErrNonCanonicalBase64) {
			t.Errorf("non-canonical signature %q: %v", bad, err)
		}
	}
	if tested == 0 {
		t.Fatal("no non-canonical signature encoding that note.Open accepts: the test checks nothing")
	}
	parts := strings.SplitN(vkey, "+", 3)
	for _, bad := range nonCanonical(parts[2]) {
		if _, err := NewNoteVerifier(parts[0] + "+" + parts[1] + "+" + bad); err == nil {
			t.Errorf("verifier key with non-canonical key %q accepted", bad)
		}
	}
}
