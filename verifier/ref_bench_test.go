package verifier

import (
	"crypto/ed25519"
	"testing"
)

// BenchmarkEd25519Verify is the reference: single-core ed25519 verifies/s.
func BenchmarkEd25519Verify(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	msg := make([]byte, 200)
	sig := ed25519.Sign(priv, msg)
	cpu := processCPU()
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("bad")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifies/s")
	reportCPU(b, cpu, "verify")
}
