//go:build linux

package cli

import (
	"golang.org/x/sys/unix"
)

// isTerminal reports whether fd is a terminal.
func isTerminal(fd uintptr) bool {
	_, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
	return err == nil
}

// withoutEcho runs read with the terminal's echo turned off (and restores
// the previous settings afterwards, also when read fails).
func withoutEcho(fd uintptr, read func() ([]byte, error)) ([]byte, error) {
	old, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
	if err != nil {
		return nil, err
	}
	t := *old
	t.Lflag &^= unix.ECHO
	t.Lflag |= unix.ICANON | unix.ISIG
	t.Iflag |= unix.ICRNL
	if err := unix.IoctlSetTermios(int(fd), unix.TCSETS, &t); err != nil {
		return nil, err
	}
	defer unix.IoctlSetTermios(int(fd), unix.TCSETS, old)
	return read()
}

const echoOffSupported = true
