package directory

import (
	"errors"
	"syscall"

	"google.golang.org/grpc/codes"

	"github.com/keyline/keyline/directory/apierr"
)

// Storage faults. A write to the databases can fail: the disk is full
// (ENOSPC, EDQUOT), the device fails (EIO), an fsync fails, the file
// system turns read-only (EROFS). The directory then
//
//   - acknowledges nothing that was not durably committed: an epoch whose
//     log append, checkpoint store or map commit fails is failed, and its
//     updates get UNAVAILABLE / STORAGE_FAILURE ("may or may not be in the
//     log"); a checkpoint is returned by klog.Publish only once stored;
//   - signs nothing new: it retries recovery (resync: replaying the log into
//     the map, publishing) with backoff, and until recovery succeeds Update fails at
//     once with STORAGE_FAILURE while lookups keep being served from the
//     last published epoch;
//   - recovers by itself when writes succeed again (space is freed): the
//     retry replays whatever the log holds and publishes, without a restart.
//
// A failure that is not a storage fault and not corruption is retried the
// same way; corruption (errCorrupt, klog.ErrCorrupt) stops the sequencer.

// isStorageFault reports whether err comes from a failed write or sync.
func isStorageFault(err error) bool {
	for _, e := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT, syscall.EIO, syscall.EROFS, syscall.EFBIG} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// epochFailure is the error given to the updates of a failed epoch.
func epochFailure(err error) error {
	if isStorageFault(err) {
		return apierr.New(codes.Unavailable, apierr.StorageFailure, "the directory could not write its storage (%v); this update is not acknowledged and may or may not be in the log: look the account up, and retry later", rootCause(err))
	}
	return apierr.New(codes.Unavailable, apierr.Unavailable, "the epoch holding this update failed; it may or may not be in the log: look the account up and retry")
}

func rootCause(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

// setDegraded records (nil: clears) the failure that makes Update fail at
// once.
func (s *Server) setDegraded(err error) {
	if err == nil {
		s.degraded.Store(nil)
		return
	}
	var e error
	if isStorageFault(err) {
		e = apierr.New(codes.Unavailable, apierr.StorageFailure, "the directory cannot write its storage (%v); no update is accepted until it can: retry later", rootCause(err))
	} else {
		e = apierr.New(codes.Unavailable, apierr.Unavailable, "the directory is recovering from a failed epoch; retry later")
	}
	s.degraded.Store(&e)
}

// degradedErr returns the error Update fails with while recovery is
// retried, or nil.
func (s *Server) degradedErr() error {
	if p := s.degraded.Load(); p != nil {
		return *p
	}
	return nil
}
