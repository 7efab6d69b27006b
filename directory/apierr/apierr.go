// Package apierr defines the errors of Keyline's directory API: a gRPC status
// code plus a machine-readable reason (google.rpc.ErrorInfo.Reason, domain
// "keyline"). The directory server returns them, the gRPC client
// (directory/client) reconstructs them, and callers match them with
// errors.As or Reason. Every reason is documented in docs/api.md.
package apierr

import (
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Domain is the ErrorInfo domain of every Keyline error.
const Domain = "keyline"

// Reasons. Each names the rule that failed.
const (
	MalformedRequest      = "MALFORMED_REQUEST"       // a request field is missing or malformed
	RequestTooLarge       = "REQUEST_TOO_LARGE"       // a request field is over its bound
	MalformedAccountState = "MALFORMED_ACCOUNT_STATE" // account_state is not a canonical AccountState
	BadUserID             = "BAD_USER_ID"             // user id not valid after normalisation
	UserMismatch          = "USER_MISMATCH"           // the state names another user than the request
	BadSignature          = "BAD_SIGNATURE"           // the AccountState signature by its signing key does not verify
	BadSigningKeyCert     = "BAD_SIGNING_KEY_CERT"    // the SigningKeyCert is not by the RK, or skips/forks a generation
	StaleSigningKey       = "STALE_SIGNING_KEY"       // signed by a signing key generation older than the latest state's
	ResetPending          = "RESET_PENDING"           // the reset's new keys used (or another reset asked) before its window ended
	ResetWindow           = "RESET_WINDOW"            // a cancellation after the reset took effect
	BadDeviceCert         = "BAD_DEVICE_CERT"         // a DeviceCert signature, id or key check fails
	DuplicateDevice       = "DUPLICATE_DEVICE"        // a device id appears twice
	VersionNotNext        = "VERSION_NOT_NEXT"        // version is not latest+1 (or not 1 for a create)
	PrevHashMismatch      = "PREV_HASH_MISMATCH"      // previous hash is not the hash of the latest state
	TimestampBackwards    = "TIMESTAMP_BACKWARDS"     // a timestamp goes backwards
	IdentityChanged       = "IDENTITY_CHANGED"        // a normal update changes the root key (only Reset may)
	RevokedDevice         = "REVOKED_DEVICE"          // a revoked device is listed
	BadRevocation         = "BAD_REVOCATION"          // a revocation was dropped, altered or names an unknown device
	AccountExists         = "ACCOUNT_EXISTS"          // version 1 submitted for an existing account
	UnknownAccount        = "UNKNOWN_ACCOUNT"         // update or reset of an account that does not exist
	ConcurrentUpdate      = "CONCURRENT_UPDATE"       // another update of the account was accepted meanwhile
	QueueFull             = "QUEUE_FULL"              // the sequencer queue is full; retry later
	BadReset              = "BAD_RESET"               // the reset is inconsistent (same IK, devices not revoked, ...)
	BadResetReason        = "BAD_RESET_REASON"        // reset reason is not "lost" or "compromised"
	Unauthenticated       = "UNAUTHENTICATED"         // no bearer token
	PermissionDenied      = "PERMISSION_DENIED"       // wrong bearer token
	OutOfRange            = "OUT_OF_RANGE"            // a tree size or entry range outside the published log
	Unavailable           = "UNAVAILABLE"             // server closing or sequencer stopped after a failure
	StorageFailure        = "STORAGE_FAILURE"         // the directory cannot write its storage (disk full, I/O error); nothing new is acknowledged or signed until it can
	RateLimited           = "RATE_LIMITED"            // a request-rate token bucket (per address or global) is empty; retry later
	Overloaded            = "OVERLOADED"              // too many requests in progress (per address or global) or the request memory budget is used up; retry later
	Internal              = "INTERNAL"                // internal failure; details only in the server log
	Canceled              = "CANCELED"                // the caller's context ended first (an update may still be published)
)

// Error is a directory API error.
type Error struct {
	Code   codes.Code
	Reason string
	Msg    string
}

// New returns an Error.
func New(code codes.Code, reason, format string, args ...any) *Error {
	return &Error{Code: code, Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
	return fmt.Sprintf("keyline directory: %s (%s): %s", e.Reason, e.Code, e.Msg)
}

// GRPCStatus returns the status with an ErrorInfo detail, so that gRPC sends
// the reason to the client.
func (e *Error) GRPCStatus() *status.Status {
	st := status.New(e.Code, e.Msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: e.Reason, Domain: Domain}); err == nil {
		return d
	}
	return st
}

// Is makes errors.Is(err, &Error{Reason: r}) match any Error with reason r
// (and code, if set).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	return t.Reason == e.Reason && (t.Code == codes.OK || t.Code == e.Code)
}

// FromStatus converts a gRPC error into an *Error keeping code, reason and
// message. Errors without an ErrorInfo detail get an empty Reason; non-status
// errors are returned unchanged.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	e := &Error{Code: st.Code(), Msg: st.Message()}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == Domain {
			e.Reason = info.Reason
		}
	}
	return e
}

// Reason returns the reason of err if it is (or wraps) an *Error, else "".
func Reason(err error) string {
	var ae *Error
	if errors.As(err, &ae) {
		return ae.Reason
	}
	return ""
}

// Code returns the gRPC code of err if it is (or wraps) an *Error, else
// codes.Unknown (codes.OK for nil).
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	var ae *Error
	if errors.As(err, &ae) {
		return ae.Code
	}
	return codes.Unknown
}
