package verifier

import (
	"crypto/rand"
	"testing"

	"github.com/transparency-dev/merkle/rfc6962"

	klog "github.com/keyline/keyline/log"
	"github.com/keyline/keyline/verifier/vmap"
)

// foldMap computes the map root over value at idx with the given siblings
// (depths 0..n-1), as docs/protocol.md §5.2.3 defines verification.
func foldMap(idx [32]byte, value [32]byte, sibs []vmap.Sibling) [32]byte {
	h := vmap.LeafHash(idx, value)
	for i := len(sibs) - 1; i >= 0; i-- {
		d := sibs[i].Depth
		var prefix [32]byte
		for b := 0; b < int(d); b++ {
			if idx[b/8]&(0x80>>(b%8)) != 0 {
				prefix[b/8] |= 0x80 >> (b % 8)
			}
		}
		if idx[d/8]&(0x80>>(d%8)) == 0 {
			h = vmap.NodeHash(d, prefix, h, sibs[i].Hash)
		} else {
			h = vmap.NodeHash(d, prefix, sibs[i].Hash, h)
		}
	}
	return h
}

func randHashes(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = make([]byte, 32)
		rand.Read(out[i])
	}
	return out
}

// foldPath hashes leafHash up a perfect subtree along the leftmost (left
// true) or rightmost path with the given siblings (bottom first).
func foldPath(leafHash []byte, sibs [][]byte, left bool) []byte {
	h := leafHash
	for _, s := range sibs {
		if left {
			h = rfc6962.DefaultHasher.HashChildren(h, s)
		} else {
			h = rfc6962.DefaultHasher.HashChildren(s, h)
		}
	}
	return h
}

// BenchmarkVerifyLookup measures VerifyLookup on a bundle with the proof
// sizes of a directory with 2^20 log leaves and about 1M accounts: a
// 20-hash log inclusion proof of the EpochRecord at leaf 2^20-1 (the
// AccountUpdate at leaf 0, in one real RFC 6962 tree shape), a 20-sibling map inclusion
// proof, a real VRF proof, a checkpoint with the log signature and two
// witness cosignatures, and an AccountState with two devices.
func BenchmarkVerifyLookup(b *testing.B) {
	d := newTestDir(b)
	d.publish(d.create("alice"))
	d.publish(d.addDevice("alice", "alice-laptop"))
	a := d.accounts["alice"]
	const size = 1 << 20
	idx := d.index("alice")
	up, _ := klog.ParseAccountUpdate(a.leaf)
	eh := klog.EntryHash(a.leaf)
	value := vmap.MapValue(up.Version, 0, eh)
	var sibs []vmap.Sibling
	for i, h := range randHashes(20) {
		sibs = append(sibs, vmap.Sibling{Depth: uint8(i), Hash: [32]byte(h)})
	}
	mp := &vmap.Proof{Kind: vmap.Inclusion, Siblings: sibs, Value: value}
	mapRoot := foldMap(idx, value, sibs)
	er := &klog.EpochRecord{Epoch: 7, MapRoot: mapRoot, Timestamp: uint64(d.now.Unix())}
	erLeaf, _ := er.Marshal()
	erHash := klog.EntryHash(erLeaf)
	leftSibs, rightSibs := randHashes(19), randHashes(19)
	L := foldPath(eh[:], leftSibs, true)
	R := foldPath(erHash[:], rightSibs, false)
	_ = R
	root := rfc6962.DefaultHasher.HashChildren(L, R)
	c := klog.Checkpoint{Origin: testOrigin, Size: size}
	copy(c.Hash[:], root)
	_, pi := d.vrfKey.Prove([]byte("alice"))
	bundle := &LookupBundle{
		Checkpoint:           d.signCheckpoint(c),
		VRFProof:             pi,
		MapProof:             enc(b, mp),
		EpochRecord:          erLeaf,
		EpochRecordInclusion: append(rightSibs, L),
		AccountUpdate:        a.leaf,
		AccountUpdateIndex:   0,
	}
	res, err := VerifyLookup(d.trust, nil, "alice", bundle, d.now)
	if err != nil {
		b.Fatal(err)
	}
	if len(res.State.Devices) != 2 || res.Checkpoint.Size != size {
		b.Fatal("unexpected result")
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := VerifyLookup(d.trust, nil, "alice", bundle, d.now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(bundle.MapProof)), "mapproof-B")
}
