package embedded_test

import (
	"path/filepath"
	"testing"

	"github.com/keyline/keyline/log"
	"github.com/keyline/keyline/log/embedded"
	"github.com/keyline/keyline/log/logtest"
)

func openTemp(t *testing.T) *embedded.Log {
	t.Helper()
	l, err := embedded.Open(filepath.Join(t.TempDir(), "log.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestConformance(t *testing.T) {
	logtest.RunConformance(t, func(t *testing.T) log.Backend { return openTemp(t) })
}

func TestReopen(t *testing.T) {
	logtest.RunReopen(t, func(t *testing.T) func() log.Backend {
		path := filepath.Join(t.TempDir(), "log.db")
		return func() log.Backend {
			l, err := embedded.Open(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			return l
		}
	})
}

func TestAppendRejectsOversizedLeaf(t *testing.T) {
	l := openTemp(t)
	defer l.Close()
	if err := l.Append(t.Context(), 0, [][]byte{{1}, make([]byte, embedded.MaxLeafSize+1)}); err == nil {
		t.Fatal("oversized leaf accepted")
	}
	if n, _ := l.Size(t.Context()); n != 0 {
		t.Fatalf("a failed Append changed the size to %d", n)
	}
}

// TestConformancePread runs the backend conformance suite with bundled
// leaves read by pread.
func TestConformancePread(t *testing.T) {
	logtest.RunConformance(t, func(t *testing.T) log.Backend {
		l := openTemp(t)
		if err := l.SetPread(true); err != nil {
			t.Fatal(err)
		}
		return l
	})
}
