//go:build !linux

package cli

import "os"

// isTerminal reports whether fd is a character device (a best effort
// without golang.org/x/term on this platform).
func isTerminal(fd uintptr) bool {
	fi, err := os.NewFile(fd, "").Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// withoutEcho cannot turn echo off on this platform; the caller warns.
func withoutEcho(fd uintptr, read func() ([]byte, error)) ([]byte, error) {
	return read()
}

const echoOffSupported = false
