package devices

import (
	"crypto/rand"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestPairing(t *testing.T) {
	c := newChain(t)
	req, err := NewPairingRequest(c.tablet, "alice@example.org", c.rk.Public(), "Alice's tablet", t0.Add(3*time.Hour), DefaultPairingTTL)
	if err != nil {
		t.Fatal(err)
	}
	code, err := req.Code()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^KL2-[A-Z2-7]{5}(-[A-Z2-7]{1,5})*$`).MatchString(code) {
		t.Fatalf("code %q not in the documented form", code)
	}
	qr, err := req.QR()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(qr, "keyline-pair:") {
		t.Fatalf("QR %q", qr)
	}
	fp, err := req.Fingerprint()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^\d{4} \d{4} \d{4} \d{4} \d{4}$`).MatchString(fp) {
		t.Fatalf("fingerprint %q", fp)
	}
	// The approving device parses either form (forgiving about case and
	// whitespace in the text code) and sees the same fingerprint.
	for _, in := range []string{code, qr, strings.ToLower(code), " " + strings.ReplaceAll(code, "-", " - ") + "\n"} {
		got, err := ParsePairingCode(in)
		if err != nil {
			t.Fatalf("ParsePairingCode(%q): %v", in, err)
		}
		gfp, _ := got.Fingerprint()
		if gfp != fp {
			t.Fatalf("fingerprint after parsing %q = %s, want %s", in, gfp, fp)
		}
	}
	parsed, _ := ParsePairingCode(code)
	v4, err := ApprovePairing(c.v3, c.ask, parsed, strings.ReplaceAll(fp, " ", ""), false, t0.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyTransition(c.v3, v4); err != nil {
		t.Fatal(err)
	}
	if v4.Device(c.tablet.ID()) == nil || v4.IsTrusted(c.tablet.ID()) {
		t.Fatal("tablet not added (untrusted)")
	}
	// Approved as trusted: listed in Trusted, and the handover carries the
	// ASK that only the tablet can open.
	v4t, err := ApprovePairing(c.v3, c.ask, parsed, fp, true, t0.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !v4t.IsTrusted(c.tablet.ID()) || len(v4t.Trusted) != 1 {
		t.Fatalf("trusted list %v", v4t.Trusted)
	}
	h, err := SealHandover(c.ask, v4t.Device(c.tablet.ID()), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenHandover(h, c.tablet, v4t)
	if err != nil || got.Seed() != c.ask.Seed() {
		t.Fatalf("handover: %v", err)
	}
	_, err = OpenHandover(h, c.laptop, v4t)
	wantErr(t, err, ErrHandover, "is for device")
	forgedH := *h
	forgedH.Device = c.laptop.ID()
	_, err = OpenHandover(&forgedH, c.laptop, v4t)
	wantErr(t, err, ErrHandover, "does not decrypt")
	tampered := *h
	tampered.Ciphertext[0] ^= 1
	_, err = OpenHandover(&tampered, c.tablet, v4t)
	wantErr(t, err, ErrHandover, "does not decrypt")

	// Rejections when approving.
	_, err = ApprovePairing(c.v3, c.ask, parsed, "0000 0000 0000 0000 0000", false, t0)
	wantErr(t, err, ErrPairingCode, "fingerprint")
	other, _ := NewPairingRequest(c.tablet, "alice@example.org", testRK("mallory").Public(), "tablet", t0, DefaultPairingTTL)
	ofp, _ := other.Fingerprint()
	_, err = ApprovePairing(c.v3, c.ask, other, ofp, false, t0)
	wantErr(t, err, ErrIdentityChanged, "another root key")
	bob, _ := NewPairingRequest(c.tablet, "bob", c.rk.Public(), "tablet", t0, DefaultPairingTTL)
	bfp, _ := bob.Fingerprint()
	_, err = ApprovePairing(c.v3, c.ask, bob, bfp, false, t0)
	wantErr(t, err, ErrUserMismatch, `"bob"`)
	forged := *parsed
	fc := *parsed.Cert
	fc.Name = "evil"
	forged.Cert = &fc
	ffp, _ := forged.Fingerprint()
	_, err = ApprovePairing(c.v3, c.ask, &forged, ffp, false, t0)
	wantErr(t, err, ErrDeviceCert, "signature does not verify")
	// The expiry is signed: extending it breaks the request signature.
	late := *parsed
	late.Expires = late.Expires.Add(time.Hour)
	lfp, _ := late.Fingerprint()
	_, err = ApprovePairing(c.v3, c.ask, &late, lfp, false, t0.Add(3*time.Hour))
	wantErr(t, err, ErrDeviceCert, "request signature")
	// An expired request is refused.
	_, err = ApprovePairing(c.v3, c.ask, parsed, fp, false, t0.Add(3*time.Hour+DefaultPairingTTL+time.Second))
	wantErr(t, err, ErrPairingExpired, "expired at")
	// A rotated-out signing key cannot approve.
	rot, err := Rotate(c.v3, testASK(t, c.rk, "alice@example.org", 2, "alice 2"), Rotation{Keep: []DeviceID{c.laptop.ID()}, Reason: ReasonCompromised}, t0.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, err = ApprovePairing(rot, c.ask, parsed, fp, false, t0.Add(3*time.Hour))
	wantErr(t, err, ErrStaleSigningKey, "rotated out")
	revived, _ := NewPairingRequest(c.phone, "alice@example.org", c.rk.Public(), "phone", t0.Add(3*time.Hour), DefaultPairingTTL)
	rfp, _ := revived.Fingerprint()
	_, err = ApprovePairing(c.v3, c.ask, revived, rfp, false, t0.Add(3*time.Hour))
	wantErr(t, err, ErrRevokedDevice, "")
}

func TestParsePairingCodeRejects(t *testing.T) {
	c := newChain(t)
	req, _ := NewPairingRequest(c.tablet, "alice@example.org", c.rk.Public(), "tablet", t0, DefaultPairingTTL)
	code, _ := req.Code()
	qr, _ := req.QR()
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	cases := []struct{ name, in, substr string }{
		{"empty", "", "does not start with"},
		{"wrong prefix", "KL1-" + code[4:], `does not start with "KL2-"`},
		{"typo", flip(code, 10), "checksum mismatch"},
		{"typo at end", flip(code, len(code)-3), "checksum mismatch"},
		{"bad character", code[:8] + "1" + code[9:], `character 5 '1' is not base32`},
		{"missing character", code[:8] + code[9:], ""},
		{"truncated", code[:len(code)-6], ""},
		{"QR corrupted", qr[:20] + "A" + qr[21:], "checksum mismatch"},
		{"QR not base64", qr + "!", "not base64url"},
		{"QR truncated", "keyline-pair:AA", "too short"},
		{"too long", "KL2-" + strings.Repeat("A", 5000), "over the limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePairingCode(tc.in)
			wantErr(t, err, ErrPairingCode, tc.substr)
		})
	}
	// A checksummed but malformed payload is rejected by the decoder.
	bad := PairingQRPrefix + encodeB64(withCheck([]byte{0x02, 0x00}))
	_, err := ParsePairingCode(bad)
	wantErr(t, err, ErrMalformed, "truncated")
}

func TestSafetyNumber(t *testing.T) {
	alice, bob := testRK("alice"), testRK("bob")
	a, err := NewSafetyNumber("alice", alice.Public(), "bob", bob.Public())
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewSafetyNumber("bob", bob.Public(), "alice", alice.Public())
	if err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Fatalf("sides differ: %s vs %s", a, b)
	}
	if !regexp.MustCompile(`^(\d{5} ){11}\d{5}$`).MatchString(a.String()) || len(a.Digits()) != 60 {
		t.Fatalf("bad form %q", a)
	}
	if err := a.VerifyQR(b.QR()); err != nil {
		t.Fatal(err)
	}
	if err := b.VerifyQR(a.QR()); err != nil {
		t.Fatal(err)
	}
	// Scanning your own code is not a match.
	wantErr(t, a.VerifyQR(a.QR()), ErrSafetyNumberMismatch, "")
	// A different key or user id changes the number and fails the scan.
	m, _ := NewSafetyNumber("bob", testRK("mallory").Public(), "alice", alice.Public())
	if m.String() == a.String() {
		t.Fatal("different IK, same safety number")
	}
	wantErr(t, a.VerifyQR(m.QR()), ErrSafetyNumberMismatch, "")
	u, _ := NewSafetyNumber("bob2", bob.Public(), "alice", alice.Public())
	if u.String() == a.String() {
		t.Fatal("different user id, same safety number")
	}
	wantErr(t, a.VerifyQR("keyline-safety:AQ"), ErrMalformed, "truncated")
	wantErr(t, a.VerifyQR("otherapp:AQ"), ErrMalformed, "prefix")
	_, err = NewSafetyNumber("Alice", alice.Public(), "bob", bob.Public())
	wantErr(t, err, ErrUserID, "")
}
