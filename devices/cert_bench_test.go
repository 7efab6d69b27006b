package devices

import (
	"crypto/ed25519"
	"testing"
)

// BenchmarkVerifyDeviceCert measures one DeviceCert verification (two
// ed25519 signatures and the key checks), next to one ed25519 verification.
func BenchmarkVerifyDeviceCert(b *testing.B) {
	k := testIK("bench")
	ik := k.Public()
	c := mustCert(b, testDevice(b, "bench"), "phone", ik, t0)
	if err := k.IssueCert(c); err != nil {
		b.Fatal(err)
	}
	b.Run("cert", func(b *testing.B) {
		for b.Loop() {
			if err := VerifyDeviceCert(ik, c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ed25519", func(b *testing.B) {
		pub, priv, _ := ed25519.GenerateKey(nil)
		msg := make([]byte, 200)
		sig := ed25519.Sign(priv, msg)
		for b.Loop() {
			ed25519.Verify(pub, msg, sig)
		}
	})
}

// BenchmarkCheckKeys measures DeviceCert.checkKeys alone (the key checks
// without signatures, including the low-order X25519 check).
func BenchmarkCheckKeys(b *testing.B) {
	ik := testIK("bench").Public()
	c := mustCert(b, testDevice(b, "bench"), "phone", ik, t0)
	for b.Loop() {
		if err := c.checkKeys(ik); err != nil {
			b.Fatal(err)
		}
	}
}
