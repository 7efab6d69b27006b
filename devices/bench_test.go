package devices

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"
)

func BenchmarkSafetyNumber(b *testing.B) {
	a, c := testRK("alice").Public(), testRK("bob").Public()
	for b.Loop() {
		if _, err := NewSafetyNumber("alice", a, "bob", c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyTransitionMaxDevices verifies a transition into a state
// with MaxDevices devices (1 state signature + 2 per cert).
func BenchmarkVerifyTransitionMaxDevices(b *testing.B) {
	rk := testRK("alice")
	ask := testASK(b, rk, "alice", 1, "alice")
	prev := benchAccount(b, rk, ask, MaxDevices)
	next, err := RevokeDevices(prev, ask, []DeviceID{prev.Devices[0].ID}, ReasonRetired, t0.Add(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if err := VerifyTransition(prev, next); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseAccountStateMaxDevices(b *testing.B) {
	rk := testRK("alice")
	s := benchAccount(b, rk, testASK(b, rk, "alice", 1, "alice"), MaxDevices)
	enc, _ := s.MarshalBinary()
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		if _, err := ParseAccountState(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKeystoreDefaultKDF measures unlocking a keystore with the
// production argon2id parameters (time 3, 64 MiB, 2 threads).
func BenchmarkKeystoreDefaultKDF(b *testing.B) {
	file, err := EncryptKeystore(testKeystore(b), []byte("pw"), DefaultKDFParams)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := DecryptKeystore(file, []byte("pw")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEd25519Verify is the reference for ratios: one Ed25519
// signature verification on this machine, in the same run.
func BenchmarkEd25519Verify(b *testing.B) {
	k := ed25519.NewKeyFromSeed(make([]byte, 32))
	msg := []byte("keyline reference message")
	sig := ed25519.Sign(k, msg)
	pub := k.Public().(ed25519.PublicKey)
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("verify")
		}
	}
}

// BenchmarkVerifyRotationMaxDevices verifies a rotation (generation g+1,
// every kept cert re-signed) of a state with MaxDevices devices.
func BenchmarkVerifyRotationMaxDevices(b *testing.B) {
	rk := testRK("alice")
	ask := testASK(b, rk, "alice", 1, "alice")
	prev := benchAccount(b, rk, ask, MaxDevices)
	var keep []DeviceID
	for _, d := range prev.Devices[1:] {
		keep = append(keep, d.ID)
	}
	next, err := Rotate(prev, testASK(b, rk, "alice", 2, "alice 2"), Rotation{Keep: keep, Reason: ReasonLost}, t0.Add(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if err := VerifyTransition(prev, next); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandover seals and opens a signing key handover (HPKE).
func BenchmarkHandover(b *testing.B) {
	c := newChain(b)
	for b.Loop() {
		h, err := SealHandover(c.ask, c.v3.Devices[0], rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := OpenHandover(h, c.laptop, c.v3); err != nil {
			b.Fatal(err)
		}
	}
}
