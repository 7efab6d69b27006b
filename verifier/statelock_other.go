//go:build !unix

package verifier

import (
	"path/filepath"
	"sync"
)

// stateLocks holds one mutex per state file path. Without flock(2) the lock
// only excludes other Clients of this process; two processes sharing a
// state file on such a system can still overwrite each other's changes.
var stateLocks sync.Map // absolute path -> *sync.Mutex

// lockStateFile locks path against the other Clients of this process and
// returns the function that releases the lock.
func lockStateFile(path string) (unlock func(), err error) {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	m, _ := stateLocks.LoadOrStore(path, new(sync.Mutex))
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock, nil
}
