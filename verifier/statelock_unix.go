//go:build unix

package verifier

import (
	"fmt"
	"os"
	"syscall"
)

// lockStateFile takes an exclusive advisory lock (flock(2)) on the sibling
// lock file path+".lock", creating it with mode 0600 if needed, and returns
// the function that releases it. flock locks are held per open file, so
// they exclude other processes and other Clients of this process alike.
// The lock file itself is never removed (removing it would let two holders
// lock different inodes).
func lockStateFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%w: opening the lock file: %v", ErrState, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: locking %s.lock: %v", ErrState, path, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
