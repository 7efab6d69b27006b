//go:build unix

package cli

import (
	"errors"
	"os"
	"syscall"
)

// flockTry takes an exclusive flock(2) on f without waiting. It reports
// busy if another open file holds the lock.
func flockTry(f *os.File) (busy bool, err error) {
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err != syscall.EINTR {
			break
		}
	}
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return true, nil
	}
	return false, err
}

func flockRelease(f *os.File) { syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
