package verifier

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/keyline/keyline/verifier/vrf"
)

// fuzzTrustFile is a valid trust file built from fixed seeds, so that the
// seed corpus is the same on every run.
func fuzzTrustFile(tb testing.TB) TrustFile {
	seed := func(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }
	const origin = "fuzz.example/dir"
	logPub := ed25519.NewKeyFromSeed(seed("log")).Public().(ed25519.PublicKey)
	logVkey, err := note.NewEd25519VerifierKey(origin, logPub)
	if err != nil {
		tb.Fatal(err)
	}
	vk, err := vrf.NewKeyFromSeed(seed("vrf"))
	if err != nil {
		tb.Fatal(err)
	}
	resetPub := ed25519.NewKeyFromSeed(seed("reset")).Public().(ed25519.PublicKey)
	return TrustFile{
		Origin: origin, LogKey: logVkey,
		VRFKey:   base64.StdEncoding.EncodeToString(vk.Public().Bytes()),
		ResetKey: base64.StdEncoding.EncodeToString(resetPub),
		Witnesses: []string{ // cosignature/v1 vkeys (public halves only)
			"w1.example+5a305d21+BMpqrr03+4xM0EWJcAepLi0F/8il+cyFwFk4GuTqykOd",
			"witness=odd.example+128092ae+BEc4iDYr7ta+zIfDdF3kh//cMjOG/Gci/wINTcxJ4V/P",
		},
		WitnessQuorum: 2, MaxCheckpointAge: "1h",
	}
}

// checkTrust asserts the invariants every Trust that ParseTrust returns
// must hold.
func checkTrust(t *testing.T, tr *Trust) {
	t.Helper()
	if tr.Origin == "" || tr.Log == nil || tr.Log.Name() != tr.Origin {
		t.Fatalf("origin %q with log key %v", tr.Origin, tr.Log)
	}
	if tr.VRF == nil || len(tr.ResetKey) != ed25519.PublicKeySize {
		t.Fatalf("VRF key %v, reset key of %d bytes", tr.VRF, len(tr.ResetKey))
	}
	if tr.Quorum < 0 || tr.Quorum > len(tr.Witnesses) {
		t.Fatalf("quorum %d with %d witnesses", tr.Quorum, len(tr.Witnesses))
	}
	if tr.MaxAge <= 0 {
		t.Fatalf("max age %v", tr.MaxAge)
	}
	seen := map[uint32]bool{tr.Log.KeyHash(): true}
	for _, w := range tr.Witnesses {
		if seen[w.KeyHash()] {
			t.Fatalf("key hash %08x twice", w.KeyHash())
		}
		seen[w.KeyHash()] = true
	}
}

func sameTrust(a, b *Trust) bool {
	if a.Origin != b.Origin || a.Log.Name() != b.Log.Name() || a.Log.KeyHash() != b.Log.KeyHash() ||
		!a.VRF.Equal(b.VRF) || !a.ResetKey.Equal(b.ResetKey) || a.Quorum != b.Quorum || a.MaxAge != b.MaxAge ||
		len(a.Witnesses) != len(b.Witnesses) {
		return false
	}
	for i := range a.Witnesses {
		x, y := a.Witnesses[i], b.Witnesses[i]
		if x.Name() != y.Name() || x.KeyHash() != y.KeyHash() || !x.PublicKey().Equal(y.PublicKey()) {
			return false
		}
	}
	return true
}

// FuzzParseTrust: ParseTrust never panics and fails only with
// ErrTrustConfig; what it accepts satisfies the Trust invariants, and the
// trust file re-marshalled from the parsed JSON parses to the same Trust
// (and re-marshals to the same bytes).
func FuzzParseTrust(f *testing.F) {
	good := fuzzTrustFile(f)
	add := func(tf TrustFile) {
		b, err := json.Marshal(tf)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	if _, err := good.Trust(); err != nil {
		f.Fatalf("the seed trust file is not valid: %v", err)
	}
	add(good)
	for _, mut := range []func(*TrustFile){
		func(tf *TrustFile) { tf.Witnesses, tf.WitnessQuorum = nil, 0 },
		func(tf *TrustFile) { tf.MaxCheckpointAge = "" },
		func(tf *TrustFile) { tf.MaxCheckpointAge = "-5m" },
		func(tf *TrustFile) { tf.WitnessQuorum = 3 },
		func(tf *TrustFile) { tf.Witnesses = []string{tf.Witnesses[0], tf.Witnesses[0]}; tf.WitnessQuorum = 1 },
		func(tf *TrustFile) { tf.Origin = "other.example/dir" },
		func(tf *TrustFile) { tf.VRFKey = base64.StdEncoding.EncodeToString(make([]byte, 32)) },
		func(tf *TrustFile) { tf.ResetKey = tf.ResetKey[:40] },
		func(tf *TrustFile) { tf.ResetWindow = "10s" },
		func(tf *TrustFile) { tf.ResetWindow = "1500ms" },
	} {
		tf := good
		tf.Witnesses = append([]string(nil), good.Witnesses...)
		mut(&tf)
		add(tf)
	}
	for _, s := range []string{`{}`, `null`, `[]`, `{"origin": 1}`, `{"witness_quorum": 1e99}`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := ParseTrust(data)
		if err != nil {
			if !errors.Is(err, ErrTrustConfig) {
				t.Fatalf("error %v does not wrap ErrTrustConfig", err)
			}
			if tr != nil {
				t.Fatalf("error %v with a Trust", err)
			}
			return
		}
		checkTrust(t, tr)
		var tf TrustFile
		if err := json.Unmarshal(data, &tf); err != nil {
			t.Fatalf("ParseTrust accepted JSON that does not unmarshal: %v", err)
		}
		enc, err := json.Marshal(&tf)
		if err != nil {
			t.Fatal(err)
		}
		tr2, err := ParseTrust(enc)
		if err != nil {
			t.Fatalf("re-marshalled trust file %s does not parse: %v", enc, err)
		}
		if !sameTrust(tr, tr2) {
			t.Fatalf("re-parsed trust differs:\n%+v\n%+v", tr, tr2)
		}
		var tf2 TrustFile
		if err := json.Unmarshal(enc, &tf2); err != nil {
			t.Fatal(err)
		}
		if enc2, _ := json.Marshal(&tf2); !bytes.Equal(enc, enc2) {
			t.Fatalf("marshal is not a fixed point:\n%s\n%s", enc, enc2)
		}
	})
}
