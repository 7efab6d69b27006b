package httpapi

import (
	"crypto/ed25519"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
)

// benchServer is a directory with 300 accounts (so the log has a full
// tile) served over HTTP.
func benchServer(b *testing.B) *env {
	e := newEnv(b, nil)
	var wg sync.WaitGroup
	var mu sync.Mutex // e.create writes e.accts
	for i := 0; i < 300; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.createLocked(&mu, fmt.Sprintf("user%03d", i))
		}()
	}
	wg.Wait()
	e.sync()
	if _, size := e.h.Tiles().Checkpoint(); size < 256 {
		b.Fatalf("log of size %d has no full tile", size)
	}
	return e
}

// benchGet fetches url in parallel; with gzip the request asks for gzip
// and the body is counted compressed (not decompressed by the client).
func benchGet(b *testing.B, url string, gzip bool) {
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			if gzip {
				req.Header.Set("Accept-Encoding", "gzip")
			}
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || n == 0 {
				b.Errorf("GET %s: %d, %d bytes", url, resp.StatusCode, n)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkTilesFullTile fetches the full level-0 tile tile/0/000 (8 KiB)
// over loopback HTTP, GOMAXPROCS clients in parallel.
func BenchmarkTilesFullTile(b *testing.B) {
	e := benchServer(b)
	benchGet(b, e.ts.URL+"/tile/0/000", false)
}

// BenchmarkTilesFullBundle fetches the full entry bundle tile/entries/000
// (256 leaves), uncompressed and gzipped.
func BenchmarkTilesFullBundle(b *testing.B) {
	e := benchServer(b)
	b.Run("identity", func(b *testing.B) { benchGet(b, e.ts.URL+"/tile/entries/000", false) })
	b.Run("gzip", func(b *testing.B) { benchGet(b, e.ts.URL+"/tile/entries/000", true) })
}

// BenchmarkJSONLookup fetches a lookup bundle as JSON.
func BenchmarkJSONLookup(b *testing.B) {
	e := benchServer(b)
	benchGet(b, e.ts.URL+"/v1/lookup/user001", false)
}

// BenchmarkReferenceEd25519Verify is the machine reference for the
// numbers above: single-core Ed25519 verifications.
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
