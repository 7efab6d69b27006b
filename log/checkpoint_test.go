package log

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// fixedRand is a deterministic io.Reader for golden keys.
type fixedRand struct{ seed string }

func (r fixedRand) Read(p []byte) (int, error) {
	h := sha256.Sum256([]byte(r.seed))
	for i := range p {
		p[i] = h[i%32]
	}
	return len(p), nil
}

const testOrigin = "keyline.example/log"

func testKeys(t testing.TB, seed string) (note.Signer, note.Verifier, string, string) {
	t.Helper()
	skey, vkey, err := GenerateKey(fixedRand{seed}, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v, skey, vkey
}

func TestCheckpointGolden(t *testing.T) {
	signer, verifier, skey, vkey := testKeys(t, "keyline golden log key")
	c := Checkpoint{Origin: testOrigin, Size: 1234567}
	copy(c.Hash[:], rfc6962.DefaultHasher.HashLeaf([]byte("golden")))
	msg, err := SignCheckpoint(c, signer)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"checkpoint.note": msg, "checkpoint.vkey": []byte(vkey + "\n"), "checkpoint.skey": []byte(skey + "\n")}
	if *update {
		for name, b := range files {
			if err := os.WriteFile(goldenPath(name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, want := range files {
		got, err := os.ReadFile(goldenPath(name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from golden:\n%s\nwant\n%s", name, want, got)
		}
	}
	golden, _ := os.ReadFile(goldenPath("checkpoint.note"))
	gv, _ := os.ReadFile(goldenPath("checkpoint.vkey"))
	v, err := note.NewVerifier(strings.TrimSpace(string(gv)))
	if err != nil {
		t.Fatal(err)
	}
	got, n, err := OpenCheckpoint(golden, v, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	if got.Size != 1234567 || got.Hash != c.Hash || len(n.Sigs) != 1 {
		t.Errorf("golden checkpoint opened as %+v", got)
	}
	wantText := testOrigin + "\n1234567\n" + "" // body prefix, independent of Marshal
	if !strings.HasPrefix(n.Text, wantText) || strings.Count(n.Text, "\n") != 3 {
		t.Errorf("golden text %q", n.Text)
	}
	_ = verifier
}

func TestParseCheckpointRejects(t *testing.T) {
	root := "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
	bad := map[string]string{
		"empty":              "",
		"no final newline":   "o\n1\n" + root,
		"two lines":          "o\n1\n",
		"empty origin":       "\n1\n" + root + "\n",
		"leading zero":       "o\n01\n" + root + "\n",
		"plus sign":          "o\n+1\n" + root + "\n",
		"negative":           "o\n-1\n" + root + "\n",
		"size overflow":      "o\n18446744073709551616\n" + root + "\n",
		"hex size":           "o\n0x1\n" + root + "\n",
		"short hash":         "o\n1\nAAAA\n",
		"unpadded hash":      "o\n1\n" + strings.TrimRight(root, "=") + "\n",
		"url base64":         "o\n1\n" + strings.ReplaceAll(root, "+", "-") + "\n",
		"non-canonical b64":  "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV=\n",
		"empty extension":    "o\n1\n" + root + "\n\n",
		"control in origin":  "o\x01\n1\n" + root + "\n",
		"tab in extension":   "o\n1\n" + root + "\na\tb\n",
		"invalid utf8":       "o\xff\n1\n" + root + "\n",
		"too many ext":       "o\n1\n" + root + "\n" + strings.Repeat("x\n", MaxCheckpointExtensions+1),
		"too long":           "o\n1\n" + root + "\n" + strings.Repeat("x", MaxCheckpointSize) + "\n",
		"crlf":               "o\r\n1\n" + root + "\n",
		"space around size":  "o\n 1\n" + root + "\n",
		"hash with trailing": "o\n1\n" + root + " \n",
	}
	for name, s := range bad {
		if _, err := ParseCheckpoint([]byte(s)); !errors.Is(err, ErrMalformedCheckpoint) {
			t.Errorf("%s: ParseCheckpoint = %v, want ErrMalformedCheckpoint", name, err)
		}
	}
	good := "o\n0\n" + root + "\nextension one\nx\n"
	c, err := ParseCheckpoint([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.Size != 0 || c.Hash != sha256.Sum256(nil) || len(c.Extensions) != 2 {
		t.Errorf("parsed %+v", c)
	}
	if b, _ := c.Marshal(); string(b) != good {
		t.Errorf("round trip %q", b)
	}
}

func TestOpenCheckpoint(t *testing.T) {
	signer, verifier, _, _ := testKeys(t, "log")
	_, other, _, _ := testKeys(t, "other log key")
	wskey, _, _ := note.GenerateKey(fixedRand{"witness"}, "witness.example/w1")
	witness, _ := note.NewSigner(wskey)
	c := Checkpoint{Origin: testOrigin, Size: 5, Hash: sha256.Sum256([]byte("x"))}
	text, _ := c.Marshal()
	cosigned, err := note.Sign(&note.Note{Text: string(text)}, signer, witness)
	if err != nil {
		t.Fatal(err)
	}
	got, n, err := OpenCheckpoint(cosigned, verifier, testOrigin)
	if err != nil {
		t.Fatalf("cosigned checkpoint: %v", err)
	}
	if got.Size != 5 || len(n.UnverifiedSigs) != 1 || n.UnverifiedSigs[0].Name != "witness.example/w1" {
		t.Errorf("cosigned checkpoint opened as %+v, %+v", got, n)
	}
	if _, _, err := OpenCheckpoint(cosigned, other, testOrigin); err == nil {
		t.Error("opened with a different key of the same name")
	}
	if _, _, err := OpenCheckpoint(cosigned, verifier, "other.example/log"); err == nil {
		t.Error("opened with the wrong origin")
	}
	onlyWitness, _ := note.Sign(&note.Note{Text: string(text)}, witness)
	if _, _, err := OpenCheckpoint(onlyWitness, verifier, testOrigin); err == nil {
		t.Error("opened a note signed only by a witness")
	}
	tampered := bytes.Replace(cosigned, []byte("\n5\n"), []byte("\n6\n"), 1)
	if _, _, err := OpenCheckpoint(tampered, verifier, testOrigin); err == nil {
		t.Error("opened a tampered note")
	}
	// A note for another origin signed by a key named like ours is rejected.
	wrong := Checkpoint{Origin: "evil", Size: 1}
	wt, _ := wrong.Marshal()
	msg, _ := note.Sign(&note.Note{Text: string(wt)}, signer)
	if _, _, err := OpenCheckpoint(msg, verifier, testOrigin); !errors.Is(err, ErrMalformedCheckpoint) {
		t.Errorf("origin mismatch: %v", err)
	}
	if _, err := SignCheckpoint(wrong, signer); err == nil {
		t.Error("SignCheckpoint signed another origin")
	}
	if _, _, err := OpenCheckpoint(make([]byte, MaxSignedCheckpointSize+1), verifier, testOrigin); !errors.Is(err, ErrMalformedCheckpoint) {
		t.Errorf("oversized note: %v", err)
	}
}

func TestEntryHashIsRFC6962LeafHash(t *testing.T) {
	for _, l := range [][]byte{nil, {1}, bytes.Repeat([]byte{7}, 1000)} {
		h := EntryHash(l)
		if !bytes.Equal(h[:], rfc6962.DefaultHasher.HashLeaf(l)) {
			t.Errorf("EntryHash(%x) differs from rfc6962 HashLeaf", l)
		}
	}
}

func FuzzParseCheckpoint(f *testing.F) {
	f.Add([]byte("keyline.example/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"))
	f.Add([]byte("o\n18446744073709551615\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next\n— ünïcode\n"))
	f.Add([]byte("o\n01\nAAAA\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCheckpoint(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedCheckpoint) {
				t.Fatalf("error %v does not wrap ErrMalformedCheckpoint", err)
			}
			return
		}
		re, err := c.Marshal()
		if err != nil {
			t.Fatalf("Marshal of parsed checkpoint: %v", err)
		}
		if !bytes.Equal(re, b) {
			t.Fatalf("round trip %q -> %q", b, re)
		}
	})
}

func FuzzOpenCheckpoint(f *testing.F) {
	signer, verifier, _, _ := testKeys(f, "fuzz")
	c := Checkpoint{Origin: testOrigin, Size: 3, Extensions: []string{"ext"}}
	msg, _ := SignCheckpoint(c, signer)
	f.Add(msg)
	f.Add([]byte("keyline.example/log\n1\nAAAA\n\n— keyline.example/log AAAAAAAA\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, n, err := OpenCheckpoint(b, verifier, testOrigin)
		if err != nil {
			return
		}
		text, err := c.Marshal()
		if err != nil || string(text) != n.Text || c.Origin != testOrigin {
			t.Fatalf("opened checkpoint does not re-encode to its note text: %v", err)
		}
	})
}
