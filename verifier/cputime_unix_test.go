//go:build unix

package verifier

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user + system) this process has used: a
// benchmark's cost that does not count the time other processes on a
// loaded machine take.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
