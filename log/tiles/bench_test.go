package tiles

import (
	"context"
	"crypto/ed25519"
	"testing"
)

// BenchmarkHashesAppend measures how fast a server catches up with a log
// (hashing leaves of ~200 bytes into the tile hashes), in leaves/s.
func BenchmarkHashesAppend(b *testing.B) {
	leaves := make([][]byte, 4096)
	for i := range leaves {
		leaves[i] = make([]byte, 200)
		leaves[i][0], leaves[i][1] = byte(i), byte(i>>8)
	}
	var h Hashes
	b.SetBytes(200)
	b.ResetTimer()
	for i := 0; i < b.N; i += len(leaves) {
		h.Append(leaves[:min(len(leaves), b.N-i)])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "leaves/s")
}

// BenchmarkReadTileUncached builds a full level-0 tile from its 256 leaves
// (the work of the first request for it; later ones hit the cache).
func BenchmarkReadTileUncached(b *testing.B) {
	ml := &memLog{leaves: testLeaves(512)}
	s := NewServer(ml)
	cp, _ := newTestSigner(b).sign(b, ml.leaves)
	if err := s.Sync(context.Background(), cp, nil); err != nil {
		b.Fatal(err)
	}
	t := Tile{L: 0, N: 0, W: Width}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.cacheMu.Lock()
		clear(s.cache)
		s.cacheBytes = 0
		s.cacheMu.Unlock()
		if _, err := s.ReadTile(context.Background(), t); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tiles/s")
}

// BenchmarkReferenceEd25519Verify is the machine reference for the above.
func BenchmarkReferenceEd25519Verify(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	msg := []byte("keyline reference")
	sig := ed25519.Sign(priv, msg)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("verify")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifies/s")
}
