//go:build !linux

package resident

import "go.etcd.io/bbolt"

// ReadUsage returns ErrUnsupported: the RSS is read from /proc on Linux
// only.
func ReadUsage() (Usage, error) { return Usage{}, ErrUnsupported }

// release releases nothing outside Linux: without /proc/self/maps it cannot
// check what it would release (see resident_linux.go). It returns
// end = off, so that callers looping up to end stop.
func release(db *bbolt.DB, off, n int64, more func() bool) (next, end int64, err error) {
	return off, off, ErrUnsupported
}
