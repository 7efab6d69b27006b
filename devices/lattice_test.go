package devices

import (
	"crypto/rand"
	"math/big"
	"testing"
)

// checkReduced fails t unless (c0, c1, c1neg) satisfy reduceChallenge's
// contract for k: c0 ≡ c1·k (mod 8L), c1 odd, c0 and |c1| below
// 2^challengeBits.
func checkReduced(t *testing.T, k *[32]byte, c0, c1 [32]byte, c1neg bool) {
	t.Helper()
	kk, a, b := leBytesToInt(k[:]), leBytesToInt(c0[:]), leBytesToInt(c1[:])
	if b.Bit(0) != 1 {
		t.Fatalf("k=%x: c1=%v is even", k, b)
	}
	if a.BitLen() > challengeBits || b.BitLen() > challengeBits {
		t.Fatalf("k=%x: c0=%v (%d bits) or c1=%v (%d bits) over %d bits", k, a, a.BitLen(), b, b.BitLen(), challengeBits)
	}
	if c1neg {
		b.Neg(b)
	}
	d := new(big.Int).Mul(b, kk)
	d.Sub(d, a).Mod(d, order8L)
	if d.Sign() != 0 {
		t.Fatalf("k=%x: c0=%v, c1=%v: c1·k - c0 = %v (mod 8L), want 0", k, a, b, d)
	}
}

func TestReduceChallengeRandom(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 2000
	}
	L := scalarOrderL()
	refused := 0
	for range n {
		x, err := rand.Int(rand.Reader, L)
		if err != nil {
			t.Fatal(err)
		}
		var k [32]byte
		intToLEBytes(&k, x)
		c0, c1, neg, ok := reduceChallenge(&k)
		if !ok {
			refused++
			continue
		}
		checkReduced(t, &k, c0, c1, neg)
	}
	if refused > n/1000 {
		t.Errorf("refused %d of %d random challenges, want at most 0.1%%", refused, n)
	}
}
