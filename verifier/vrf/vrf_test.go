package vrf

import (
	"bytes"
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"filippo.io/edwards25519"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/vrf")

type rfcVector struct {
	Name  string `json:"name"`
	SK    string `json:"sk"`
	PK    string `json:"pk"`
	Alpha string `json:"alpha"`
	X     string `json:"x"`
	Ctr   int    `json:"ctr"`
	H     string `json:"h"`
	K     string `json:"k"`
	U     string `json:"u"`
	V     string `json:"v"`
	Pi    string `json:"pi"`
	Beta  string `json:"beta"`
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func loadRFCVectors(t testing.TB) []rfcVector {
	t.Helper()
	b, err := os.ReadFile("../../testdata/vrf/rfc9381_b3.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []rfcVector
	if err := json.Unmarshal(b, &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs) != 3 {
		t.Fatalf("want the 3 vectors of RFC 9381 B.3, got %d", len(vs))
	}
	return vs
}

func TestRFC9381Vectors(t *testing.T) {
	for _, v := range loadRFCVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			sk, err := NewKeyFromSeed(unhex(t, v.SK))
			if err != nil {
				t.Fatal(err)
			}
			if got := sk.Public().Bytes(); !bytes.Equal(got, unhex(t, v.PK)) {
				t.Errorf("PK = %x, want %s", got, v.PK)
			}
			// x is the clamped integer (before reduction mod q).
			h := sha512.Sum512(unhex(t, v.SK))
			h[0] &= 248
			h[31] &= 127
			h[31] |= 64
			if got := h[:32]; !bytes.Equal(got, unhex(t, v.X)) {
				t.Errorf("x = %x, want %s", got, v.X)
			}
			xr, _ := new(edwards25519.Scalar).SetBytesWithClamping(unhex(t, v.X))
			if xr.Equal(&sk.x) != 1 {
				t.Errorf("secret scalar does not match x mod q")
			}
			alpha := unhex(t, v.Alpha)
			pi, tr := sk.prove(alpha)
			if tr.ctr != v.Ctr {
				t.Errorf("ctr = %d, want %d", tr.ctr, v.Ctr)
			}
			if !bytes.Equal(tr.h, unhex(t, v.H)) {
				t.Errorf("H = %x, want %s", tr.h, v.H)
			}
			if !bytes.Equal(tr.kString[:], unhex(t, v.K)) {
				t.Errorf("k = %x, want %s", tr.kString, v.K)
			}
			if !bytes.Equal(tr.u, unhex(t, v.U)) {
				t.Errorf("U = %x, want %s", tr.u, v.U)
			}
			if !bytes.Equal(tr.v, unhex(t, v.V)) {
				t.Errorf("V = %x, want %s", tr.v, v.V)
			}
			if !bytes.Equal(pi, unhex(t, v.Pi)) {
				t.Errorf("pi = %x, want %s", pi, v.Pi)
			}
			beta, pi2 := sk.Prove(alpha)
			if !bytes.Equal(pi2, pi) {
				t.Errorf("Prove pi differs from traced pi")
			}
			if !bytes.Equal(beta, unhex(t, v.Beta)) {
				t.Errorf("beta = %x, want %s", beta, v.Beta)
			}
			pb, err := ProofToHash(unhex(t, v.Pi))
			if err != nil || !bytes.Equal(pb, unhex(t, v.Beta)) {
				t.Errorf("ProofToHash = %x, %v; want %s", pb, err, v.Beta)
			}
			pk, err := NewPublicKey(unhex(t, v.PK))
			if err != nil {
				t.Fatal(err)
			}
			vb, err := pk.Verify(alpha, unhex(t, v.Pi))
			if err != nil || !bytes.Equal(vb, unhex(t, v.Beta)) {
				t.Errorf("Verify = %x, %v; want %s", vb, err, v.Beta)
			}
			// Wrong alpha must not verify.
			if _, err := pk.Verify(append(alpha, 0), unhex(t, v.Pi)); !errors.Is(err, ErrInvalidProof) {
				t.Errorf("Verify with wrong alpha: err = %v, want ErrInvalidProof", err)
			}
		})
	}
}

func TestVerifyRejectsMutations(t *testing.T) {
	sk, err := GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk := sk.Public()
	alpha := []byte("alice@example.org")
	_, pi := sk.Prove(alpha)
	for i := 0; i < len(pi)*8; i++ {
		m := bytes.Clone(pi)
		m[i/8] ^= 1 << (i % 8)
		if beta, err := pk.Verify(alpha, m); err == nil {
			t.Fatalf("bit flip %d accepted, beta %x", i, beta)
		}
	}
	for _, l := range []int{0, 1, 32, 48, 79, 81} {
		m := make([]byte, l)
		copy(m, pi)
		if _, err := pk.Verify(alpha, m); !errors.Is(err, ErrMalformedProof) {
			t.Errorf("length %d: err = %v, want ErrMalformedProof", l, err)
		}
	}
	other, _ := GenerateKey(rand.Reader)
	if _, err := other.Public().Verify(alpha, pi); !errors.Is(err, ErrInvalidProof) {
		t.Errorf("other key: err = %v, want ErrInvalidProof", err)
	}
}

// TestVerifyRejectsSEqualQ checks that s is required to be < q: adding q to
// a valid s gives the same group element but must be rejected.
func TestVerifyRejectsNonCanonicalS(t *testing.T) {
	sk, _ := NewKeyFromSeed(make([]byte, 32))
	_, pi := sk.Prove([]byte("x"))
	// q = 2^252 + 27742317777372353535851937790883648493, little endian.
	q := unhex(t, "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")
	m := bytes.Clone(pi)
	var carry uint16
	for i := 0; i < 32; i++ {
		sum := uint16(m[48+i]) + uint16(q[i]) + carry
		m[48+i] = byte(sum)
		carry = sum >> 8
	}
	if carry != 0 {
		t.Skip("s+q overflows 256 bits for this key")
	}
	if _, err := sk.Public().Verify([]byte("x"), m); !errors.Is(err, ErrMalformedProof) {
		t.Errorf("s+q: err = %v, want ErrMalformedProof", err)
	}
}

func TestNewPublicKeyRejects(t *testing.T) {
	identity := edwards25519.NewIdentityPoint().Bytes()
	// A point of order 8 (from the edwards25519 torsion subgroup).
	order8 := unhex(t, "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
	// y = p (non-canonical encoding of y = 0... actually y = p ≡ 0).
	nonCanonical := unhex(t, "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
	// Identity with the sign bit set ("negative zero" x).
	negZero := bytes.Clone(identity)
	negZero[31] |= 0x80
	notOnCurve := unhex(t, "0200000000000000000000000000000000000000000000000000000000000000")
	for name, b := range map[string][]byte{
		"identity": identity, "order8": order8, "y=p": nonCanonical,
		"negzero": negZero, "offcurve": notOnCurve, "short": identity[:31],
	} {
		if _, err := NewPublicKey(b); !errors.Is(err, ErrInvalidPublicKey) {
			t.Errorf("%s: err = %v, want ErrInvalidPublicKey", name, err)
		}
	}
	// Gamma with a non-canonical encoding must be rejected in proofs too.
	pi := make([]byte, ProofSize)
	copy(pi, nonCanonical)
	if _, err := ProofToHash(pi); !errors.Is(err, ErrMalformedProof) {
		t.Errorf("non-canonical Gamma: err = %v", err)
	}
}

func TestSeedFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "vrf.seed")
	sk, created, err := LoadOrCreateSeedFile(path, rand.Reader)
	if err != nil || !created {
		t.Fatalf("create: %v, created=%v", err, created)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode = %04o, want 0600", st.Mode().Perm())
	}
	sk2, created, err := LoadOrCreateSeedFile(path, rand.Reader)
	if err != nil || created {
		t.Fatalf("load: %v, created=%v", err, created)
	}
	if !sk.Public().Equal(sk2.Public()) || !bytes.Equal(sk.Seed(), sk2.Seed()) {
		t.Error("reloaded key differs")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSeedFile(path); !errors.Is(err, ErrSeedFilePermissions) {
		t.Errorf("0644: err = %v, want ErrSeedFilePermissions", err)
	}
	good := sk.MarshalSeedFile()
	for name, b := range map[string][]byte{
		"upper":    bytes.ToUpper(good),
		"noeol":    good[:len(good)-1],
		"extra":    append(bytes.Clone(good), '\n'),
		"badhdr":   append([]byte("keyline-vrf-seed-v2 "), good[20:]...),
		"nonhex":   append(append(bytes.Clone(good[:20]), 'g'), good[21:]...),
		"trailing": append(bytes.Clone(good[:len(good)-1]), ' '),
	} {
		if _, err := ParseSeedFile(b); !errors.Is(err, ErrInvalidSeed) {
			t.Errorf("%s: err = %v, want ErrInvalidSeed", name, err)
		}
	}
}

// TestIndexGolden pins Index for the RFC vectors' betas.
func TestIndexGolden(t *testing.T) {
	const path = "../../testdata/vrf/index.json"
	type entry struct {
		Beta  string `json:"beta"`
		Index string `json:"index"`
	}
	var got []entry
	for _, v := range loadRFCVectors(t) {
		idx := Index(unhex(t, v.Beta))
		got = append(got, entry{v.Beta, hex.EncodeToString(idx[:])})
	}
	if *update {
		b, _ := json.MarshalIndent(got, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want []entry
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if len(want) != len(got) {
		t.Fatalf("golden has %d entries, want %d", len(want), len(got))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("Index(%s) = %s, golden %s", got[i].Beta, got[i].Index, want[i].Index)
		}
	}
}

func FuzzVerify(f *testing.F) {
	sk, _ := NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	pk := sk.Public()
	for _, a := range []string{"", "alice", "bob@example.org"} {
		_, pi := sk.Prove([]byte(a))
		f.Add([]byte(a), pi)
	}
	f.Add([]byte("x"), make([]byte, 80))
	f.Fuzz(func(t *testing.T, alpha, pi []byte) {
		beta, err := pk.Verify(alpha, pi)
		_, want := sk.Prove(alpha)
		if bytes.Equal(pi, want) {
			if err != nil {
				t.Fatalf("valid proof rejected: %v", err)
			}
			return
		}
		// VRF proofs for this suite are unique given canonical encodings.
		if err == nil {
			t.Fatalf("non-canonical proof %x accepted for alpha %x (beta %x)", pi, alpha, beta)
		}
		if !errors.Is(err, ErrMalformedProof) && !errors.Is(err, ErrInvalidProof) {
			t.Fatalf("unexpected error type %v", err)
		}
	})
}

func FuzzNewPublicKey(f *testing.F) {
	sk, _ := NewKeyFromSeed(make([]byte, 32))
	f.Add(sk.Public().Bytes())
	f.Add(edwards25519.NewIdentityPoint().Bytes())
	f.Add(make([]byte, 31))
	f.Fuzz(func(t *testing.T, b []byte) {
		pk, err := NewPublicKey(b)
		if err != nil {
			return
		}
		if !bytes.Equal(pk.Bytes(), b) {
			t.Fatalf("round trip %x -> %x", b, pk.Bytes())
		}
	})
}

func FuzzParseSeedFile(f *testing.F) {
	sk, _ := NewKeyFromSeed(make([]byte, 32))
	f.Add(sk.MarshalSeedFile())
	f.Add([]byte("keyline-vrf-seed-v1 \n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		sk, err := ParseSeedFile(b)
		if err != nil {
			return
		}
		if !bytes.Equal(sk.MarshalSeedFile(), b) {
			t.Fatalf("round trip mismatch")
		}
	})
}

func BenchmarkProve(b *testing.B) {
	sk, _ := NewKeyFromSeed(make([]byte, 32))
	alpha := []byte("alice@example.org")
	for b.Loop() {
		sk.Prove(alpha)
	}
}

func BenchmarkVerify(b *testing.B) {
	sk, _ := NewKeyFromSeed(make([]byte, 32))
	pk := sk.Public()
	alpha := []byte("alice@example.org")
	_, pi := sk.Prove(alpha)
	for b.Loop() {
		if _, err := pk.Verify(alpha, pi); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDecodePointCanonical compares the byte-level canonicity check with
// the definition: SetBytes succeeds and re-encoding gives the same bytes.
func TestDecodePointCanonical(t *testing.T) {
	reference := func(b []byte) bool {
		p, err := new(edwards25519.Point).SetBytes(b)
		return err == nil && bytes.Equal(p.Bytes(), b)
	}
	var cases [][]byte
	// Every y in [p-3, 2^255-1] and y in {0, 1, 2} with both sign bits.
	for low := 0xe9; low <= 0xff; low++ {
		for _, sign := range []byte{0, 0x80} {
			b := bytes.Repeat([]byte{0xff}, 32)
			b[0] = byte(low)
			b[31] = 0x7f | sign
			cases = append(cases, b)
		}
	}
	for y := 0; y < 3; y++ {
		for _, sign := range []byte{0, 0x80} {
			b := make([]byte, 32)
			b[0] = byte(y)
			b[31] = sign
			cases = append(cases, b)
		}
	}
	rnd := make([]byte, 32*4000)
	rand.Read(rnd)
	for i := 0; i < 4000; i++ {
		cases = append(cases, rnd[32*i:32*i+32])
	}
	for _, b := range cases {
		var p edwards25519.Point
		if got, want := decodePoint(&p, b), reference(b); got != want {
			t.Fatalf("decodePoint(%x) = %v, reference %v", b, got, want)
		}
	}
}

func TestVerifyIndex(t *testing.T) {
	sk, _ := NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	beta, pi := sk.Prove([]byte("alice"))
	got, err := sk.Public().VerifyIndex([]byte("alice"), pi)
	if err != nil || got != Index(beta) {
		t.Fatalf("VerifyIndex = %x, %v", got, err)
	}
	if _, err := sk.Public().VerifyIndex([]byte("bob"), pi); !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("VerifyIndex for another id: %v", err)
	}
}

// TestEncodePoints checks the batched encoding against Point.Bytes, for
// points with Z != 1 (sums and multiples) and the identity.
func TestEncodePoints(t *testing.T) {
	var ps []*edwards25519.Point
	p := edwards25519.NewGeneratorPoint()
	for i := range 20 {
		q := new(edwards25519.Point).Add(p, edwards25519.NewGeneratorPoint())
		if i%3 == 0 {
			q.Negate(q)
		}
		ps = append(ps, q)
		p = new(edwards25519.Point).MultByCofactor(q)
	}
	ps = append(ps, edwards25519.NewIdentityPoint())
	for n := 1; n <= len(ps); n++ {
		got := make([][32]byte, n)
		encodePointsTo(got, ps[:n])
		for i, q := range ps[:n] {
			if !bytes.Equal(got[i][:], q.Bytes()) {
				t.Fatalf("encodePointsTo of %d points: point %d encodes as %x, Bytes gives %x", n, i, got[i], q.Bytes())
			}
		}
	}
}

// TestEncodeToCurveAlphaLengths checks encodeToCurve against the hash of
// RFC 9381 section 5.4.1.1 computed with a streaming SHA-512, for alphas
// shorter and longer than its stack buffer.
func TestEncodeToCurveAlphaLengths(t *testing.T) {
	sk, _ := NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	pk := sk.Public().Bytes()
	for _, n := range []int{0, 1, 219, 220, 221, 300, 5000} {
		alpha := bytes.Repeat([]byte{byte(n)}, n)
		var want *edwards25519.Point
		for ctr := 0; ctr < 256 && want == nil; ctr++ {
			h := sha512.New()
			h.Write([]byte{suiteString, 0x01})
			h.Write(pk)
			h.Write(alpha)
			h.Write([]byte{byte(ctr), 0x00})
			if p, err := new(edwards25519.Point).SetBytes(h.Sum(nil)[:32]); err == nil && isCanonicalEncoding(h.Sum(nil)[:32]) {
				want = new(edwards25519.Point).MultByCofactor(p)
			}
		}
		got, _, err := encodeToCurve(pk, alpha)
		if err != nil || want == nil || got.Equal(want) != 1 {
			t.Fatalf("alpha of %d bytes: encodeToCurve = %v, %v; want %v", n, got, err, want)
		}
		_, pi := sk.Prove(alpha)
		if _, err := sk.Public().Verify(alpha, pi); err != nil {
			t.Fatalf("alpha of %d bytes: %v", n, err)
		}
	}
}
