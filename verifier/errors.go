package verifier

import (
	"encoding/hex"
	"errors"
	"fmt"
)

// Errors of VerifyLookup, one per check. Every error VerifyLookup returns
// wraps exactly one of them (and, where there is one, the underlying error of
// the package that did the check, so errors.Is works for both).
var (
	// ErrUserID: the user id looked up is not a valid user id.
	ErrUserID = errors.New("verifier: invalid user id")
	// ErrCheckpoint: the checkpoint does not open under the trust
	// configuration (log signature, origin, witness quorum, encoding).
	ErrCheckpoint = errors.New("verifier: checkpoint rejected")
	// ErrRollback: the checkpoint is smaller than the last one the client
	// verified.
	ErrRollback = errors.New("verifier: checkpoint rolls back the log")
	// ErrSplitView: two validly signed checkpoints of the same size have
	// different roots. The error is a *SplitViewError holding both notes.
	ErrSplitView = errors.New("verifier: split view: two signed checkpoints disagree")
	// ErrConsistency: the consistency proof from the client's last verified
	// checkpoint does not verify.
	ErrConsistency = errors.New("verifier: checkpoint not consistent with the last verified one")
	// ErrBundleForm: the bundle omits the checkpoint but also carries some
	// of the fields that go with it (EpochRecord, its inclusion proof, a
	// consistency proof), or it omits the checkpoint although the client
	// holds no checkpoint and EpochRecord to use instead.
	ErrBundleForm = errors.New("verifier: bundle omits the checkpoint it needs")
	// ErrEpochRecord: the EpochRecord is malformed or not proven to be the
	// checkpoint's last leaf.
	ErrEpochRecord = errors.New("verifier: epoch record not proven")
	// ErrStale: the epoch's timestamp is older than Trust.MaxAge, or too
	// far in the future.
	ErrStale = errors.New("verifier: checkpoint not fresh")
	// ErrVRF: the VRF proof does not verify for the user id.
	ErrVRF = errors.New("verifier: VRF proof rejected")
	// ErrMapProof: the map proof is malformed or does not lead from the
	// user's index to the epoch's map root.
	ErrMapProof = errors.New("verifier: map proof rejected")
	// ErrPresence: the bundle carries an AccountUpdate while the map proves
	// the index absent, or none while the map proves it present.
	ErrPresence = errors.New("verifier: account presence does not match the map")
	// ErrAccountUpdate: the AccountUpdate leaf is malformed, or its log
	// index is not before the epoch's EpochRecord.
	ErrAccountUpdate = errors.New("verifier: account update not proven")
	// ErrIndexMismatch: the AccountUpdate is for another VRF index than the
	// one computed from the user id.
	ErrIndexMismatch = errors.New("verifier: account update is for another index")
	// ErrMapValue: the map value is not MapValue(version, log index, entry
	// hash) of the AccountUpdate served.
	ErrMapValue = errors.New("verifier: map value does not match the account update")
	// ErrAccountState: the payload is not a valid signed AccountState (IK
	// signature, device certs, encoding).
	ErrAccountState = errors.New("verifier: account state rejected")
	// ErrUserMismatch: the AccountState is for another user id.
	ErrUserMismatch = errors.New("verifier: account state is for another user")
	// ErrVersionMismatch: the AccountState's version differs from the
	// AccountUpdate's.
	ErrVersionMismatch = errors.New("verifier: account state version differs from the log entry")
	// ErrRevokedDevice: a revoked device is served as current.
	ErrRevokedDevice = errors.New("verifier: revoked device served")
	// ErrReset: a reset entry's authorization does not verify under the
	// directory reset key.
	ErrReset = errors.New("verifier: reset authorization rejected")
	// ErrResetWindow: a reset's window is shorter than trust.json's
	// reset_window, or the directory applied a reset before its window
	// ended or after the owner cancelled it.
	ErrResetWindow = errors.New("verifier: reset window violated")
	// ErrStaleSigningKey: the account is served signed by an account
	// signing key generation older than one already seen (a rotated-out
	// key, e.g. on a stolen device).
	ErrStaleSigningKey = errors.New("verifier: stale account signing key")
	// ErrAccountMissing: a pinned contact's account is proven absent. Map
	// entries are never deleted, so the directory is hiding it (or the pin
	// was made for an account that was never published).
	ErrAccountMissing = errors.New("verifier: pinned contact is absent from the directory")
	// ErrSafetyNumberChanged: a verified contact's identity key differs
	// from the pinned one. The error is a *SafetyNumberChangedError.
	ErrSafetyNumberChanged = errors.New("verifier: SAFETY NUMBER CHANGED")
	// ErrIdentityChanged: a contact's identity key (verified or not)
	// differs from the pinned one, and the verified history from the
	// pinned version does not explain the change by a directory reset
	// entry (the only way the rules allow a new identity key). Client.Lookup
	// returns it as a *SafetyNumberChangedError with Unexplained set, so it
	// also matches ErrSafetyNumberChanged.
	ErrIdentityChanged = errors.New("verifier: identity key changed without a reset")
)

// SplitViewError is transferable evidence of a split view: two checkpoint
// notes of the same log and size with different roots, both validly signed
// by the log key.
type SplitViewError struct {
	Size     uint64
	Old, New []byte // the signed notes
	OldRoot  [32]byte
	NewRoot  [32]byte
}

func (e *SplitViewError) Error() string {
	return fmt.Sprintf("%v: size %d has root %x in the last verified checkpoint and %x in the new one", ErrSplitView, e.Size, e.OldRoot[:8], e.NewRoot[:8])
}

// Unwrap returns ErrSplitView.
func (e *SplitViewError) Unwrap() error { return ErrSplitView }

// SafetyNumberChangedError reports that a contact now has another identity
// key: a verified contact whose key was changed by a directory reset
// (Reset), or, with Unexplained set, any pinned contact whose key changed
// without a reset that the verified history shows.
type SafetyNumberChangedError struct {
	UserID string
	Old    [32]byte // pinned IK
	New    [32]byte // IK served now
	Reset  bool     // a directory reset entry explains the change
	// Unexplained: the history from the pinned version does not explain
	// the change by a reset (or did not verify; Cause says why). The error
	// then also wraps ErrIdentityChanged and Cause, and Result is nil: the
	// new key must not be used.
	Unexplained bool
	Cause       error
	// Result is the otherwise fully verified lookup (nil if Unexplained).
	Result *LookupResult
}

func (e *SafetyNumberChangedError) Error() string {
	if e.Unexplained {
		msg := fmt.Sprintf("%v: %v for %s: pinned identity key %s, now %s, and no directory reset explains it", ErrSafetyNumberChanged, ErrIdentityChanged, e.UserID, hex.EncodeToString(e.Old[:]), hex.EncodeToString(e.New[:]))
		if e.Cause != nil {
			msg += ": " + e.Cause.Error()
		}
		return msg
	}
	how := "an update"
	if e.Reset {
		how = "a directory reset"
	}
	return fmt.Sprintf("%v for %s (via %s): verified identity key %s, now %s", ErrSafetyNumberChanged, e.UserID, how, hex.EncodeToString(e.Old[:]), hex.EncodeToString(e.New[:]))
}

// Unwrap returns ErrSafetyNumberChanged, and if Unexplained also
// ErrIdentityChanged and Cause.
func (e *SafetyNumberChangedError) Unwrap() []error {
	errs := []error{ErrSafetyNumberChanged}
	if e.Unexplained {
		errs = append(errs, ErrIdentityChanged)
		if e.Cause != nil {
			errs = append(errs, e.Cause)
		}
	}
	return errs
}

// fail wraps a sentinel with a message and, if non-nil, a cause.
func fail(sentinel error, cause error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if cause != nil {
		return fmt.Errorf("%w: %s: %w", sentinel, msg, cause)
	}
	return fmt.Errorf("%w: %s", sentinel, msg)
}
