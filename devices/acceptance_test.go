package devices

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
)

// TestEd25519Acceptance checks the vectors of
// testdata/devices/ed25519-acceptance.json, signatures on which Ed25519
// verification rules disagree, against the rule docs/protocol.md section 1
// specifies: crypto/ed25519.Verify gives each vector's result, and so do
// VerifyEd25519 and a sigGroup.
func TestEd25519Acceptance(t *testing.T) {
	b, err := os.ReadFile("../testdata/devices/ed25519-acceptance.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Vectors []struct {
			Case      int    `json:"case"`
			Message   string `json:"message"`
			PublicKey string `json:"public_key"`
			Signature string `json:"signature"`
			Valid     bool   `json:"valid"`
		}
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Vectors) != 15 {
		t.Fatalf("%d vectors, want 15", len(f.Vectors))
	}
	valid := 0
	for _, v := range f.Vectors {
		dec := func(s string) []byte {
			b, err := hex.DecodeString(s)
			if err != nil {
				t.Fatalf("case %d: %v", v.Case, err)
			}
			return b
		}
		msg, sig := dec(v.Message), dec(v.Signature)
		pub := dec(v.PublicKey)
		if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
			t.Fatalf("case %d: key %d bytes, signature %d bytes", v.Case, len(pub), len(sig))
		}
		if got := ed25519.Verify(pub, msg, sig); got != v.Valid {
			t.Errorf("case %d: crypto/ed25519 says %v, the vector %v", v.Case, got, v.Valid)
		}
		if got := VerifyEd25519(pub, msg, sig); got != v.Valid {
			t.Errorf("case %d: VerifyEd25519 says %v, the vector %v", v.Case, got, v.Valid)
		}
		g := sigGroup{checks: []sigCheck{{pub: pub, msg: msg, sig: sig}}}
		if got := g.verify(); got != v.Valid {
			t.Errorf("case %d: sigGroup says %v, the vector %v", v.Case, got, v.Valid)
		}
		if v.Valid {
			valid++
		}
	}
	if valid == 0 || valid == len(f.Vectors) {
		t.Fatalf("%d of %d vectors valid: the set must hold both", valid, len(f.Vectors))
	}
}
