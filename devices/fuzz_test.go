package devices

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode"
)

// Every decoder has a fuzz target: no panic, and whatever decodes
// re-encodes to exactly the input.

func fuzzSeeds(f *testing.F) (cert, state, reset, pairing []byte, code, qr string) {
	c := newChain(f)
	cert, _ = c.v2.Devices[0].MarshalBinary()
	state, _ = c.v3.MarshalBinary()
	_, _, ra := newReset(f, c.v3, "alice new", t0.Add(10*time.Hour))
	reset, _ = ra.MarshalBinary()
	req, err := NewPairingRequest(c.tablet, "alice@example.org", c.rk.Public(), "tablet", t0, DefaultPairingTTL)
	if err != nil {
		f.Fatal(err)
	}
	pairing, _ = req.MarshalBinary()
	code, _ = req.Code()
	qr, _ = req.QR()
	return
}

func FuzzParseDeviceCert(f *testing.F) {
	cert, _, _, _, _, _ := fuzzSeeds(f)
	f.Add(cert)
	f.Add(cert[:40])
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseDeviceCert(b)
		if err != nil {
			return
		}
		out, err := c.MarshalBinary()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("round trip: %v\n in %x\nout %x", err, b, out)
		}
		_ = VerifyDeviceCert([32]byte{}, [32]byte{}, c)
	})
}

func FuzzParseAccountState(f *testing.F) {
	_, state, _, _, _, _ := fuzzSeeds(f)
	f.Add(state)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseAccountState(b)
		if err != nil {
			return
		}
		out, err := s.MarshalBinary()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("round trip: %v\n in %x\nout %x", err, b, out)
		}
		_ = VerifyAccountState(s)
	})
}

func FuzzParseResetAuthorization(f *testing.F) {
	_, _, reset, _, _, _ := fuzzSeeds(f)
	f.Add(reset)
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseResetAuthorization(b)
		if err != nil {
			return
		}
		out, err := a.MarshalBinary()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("round trip: %v\n in %x\nout %x", err, b, out)
		}
	})
}

func FuzzParsePairingRequest(f *testing.F) {
	_, _, _, pairing, _, _ := fuzzSeeds(f)
	f.Add(pairing)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePairingRequest(b)
		if err != nil {
			return
		}
		out, err := p.MarshalBinary()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("round trip: %v\n in %x\nout %x", err, b, out)
		}
	})
}

// FuzzParsePairingCode: a parsed code re-encodes to a code and QR that
// parse to the same request; a canonical code or QR re-encodes exactly.
func FuzzParsePairingCode(f *testing.F) {
	_, _, _, _, code, qr := fuzzSeeds(f)
	f.Add(code)
	f.Add(qr)
	f.Add(strings.ToLower(code))
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePairingCode(s)
		if err != nil {
			return
		}
		bin, err := p.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		c2, err := p.Code()
		if err != nil {
			t.Fatal(err)
		}
		q2, err := p.QR()
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range []string{c2, q2} {
			p2, err := ParsePairingCode(in)
			if err != nil {
				t.Fatal(err)
			}
			b2, _ := p2.MarshalBinary()
			if !bytes.Equal(b2, bin) {
				t.Fatal("re-encoded code parses differently")
			}
		}
		if ts := strings.TrimSpace(s); strings.HasPrefix(ts, PairingQRPrefix) && ts != q2 {
			t.Fatalf("QR round trip: %q -> %q", s, q2)
		}
		if strings.HasPrefix(s, PairingCodePrefix) && strings.IndexFunc(s, unicode.IsSpace) < 0 && !strings.ContainsAny(s, "abcdefghijklmnopqrstuvwxyz") && strings.Count(s, "-") == strings.Count(c2, "-") && s != c2 {
			t.Fatalf("code round trip: %q -> %q", s, c2)
		}
	})
}

func FuzzSafetyQR(f *testing.F) {
	sn, _ := NewSafetyNumber("alice", testRK("alice").Public(), "bob", testRK("bob").Public())
	f.Add(sn.QR())
	f.Add("keyline-safety:")
	f.Fuzz(func(t *testing.T, s string) {
		a, b, err := parseSafetyQR(s)
		if err != nil {
			return
		}
		if out := SafetyQRPrefix + encodeB64(encodeSafetyQR(a, b)); out != s {
			t.Fatalf("round trip: %q -> %q", s, out)
		}
	})
}

func FuzzKeystoreFile(f *testing.F) {
	// Deterministic salt and nonce: fuzz workers rebuild this seed and must
	// get the same bytes.
	file, err := encryptKeystore(testKeystore(f), []byte("pw"), testKDF, bytes.NewReader(make([]byte, 40)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(file)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, ct, err := parseKeystoreFile(b)
		if err != nil {
			return
		}
		if out := append(h.encode(), ct...); !bytes.Equal(out, b) {
			t.Fatalf("round trip:\n in %x\nout %x", b, out)
		}
		// Decrypting must fail cleanly (the fuzzer cannot forge the tag);
		// keep argon2 cheap by only trying small parameters.
		if h.params.MemoryKiB <= 256 && h.params.Time <= 2 {
			if _, err := DecryptKeystore(b, []byte("pw")); err == nil && !bytes.Equal(b, file) {
				t.Fatal("forged keystore decrypted")
			}
		}
	})
}

func FuzzKeystoreContents(f *testing.F) {
	ks := testKeystore(f)
	pt, err := ks.encodeContents()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pt)
	ks.Signing, ks.State = nil, nil
	pt2, _ := ks.encodeContents()
	f.Add(pt2)
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := decodeContents(b)
		if err != nil {
			return
		}
		out, err := k.encodeContents()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("round trip: %v\n in %x\nout %x", err, b, out)
		}
	})
}

// FuzzParsePaperKey: accepted words re-encode to the same secret, and the
// canonical form (lowercase, single spaces) is exactly PaperKey().
func FuzzParsePaperKey(f *testing.F) {
	for _, v := range bip39Vectors {
		f.Add(v.mnemonic)
	}
	f.Add("ABANDON abandon\tabandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon art")
	f.Fuzz(func(t *testing.T, s string) {
		sec, err := ParsePaperKey(s)
		if err != nil {
			return
		}
		if canon := strings.Join(strings.Fields(strings.ToLower(s)), " "); sec.PaperKey() != canon {
			t.Fatalf("round trip: %q -> %q", canon, sec.PaperKey())
		}
	})
}

func FuzzParseSigningKeyCert(f *testing.F) {
	c := newChain(f)
	b, _ := c.ask.Cert.MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		sc, err := ParseSigningKeyCert(b)
		if err != nil {
			return
		}
		out, err := sc.MarshalBinary()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("round trip: %v\n in %x\nout %x", err, b, out)
		}
		_ = VerifySigningKeyCert(c.rk.Public(), sc.UserID, sc)
	})
}

func FuzzParseSigningKeyHandover(f *testing.F) {
	c := newChain(f)
	h, err := SealHandover(c.ask, c.v3.Devices[0], bytes.NewReader(make([]byte, 32)))
	if err != nil {
		f.Fatal(err)
	}
	b, _ := h.MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseSigningKeyHandover(b)
		if err != nil {
			return
		}
		out, err := h.MarshalBinary()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("round trip: %v\n in %x\nout %x", err, b, out)
		}
		_, _ = OpenHandover(h, c.laptop, c.v3)
	})
}

func FuzzParseHandoverCode(f *testing.F) {
	c := newChain(f)
	h, err := SealHandover(c.ask, c.v3.Devices[0], bytes.NewReader(make([]byte, 32)))
	if err != nil {
		f.Fatal(err)
	}
	code, _ := h.Code()
	f.Add(code)
	f.Add(strings.ToLower(code))
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHandoverCode(s)
		if err != nil {
			return
		}
		if _, err := h.MarshalBinary(); err != nil {
			t.Fatalf("parsed handover does not encode: %v", err)
		}
	})
}
