//go:build linux

package resident

import (
	"crypto/ed25519"
	"testing"

	"go.etcd.io/bbolt"
)

func BenchmarkReadUsage(b *testing.B) {
	for b.Loop() {
		if _, err := ReadUsage(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadOnlyFileMapping(b *testing.B) {
	db, err := bbolt.Open(b.TempDir()+"/t.db", 0o600, &bbolt.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	base := db.Info().Data
	for b.Loop() {
		if _, err := readOnlyFileMapping(base); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReleaseMapped releases 32 MiB of a map whose pages are all
// mapped (each iteration maps them back first, untimed).
func BenchmarkReleaseMapped(b *testing.B) {
	db, err := bbolt.Open(b.TempDir()+"/t.db", 0o600, &bbolt.Options{NoSync: true, NoGrowSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket(bucket); return err })
	const n, size = 2200, 16 << 10
	fill(b, db, 0, n, size)
	touch := func() {
		db.View(func(tx *bbolt.Tx) error {
			c := tx.Bucket(bucket).Cursor()
			var s byte
			for k, v := c.First(); k != nil; k, v = c.Next() {
				for j := 0; j < len(v); j += 4096 {
					s += v[j]
				}
			}
			return nil
		})
	}
	for b.Loop() {
		b.StopTimer()
		touch()
		b.StartTimer()
		if _, _, err := Release(db, 0, 32<<20); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReleaseUnmapped releases 32 MiB of a map none of whose pages
// are mapped: the cost of sweeping address space.
func BenchmarkReleaseUnmapped(b *testing.B) {
	db, err := bbolt.Open(b.TempDir()+"/t.db", 0o600, &bbolt.Options{NoSync: true, NoGrowSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket(bucket); return err })
	fill(b, db, 0, 2200, 16<<10)
	for b.Loop() {
		if _, _, err := Release(db, 0, 32<<20); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEd25519Verify is the reference the ratios in docs/performance.md
// divide by: single-core ed25519 verifications.
func BenchmarkEd25519Verify(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	msg := make([]byte, 200)
	sig := ed25519.Sign(priv, msg)
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("signature does not verify")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifies/s")
}
