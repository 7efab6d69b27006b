package devices

import (
	"crypto/ed25519"
	"testing"
)

// BenchmarkVerifyDeviceCert measures one DeviceCert verification (two
// ed25519 signatures and the key checks), next to one ed25519 verification.
func BenchmarkVerifyDeviceCert(b *testing.B) {
	rk := testRK("bench")
	rkPub := rk.Public()
	ask := testASK(b, rk, "bench@example.org", 1, "bench 1")
	c := mustCert(b, testDevice(b, "bench"), "phone", rkPub, t0)
	if err := ask.IssueCert(rkPub, c); err != nil {
		b.Fatal(err)
	}
	b.Run("cert", func(b *testing.B) {
		for b.Loop() {
			if err := VerifyDeviceCert(rkPub, ask.Public(), c); err != nil {
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
	rk := testRK("bench")
	ask := testASK(b, rk, "bench@example.org", 1, "bench 1")
	c := mustCert(b, testDevice(b, "bench"), "phone", rk.Public(), t0)
	for b.Loop() {
		if err := c.checkKeys(rk.Public(), ask.Public()); err != nil {
			b.Fatal(err)
		}
	}
}
