package embedded_test

import (
	"context"
	"crypto/ed25519"
	"math/rand/v2"
	"testing"
)

// BenchmarkEntry measures reading one random leaf (Entries(i, i+1)), what
// an embedded directory lookup does, from the proof benchmark fixture.
func BenchmarkEntry(b *testing.B) {
	n := benchLeaves(b)
	l := fixture(b, n)
	defer l.Close()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 8))
	for b.Loop() {
		i := rng.Uint64N(n)
		e, err := l.Entries(ctx, i, i+1)
		if err != nil || len(e) != 1 || len(e[0]) != 300 {
			b.Fatalf("Entries(%d, %d) = %d leaves, %v", i, i+1, len(e), err)
		}
	}
}

// BenchmarkEntries measures reading 1,000 consecutive leaves from a random
// index (recovery, tiles and auditors read ranges).
func BenchmarkEntries(b *testing.B) {
	n := benchLeaves(b)
	l := fixture(b, n)
	defer l.Close()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(9, 10))
	for b.Loop() {
		i := rng.Uint64N(n - 1000)
		if _, err := l.Entries(ctx, i, i+1000); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(1000*float64(b.N)/b.Elapsed().Seconds(), "leaves/s")
}

// BenchmarkEd25519Verify is the reference the other figures are reported
// against: one ed25519 signature verification on one core.
func BenchmarkEd25519Verify(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	msg := []byte("keyline reference message")
	sig := ed25519.Sign(priv, msg)
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("verify failed")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifies/s")
}
