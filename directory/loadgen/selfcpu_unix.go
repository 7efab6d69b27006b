//go:build unix

package loadgen

import (
	"syscall"
	"time"
)

// SelfCPU returns this process's cumulative CPU time (user + system),
// from getrusage.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
