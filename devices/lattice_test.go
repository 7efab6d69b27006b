package devices

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/binary"
	"math/big"
	mrand "math/rand/v2"
	"testing"
	"time"

	"filippo.io/edwards25519"
)

// bigL and big8L are L and 8L as math/big integers, from their decimal
// expansions (independent of the limb constants).
var (
	bigL, _   = new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	big8L     = new(big.Int).Lsh(bigL, 3)
	big2to128 = new(big.Int).Lsh(big.NewInt(1), 128)
)

// reduceChallengeRef is reduceChallenge's definition computed with
// math/big: the extended Euclidean rows of (8L, k) one quotient at a
// time, row i the first with r_i < 2^128, then row i, or the shorter of
// rows i-1 and i+1 (by max(r, |t|), i-1 on a tie) if t_i is even; refused
// if k >= L or the row's r or |t| reaches 2^challengeBits.
func reduceChallengeRef(k *[32]byte) (c0, c1 [32]byte, c1neg bool, ok bool) {
	c0, c1, c1neg, ok, _ = reduceChallengeRefRow(k)
	return c0, c1, c1neg, ok
}

// reduceChallengeRefRow is reduceChallengeRef, also returning which row
// it chose: 0 for row i, -1 for row i-1, +1 for row i+1 (and 0 for
// k >= L).
func reduceChallengeRefRow(k *[32]byte) (c0, c1 [32]byte, c1neg bool, ok bool, row int) {
	kk := leInt(k[:])
	if kk.Cmp(bigL) >= 0 {
		return c0, c1, false, false, 0
	}
	r0, t0 := new(big.Int).Set(big8L), new(big.Int)
	r1, t1 := kk, big.NewInt(1)
	next := func() (*big.Int, *big.Int) {
		q, r2 := new(big.Int).QuoRem(r0, r1, new(big.Int))
		return r2, new(big.Int).Sub(t0, q.Mul(q, t1))
	}
	for r1.Cmp(big2to128) >= 0 {
		r2, t2 := next()
		r0, r1, t0, t1 = r1, r2, t1, t2
	}
	r, t := r1, t1
	if t.Bit(0) == 0 {
		r2, t2 := next()
		r, t, row = r0, t0, -1
		if absMax(r2, t2).Cmp(absMax(r0, t0)) < 0 {
			r, t, row = r2, t2, 1
		}
	}
	if r.BitLen() > challengeBits || t.BitLen() > challengeBits {
		return c0, c1, false, false, row
	}
	putLEInt(&c0, r)
	putLEInt(&c1, t)
	return c0, c1, t.Sign() < 0, true, row
}

// absMax returns max(|a|, |b|).
func absMax(a, b *big.Int) *big.Int {
	if a.CmpAbs(b) >= 0 {
		return new(big.Int).Abs(a)
	}
	return new(big.Int).Abs(b)
}

// leInt returns the integer whose little-endian encoding is b.
func leInt(b []byte) *big.Int {
	be := make([]byte, len(b))
	for i := range b {
		be[len(b)-1-i] = b[i]
	}
	return new(big.Int).SetBytes(be)
}

// putLEInt writes |x| (below 2^256) into out, little-endian.
func putLEInt(out *[32]byte, x *big.Int) {
	var be [32]byte
	new(big.Int).Abs(x).FillBytes(be[:])
	for i := range be {
		out[i] = be[31-i]
	}
}

// leKey returns x (0 <= x < 2^256) as a little-endian 32-byte k.
func leKey(x *big.Int) *[32]byte {
	var k [32]byte
	putLEInt(&k, x)
	return &k
}

// checkReduced fails t unless (c0, c1, c1neg) satisfy reduceChallenge's
// contract for k, checked with math/big: c0 ≡ c1·k (mod 8L), c1 odd, c0
// and |c1| below 2^challengeBits.
func checkReduced(t *testing.T, k *[32]byte, c0, c1 [32]byte, c1neg bool) {
	t.Helper()
	kk, a, b := leInt(k[:]), leInt(c0[:]), leInt(c1[:])
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
	d.Sub(d, a).Mod(d, big8L)
	if d.Sign() != 0 {
		t.Fatalf("k=%x: c0=%v, c1=%v: c1·k - c0 = %v (mod 8L), want 0", k, a, b, d)
	}
}

// checkAgainstRef fails t unless reduceChallenge(k) equals
// reduceChallengeRef(k) and, when ok, meets the contract. It returns ok.
func checkAgainstRef(t *testing.T, k *[32]byte) bool {
	t.Helper()
	c0, c1, neg, ok := reduceChallenge(k)
	w0, w1, wneg, wok := reduceChallengeRef(k)
	if c0 != w0 || c1 != w1 || neg != wneg || ok != wok {
		t.Fatalf("k=%x (%v):\n got c0=%v c1=%v neg=%v ok=%v\nwant c0=%v c1=%v neg=%v ok=%v",
			k, leInt(k[:]), leInt(c0[:]), leInt(c1[:]), neg, ok, leInt(w0[:]), leInt(w1[:]), wneg, wok)
	}
	if ok {
		checkReduced(t, k, c0, c1, neg)
	} else if c0 != ([32]byte{}) || c1 != ([32]byte{}) || neg {
		t.Fatalf("k=%x: refused with non-zero results", k)
	}
	return ok
}

func TestLatticeConstants(t *testing.T) {
	if got := leInt(limbBytes(&scalarL)); got.Cmp(bigL) != 0 {
		t.Errorf("scalarL = %v, want %v", got, bigL)
	}
	if got := leInt(limbBytes(&order8L)); got.Cmp(big8L) != 0 {
		t.Errorf("order8L = %v, want %v", got, big8L)
	}
	var b [32]byte
	copy(b[:], edwards25519.NewScalar().Subtract(edwards25519.NewScalar(), scalarOne()).Bytes())
	if got := new(big.Int).Add(leInt(b[:]), big.NewInt(1)); got.Cmp(bigL) != 0 {
		t.Errorf("edwards25519's -1 + 1 = %v, want L = %v", got, bigL)
	}
}

// limbBytes returns x little-endian.
func limbBytes(x *limbs4) []byte {
	b := make([]byte, 32)
	for i := range x {
		binary.LittleEndian.PutUint64(b[8*i:], x[i])
	}
	return b
}

// scalarOne returns the edwards25519 scalar 1.
func scalarOne() *edwards25519.Scalar {
	var one [32]byte
	one[0] = 1
	s, err := edwards25519.NewScalar().SetCanonicalBytes(one[:])
	if err != nil {
		panic(err)
	}
	return s
}

// TestReduceChallengeMatchesRef compares reduceChallenge with its math/big
// definition on random k < L (100k of them, 10k with -short) and checks
// the contract; at most 0.1% may be refused.
func TestReduceChallengeMatchesRef(t *testing.T) {
	n := 100000
	if testing.Short() {
		n = 10000
	}
	rng := mrand.New(mrand.NewPCG(1, 2))
	refused := 0
	for range n {
		if !checkAgainstRef(t, randScalarBytes(rng)) {
			refused++
		}
	}
	if refused > n/1000 {
		t.Errorf("refused %d of %d random challenges, want at most 0.1%%", refused, n)
	}
}

// randScalarBytes returns a uniformly random k < L, little-endian.
func randScalarBytes(rng *mrand.Rand) *[32]byte {
	var b [64]byte
	for i := 0; i < 64; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	s, err := edwards25519.NewScalar().SetUniformBytes(b[:])
	if err != nil {
		panic(err)
	}
	var k [32]byte
	copy(k[:], s.Bytes())
	return &k
}

// TestReduceChallengeSignatureChallenges runs reduceChallenge on the
// challenges of real signatures, k = SHA-512(R || A || M) mod L, as the
// verifier will.
func TestReduceChallengeSignatureChallenges(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	pub := priv.Public().(ed25519.PublicKey)
	for i := range 2000 {
		msg := binary.LittleEndian.AppendUint32([]byte("keyline lattice test "), uint32(i))
		sig := ed25519.Sign(priv, msg)
		h := sha512.New()
		h.Write(sig[:32])
		h.Write(pub)
		h.Write(msg)
		s, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
		if err != nil {
			t.Fatal(err)
		}
		var k [32]byte
		copy(k[:], s.Bytes())
		checkAgainstRef(t, &k)
	}
}

// edgeChallenges returns structured k: tiny ones, L-1 and its
// neighbours, powers of two and their neighbours, numbers near 2^128
// (where the first quotient is about 2^127), long runs of ones and zeros,
// multiples and near-multiples of powers of two, alternating bit
// patterns, and k = floor(8L/m) and its neighbours for small m (a large
// or exact first quotient).
func edgeChallenges() []*big.Int {
	var ks []*big.Int
	add := func(x *big.Int) {
		if x.Sign() >= 0 && x.Cmp(bigL) < 0 {
			ks = append(ks, new(big.Int).Set(x))
		}
	}
	near := func(x *big.Int, d int64) {
		for i := -d; i <= d; i++ {
			add(new(big.Int).Add(x, big.NewInt(i)))
		}
	}
	one := big.NewInt(1)
	pow2 := func(j uint) *big.Int { return new(big.Int).Lsh(one, j) }
	for i := range int64(1100) {
		add(big.NewInt(i))
	}
	near(new(big.Int).Sub(bigL, one), 40)
	near(bigL, 40)
	near(new(big.Int).Rsh(bigL, 1), 5)
	for j := uint(0); j < 253; j++ {
		near(pow2(j), 3)
		near(new(big.Int).Mul(big.NewInt(3), pow2(j)), 1)
	}
	near(pow2(128), 600)
	near(pow2(127), 100)
	near(pow2(129), 100)
	near(new(big.Int).Sub(pow2(128), pow2(64)), 3)
	near(new(big.Int).Add(pow2(128), pow2(64)), 3)
	for j := uint(1); j < 253; j += 3 {
		for i := uint(0); i+j <= 253; i += 7 {
			run := new(big.Int).Lsh(new(big.Int).Sub(pow2(j), one), i) // j ones, i zeros
			near(run, 1)
			add(new(big.Int).Sub(new(big.Int).Sub(bigL, one), run)) // a run of zeros in L-1-run
		}
	}
	rng := mrand.New(mrand.NewPCG(3, 4))
	for j := uint(1); j < 250; j += 5 {
		for range 4 {
			m := randBelow(rng, new(big.Int).Rsh(bigL, j))
			near(new(big.Int).Lsh(m, j), 1)
		}
	}
	for _, pat := range []uint64{0x5555555555555555, 0xaaaaaaaaaaaaaaaa, 0x3333333333333333, 0xf0f0f0f0f0f0f0f0, 0xffffffff00000000} {
		x := new(big.Int)
		for range 4 {
			x.Lsh(x, 64).Or(x, new(big.Int).SetUint64(pat))
		}
		add(new(big.Int).Rsh(x, 4))
		add(new(big.Int).Rsh(x, 130))
		add(new(big.Int).Rsh(x, 126))
	}
	for m := int64(8); m < 3000; m++ {
		near(new(big.Int).Quo(big8L, big.NewInt(m)), 1)
	}
	for j := uint(3); j < 200; j++ {
		near(new(big.Int).Rsh(big8L, j), 1)
	}
	return ks
}

// randBelow returns a random integer in [0, n), n > 0, close enough to
// uniform for test inputs (320 random bits reduced mod n).
func randBelow(rng *mrand.Rand, n *big.Int) *big.Int {
	var b [40]byte
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	return new(big.Int).Mod(new(big.Int).SetBytes(b[:]), n)
}

func TestReduceChallengeEdgeCases(t *testing.T) {
	ks := edgeChallenges()
	for _, x := range ks {
		checkAgainstRef(t, leKey(x))
	}
	// Checks that must not be vacuous: k = 0 gives (0, 1); small k gives
	// (k, 1); both branches of the parity choice occur.
	for _, x := range []int64{0, 1, 5, 1 << 40} {
		c0, c1, neg, ok := reduceChallenge(leKey(big.NewInt(x)))
		if !ok || leInt(c0[:]).Int64() != x || leInt(c1[:]).Int64() != 1 || neg {
			t.Errorf("k=%d: got c0=%v c1=%v neg=%v ok=%v, want (k, 1)", x, leInt(c0[:]), leInt(c1[:]), neg, ok)
		}
	}
	t.Logf("%d structured challenges", len(ks))
}

// TestReduceChallengeRejects checks that k >= L is refused with zero
// results.
func TestReduceChallengeRejects(t *testing.T) {
	big2to256 := new(big.Int).Lsh(big.NewInt(1), 256)
	for _, x := range []*big.Int{bigL, new(big.Int).Add(bigL, big.NewInt(1)), big8L, new(big.Int).Sub(big2to256, big.NewInt(1)), new(big.Int).Lsh(big.NewInt(1), 253)} {
		c0, c1, neg, ok := reduceChallenge(leKey(x))
		if ok || neg || c0 != ([32]byte{}) || c1 != ([32]byte{}) {
			t.Errorf("k=%v >= L: got ok=%v neg=%v c0=%x c1=%x, want refused", x, ok, neg, c0, c1)
		}
	}
}

// TestReduceChallengeBranches checks that random challenges exercise
// every case of the definition (row i, row i-1, row i+1; c1 negative and
// positive; results of more than 128 bits), so that the comparison with
// the reference covers each of reduceChallenge's branches.
func TestReduceChallengeBranches(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(5, 6))
	rows := map[int]int{}
	var neg, pos, long int
	for range 20000 {
		k := randScalarBytes(rng)
		c0, c1, n, ok, row := reduceChallengeRefRow(k)
		if !ok {
			continue
		}
		rows[row]++
		if n {
			neg++
		} else {
			pos++
		}
		if max(leInt(c0[:]).BitLen(), leInt(c1[:]).BitLen()) > 128 {
			long++
		}
	}
	if rows[0] == 0 || rows[-1] == 0 || rows[1] == 0 || neg == 0 || pos == 0 || long == 0 {
		t.Errorf("cases not all taken: row i %d, row i-1 %d, row i+1 %d, c1 < 0 %d, c1 > 0 %d, over 128 bits %d", rows[0], rows[-1], rows[1], neg, pos, long)
	}
	t.Logf("of 20000: row i %d, row i-1 %d, row i+1 %d, over 128 bits %d", rows[0], rows[-1], rows[1], long)
}

// TestReduceChallengeRefusesLong checks a k whose result would be too
// long: k = floor(8L / 2^115) has r_1 = k ~ 2^140, r_2 = 8L mod 2^115
// and t_2 = -2^115, even, so rows 1 (r = k) and 3 (|t| ~ 2^140) are both
// over 2^challengeBits and k is refused.
func TestReduceChallengeRefusesLong(t *testing.T) {
	k := leKey(new(big.Int).Rsh(big8L, 115))
	if checkAgainstRef(t, k) {
		t.Errorf("k=%x accepted, want refused (rows 1 and 3 over 2^%d)", k, challengeBits)
	}
}

// TestRowHoldsGuard checks the relation guard: the true rows i-1 and i
// pass it, and the same rows with the wrong sign or one of r, |t|, |s|
// altered fail it.
func TestRowHoldsGuard(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(7, 8))
	for range 200 {
		k := randScalarBytes(rng)
		var kl limbs4
		for i := range kl {
			kl[i] = binary.LittleEndian.Uint64(k[8*i:])
		}
		e := euclid{r0: order8L, r1: kl, t1: limbs4{1}, s0: limbs4{1}, odd1: true}
		for !below2to128(&e.r1) {
			if !e.lehmerStep() {
				e.exactStep()
			}
		}
		for _, row := range []struct {
			r, t, s limbs4
			odd     bool
		}{{e.r0, e.t0, e.s0, !e.odd1}, {e.r1, e.t1, e.s1, e.odd1}} {
			if !rowHolds(&kl, &row.r, &row.t, &row.s, row.odd) {
				t.Fatalf("k=%x: true row (r=%x t=%x s=%x odd=%v) fails the guard", k, row.r, row.t, row.s, row.odd)
			}
			if rowHolds(&kl, &row.r, &row.t, &row.s, !row.odd) {
				t.Fatalf("k=%x: row with the wrong sign passes the guard", k)
			}
			for _, f := range []*limbs4{&row.r, &row.t, &row.s} {
				for _, delta := range []limbs4{{1}, {0, 1}, {0, 0, 0, 1 << 60}} {
					saved := *f
					addLimbs(f, &delta)
					if rowHolds(&kl, &row.r, &row.t, &row.s, row.odd) {
						t.Fatalf("k=%x: row altered by %x passes the guard", k, delta)
					}
					*f = saved
				}
			}
		}
	}
}

// TestReduceChallengeAllocs checks that reduceChallenge does not
// allocate.
func TestReduceChallengeAllocs(t *testing.T) {
	k := randScalarBytes(mrand.New(mrand.NewPCG(9, 10)))
	if n := testing.AllocsPerRun(100, func() { reduceChallenge(k) }); n != 0 {
		t.Errorf("reduceChallenge allocates %v times per call, want 0", n)
	}
}

func FuzzReduceChallenge(f *testing.F) {
	f.Add(make([]byte, 32))
	f.Add(limbBytes(&scalarL))
	f.Add(leKey(new(big.Int).Sub(bigL, big.NewInt(1)))[:])
	f.Add(leKey(new(big.Int).Add(big2to128, big.NewInt(1)))[:])
	f.Add(bytes.Repeat([]byte{0xff}, 32))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) != 32 {
			return
		}
		k := [32]byte(b)
		checkAgainstRef(t, &k)
		k[31] &= 0x0f // below 2^252 < L: accepted unless too long
		checkAgainstRef(t, &k)
	})
}

// BenchmarkReduceChallenge times reduceChallenge on random challenges,
// and reports x-ed25519: its time over that of one ed25519.Verify timed
// right after the loop (compare also BenchmarkEd25519Verify in the same
// run).
func BenchmarkReduceChallenge(b *testing.B) {
	rng := mrand.New(mrand.NewPCG(11, 12))
	ks := make([]*[32]byte, 1024)
	for i := range ks {
		ks[i] = randScalarBytes(rng)
	}
	i := 0
	for b.Loop() {
		if _, _, _, ok := reduceChallenge(ks[i%len(ks)]); !ok && i < len(ks) {
			b.Fatalf("k=%x refused", ks[i])
		}
		i++
	}
	perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(perOp/ed25519VerifyNanos(200), "x-ed25519")
}

// ed25519VerifyNanos returns the mean time in ns of n ed25519.Verify
// calls on one valid signature.
func ed25519VerifyNanos(n int) float64 {
	priv := ed25519.NewKeyFromSeed(make([]byte, 32))
	msg := []byte("keyline reference message")
	sig := ed25519.Sign(priv, msg)
	pub := priv.Public().(ed25519.PublicKey)
	start := time.Now()
	for range n {
		if !ed25519.Verify(pub, msg, sig) {
			panic("ed25519 reference signature does not verify")
		}
	}
	return float64(time.Since(start).Nanoseconds()) / float64(n)
}
