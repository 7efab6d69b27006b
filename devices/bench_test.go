package devices

import (
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
