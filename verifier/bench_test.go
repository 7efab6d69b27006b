package verifier

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/keyline/keyline/devices"
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
	b.ReportAllocs()
	b.ResetTimer()
	sigs, cpu := devices.SignaturesVerified(), newCPUMeter()
	for b.Loop() {
		if _, err := VerifyLookup(d.trust, nil, "alice", bundle, d.now); err != nil {
			b.Fatal(err)
		}
		cpu.done()
	}
	cpu.report(b, "lookup")
	b.ReportMetric(float64(devices.SignaturesVerified()-sigs)/float64(b.N), "sigs/lookup")
	b.ReportMetric(float64(len(bundle.MapProof)), "mapproof-B")
}

// warmEpoch is one epoch of BenchmarkVerifyLookupWarm: a full bundle for
// the first contact, held bundles for the others, and the state that holds
// the epoch's checkpoint.
type warmEpoch struct {
	full *LookupBundle
	held []*LookupBundle
	st   *ClientState
}

// BenchmarkVerifyLookupWarm measures VerifyLookup with a Cache, as a
// long-lived client (a chat app) runs it: it looks up the same 10 contacts
// again and again while the directory publishes epochs. Each epoch has a
// new checkpoint and new map proofs for every contact (other accounts
// changed: a real map of 2^16 accounts plus the contacts, 64 filler
// updates per epoch). perEpoch lookups share an epoch: the first gets a
// full bundle whose checkpoint the cache has not seen (log signature and
// two cosignatures verified, its EpochRecord inclusion proof of 20 hashes),
// the others held bundles verified against the state. The contacts' VRF
// proofs and AccountStates (two devices each) are unchanged, so the cache
// has them after the first round. One op is one lookup.
func BenchmarkVerifyLookupWarm(b *testing.B) {
	for _, perEpoch := range []int{1, 10} {
		b.Run(fmt.Sprintf("lookups-per-epoch=%d", perEpoch), func(b *testing.B) { benchWarm(b, perEpoch) })
	}
}

func benchWarm(b *testing.B, perEpoch int) {
	const contacts, epochs, fillers, churn = 10, 8, 1 << 16, 64
	d := newTestDir(b)
	var uids []string
	for i := range contacts {
		uid := fmt.Sprintf("contact%d", i)
		d.publish(d.create(uid))
		d.publish(d.addDevice(uid, uid+"-laptop"))
		uids = append(uids, uid)
	}
	m := vmap.NewMemStore()
	rnd := func() (u vmap.Update) {
		rand.Read(u.Index[:])
		rand.Read(u.Value[:])
		return u
	}
	var ups []vmap.Update
	for range fillers {
		ups = append(ups, rnd())
	}
	pis := map[string][]byte{}
	for _, uid := range uids {
		a := d.accounts[uid]
		up, _ := klog.ParseAccountUpdate(a.leaf)
		ups = append(ups, vmap.Update{Index: d.index(uid), Value: vmap.MapValue(up.Version, a.logIdx, klog.EntryHash(a.leaf))})
		_, pis[uid] = d.vrfKey.Prove([]byte(uid))
	}
	const size = 1 << 20
	var eps []warmEpoch
	for e := range epochs {
		if _, err := vmap.Apply(m, ups); err != nil {
			b.Fatal(err)
		}
		ups = ups[:0]
		for range churn {
			ups = append(ups, rnd())
		}
		root, err := vmap.Root(m)
		if err != nil {
			b.Fatal(err)
		}
		er := &klog.EpochRecord{Epoch: uint64(e + 1), MapRoot: root, Timestamp: uint64(d.now.Unix())}
		erLeaf, _ := er.Marshal()
		erHash := klog.EntryHash(erLeaf)
		L, rightSibs := randHashes(1)[0], randHashes(19)
		R := foldPath(erHash[:], rightSibs, false)
		c := klog.Checkpoint{Origin: testOrigin, Size: size}
		copy(c.Hash[:], rfc6962.DefaultHasher.HashChildren(L, R))
		note := d.signCheckpoint(c)
		ep := warmEpoch{st: &ClientState{Checkpoint: note, EpochRecord: erLeaf, EpochRecordInclusion: append(rightSibs, L)}}
		for _, uid := range uids {
			p, err := vmap.Prove(m, d.index(uid))
			if err != nil {
				b.Fatal(err)
			}
			a := d.accounts[uid]
			ep.held = append(ep.held, &LookupBundle{VRFProof: pis[uid], MapProof: enc(b, p), AccountUpdate: a.leaf, AccountUpdateIndex: a.logIdx})
		}
		full := *ep.held[0]
		full.Checkpoint, full.EpochRecord, full.EpochRecordInclusion = note, erLeaf, ep.st.EpochRecordInclusion
		ep.full = &full
		eps = append(eps, ep)
	}
	cache := NewCache(0)
	verifyOne := func(k int) {
		ep := &eps[(k/perEpoch)%epochs]
		j := k % contacts
		var err error
		if k%perEpoch == 0 {
			// A new epoch: its checkpoint was never seen.
			cache.mu.Lock()
			cache.checkpoints = nil
			cache.mu.Unlock()
			_, err = cache.VerifyLookup(d.trust, nil, uids[0], ep.full, d.now)
		} else {
			_, err = cache.VerifyLookup(d.trust, ep.st, uids[j], ep.held[j], d.now)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	for k := range contacts * perEpoch { // warm the VRF and payload tables
		verifyOne(k)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := newCPUMeter()
	k := 0
	for b.Loop() {
		verifyOne(k)
		k++
		cpu.done()
	}
	cpu.report(b, "lookup")
}

// BenchmarkVerifyLookupNewContact measures what a long-lived client (a
// chat app with a Cache) pays to look up a contact it has not looked up
// before, in an epoch whose checkpoint it already verified: a held bundle
// (checkpoint omitted; the state's checkpoint is a cache hit, its
// EpochRecord inclusion proof of 20 hashes in a 2^20-leaf log is checked
// again), a VRF proof, a derived-value map proof in a real map of 2^16
// accounts plus the contacts, and the contact's AccountUpdate with an
// AccountState of 1 or 2 devices. Every contact is a different account
// with its own root key, signing key and device keys, so nothing of the
// lookup is in the cache: the VRF proof and every signature of the
// AccountState (signing key cert, state, 2 per device) are verified. After
// each pass over the contacts the cache's VRF and payload tables are
// emptied (its checkpoint table is kept). One op is one lookup.
//
// A 2-device account is at v2 (created with one device, then one added).
// Client.Lookup then also applies the signing key generation rule to a
// new contact: it fetches the account's history from v1 and verifies it
// (checkGenerations). "devices=2,history" measures that too, as
// Client.Lookup runs it after VerifyLookup (the history bundles are
// fetched before the timer starts; the log is the test directory's real
// log of about 500 leaves, so its inclusion proofs have 9-10 hashes).
//
// sigs/lookup counts the Ed25519 signatures devices verified per lookup
// (devices.SignaturesVerified); x-ed25519 is the CPU per lookup over the
// CPU of one crypto/ed25519 verification measured in the same loop
// (cpuMeter).
func BenchmarkVerifyLookupNewContact(b *testing.B) {
	for _, devs := range []int{1, 2} {
		b.Run(fmt.Sprintf("devices=%d", devs), func(b *testing.B) { benchNewContact(b, devs, false) })
	}
	b.Run("devices=2,history", func(b *testing.B) { benchNewContact(b, 2, true) })
}

// historySource is a Source whose History answers come from a table.
type historySource struct {
	*testDir
	h map[string]*HistoryBundle
}

func (s *historySource) History(ctx context.Context, uid string, from uint64) (*HistoryBundle, error) {
	h := s.h[uid]
	if h == nil || len(h.Entries) == 0 {
		return nil, fmt.Errorf("no history of %s", uid)
	}
	if up, err := klog.ParseAccountUpdate(h.Entries[0].Leaf); err != nil || up.Version != from {
		return nil, fmt.Errorf("history of %s is held from v1, asked from v%d", uid, from)
	}
	return h, nil
}

func benchNewContact(b *testing.B, devs int, history bool) {
	const contacts, fillers = 256, 1 << 16
	d := newTestDir(b)
	var ups []vmap.Update
	for range fillers {
		var u vmap.Update
		rand.Read(u.Index[:])
		rand.Read(u.Value[:])
		ups = append(ups, u)
	}
	if _, err := vmap.Apply(d.m, ups); err != nil {
		b.Fatal(err)
	}
	var uids []string
	var es []entry
	for i := range contacts {
		uid := fmt.Sprintf("contact%d", i)
		uids = append(uids, uid)
		es = append(es, d.create(uid))
	}
	d.publish(es...)
	for i := 1; i < devs; i++ {
		es = es[:0]
		for _, uid := range uids {
			es = append(es, d.addDevice(uid, fmt.Sprintf("%s-device%d", uid, i)))
		}
		d.publish(es...)
	}
	root, err := vmap.Root(d.m)
	if err != nil {
		b.Fatal(err)
	}
	// The held checkpoint: a 2^20-leaf log whose last leaf is the
	// EpochRecord of this map root (20-hash inclusion proof).
	const size = 1 << 20
	er := &klog.EpochRecord{Epoch: d.epoch, MapRoot: root, Timestamp: uint64(d.now.Unix())}
	erLeaf, _ := er.Marshal()
	erHash := klog.EntryHash(erLeaf)
	L, rightSibs := randHashes(1)[0], randHashes(19)
	c := klog.Checkpoint{Origin: testOrigin, Size: size}
	copy(c.Hash[:], rfc6962.DefaultHasher.HashChildren(L, foldPath(erHash[:], rightSibs, false)))
	st := &ClientState{Checkpoint: d.signCheckpoint(c), EpochRecord: erLeaf, EpochRecordInclusion: append(rightSibs, L)}
	var client *Client
	if history {
		// The history must be in the lookup's checkpoint: use the real log.
		ctx := context.Background()
		n := d.size()
		ers, err := d.log.Entries(ctx, n-1, n)
		if err != nil {
			b.Fatal(err)
		}
		incl, err := d.log.InclusionProof(ctx, n-1, n)
		if err != nil {
			b.Fatal(err)
		}
		st = &ClientState{Checkpoint: d.cp, EpochRecord: ers[0], EpochRecordInclusion: incl}
		src := &historySource{testDir: d, h: map[string]*HistoryBundle{}}
		for _, uid := range uids {
			if src.h[uid], err = d.History(ctx, uid, 1); err != nil {
				b.Fatal(err)
			}
		}
		client = &Client{Trust: d.trust, Source: src, Now: func() time.Time { return d.now }}
	}
	var bundles []*LookupBundle
	for _, uid := range uids {
		p, err := vmap.Prove(d.m, d.index(uid))
		if err != nil {
			b.Fatal(err)
		}
		if p, err = p.WithoutValue(); err != nil {
			b.Fatal(err)
		}
		_, pi := d.vrfKey.Prove([]byte(uid))
		a := d.accounts[uid]
		bundles = append(bundles, &LookupBundle{VRFProof: pi, MapProof: enc(b, p), AccountUpdate: a.leaf, AccountUpdateIndex: a.logIdx})
	}
	cache := NewCache(0)
	if client != nil {
		client.Cache = cache
	}
	forget := func() { // new contacts: drop what the last pass verified
		cache.mu.Lock()
		cache.vrfs, cache.payloads = nil, nil
		cache.mu.Unlock()
	}
	check := func(uid string, res *LookupResult, err error) {
		if err != nil {
			b.Fatal(err)
		}
		if !res.Held || !res.Found || len(res.State.Devices) != devs {
			b.Fatalf("%s: held %v, found %v, %d devices", uid, res.Held, res.Found, len(res.State.Devices))
		}
	}
	verifyOne := func(k int) {
		j := k % contacts
		if j == 0 {
			forget()
		}
		if client == nil {
			res, err := cache.VerifyLookup(d.trust, st, uids[j], bundles[j], d.now)
			check(uids[j], res, err)
			return
		}
		// As Client.Lookup: one lookup memo for the lookup and its
		// history walk.
		memo := devices.NewLookupMemo()
		res, err := cache.verifyLookupMemo(d.trust, st, uids[j], bundles[j], d.now, memo)
		res, err = client.checkGenerations(context.Background(), st, uids[j], res, err, memo)
		check(uids[j], res, err)
	}
	for k := range contacts { // check every bundle; caches the held checkpoint
		verifyOne(k)
	}
	b.ReportAllocs()
	b.ResetTimer()
	sigs, cpu := devices.SignaturesVerified(), newCPUMeter()
	k := 0
	for b.Loop() {
		verifyOne(k)
		k++
		cpu.done()
	}
	cpu.report(b, "lookup")
	b.ReportMetric(float64(devices.SignaturesVerified()-sigs)/float64(b.N), "sigs/lookup")
}

// reportCPU reports the process CPU time per op since start, in µs (the
// figure to compare on a loaded machine: ns/op counts the wait for a CPU).
func reportCPU(b *testing.B, start time.Duration, op string) {
	if used := processCPU() - start; used > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/1e3/float64(b.N), "cpu-µs/"+op)
	}
}

// cpuMeter measures a benchmark's process CPU per op against crypto/ed25519
// verification measured in the same loop: after every edEvery ops it
// verifies edBlock signatures (a 200-byte message, as
// BenchmarkEd25519Verify) and times them apart, so that on a loaded
// machine both figures are taken under the same load. The reference's CPU
// is not counted in the ops' (ns/op includes it; it is not used).
type cpuMeter struct {
	start, ref time.Duration
	refN, ops  int
	pub        ed25519.PublicKey
	msg, sig   []byte
}

const edEvery, edBlock = 8, 4

// newCPUMeter starts measuring; call it right before the loop.
func newCPUMeter() *cpuMeter {
	pub, priv, _ := ed25519.GenerateKey(nil)
	msg := make([]byte, 200)
	m := &cpuMeter{pub: pub, msg: msg, sig: ed25519.Sign(priv, msg)}
	m.start = processCPU()
	return m
}

// done is called after each op.
func (m *cpuMeter) done() {
	if m.ops++; m.ops%edEvery == 0 {
		m.reference()
	}
}

func (m *cpuMeter) reference() {
	c0 := processCPU()
	for range edBlock {
		if !ed25519.Verify(m.pub, m.msg, m.sig) {
			panic("ed25519 reference signature does not verify")
		}
	}
	m.ref += processCPU() - c0
	m.refN += edBlock
}

// report reports cpu-µs/<op> (process CPU per op, reference excluded) and
// x-ed25519 (that over the CPU of one reference verification).
func (m *cpuMeter) report(b *testing.B, op string) {
	if m.refN == 0 {
		m.reference()
	}
	used := processCPU() - m.start - m.ref
	if used <= 0 || b.N == 0 {
		return
	}
	us := float64(used.Nanoseconds()) / 1e3 / float64(b.N)
	b.ReportMetric(us, "cpu-µs/"+op)
	ed := float64(m.ref.Nanoseconds()) / 1e3 / float64(m.refN)
	if ed > 0 {
		b.ReportMetric(us/ed, "x-ed25519")
	}
}
