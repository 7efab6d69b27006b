package resident

import "testing"

// TestHeapWarningHysteresis checks that the heap warning comes the first
// time anonymous memory is above the line, not again while it hovers
// around the line, and again once it has fallen below half the line and
// risen above it.
func TestHeapWarningHysteresis(t *testing.T) {
	const low = 100
	var tr Trimmer
	steps := []struct {
		anon int64
		warn bool
	}{
		{40, false},  // below the line
		{101, true},  // first time above
		{150, false}, // still above
		{90, false},  // just below: hovering
		{120, false}, // above again, no repeat
		{49, false},  // well below: re-armed
		{49, false},
		{101, true}, // above again: warn
		{100, false},
	}
	for i, s := range steps {
		if got := tr.heapAboveLine(s.anon, low); got != s.warn {
			t.Errorf("step %d: heapAboveLine(%d, %d) = %v, want %v", i, s.anon, low, got, s.warn)
		}
	}
}
