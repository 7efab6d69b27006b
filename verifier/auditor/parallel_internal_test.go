package auditor

import (
	"testing"

	"github.com/keyline/keyline/verifier/auditor/audittest"
)

// TestPrecheckCacheKey: a pre-checked result is used only for the exact
// previous leaf (or none) it was computed with; any other previous entry is
// checked afresh.
func TestPrecheckCacheKey(t *testing.T) {
	d, err := audittest.NewDirectory(3)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Populate(2, 1, 2); err != nil {
		t.Fatal(err)
	}
	a := d.Accounts["user0"]
	v1 := a.Leaf
	if err := d.AddDevice(a); err != nil {
		t.Fatal(err)
	}
	v2 := a.Leaf
	p, _, _ := decodeEntry(v1)
	x, _, _ := decodeEntry(v2)
	other, _, _ := decodeEntry(d.Accounts["user1"].Leaf)
	if r, detail := checkEntry(d.Trust(), p, x); r != "" {
		t.Fatalf("honest v2: %s %s", r, detail)
	}
	const fake Rule = "cached"
	pc := &precheck{dec: make([]decoded, 1), chk: []checked{{ok: true, prevLeaf: append([]byte(nil), v1...), rule: fake}}}
	key := d.Trust()
	if r, _ := pc.check(0, key, p, x); r != fake {
		t.Errorf("same previous leaf bytes: got %q, want the cached result", r)
	}
	if r, _ := pc.check(0, key, other, x); r == fake || r == "" {
		t.Errorf("other previous leaf: got %q, want a fresh check (a violation)", r)
	}
	if r, _ := pc.check(0, key, nil, x); r != RuleVersionSkip {
		t.Errorf("no previous leaf: got %q, want a fresh check (%s)", r, RuleVersionSkip)
	}
	pc.chk[0] = checked{ok: true, rule: fake} // computed as a create
	if r, _ := pc.check(0, key, p, x); r != "" {
		t.Errorf("cached for a new index, used with a previous leaf: got %q", r)
	}
	if r, _ := pc.check(0, key, nil, x); r != fake {
		t.Errorf("cached for a new index: got %q", r)
	}
	pc.chk[0] = checked{} // not computed
	if r, _ := pc.check(0, key, p, x); r != "" {
		t.Errorf("not pre-checked: got %q", r)
	}
	var none *precheck
	if r, _ := none.check(0, key, p, x); r != "" {
		t.Errorf("no pre-check: got %q", r)
	}
}

// TestParallelFor: every index is visited exactly once, for any worker
// count.
func TestParallelFor(t *testing.T) {
	for _, w := range []int{0, 1, 2, 7} {
		for _, n := range []int{0, 1, 15, 16, 17, 1000} {
			seen := make([]int32, n)
			parallelFor(n, w, func(i int) { seen[i]++ })
			for i, c := range seen {
				if c != 1 {
					t.Fatalf("workers %d, n %d: index %d visited %d times", w, n, i, c)
				}
			}
		}
	}
}
