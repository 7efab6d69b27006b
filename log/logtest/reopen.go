package logtest

import (
	"testing"

	"github.com/keyline/keyline/log"
)

// RunReopen checks that a backend's contents survive Close and reopening.
// newStore must create a new, empty store and return a function that opens
// a fresh handle to that same store each time it is called; RunReopen closes
// every handle it opens.
func RunReopen(t *testing.T, newStore func(t *testing.T) (open func() log.Backend)) {
	open := newStore(t)
	ref := newReference()
	next := uint64(0)
	add := func(b log.Backend, n int) {
		t.Helper()
		leaves := make([][]byte, n)
		for i := range leaves {
			leaves[i] = Leaf(next + 5000)
			next++
		}
		appendChecked(t, b, ref, leaves)
	}
	check := func(b log.Backend) {
		t.Helper()
		size := uint64(len(ref.leaves))
		if n, err := b.Size(t.Context()); err != nil || n != size {
			t.Fatalf("after reopen Size = %d, %v; want %d", n, err, size)
		}
		checkEntries(t, b, ref, 0, size)
		for s := uint64(0); s <= size; s++ {
			checkRoot(t, b, ref, s)
		}
		for _, i := range []uint64{0, size / 2, size - 1} {
			checkInclusion(t, b, ref, i, size, false)
		}
		checkConsistency(t, b, ref, size/3, size, false)
	}
	b := open()
	add(b, 10)
	add(b, 23)
	closeBackend(t, b)
	b = open()
	check(b)
	add(b, 31)
	check(b)
	closeBackend(t, b)
	b = open()
	check(b)
	closeBackend(t, b)
}
