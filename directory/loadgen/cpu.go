package loadgen

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is Linux's USER_HZ, the unit of the CPU times in /proc.
const clockTicks = 100

// ProcessCPU returns a function reading the cumulative CPU time (user +
// system) of process pid from /proc/<pid>/stat (Linux only), for
// Options.ServerCPU when the directory runs on the same machine.
func ProcessCPU(pid int) func() (time.Duration, error) {
	return func() (time.Duration, error) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, fmt.Errorf("reading the CPU time of process %d: %w", pid, err)
		}
		// Fields after the command name (which may hold spaces) in
		// parentheses: state is field 3, utime 14, stime 15.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			return 0, fmt.Errorf("process %d: malformed /proc stat line", pid)
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 13 {
			return 0, fmt.Errorf("process %d: short /proc stat line", pid)
		}
		ut, err1 := strconv.ParseUint(f[11], 10, 64)
		st, err2 := strconv.ParseUint(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("process %d: malformed CPU times in /proc stat line", pid)
		}
		return time.Duration(ut+st) * time.Second / clockTicks, nil
	}
}

// Ed25519Rate measures single-core ed25519 verifications per second for
// about d: the reference every figure of `keyline bench` is also given as
// a ratio to (docs/performance.md), since the machine's speed varies.
func Ed25519Rate(d time.Duration) float64 {
	pub, priv, _ := ed25519.GenerateKey(nil)
	msg := make([]byte, 200)
	sig := ed25519.Sign(priv, msg)
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		for range 50 {
			ed25519.Verify(pub, msg, sig)
		}
		n += 50
	}
	return float64(n) / time.Since(start).Seconds()
}

// Ed25519CPU measures the CPU time (this process's, getrusage) of one
// single-core ed25519 verification, verifying for about d of wall time
// while nothing else runs in the process. Unlike Ed25519Rate it does not
// count the time other processes hold the core, so CPU times per
// operation divided by it stay comparable on a loaded machine. It returns 0
// where SelfCPU is not measured.
func Ed25519CPU(d time.Duration) time.Duration {
	pub, priv, _ := ed25519.GenerateKey(nil)
	msg := make([]byte, 200)
	sig := ed25519.Sign(priv, msg)
	n := 0
	c0, start := SelfCPU(), time.Now()
	for time.Since(start) < d {
		for range 50 {
			ed25519.Verify(pub, msg, sig)
		}
		n += 50
	}
	return (SelfCPU() - c0) / time.Duration(n)
}
