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
		Secret     string `json:"secret"`
		Words      string `json:"words"`
		RootPublic string `json:"root_public"`
	} `json:"paper_key"`
	Devices        []goldenDevice `json:"devices"`
	SigningKeyCert struct {
		Generation1Seed string `json:"generation1_seed"`
		Generation1     string `json:"generation1"`
		Generation2Seed string `json:"generation2_seed"`
		Generation2     string `json:"generation2"`
	} `json:"signing_key_certs"`
	Handover struct {
		Comment   string `json:"comment"`
		EphemSeed string `json:"hpke_ephemeral_seed"`
		Recipient string `json:"recipient_device"`
		Encoding  string `json:"encoding"`
		Code      string `json:"code"`
		StateIdx  int    `json:"state_index"`
	} `json:"signing_key_handover"`
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
		NewIKPublic    string `json:"new_root_public"`
		WindowSeconds  int64  `json:"window_seconds"`
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
	pub := c.rk.Public()
	g.PaperKey.RootPublic = hx(pub[:])
	for _, l := range []string{"alice phone", "alice laptop", "alice tablet"} {
		dk := testDevice(t, l)
		s, x, sp, xp, id := dk.SigningSeed(), dk.X25519Private(), dk.SigningPublic(), dk.X25519Public(), dk.ID()
		g.Devices = append(g.Devices, goldenDevice{l, hx(s[:]), hx(x[:]), hx(sp[:]), hx(xp[:]), hx(id[:])})
	}
	cert := c.v1.Devices[0]
	body, _ := cert.body()
	enc, _ := cert.MarshalBinary()
	g.DeviceCert.Body, g.DeviceCert.BackSignature, g.DeviceCert.Signature, g.DeviceCert.Encoding = hx(body), hx(cert.BackSignature[:]), hx(cert.Signature[:]), hx(enc)
	ask2 := testASK(t, c.rk, "alice@example.org", 2, "alice 2")
	v4, err := AddDevice(c.v3, c.ask, mustCert(t, c.tablet, "tablet", pub, t0.Add(3*time.Hour)), t0.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	v5, err := Rotate(v4, ask2, Rotation{Keep: []DeviceID{c.tablet.ID()}, Reason: ReasonLost, Trusted: []DeviceID{c.tablet.ID()}}, t0.Add(4*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	s1, s2 := seed32("alice 1 ask"), seed32("alice 2 ask")
	c1, _ := c.ask.Cert.MarshalBinary()
	c2, _ := ask2.Cert.MarshalBinary()
	g.SigningKeyCert.Generation1Seed, g.SigningKeyCert.Generation1 = hx(s1[:]), hx(c1)
	g.SigningKeyCert.Generation2Seed, g.SigningKeyCert.Generation2 = hx(s2[:]), hx(c2)
	for i, s := range []*AccountState{c.v1, c.v2, c.v3, v4, v5} {
		b, _ := s.MarshalBinary()
		h, _ := s.Hash()
		g.States = append(g.States, goldenState{[]string{"v1 create {phone} (generation 1)", "v2 add laptop", "v3 revoke phone (lost)", "v4 add tablet", "v5 rotate to generation 2 keeping tablet, laptop revoked (lost)"}[i], hx(b), hx(h[:])})
	}
	eph := seed32("handover ephemeral")
	ho, err := SealHandover(ask2, v5.Device(c.tablet.ID()), bytes.NewReader(eph[:]))
	if err != nil {
		t.Fatal(err)
	}
	hb, _ := ho.MarshalBinary()
	g.Handover.Comment = "generation 2 ASK seed sealed to the tablet (alice tablet x25519 key) of state index 4; HPKE base mode DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305; the ephemeral key pair is DeriveKeyPair(hpke_ephemeral_seed)"
	g.Handover.EphemSeed, g.Handover.Recipient, g.Handover.Encoding, g.Handover.StateIdx = hx(eph[:]), c.tablet.ID().String(), hx(hb), 4
	g.Handover.Code, _ = ho.Code()
	at := t0.Add(10 * time.Hour)
	newRK, _, ra := newReset(t, c.v3, "alice new", at)
	rk := testResetKey()
	rb, _ := ra.MarshalBinary()
	nh, _ := ra.NewState.Hash()
	rs := seed32("directory reset key")
	np := newRK.Public()
	g.Reset.ResetKeySeed, g.Reset.ResetPublic, g.Reset.NewIKPublic = hx(rs[:]), hx(rk.Public().(ed25519.PublicKey)), hx(np[:])
	g.Reset.Encoding, g.Reset.NewStateHash, g.Reset.PrevStateIndex, g.Reset.WindowSeconds = hx(rb), hx(nh[:]), 2, int64(testWindow/time.Second)
	req, err := NewPairingRequest(c.tablet, "alice@example.org", c.rk.Public(), "Alice's tablet", t0.Add(3*time.Hour), DefaultPairingTTL)
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := req.MarshalBinary()
	g.Pairing.Encoding = hx(pb)
	g.Pairing.Code, _ = req.Code()
	g.Pairing.QR, _ = req.QR()
	g.Pairing.Fingerprint, _ = req.Fingerprint()
	bob := testRK("bob")
	sn, _ := NewSafetyNumber("alice@example.org", c.rk.Public(), "bob", bob.Public())
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
	ikPub := DeriveRootKey(secret).Public()
	if hx(ikPub[:]) != f.PaperKey.RootPublic {
		t.Fatal("root public key")
	}
	g1, err := ParseSigningKeyCert(unhex(t, f.SigningKeyCert.Generation1))
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifySigningKeyCert(ikPub, "alice@example.org", g1); err != nil {
		t.Fatal(err)
	}
	g1b, _ := g1.body()
	if !ed25519.Verify(ikPub[:], signedMessage("keyline signing-key-cert v1", g1b), g1.Signature[:]) {
		t.Fatal("signing key cert signature is not over context || 0x00 || body")
	}
	cert, err := ParseDeviceCert(unhex(t, f.DeviceCert.Encoding))
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyDeviceCert(ikPub, g1.Key, cert); err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(g1.Key[:], signedMessage("keyline device-cert v2", unhex(t, f.DeviceCert.Body)), unhex(t, f.DeviceCert.Signature)) {
		t.Fatal("cert signature is not over context || 0x00 || body")
	}
	var states []*AccountState
	for _, gs := range f.States {
		b := unhex(t, gs.Encoding)
		s, err := ParseAccountState(b)
		if err != nil {
			t.Fatal(err)
		}
		if h := domainHash("keyline account-state hash v2", b); hx(h[:]) != gs.Hash {
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
	if err := VerifyReset(states[f.Reset.PrevStateIndex], ra, unhex(t, f.Reset.ResetPublic), time.Duration(f.Reset.WindowSeconds)*time.Second); err != nil {
		t.Fatal(err)
	}
	ho, err := ParseHandoverCode(f.Handover.Code)
	if err != nil {
		t.Fatal(err)
	}
	if hb, _ := ho.MarshalBinary(); hx(hb) != f.Handover.Encoding {
		t.Fatal("handover code and encoding differ")
	}
	dev := f.Devices[2]
	tablet, err := DeviceKeyFromSeeds([32]byte(unhex(t, dev.SigningSeed)), [32]byte(unhex(t, dev.X25519Private)))
	if err != nil {
		t.Fatal(err)
	}
	ask, err := OpenHandover(ho, tablet, states[f.Handover.StateIdx])
	if err != nil {
		t.Fatal(err)
	}
	if s := ask.Seed(); hx(s[:]) != f.SigningKeyCert.Generation2Seed {
		t.Fatal("handover does not decrypt to the generation 2 seed")
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
