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
