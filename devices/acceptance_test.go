package devices

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
)

// edAcceptanceVector is one vector of
// testdata/devices/ed25519-acceptance.json: the 15 edge cases of
// Chalkias, Garillot and Nikolaenko, "Taming the many EdDSAs" (2020),
// from github.com/novifinancial/ed25519-speccheck cases.json (Apache-2.0):
// small-order A and R, mixed-order A, cofactored versus cofactorless
// equations, S >= L, non-canonical A and R; valid is the result of the
// rule docs/protocol.md section 1 specifies.
type edAcceptanceVector struct {
	sigCheck
	valid bool
}

// edAcceptanceVectors reads testdata/devices/ed25519-acceptance.json.
func edAcceptanceVectors(t testing.TB) []edAcceptanceVector {
	t.Helper()
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
	var out []edAcceptanceVector
	for _, v := range f.Vectors {
		dec := func(s string) []byte {
			b, err := hex.DecodeString(s)
			if err != nil {
				t.Fatalf("case %d: %v", v.Case, err)
			}
			return b
		}
		c := sigCheck{msg: dec(v.Message), pub: dec(v.PublicKey), sig: dec(v.Signature)}
		if len(c.pub) != ed25519.PublicKeySize || len(c.sig) != ed25519.SignatureSize {
			t.Fatalf("case %d: key %d bytes, signature %d bytes", v.Case, len(c.pub), len(c.sig))
		}
		out = append(out, edAcceptanceVector{c, v.Valid})
	}
	return out
}

// edSpeccheckCases are the checks of edAcceptanceVectors, for the
// differential tests.
func edSpeccheckCases(t testing.TB) []sigCheck {
	var out []sigCheck
	for _, v := range edAcceptanceVectors(t) {
		out = append(out, v.sigCheck)
	}
	return out
}

// TestEd25519Acceptance checks the vectors of
// testdata/devices/ed25519-acceptance.json, signatures on which Ed25519
// verification rules disagree, against the rule docs/protocol.md section 1
// specifies: crypto/ed25519.Verify gives each vector's result, and so do
// VerifyEd25519 and a sigGroup.
func TestEd25519Acceptance(t *testing.T) {
	valid := 0
	vectors := edAcceptanceVectors(t)
	for i, v := range vectors {
		if got := ed25519.Verify(v.pub, v.msg, v.sig); got != v.valid {
			t.Errorf("case %d: crypto/ed25519 says %v, the vector %v", i, got, v.valid)
		}
		if got := VerifyEd25519(v.pub, v.msg, v.sig); got != v.valid {
			t.Errorf("case %d: VerifyEd25519 says %v, the vector %v", i, got, v.valid)
		}
		g := sigGroup{checks: []sigCheck{v.sigCheck}}
		if got := g.verify(); got != v.valid {
			t.Errorf("case %d: sigGroup says %v, the vector %v", i, got, v.valid)
		}
		if v.valid {
			valid++
		}
	}
	if valid == 0 || valid == len(vectors) {
		t.Fatalf("%d of %d vectors valid: the set must hold both", valid, len(vectors))
	}
}
