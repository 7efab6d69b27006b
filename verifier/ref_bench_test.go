package verifier

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/keyline/keyline/verifier/vrf"
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

// BenchmarkVRFVerify measures the VRF check of a lookup
// (Trust.VRF.VerifyIndex, RFC 9381 ECVRF-EDWARDS25519-SHA512-TAI) against
// crypto/ed25519 verification in the same loop (x-ed25519, cpuMeter).
func BenchmarkVRFVerify(b *testing.B) {
	sk, err := vrf.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	pk := sk.Public()
	var alphas, proofs [][]byte
	for i := range 64 {
		alpha := fmt.Appendf(nil, "contact%d@example.org", i)
		_, pi := sk.Prove(alpha)
		alphas, proofs = append(alphas, alpha), append(proofs, pi)
	}
	b.ReportAllocs()
	cpu := newCPUMeter()
	i := 0
	for b.Loop() {
		if _, err := pk.VerifyIndex(alphas[i%64], proofs[i%64]); err != nil {
			b.Fatal(err)
		}
		i++
		cpu.done()
	}
	cpu.report(b, "verify")
}
