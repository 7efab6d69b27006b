package devices

import (
	"bytes"
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

func testRK(label string) *RootKey { return DeriveRootKey(testSecret(label)) }

// testASK returns generation gen of userID's account signing key under rk,
// its seed derived from label.
func testASK(t testing.TB, rk *RootKey, userID string, gen uint32, label string) *AccountSigningKey {
	t.Helper()
	s := seed32(label + " ask")
	a, err := NewAccountSigningKey(rk, userID, gen, bytes.NewReader(s[:]), t0)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

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
	rk                    *RootKey
	ask                   *AccountSigningKey // generation 1
	phone, laptop, tablet *DeviceKey
	v1, v2, v3            *AccountState
}

func newChain(t testing.TB) *chain {
	t.Helper()
	c := &chain{rk: testRK("alice"), phone: testDevice(t, "alice phone"), laptop: testDevice(t, "alice laptop"), tablet: testDevice(t, "alice tablet")}
	c.ask = testASK(t, c.rk, "alice@example.org", 1, "alice 1")
	rk := c.rk.Public()
	var err error
	c.v1, err = NewAccount(c.ask, rk, "alice@example.org", mustCert(t, c.phone, "Alice's phone", rk, t0), t0)
	if err != nil {
		t.Fatal(err)
	}
	c.v2, err = AddDevice(c.v1, c.ask, mustCert(t, c.laptop, "laptop", rk, t0.Add(time.Hour)), t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	c.v3, err = RevokeDevices(c.v2, c.ask, []DeviceID{c.phone.ID()}, ReasonLost, t0.Add(2*time.Hour))
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

// resign signs s with priv regardless of s.SigningKey, over the unchecked
// body, so tests reach the rule under test rather than the signature check.
func resign(s *AccountState, priv ed25519.PrivateKey) {
	var w builder
	s.appendBody(&w)
	copy(s.Signature[:], ed25519.Sign(priv, signedMessage(ctxAccountState, w.b)))
}

func askPriv(a *AccountSigningKey) ed25519.PrivateKey { return a.priv }

func rkPriv(rk *RootKey) ed25519.PrivateKey { return rk.priv }

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

// testWindow is the reset window the tests use.
const testWindow = time.Hour

// newReset returns the reset state replacing prev under the new root key
// of label, and its authorization logged at at (effective at+testWindow).
func newReset(t testing.TB, prev *AccountState, label string, at time.Time) (*RootKey, *AccountSigningKey, *ResetAuthorization) {
	t.Helper()
	newRK := testRK(label)
	ask := testASK(t, newRK, prev.UserID, 1, label)
	ns, err := NewResetState(prev, newRK.Public(), ask, mustCert(t, testDevice(t, label+" phone"), "new phone", newRK.Public(), at), at)
	if err != nil {
		t.Fatal(err)
	}
	ra, err := SignReset(testResetKey(), prev, ns, ResetLostAllKeys, at, testWindow)
	if err != nil {
		t.Fatal(err)
	}
	return newRK, ask, ra
}

// benchAccount returns an account of userID with n devices under rk/ask.
func benchAccount(t testing.TB, rk *RootKey, ask *AccountSigningKey, n int) *AccountState {
	t.Helper()
	s, err := NewAccount(ask, rk.Public(), ask.Cert.UserID, mustCert(t, testDevice(t, "d0"), "d0", rk.Public(), t0), t0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < n; i++ {
		l := "d" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		s, err = AddDevice(s, ask, mustCert(t, testDevice(t, l), l, rk.Public(), t0), t0.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
	}
	return s
}
