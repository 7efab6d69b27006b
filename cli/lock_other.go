//go:build !unix

package cli

import "os"

// flockTry is a no-op where flock(2) is not available: commands in one
// client folder are then not serialized.
func flockTry(f *os.File) (busy bool, err error) { return false, nil }

func flockRelease(f *os.File) {}
