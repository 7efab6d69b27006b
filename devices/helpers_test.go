package devices

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

// Deterministic fixtures: every key comes from a fixed label.

func seed32(label string) [32]byte { return sha256.Sum256([]byte("keyline test " + label)) }

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testSecret(label string) RecoverySecret { return RecoverySecret(seed32(label)) }

func testIK(label string) *IdentityKey { return DeriveIdentityKey(testSecret(label)) }

func testDevice(t testing.TB, label string) *DeviceKey {
	t.Helper()
	dk, err := DeviceKeyFromSeeds(seed32(label+" signing"), seed32(label+" x25519"))
	if err != nil {
		t.Fatal(err)
	}
	return dk
}

func testResetKey() ed25519.PrivateKey {
	s := seed32("directory reset key")
	return ed25519.NewKeyFromSeed(s[:])
}

func mustCert(t testing.TB, dk *DeviceKey, name string, ik [32]byte, at time.Time) *DeviceCert {
	t.Helper()
	c, err := dk.NewCert(name, ik, at)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// chain is a small account history used by many tests:
// v1 {phone}, v2 {phone, laptop}, v3 {laptop} with phone revoked (lost).
type chain struct {
	ik                    *IdentityKey
	phone, laptop, tablet *DeviceKey
	v1, v2, v3            *AccountState
}

func newChain(t testing.TB) *chain {
	t.Helper()
	c := &chain{ik: testIK("alice"), phone: testDevice(t, "alice phone"), laptop: testDevice(t, "alice laptop"), tablet: testDevice(t, "alice tablet")}
	ik := c.ik.Public()
	var err error
	c.v1, err = NewAccount(c.ik, "alice@example.org", mustCert(t, c.phone, "Alice's phone", ik, t0), t0)
	if err != nil {
		t.Fatal(err)
	}
	c.v2, err = AddDevice(c.v1, c.ik, mustCert(t, c.laptop, "laptop", ik, t0.Add(time.Hour)), t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	c.v3, err = RevokeDevices(c.v2, c.ik, []DeviceID{c.phone.ID()}, ReasonLost, t0.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// clone deep-copies a state so tests can mutate it.
func clone(t testing.TB, s *AccountState) *AccountState {
	t.Helper()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseAccountState(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// resign signs s with ik regardless of s.IdentityKey, over the unchecked
// body, so tests reach the rule under test rather than the signature check.
func resign(s *AccountState, priv ed25519.PrivateKey) {
	var w builder
	s.appendBody(&w)
	copy(s.Signature[:], ed25519.Sign(priv, signedMessage(ctxAccountState, w.b)))
}

func ikPriv(ik *IdentityKey) ed25519.PrivateKey { return ik.priv }

func wantErr(t testing.TB, err, target error, substr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want %v", target)
	}
	if !errors.Is(err, target) {
		t.Fatalf("got error %q, want errors.Is %v", err, target)
	}
	if substr != "" && !strings.Contains(err.Error(), substr) {
		t.Fatalf("error %q does not mention %q", err, substr)
	}
}

func encodeB64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
