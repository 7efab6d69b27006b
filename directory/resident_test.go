//go:build linux

package directory

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMaxResidentTrimsWhileServing serves with a resident memory bound the
// process is always above, so the trimmer releases the maps of directory.db
// and log.db every 100 ms while updates grow the files and lookups read
// them; every lookup must still verify.
func TestMaxResidentTrimsWhileServing(t *testing.T) {
	var (
		mu   sync.Mutex
		logs []string
	)
	s := openTest(t, t.TempDir(), func(c *Config) {
		c.MaxResident = 1
		c.Logf = func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			logs = append(logs, fmt.Sprintf(format, args...))
		}
	})
	ctx := context.Background()
	trust := trustOf(t, s)
	var uids []string
	deadline := time.Now().Add(time.Second)
	for i := 0; i < 40 || time.Now().Before(deadline); i++ {
		uid := fmt.Sprintf("user%d@example.com", i)
		if _, err := s.Update(ctx, newTestAccount(t, uid).bytes(t)); err != nil {
			t.Fatal(err)
		}
		uids = append(uids, uid)
		for _, u := range uids[max(0, len(uids)-5):] {
			mustLookup(t, s, trust, u)
		}
	}
	for _, u := range uids {
		mustLookup(t, s, trust, u)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(strings.Join(logs, "\n"), "releasing pages of the database maps") {
		t.Errorf("the trimmer did not run: logs %q", logs)
	}
}
