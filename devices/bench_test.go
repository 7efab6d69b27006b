package devices

import (
	"testing"
	"time"
)

func BenchmarkSafetyNumber(b *testing.B) {
	a, c := testIK("alice").Public(), testIK("bob").Public()
	for b.Loop() {
		if _, err := NewSafetyNumber("alice", a, "bob", c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyTransitionMaxDevices verifies a transition into a state
// with MaxDevices devices (1 state signature + 2 per cert).
func BenchmarkVerifyTransitionMaxDevices(b *testing.B) {
	ik := testIK("alice")
	prev, err := NewAccount(ik, "alice", mustCert(b, testDevice(b, "d0"), "d0", ik.Public(), t0), t0)
	if err != nil {
		b.Fatal(err)
	}
	for i := 1; i < MaxDevices; i++ {
		l := "d" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		prev, err = AddDevice(prev, ik, mustCert(b, testDevice(b, l), l, ik.Public(), t0), t0.Add(time.Duration(i)*time.Second))
		if err != nil {
			b.Fatal(err)
		}
	}
	next, err := RevokeDevices(prev, ik, []DeviceID{prev.Devices[0].ID}, ReasonRetired, t0.Add(time.Hour))
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
	ik := testIK("alice")
	s, _ := NewAccount(ik, "alice", mustCert(b, testDevice(b, "d0"), "d0", ik.Public(), t0), t0)
	for i := 1; i < MaxDevices; i++ {
		l := "d" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		s, _ = AddDevice(s, ik, mustCert(b, testDevice(b, l), l, ik.Public(), t0), t0)
	}
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
