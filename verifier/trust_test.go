package verifier

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier/cosign"
)

func trustFileOf(d *testDir) TrustFile {
	return TrustFile{Origin: testOrigin, LogKey: d.logVkey, VRFKey: base64.StdEncoding.EncodeToString(d.vrfKey.Public().Bytes()),
		ResetKey: base64.StdEncoding.EncodeToString(d.resetPriv.Public().(ed25519.PublicKey)), Witnesses: d.wvkeys, WitnessQuorum: 2, MaxCheckpointAge: "1h"}
}

func TestParseTrust(t *testing.T) {
	d := newTestDir(t)
	f := trustFileOf(d)
	data, _ := json.Marshal(f)
	p := filepath.Join(t.TempDir(), "trust.json")
	os.WriteFile(p, data, 0o644)
	tr, err := LoadTrust(p)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Origin != testOrigin || tr.Quorum != 2 || len(tr.Witnesses) != 2 || tr.MaxAge != time.Hour || !tr.VRF.Equal(d.vrfKey.Public()) {
		t.Fatalf("%+v", tr)
	}
	f2 := f
	f2.MaxCheckpointAge = ""
	if tr, err := f2.Trust(); err != nil || tr.MaxAge != DefaultMaxCheckpointAge {
		t.Fatalf("default max age: %v", err)
	}
	f2.ResetWindow = ""
	if tr, err := f2.Trust(); err != nil || tr.ResetWindow != DefaultResetWindow || tr.MinResetWindow() != 72*time.Hour {
		t.Fatalf("default reset window: %v", err)
	}
	f2.ResetWindow = "5s"
	if tr, err := f2.Trust(); err != nil || tr.ResetWindow != 5*time.Second {
		t.Fatalf("reset window 5s: %v", err)
	}
	_, otherVkey, _ := klog.GenerateKey(rand.Reader, "other.test")
	for name, mut := range map[string]func(f *TrustFile){
		"empty origin":      func(f *TrustFile) { f.Origin = "" },
		"log key name":      func(f *TrustFile) { f.LogKey = otherVkey },
		"log key garbage":   func(f *TrustFile) { f.LogKey = "x" },
		"vrf not base64":    func(f *TrustFile) { f.VRFKey = "!" },
		"vrf small order":   func(f *TrustFile) { f.VRFKey = base64.StdEncoding.EncodeToString(make([]byte, 32)) },
		"reset key size":    func(f *TrustFile) { f.ResetKey = base64.StdEncoding.EncodeToString(make([]byte, 31)) },
		"witness garbage":   func(f *TrustFile) { f.Witnesses = []string{"nope"} },
		"witness twice":     func(f *TrustFile) { f.Witnesses = []string{f.Witnesses[0], f.Witnesses[0]} },
		"quorum too high":   func(f *TrustFile) { f.WitnessQuorum = 3 },
		"quorum negative":   func(f *TrustFile) { f.WitnessQuorum = -1 },
		"max age negative":  func(f *TrustFile) { f.MaxCheckpointAge = "-1m" },
		"max age not a dur": func(f *TrustFile) { f.MaxCheckpointAge = "soon" },
		"reset window zero": func(f *TrustFile) { f.ResetWindow = "0s" },
		"reset window frac": func(f *TrustFile) { f.ResetWindow = "1500ms" },
		"reset window junk": func(f *TrustFile) { f.ResetWindow = "3 days" },
	} {
		g := f
		g.Witnesses = append([]string(nil), f.Witnesses...)
		mut(&g)
		if _, err := g.Trust(); !errors.Is(err, ErrTrustConfig) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	if _, err := ParseTrust([]byte("{")); !errors.Is(err, ErrTrustConfig) {
		t.Fatal(err)
	}
	if _, err := LoadTrust(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, ErrTrustConfig) {
		t.Fatal(err)
	}
}

func TestOpenCheckpoint(t *testing.T) {
	d := newTestDir(t)
	d.publish(d.create("alice"))
	cp, err := d.trust.OpenCheckpoint(d.cp)
	if err != nil || len(cp.Cosigners) != 2 || cp.Size != 2 {
		t.Fatalf("%v %+v", err, cp)
	}
	n, _ := note.Open(d.cp, note.VerifierList(d.trust.Log))
	// The same witness twice counts once.
	dup, _ := note.Sign(&note.Note{Text: n.Text}, d.logSigner, d.witnesses[0])
	last := dup[bytes.LastIndexByte(dup[:len(dup)-1], '\n')+1:]
	twice := append(append([]byte(nil), dup...), last...)
	if _, err := d.trust.OpenCheckpoint(twice); !errors.Is(err, ErrWitnessQuorum) {
		t.Fatalf("duplicate cosignature counted twice: %v", err)
	}
	// An unknown witness does not count.
	_, upriv, _ := ed25519.GenerateKey(rand.Reader)
	unknown, _ := cosign.NewSigner("unknown.test", upriv, nil)
	u, _ := note.Sign(&note.Note{Text: n.Text}, d.logSigner, d.witnesses[0], unknown)
	if _, err := d.trust.OpenCheckpoint(u); !errors.Is(err, ErrWitnessQuorum) {
		t.Fatalf("unknown witness counted: %v", err)
	}
	// Witnesses only, no log signature.
	w, _ := note.Sign(&note.Note{Text: n.Text}, d.witnesses[0], d.witnesses[1])
	if _, err := d.trust.OpenCheckpoint(w); !errors.Is(err, ErrCheckpointSignature) {
		t.Fatalf("no log signature: %v", err)
	}
	// Another origin line signed by the log key.
	c := klog.Checkpoint{Origin: "evil.test", Size: 1}
	text, _ := c.Marshal()
	o, _ := note.Sign(&note.Note{Text: string(text)}, d.logSigner, d.witnesses[0], d.witnesses[1])
	if _, err := d.trust.OpenCheckpoint(o); !errors.Is(err, ErrCheckpointSignature) {
		t.Fatalf("origin: %v", err)
	}
	// Quorum 0 accepts the log signature alone.
	f := trustFileOf(d)
	f.WitnessQuorum = 0
	t0, _ := f.Trust()
	l, _ := note.Sign(&note.Note{Text: n.Text}, d.logSigner)
	if _, err := t0.OpenCheckpoint(l); err != nil {
		t.Fatal(err)
	}
}

// TestEd25519NoteVerifier: the log key's verifier from TrustFile.Trust
// checks signatures with devices.VerifyEd25519 and accepts exactly what
// note's own Ed25519 verifier accepts, valid and altered signatures alike;
// a key of another algorithm keeps note's verifier.
func TestEd25519NoteVerifier(t *testing.T) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "log.test")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	fast := ed25519NoteVerifier(plain, vkey)
	if _, ok := fast.(*fastNoteVerifier); !ok {
		t.Fatalf("verifier of an Ed25519 key is %T, want *fastNoteVerifier", fast)
	}
	if fast.Name() != plain.Name() || fast.KeyHash() != plain.KeyHash() {
		t.Fatalf("name/hash %q %08x, want %q %08x", fast.Name(), fast.KeyHash(), plain.Name(), plain.KeyHash())
	}
	msg := []byte("log.test\n7\nAAAA\n")
	sig, err := signer.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	if !fast.Verify(msg, sig) {
		t.Fatal("valid signature rejected")
	}
	for i := range len(sig) * 8 {
		bad := bytes.Clone(sig)
		bad[i/8] ^= 1 << (i % 8)
		if got, want := fast.Verify(msg, bad), plain.Verify(msg, bad); got != want {
			t.Fatalf("bit %d flipped: fast %v, note %v", i, got, want)
		}
	}
	if fast.Verify(append(bytes.Clone(msg), 'x'), sig) {
		t.Fatal("signature of another message accepted")
	}
	// A cosigner key (algorithm 4) is not a plain Ed25519 note key.
	if v := ed25519NoteVerifier(plain, "w.test+01020304+"+base64.StdEncoding.EncodeToString(append([]byte{4}, make([]byte, 32)...))); v != plain {
		t.Fatalf("non-Ed25519 key: got %T, want note's verifier", v)
	}
}
