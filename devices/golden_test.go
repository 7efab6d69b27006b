package devices

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/devices golden vectors")

const goldenPath = "../testdata/devices/vectors.json"

type goldenDevice struct {
	Label         string `json:"label"`
	SigningSeed   string `json:"signing_seed"`
	X25519Private string `json:"x25519_private"`
	SigningPublic string `json:"signing_public"`
	X25519Public  string `json:"x25519_public"`
	DeviceID      string `json:"device_id"`
}

type goldenState struct {
	Name     string `json:"name"`
	Encoding string `json:"encoding"`
	Hash     string `json:"hash"`
}

type goldenVectors struct {
	Comment  string `json:"comment"`
	PaperKey struct {
		Secret         string `json:"secret"`
		Words          string `json:"words"`
		IdentitySeed   string `json:"identity_seed"`
		IdentityPublic string `json:"identity_public"`
	} `json:"paper_key"`
	Devices    []goldenDevice `json:"devices"`
	DeviceCert struct {
		Body          string `json:"body"`
		BackSignature string `json:"back_signature"`
		Signature     string `json:"signature"`
		Encoding      string `json:"encoding"`
	} `json:"device_cert"`
	States []goldenState `json:"account_states"`
	Reset  struct {
		ResetKeySeed   string `json:"reset_key_seed"`
		ResetPublic    string `json:"reset_public"`
		NewIKPublic    string `json:"new_identity_public"`
		Encoding       string `json:"encoding"`
		NewStateHash   string `json:"new_state_hash"`
		PrevStateIndex int    `json:"prev_state_index"`
	} `json:"reset_authorization"`
	Pairing struct {
		Encoding    string `json:"encoding"`
		Code        string `json:"code"`
		QR          string `json:"qr"`
		Fingerprint string `json:"fingerprint"`
	} `json:"pairing_request"`
	Safety struct {
		LocalUser  string `json:"local_user"`
		LocalIK    string `json:"local_ik"`
		RemoteUser string `json:"remote_user"`
		RemoteIK   string `json:"remote_ik"`
		Display    string `json:"display"`
		QR         string `json:"qr"`
	} `json:"safety_number"`
	Keystore struct {
		Passphrase string    `json:"passphrase"`
		Params     KDFParams `json:"params"`
		Salt       string    `json:"salt"`
		Nonce      string    `json:"nonce"`
		Contents   string    `json:"contents"`
		File       string    `json:"file"`
	} `json:"keystore"`
}

func hx(b []byte) string { return hex.EncodeToString(b) }

func makeGolden(t *testing.T) *goldenVectors {
	g := new(goldenVectors)
	g.Comment = "Keyline devices golden vectors; see docs/protocol.md. Keys derive from SHA-256(\"keyline test \" || label). Regenerate: go test ./devices -run TestGolden -update"
	c := newChain(t)
	secret := testSecret("alice")
	g.PaperKey.Secret = hx(secret[:])
	g.PaperKey.Words = secret.PaperKey()
	seed, pub := c.ik.Seed(), c.ik.Public()
	g.PaperKey.IdentitySeed, g.PaperKey.IdentityPublic = hx(seed[:]), hx(pub[:])
	for _, l := range []string{"alice phone", "alice laptop", "alice tablet"} {
		dk := testDevice(t, l)
		s, x, sp, xp, id := dk.SigningSeed(), dk.X25519Private(), dk.SigningPublic(), dk.X25519Public(), dk.ID()
		g.Devices = append(g.Devices, goldenDevice{l, hx(s[:]), hx(x[:]), hx(sp[:]), hx(xp[:]), hx(id[:])})
	}
	cert := c.v1.Devices[0]
	body, _ := cert.body()
	enc, _ := cert.MarshalBinary()
	g.DeviceCert.Body, g.DeviceCert.BackSignature, g.DeviceCert.Signature, g.DeviceCert.Encoding = hx(body), hx(cert.BackSignature[:]), hx(cert.Signature[:]), hx(enc)
	for i, s := range []*AccountState{c.v1, c.v2, c.v3} {
		b, _ := s.MarshalBinary()
		h, _ := s.Hash()
		g.States = append(g.States, goldenState{[]string{"v1 create {phone}", "v2 add laptop", "v3 revoke phone (lost)"}[i], hx(b), hx(h[:])})
	}
	newIK := testIK("alice new")
	at := t0.Add(10 * time.Hour)
	ns, err := NewResetState(c.v3, newIK, mustCert(t, testDevice(t, "alice new phone"), "new phone", newIK.Public(), at), at)
	if err != nil {
		t.Fatal(err)
	}
	rk := testResetKey()
	ra, err := SignReset(rk, c.v3, ns, ResetLostAllKeys, at)
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := ra.MarshalBinary()
	nh, _ := ns.Hash()
	rs := seed32("directory reset key")
	np := newIK.Public()
	g.Reset.ResetKeySeed, g.Reset.ResetPublic, g.Reset.NewIKPublic = hx(rs[:]), hx(rk.Public().(ed25519.PublicKey)), hx(np[:])
	g.Reset.Encoding, g.Reset.NewStateHash, g.Reset.PrevStateIndex = hx(rb), hx(nh[:]), 2
	req, err := NewPairingRequest(c.tablet, "alice@example.org", c.ik.Public(), "Alice's tablet", t0.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := req.MarshalBinary()
	g.Pairing.Encoding = hx(pb)
	g.Pairing.Code, _ = req.Code()
	g.Pairing.QR, _ = req.QR()
	g.Pairing.Fingerprint, _ = req.Fingerprint()
	bob := testIK("bob")
	sn, _ := NewSafetyNumber("alice@example.org", c.ik.Public(), "bob", bob.Public())
	bp := bob.Public()
	g.Safety.LocalUser, g.Safety.LocalIK, g.Safety.RemoteUser, g.Safety.RemoteIK = "alice@example.org", hx(pub[:]), "bob", hx(bp[:])
	g.Safety.Display, g.Safety.QR = sn.String(), sn.QR()
	ks := testKeystore(t)
	salt, nonce := bytes.Repeat([]byte{0x5a}, keystoreSaltLen), bytes.Repeat([]byte{0xa5}, 24)
	file, err := encryptKeystore(ks, []byte("correct horse battery staple"), testKDF, bytes.NewReader(append(bytes.Clone(salt), nonce...)))
	if err != nil {
		t.Fatal(err)
	}
	pt, _ := ks.encodeContents()
	g.Keystore.Passphrase, g.Keystore.Params = "correct horse battery staple", testKDF
	g.Keystore.Salt, g.Keystore.Nonce, g.Keystore.Contents, g.Keystore.File = hx(salt), hx(nonce), hx(pt), hx(file)
	return g
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGolden regenerates every vector from fixed seeds and requires the
// checked-in file to match byte for byte; then it decodes and verifies the
// checked-in encodings independently of the generator.
func TestGolden(t *testing.T) {
	g := makeGolden(t)
	out, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, '\n')
	if *update {
		if err := os.MkdirAll(filepath.Dir(goldenPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenPath, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(out, want) {
		t.Fatalf("generated vectors differ from %s (encoding changed? run with -update only if intended)", goldenPath)
	}
	var f goldenVectors
	if err := json.Unmarshal(want, &f); err != nil {
		t.Fatal(err)
	}

	secret, err := ParsePaperKey(f.PaperKey.Words)
	if err != nil || hx(secret[:]) != f.PaperKey.Secret {
		t.Fatalf("paper key: %x %v", secret, err)
	}
	ikPub := DeriveIdentityKey(secret).Public()
	if hx(ikPub[:]) != f.PaperKey.IdentityPublic {
		t.Fatal("identity public key")
	}
	cert, err := ParseDeviceCert(unhex(t, f.DeviceCert.Encoding))
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyDeviceCert(ikPub, cert); err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(ikPub[:], signedMessage("keyline device-cert v1", unhex(t, f.DeviceCert.Body)), unhex(t, f.DeviceCert.Signature)) {
		t.Fatal("cert signature is not over context || 0x00 || body")
	}
	var states []*AccountState
	for _, gs := range f.States {
		b := unhex(t, gs.Encoding)
		s, err := ParseAccountState(b)
		if err != nil {
			t.Fatal(err)
		}
		if h := domainHash("keyline account-state hash v1", b); hx(h[:]) != gs.Hash {
			t.Fatalf("%s: hash", gs.Name)
		}
		if len(states) == 0 {
			err = VerifyCreate(s)
		} else {
			err = VerifyTransition(states[len(states)-1], s)
		}
		if err != nil {
			t.Fatalf("%s: %v", gs.Name, err)
		}
		states = append(states, s)
	}
	ra, err := ParseResetAuthorization(unhex(t, f.Reset.Encoding))
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyReset(states[f.Reset.PrevStateIndex], ra, unhex(t, f.Reset.ResetPublic)); err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{f.Pairing.Code, f.Pairing.QR} {
		req, err := ParsePairingCode(in)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := req.MarshalBinary()
		fp, _ := req.Fingerprint()
		if hx(b) != f.Pairing.Encoding || fp != f.Pairing.Fingerprint {
			t.Fatal("pairing request")
		}
	}
	ks, err := DecryptKeystore(unhex(t, f.Keystore.File), []byte(f.Keystore.Passphrase))
	if err != nil {
		t.Fatal(err)
	}
	pt, _ := ks.encodeContents()
	if hx(pt) != f.Keystore.Contents {
		t.Fatal("keystore contents")
	}
}
