package devices

import (
	"bytes"
	"crypto/ed25519"
	"strings"
	"testing"
	"time"
)

func TestChainVerifies(t *testing.T) {
	c := newChain(t)
	if err := VerifyCreate(c.v1); err != nil {
		t.Fatal(err)
	}
	if err := VerifyTransition(c.v1, c.v2); err != nil {
		t.Fatal(err)
	}
	if err := VerifyTransition(c.v2, c.v3); err != nil {
		t.Fatal(err)
	}
	if len(c.v3.Devices) != 1 || c.v3.Devices[0].ID != c.laptop.ID() {
		t.Fatalf("v3 devices = %v", c.v3.Devices)
	}
	if rv := c.v3.Revoked(c.phone.ID()); rv == nil || rv.Reason != ReasonLost {
		t.Fatalf("v3 does not record phone as lost: %v", c.v3.Revocations)
	}
	// Transitions cannot be skipped or reordered.
	wantErr(t, VerifyTransition(c.v1, c.v3), ErrVersion, "v3 follows v1")
	wantErr(t, VerifyTransition(c.v2, c.v2), ErrVersion, "")
	wantErr(t, VerifyCreate(c.v2), ErrVersion, "")
}

func TestAccountStateRoundTrip(t *testing.T) {
	c := newChain(t)
	for _, s := range []*AccountState{c.v1, c.v2, c.v3} {
		b, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		p, err := ParseAccountState(b)
		if err != nil {
			t.Fatal(err)
		}
		b2, _ := p.MarshalBinary()
		if !bytes.Equal(b, b2) {
			t.Fatal("round trip differs")
		}
		h1, _ := s.Hash()
		h2, _ := p.Hash()
		if h1 != h2 || h1 != domainHash(ctxAccountHash, b) {
			t.Fatal("hash mismatch")
		}
	}
}

// TestDecodeRejects covers truncation, trailing bytes and format errors for
// every decoder.
func TestDecodeRejects(t *testing.T) {
	c := newChain(t)
	state, _ := c.v3.MarshalBinary()
	cert, _ := c.v3.Devices[0].MarshalBinary()
	_, _, ra := newReset(t, c.v3, "alice new", t0.Add(5*time.Hour))
	reset, _ := ra.MarshalBinary()
	req, err := NewPairingRequest(c.tablet, "alice@example.org", c.rk.Public(), "tablet", t0, DefaultPairingTTL)
	if err != nil {
		t.Fatal(err)
	}
	pr, _ := req.MarshalBinary()
	skc, _ := c.ask.Cert.MarshalBinary()
	h, err := SealHandover(c.ask, c.v3.Devices[0], bytes.NewReader(make([]byte, 32)))
	if err != nil {
		t.Fatal(err)
	}
	ho, _ := h.MarshalBinary()
	decoders := map[string]struct {
		enc   []byte
		parse func([]byte) error
	}{
		"DeviceCert":         {cert, func(b []byte) error { _, err := ParseDeviceCert(b); return err }},
		"AccountState":       {state, func(b []byte) error { _, err := ParseAccountState(b); return err }},
		"ResetAuthorization": {reset, func(b []byte) error { _, err := ParseResetAuthorization(b); return err }},
		"PairingRequest":     {pr, func(b []byte) error { _, err := ParsePairingRequest(b); return err }},
		"SigningKeyCert":     {skc, func(b []byte) error { _, err := ParseSigningKeyCert(b); return err }},
		"SigningKeyHandover": {ho, func(b []byte) error { _, err := ParseSigningKeyHandover(b); return err }},
	}
	for name, d := range decoders {
		t.Run(name, func(t *testing.T) {
			if err := d.parse(d.enc); err != nil {
				t.Fatalf("valid encoding rejected: %v", err)
			}
			for n := 0; n < len(d.enc); n++ {
				wantErr(t, d.parse(d.enc[:n]), ErrMalformed, "")
			}
			wantErr(t, d.parse(append(bytes.Clone(d.enc), 0)), ErrMalformed, "1 trailing bytes")
			bad := bytes.Clone(d.enc)
			bad[0] = 0x07
			wantErr(t, d.parse(bad), ErrMalformed, "unknown format byte 0x07")
		})
	}
}

// encodeRaw encodes s without any checks, to build invalid encodings.
func encodeRaw(s *AccountState) []byte {
	var w builder
	s.appendBody(&w)
	return append(w.b, s.Signature[:]...)
}

func TestAccountStateDecodeRejectsNonCanonical(t *testing.T) {
	c := newChain(t)
	ik := c.rk.Public()
	big := clone(t, c.v2)
	if bytes.Compare(big.Devices[0].ID[:], big.Devices[1].ID[:]) >= 0 {
		t.Fatal("fixture devices not sorted")
	}
	cases := []struct {
		name   string
		mutate func(s *AccountState)
		target error
		substr string
	}{
		{"unsorted devices", func(s *AccountState) { s.Devices[0], s.Devices[1] = s.Devices[1], s.Devices[0] }, ErrMalformed, "not sorted"},
		{"duplicate device", func(s *AccountState) { s.Devices[1] = s.Devices[0] }, ErrDuplicateDevice, "twice"},
		{"no devices", func(s *AccountState) { s.Devices = nil }, ErrMalformed, "device count 0"},
		{"too many devices", func(s *AccountState) {
			s.Devices = nil
			for i := 0; i < MaxDevices+1; i++ {
				s.Devices = append(s.Devices, mustCert(t, testDevice(t, "many "+string(rune('a'+i%26))+string(rune('a'+i/26))), "d", ik, t0))
			}
		}, ErrMalformed, "device count 65"},
		{"unsorted revocations", func(s *AccountState) {
			s.Revocations = []Revocation{{Device: DeviceID{2}, Time: t0}, {Device: DeviceID{1}, Time: t0}}
		}, ErrMalformed, "revocation list not sorted"},
		{"duplicate revocation", func(s *AccountState) {
			s.Revocations = []Revocation{{Device: DeviceID{1}, Time: t0}, {Device: DeviceID{1}, Time: t0}}
		}, ErrDuplicateDevice, ""},
		{"unknown revocation reason", func(s *AccountState) {
			s.Revocations = []Revocation{{Device: DeviceID{1}, Time: t0, Reason: 9}}
		}, ErrMalformed, "unknown reason 9"},
		{"upper-case user id", func(s *AccountState) { s.UserID = "Alice@example.org" }, ErrUserID, "upper-case"},
		{"user id with space", func(s *AccountState) { s.UserID = "alice smith" }, ErrUserID, "disallowed character"},
		{"empty user id", func(s *AccountState) { s.UserID = "" }, ErrUserID, "empty"},
		{"oversized user id", func(s *AccountState) { s.UserID = strings.Repeat("a", 65) }, ErrMalformed, "over the limit of 64"},
		{"oversized device name", func(s *AccountState) { s.Devices[0].Name = strings.Repeat("n", 65) }, ErrMalformed, "over the limit of 64"},
		{"control char in name", func(s *AccountState) { s.Devices[0].Name = "a\nb" }, ErrDeviceName, "control character"},
		{"invalid UTF-8 name", func(s *AccountState) { s.Devices[0].Name = "\xff" }, ErrMalformed, "not valid UTF-8"},
		{"version 0", func(s *AccountState) { s.Version = 0 }, ErrVersion, ""},
		{"time out of range", func(s *AccountState) { s.Timestamp = time.Unix(-1, 0) }, ErrMalformed, "out of range"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := clone(t, big)
			tc.mutate(s)
			_, err := ParseAccountState(encodeRaw(s))
			wantErr(t, err, tc.target, tc.substr)
			_, err = s.MarshalBinary() // encoders refuse what decoders reject
			if err == nil {
				t.Fatal("MarshalBinary accepted an invalid state")
			}
		})
	}
}

func TestNormalizeUserID(t *testing.T) {
	for in, want := range map[string]string{
		"alice":                  "alice",
		"  Alice@Example.ORG \n": "alice@example.org",
		"a.b_c+d-e@f":            "a.b_c+d-e@f",
		strings.Repeat("x", 64):  strings.Repeat("x", 64),
	} {
		got, err := NormalizeUserID(in)
		if err != nil || got != want {
			t.Errorf("NormalizeUserID(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, substr := range map[string]string{
		"":                      "empty",
		"   ":                   "empty",
		strings.Repeat("x", 65): "65 bytes",
		"al ice":                `disallowed character ' '`,
		"alice/x":               `'/'`,
		"ålice":                 `'å'`,
		"alice\x00":             `'\x00'`,
		"a\xffb":                "invalid UTF-8",
	} {
		_, err := NormalizeUserID(in)
		wantErr(t, err, ErrUserID, substr)
	}
}

func TestDeviceCertRejects(t *testing.T) {
	rk := testRK("alice")
	ask := testASK(t, rk, "alice", 1, "alice")
	other := testASK(t, testRK("mallory"), "alice", 1, "mallory")
	otherRK := testRK("mallory")
	dk := testDevice(t, "alice phone")
	good := mustCert(t, dk, "phone", rk.Public(), t0)
	if err := ask.IssueCert(rk.Public(), good); err != nil {
		t.Fatal(err)
	}
	if err := VerifyDeviceCert(rk.Public(), ask.Public(), good); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		rkPub  [32]byte
		askPub [32]byte
		mutate func(c *DeviceCert)
		substr string
	}{
		{"verified against another ASK", rk.Public(), other.Public(), func(c *DeviceCert) {}, "signing key signature"},
		{"verified against another RK", otherRK.Public(), ask.Public(), func(c *DeviceCert) {}, "back-signature"},
		{"signed by another ASK", rk.Public(), ask.Public(), func(c *DeviceCert) {
			body, _ := c.body()
			c.Signature = other.sign(signedMessage(ctxDeviceCert, body))
		}, "signing key signature"},
		{"signed by RK instead of the ASK", rk.Public(), ask.Public(), func(c *DeviceCert) {
			body, _ := c.body()
			c.Signature = rk.sign(signedMessage(ctxDeviceCert, body))
		}, "signing key signature"},
		{"signed by the device instead of the ASK", rk.Public(), ask.Public(), func(c *DeviceCert) {
			body, _ := c.body()
			c.Signature = dk.sig(signedMessage(ctxDeviceCert, body))
		}, "signing key signature"},
		{"back-signed for another RK", rk.Public(), ask.Public(), func(c *DeviceCert) {
			_ = dk.BackSign(c, otherRK.Public())
			body, _ := c.body()
			c.Signature = ask.sign(signedMessage(ctxDeviceCert, body))
		}, "back-signature"},
		{"back-signature by RK (RK vs device swapped)", rk.Public(), ask.Public(), func(c *DeviceCert) {
			body, _ := c.body()
			pub := rk.Public()
			c.BackSignature = rk.sign(signedMessage(ctxDeviceBacksig, pub[:], body))
		}, "back-signature"},
		{"signing and X25519 keys swapped", rk.Public(), ask.Public(), func(c *DeviceCert) {
			c.SigningKey, c.X25519Key = c.X25519Key, c.SigningKey
		}, "does not match its signing key"},
		{"signing and X25519 keys swapped, id recomputed", rk.Public(), ask.Public(), func(c *DeviceCert) {
			c.SigningKey, c.X25519Key = c.X25519Key, c.SigningKey
			c.ID = DeviceIDFor(c.SigningKey)
		}, "signature does not verify"},
		{"same key for signing and X25519", rk.Public(), ask.Public(), func(c *DeviceCert) { c.X25519Key = c.SigningKey }, "signing key equals X25519 key"},
		{"device key is the RK", rk.Public(), ask.Public(), func(c *DeviceCert) {
			c.SigningKey = rk.Public()
			c.ID = DeviceIDFor(c.SigningKey)
		}, "signing key equals the root key"},
		{"device key is the ASK", rk.Public(), ask.Public(), func(c *DeviceCert) {
			c.SigningKey = ask.Public()
			c.ID = DeviceIDFor(c.SigningKey)
		}, "signing key equals the root key or the account signing key"},
		{"low-order X25519 key", rk.Public(), ask.Public(), func(c *DeviceCert) { c.X25519Key = [32]byte{} }, "low-order"},
		{"wrong device id", rk.Public(), ask.Public(), func(c *DeviceCert) { c.ID[0] ^= 1 }, "does not match its signing key"},
		{"name changed after signing", rk.Public(), ask.Public(), func(c *DeviceCert) { c.Name = "evil" }, "signing key signature"},
		{"created changed after signing", rk.Public(), ask.Public(), func(c *DeviceCert) { c.Created = c.Created.Add(time.Second) }, "signing key signature"},
		{"sub-second time", rk.Public(), ask.Public(), func(c *DeviceCert) { c.Created = c.Created.Add(time.Millisecond) }, "whole second"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := *good
			tc.mutate(&c)
			err := VerifyDeviceCert(tc.rkPub, tc.askPub, &c)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.substr) {
				t.Fatalf("error %q does not mention %q", err, tc.substr)
			}
		})
	}
	// IssueCert refuses a cert back-signed for another RK.
	c := mustCert(t, dk, "phone", otherRK.Public(), t0)
	wantErr(t, ask.IssueCert(rk.Public(), c), ErrDeviceCert, "back-signature")
	// Oversized and empty names are refused at creation.
	_, err := dk.NewCert(strings.Repeat("n", 65), rk.Public(), t0)
	wantErr(t, err, ErrDeviceName, "65 bytes")
	_, err = dk.NewCert("", rk.Public(), t0)
	wantErr(t, err, ErrDeviceName, "empty")
	// BackSign refuses to sign another device's cert.
	wantErr(t, testDevice(t, "other").BackSign(good, rk.Public()), ErrDeviceCert, "not this device's keys")
}

func TestSigningKeyCertRejects(t *testing.T) {
	rk := testRK("alice")
	ask := testASK(t, rk, "alice", 1, "alice")
	if err := VerifySigningKeyCert(rk.Public(), "alice", ask.Cert); err != nil {
		t.Fatal(err)
	}
	wantErr(t, VerifySigningKeyCert(testRK("mallory").Public(), "alice", ask.Cert), ErrSigningKeyCert, "root key signature")
	wantErr(t, VerifySigningKeyCert(rk.Public(), "bob", ask.Cert), ErrUserMismatch, "")
	for _, mutate := range map[string]func(c *SigningKeyCert){
		"generation changed": func(c *SigningKeyCert) { c.Generation = 2 },
		"key changed":        func(c *SigningKeyCert) { c.Key[0] ^= 1 },
		"time changed":       func(c *SigningKeyCert) { c.Created = c.Created.Add(time.Second) },
		"signature flipped":  func(c *SigningKeyCert) { c.Signature[5] ^= 1 },
	} {
		c := *ask.Cert
		mutate(&c)
		wantErr(t, VerifySigningKeyCert(rk.Public(), "alice", &c), ErrSigningKeyCert, "does not verify")
	}
	c := *ask.Cert
	c.Generation = 0
	wantErr(t, VerifySigningKeyCert(rk.Public(), "alice", &c), ErrMalformed, "generation 0")
	// A cert whose ASK is RK itself is refused even if RK signed it.
	c = *ask.Cert
	c.Key = rk.Public()
	b, _ := c.body()
	c.Signature = rk.sign(signedMessage(ctxSigningKeyCert, b))
	wantErr(t, VerifySigningKeyCert(rk.Public(), "alice", &c), ErrSigningKeyCert, "is the root key")
	// The seed must match the cert.
	_, err := AccountSigningKeyFromSeed(ask.Cert, seed32("wrong"))
	wantErr(t, err, ErrSigningKeyCert, "does not match")
}

func TestDeviceID(t *testing.T) {
	dk := testDevice(t, "x")
	pub := dk.SigningPublic()
	want := domainHash(ctxDeviceID, pub[:])
	id := dk.ID()
	if !bytes.Equal(id[:], want[:16]) {
		t.Fatal("device id is not the truncated domain-separated hash")
	}
	if DeviceIDFor(testDevice(t, "y").SigningPublic()) == id {
		t.Fatal("two keys share an id")
	}
	_ = ed25519.PublicKeySize
}
