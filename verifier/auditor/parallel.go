package auditor

import (
	"bytes"
	"github.com/keyline/keyline/verifier"
	"runtime"
	"sync"
	"sync/atomic"

	"go.etcd.io/bbolt"
)

// Parallel pre-check of a batch.
//
// The rule pass (replay) is sequential and authoritative: it walks the
// batch in log order and stops at the first violation. What makes it slow
// is Ed25519 verification inside checkEntry (devices.VerifyCreate,
// VerifyTransition, VerifyReset), and checkEntry is a pure function of the
// reset key (fixed for the auditor), the previous entry's leaf bytes (or
// none) and the entry's leaf bytes; decodeEntry is a pure function of the
// leaf bytes. So before the rule pass a batch is pre-checked on
// Options.Workers goroutines:
//
//  1. decodeEntry of every leaf, in parallel;
//  2. in log order, on the calling goroutine, a guess of each
//     AccountUpdate's previous leaf: the latest earlier leaf of the same
//     index in the batch, else the index's latest leaf before the batch
//     (prevSource: the previous batch's, still in memory, or the stored
//     one), which is exactly what the rule pass will find if no earlier
//     leaf is a violation (and after one it stops anyway);
//  3. in parallel: decodeEntry of a guessed stored leaf, then
//     checkEntry(reset key, decoded guess, entry).
//
// The rule pass then uses a pre-checked result only if the previous leaf
// it actually finds is byte-identical to the guessed one (both absent, or
// equal bytes); otherwise it calls checkEntry itself. The pre-check is
// thus a cache of pure function results keyed by their whole input: it
// cannot change which rule is reported, at which index, with which detail
// or evidence. TestParallelSameViolations checks this on every violating
// scenario against Workers = 1, which skips the pre-check.

// decoded is the result of decodeEntry for one leaf.
type decoded struct {
	ok     bool // computed (false: the rule pass must compute it)
	e      *entry
	rule   Rule
	detail string
}

// checked is the result of checkEntry for one AccountUpdate, computed with
// prevLeaf as the previous entry's leaf (nil: a new index).
type checked struct {
	ok       bool // computed (false: the rule pass must compute it)
	prevLeaf []byte
	rule     Rule
	detail   string
}

// precheck holds the pre-checked results of one batch, by position, and
// the previous entry guessed for each AccountUpdate (prev[k], nil for a
// new index or when not guessed). The rule pass reuses a guessed previous
// entry instead of decoding the stored leaf again when the stored leaf is
// byte-identical (decodeEntry is pure). last maps every index of the batch
// to its latest entry in the batch, as far as the batch decoded: the
// overlay the next batch's guesses start from (see prevSource).
type precheck struct {
	dec  []decoded
	chk  []checked
	prev []*entry
	last map[[32]byte]*entry
}

// prevSource returns the latest entry of an index before a batch, as the
// state will hold it once every earlier batch is applied: decoded (e), or
// as the leaf bytes stored for it (leaf, decoded later on the pool), or
// neither for a new index. ok is false when it cannot be read (the rule
// pass then reads and reports it itself).
type prevSource func(idx [32]byte) (e *entry, leaf []byte, ok bool)

// workers returns the number of goroutines for the pre-check; 1 disables it.
func (a *Auditor) workers() int {
	if a.opts.Workers > 0 {
		return a.opts.Workers
	}
	return runtime.GOMAXPROCS(0)
}

// parallelFor calls f(i) for every i in [0, n) on at most workers
// goroutines and returns when every call has returned.
func parallelFor(n, workers int, f func(i int)) {
	workers = min(workers, n)
	if workers <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	const chunk = 16
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				lo := int(next.Add(chunk)) - chunk
				if lo >= n {
					return
				}
				for i := lo; i < min(lo+chunk, n); i++ {
					f(i)
				}
			}
		})
	}
	wg.Wait()
}

// precheckBatch pre-checks leaves (see above); before(idx) is the index's
// latest entry before the batch. It is called on the calling goroutine
// only, in log order, at most once per index.
func precheckBatch(before prevSource, t *verifier.Trust, leaves [][]byte, workers int) *precheck {
	pc := &precheck{dec: make([]decoded, len(leaves)), chk: make([]checked, len(leaves)), prev: make([]*entry, len(leaves))}
	parallelFor(len(leaves), workers, func(k int) {
		defer func() { _ = recover() }() // left to the rule pass
		e, r, d := decodeEntry(leaves[k])
		pc.dec[k] = decoded{ok: true, e: e, rule: r, detail: d}
	})
	var todo []int
	stored := make([][]byte, len(leaves)) // previous leaf still to decode
	last := make(map[[32]byte]*entry)
	for k := range leaves {
		xe := pc.dec[k].e
		if !pc.dec[k].ok || pc.dec[k].rule != "" {
			break // the rule pass stops here (or decodes itself)
		}
		if xe == nil {
			continue // EpochRecord
		}
		idx := xe.u.Index
		pe, seen := last[idx]
		if !seen {
			var ok bool
			if pe, stored[k], ok = before(idx); !ok {
				last[idx] = xe
				continue
			}
		}
		pc.prev[k] = pe
		todo = append(todo, k)
		last[idx] = xe
	}
	pc.last = last
	parallelFor(len(todo), workers, func(j int) {
		defer func() { _ = recover() }() // left to the rule pass
		k := todo[j]
		if stored[k] != nil {
			pe, r, _ := decodeEntry(stored[k])
			if r != "" || pe == nil {
				return // left to the rule pass, which reports it
			}
			pc.prev[k] = pe
		}
		c := checked{ok: true}
		if pe := pc.prev[k]; pe != nil {
			c.prevLeaf = pe.leaf
		}
		c.rule, c.detail = checkEntry(t, pc.prev[k], pc.dec[k].e)
		pc.chk[k] = c
	})
	return pc
}

// storedPrev returns the prevSource reading the account records of db
// (the committed state), each in a read transaction of its own: the
// stored leaf, copied.
func storedPrev(db *bbolt.DB) prevSource {
	return func(idx [32]byte) (e *entry, leaf []byte, ok bool) {
		err := db.View(func(tx *bbolt.Tx) error {
			v := tx.Bucket(bAccounts).Get(idx[:])
			if v == nil {
				return nil
			}
			rec, err := parseAccountRec(v)
			if err != nil {
				return err
			}
			leaf = rec.leaf
			return nil
		})
		return nil, leaf, err == nil
	}
}

// storedLeafEntry returns the decoded entry of leaf, the leaf stored for
// the entry at position k: the guessed previous entry if it was decoded
// from the same bytes, else decodeEntry(leaf).
func (pc *precheck) storedLeafEntry(k int, leaf []byte) (*entry, Rule, string) {
	if pc != nil {
		if g := pc.prev[k]; g != nil && bytes.Equal(g.leaf, leaf) {
			return g, "", ""
		}
	}
	return decodeEntry(leaf)
}

// decode returns decodeEntry(leaves[k]), pre-checked if available.
func (pc *precheck) decode(k int, leaf []byte) (*entry, Rule, string) {
	if pc != nil && pc.dec[k].ok {
		d := pc.dec[k]
		return d.e, d.rule, d.detail
	}
	return decodeEntry(leaf)
}

// check returns checkEntry(t, prev, x) for the entry at position k:
// the pre-checked result if it was computed for a previous leaf
// byte-identical to prev's, otherwise computed now.
func (pc *precheck) check(k int, t *verifier.Trust, prev, x *entry) (Rule, string) {
	if pc != nil {
		if c := pc.chk[k]; c.ok && (prev == nil) == (c.prevLeaf == nil) && (prev == nil || bytes.Equal(prev.leaf, c.prevLeaf)) {
			return c.rule, c.detail
		}
	}
	return checkEntry(t, prev, x)
}
