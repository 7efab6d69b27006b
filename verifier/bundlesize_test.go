package verifier

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/proof"

	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier/vmap"
)

// mapSiblings returns how many siblings the vmap proof of keys[i] has in a
// map holding exactly the (sorted, distinct) keys: one per branching node
// on its path, i.e. per depth at which the keys sharing its prefix split.
// Keys are the indexes' first 64 bits (enough below 2^32 keys: a split
// deeper than 64 bits is as likely as a 64-bit collision).
func mapSiblings(keys []uint64, i int) int {
	k := keys[i]
	lo, hi, n := 0, len(keys), 0
	for depth := 0; hi-lo > 1 && depth < 64; depth++ {
		bit := uint64(1) << (63 - depth)
		// keys[lo:hi] share k's first depth bits; m is the first with bit set.
		m := lo + slices.IndexFunc(keys[lo:hi], func(x uint64) bool { return x&bit != 0 })
		if m < lo {
			m = hi
		}
		if m == lo || m == hi {
			continue
		}
		n++
		if k&bit != 0 {
			lo = m
		} else {
			hi = m
		}
	}
	return n
}

// mapSiblingsFast is mapSiblings with binary search (keys sorted).
func mapSiblingsFast(keys []uint64, i int) int {
	k := keys[i]
	lo, hi, n := 0, len(keys), 0
	for depth := 0; hi-lo > 1 && depth < 64; depth++ {
		bit := uint64(1) << (63 - depth)
		// Within keys[lo:hi] (common prefix of depth bits) the ones with
		// the bit set come last.
		m := lo + sortSearch(hi-lo, func(j int) bool { return keys[lo+j]&bit != 0 })
		if m == lo || m == hi {
			continue
		}
		n++
		if k&bit != 0 {
			lo = m
		} else {
			hi = m
		}
	}
	return n
}

func sortSearch(n int, f func(int) bool) int {
	i, j := 0, n
	for i < j {
		h := int(uint(i+j) >> 1)
		if !f(h) {
			i = h + 1
		} else {
			j = h
		}
	}
	return i
}

func randomKeys(n int, r *mrand.Rand) []uint64 {
	keys := make([]uint64, n)
	for i := range keys {
		keys[i] = r.Uint64()
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// The sibling count model is exact: for a real vmap of the same keys the
// encoded inclusion proof is 3 + 33 x mapSiblings + 32 bytes, for every
// key. (BenchmarkBundleSize relies on it for sizes too large to build.)
func TestMapSiblingModel(t *testing.T) {
	r := mrand.New(mrand.NewPCG(1, 2))
	keys := randomKeys(5000, r)
	m := vmap.NewMemStore()
	var ups []vmap.Update
	idx := make([]vmap.Index, len(keys))
	for i, k := range keys {
		binary.BigEndian.PutUint64(idx[i][:8], k)
		rand.Read(idx[i][8:])
		ups = append(ups, vmap.Update{Index: idx[i], Value: vmap.Hash{1}})
	}
	if _, err := vmap.Apply(m, ups); err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		p, err := vmap.Prove(m, idx[i])
		if err != nil {
			t.Fatal(err)
		}
		enc, _ := p.MarshalBinary()
		if want := 3 + 33*mapSiblings(keys, i) + 32; len(enc) != want || mapSiblingsFast(keys, i) != mapSiblings(keys, i) {
			t.Fatalf("key %d: proof %d bytes, model %d (fast %d)", i, len(enc), want, 3+33*mapSiblingsFast(keys, i)+32)
		}
	}
}

// BenchmarkBundleSize reports the bytes of a lookup bundle of an existing
// account at N accounts (KEYLINE_BUNDLE_SIZE_N, comma-separated; default
// 10000,100000,1000000,10000000), including its payload, as the sum of the
// byte fields plus 8 for the log index (what loadgen.BundleSize counts) and
// as an encoded protobuf LookupResponse (pb-, with field tags and lengths):
//
//   - held: checkpoint omitted (the steady state): VRF proof, map proof,
//     AccountUpdate leaf (78 B + payload), log index;
//   - full: the first lookup of an epoch by a client without a checkpoint:
//     also the checkpoint note, the EpochRecord and its inclusion proof;
//   - fullcons: full plus the consistency proof from the previous epoch
//     (1,000 leaves earlier): the first lookup of an epoch by a client
//     that holds the previous one;
//   - old: the bundle before this change: full plus the AccountUpdate's
//     log inclusion proof.
//
// Map proof: the mean over 20,000 random accounts of a map of N random
// indexes (mapSiblingsFast, exact per TestMapSiblingModel). Log: 1.05 N
// leaves (creates, updates, EpochRecords); the proofs' hash counts are
// exact for that size (proof.Inclusion, proof.Consistency), the
// AccountUpdate's averaged over random leaves. Checkpoint note, VRF proof,
// EpochRecord and AccountState are real ones of the test directory (origin
// keyline.test/dir, two witness cosignatures); the account has one device,
// as `keyline bench`'s (payload-B), and held-2dev-B is the held bundle of
// an account with two.
func BenchmarkBundleSize(b *testing.B) {
	ns := []int{10000, 100000, 1000000, 10000000}
	if s := os.Getenv("KEYLINE_BUNDLE_SIZE_N"); s != "" {
		ns = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				b.Fatal(err)
			}
			ns = append(ns, n)
		}
	}
	d := newTestDir(b)
	d.publish(d.create("alice"), d.create("bob"))
	d.publish(d.addDevice("alice", "alice-laptop"))
	full := d.bundle("bob", 0)
	up, _ := klog.ParseAccountUpdate(full.AccountUpdate)
	up2, _ := klog.ParseAccountUpdate(d.bundle("alice", 0).AccountUpdate)
	pbBytes := func(n float64) float64 { return 1 + float64(uvarintLen(uint64(n))) + n }
	for _, n := range ns {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			r := mrand.New(mrand.NewPCG(uint64(n), 7))
			keys := randomKeys(n, r)
			size := uint64(n) + uint64(n)/20
			const samples = 20000
			var sib, auHashes int
			for range samples {
				sib += mapSiblingsFast(keys, r.IntN(len(keys)))
				auHashes += len(mustNodes(b, proof.Inclusion, r.Uint64N(size-1), size).IDs)
			}
			mapProof := 3 + 33*float64(sib)/samples + 32
			auProof := 32 * float64(auHashes) / samples
			erHashes := len(mustNodes(b, proof.Inclusion, size-1, size).IDs)
			consHashes := len(mustNodes(b, proof.Consistency, size-1000, size).IDs)
			vrfB, erB, cpB, auB := float64(len(full.VRFProof)), float64(len(full.EpochRecord)), float64(len(full.Checkpoint)), float64(len(full.AccountUpdate))
			idx := float64(uvarintLen(size / 2))
			held := vrfB + mapProof + auB + 8
			fullB := held + cpB + erB + 32*float64(erHashes)
			pbHeld := pbBytes(vrfB) + pbBytes(mapProof) + pbBytes(auB) + 1 + idx
			pbFull := pbHeld + pbBytes(cpB) + pbBytes(erB) + 34*float64(erHashes)
			for b.Loop() {
			}
			b.ReportMetric(mapProof, "mapproof-B")
			b.ReportMetric(float64(len(up.Payload)), "payload-B")
			b.ReportMetric(cpB, "checkpoint-B")
			b.ReportMetric(float64(erHashes), "epochrecord-hashes")
			b.ReportMetric(float64(consHashes), "consistency-hashes")
			b.ReportMetric(held, "held-B")
			b.ReportMetric(held+float64(len(up2.Payload)-len(up.Payload)), "held-2dev-B")
			b.ReportMetric(fullB, "full-B")
			b.ReportMetric(fullB+32*float64(consHashes), "fullcons-B")
			b.ReportMetric(fullB+auProof, "old-B")
			b.ReportMetric(pbHeld, "pb-held-B")
			b.ReportMetric(pbFull, "pb-full-B")
			b.ReportMetric(pbFull+34*float64(consHashes), "pb-fullcons-B")
		})
	}
}

func mustNodes(b *testing.B, f func(a, b uint64) (proof.Nodes, error), x, y uint64) proof.Nodes {
	n, err := f(x, y)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

func uvarintLen(v uint64) int {
	return len(binary.AppendUvarint(nil, v))
}
