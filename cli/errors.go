package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Exit codes of the keyline binary (documented in docs/cli.md).
const (
	ExitOK           = 0 // success
	ExitError        = 1 // any other failure (local files, passphrase, internal)
	ExitUsage        = 2 // bad command line, flags or arguments
	ExitVerification = 3 // a proof, signature or pin did not verify; safety number changed; monitor or audit found a violation
	ExitNetwork      = 4 // the directory (or witness) could not be reached or timed out
	ExitRejected     = 5 // the directory answered with an error (rejected update, unknown user, permission)
)

// Error kinds, the "error" field of --json errors.
const (
	KindError        = "error"
	KindUsage        = "usage"
	KindVerification = "verification"
	KindNetwork      = "network"
	KindRejected     = "rejected"
)

// Error is what every command returns on failure: what failed (Msg), why
// (Err), what to do next (Hint), and the exit code.
type Error struct {
	Code   int
	Kind   string
	Msg    string
	Hint   string
	Reason string // gRPC ErrorInfo reason from the directory, if any
	Err    error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Msg)
	if e.Err != nil {
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(e.Err.Error())
	}
	if e.Hint != "" {
		b.WriteString(" — ")
		b.WriteString(e.Hint)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

func usageErr(format string, args ...any) *Error {
	return &Error{Code: ExitUsage, Kind: KindUsage, Msg: fmt.Sprintf(format, args...)}
}

func failf(hint string, err error, format string, args ...any) *Error {
	return &Error{Code: ExitError, Kind: KindError, Msg: fmt.Sprintf(format, args...), Hint: hint, Err: err}
}

// verificationErr marks err as a verification failure (exit 3). Verification
// fails closed: whatever went wrong while checking an answer that is not a
// transport problem is reported as a failed verification, never as success.
func verificationErr(msg, hint string, err error) *Error {
	return &Error{Code: ExitVerification, Kind: KindVerification, Msg: msg, Hint: hint, Err: err}
}

// remoteErr classifies an error from talking to the directory at addr:
// transport failures are network errors (exit 4), gRPC statuses from the
// server are rejections (exit 5) with the server's reason, and anything else
// (a proof or signature that did not verify) is a verification failure
// (exit 3). what says what the command was doing, e.g. "lookup alice".
func remoteErr(what, addr string, err error) error {
	if err == nil {
		return nil
	}
	var ce *Error
	if errors.As(err, &ce) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &Error{Code: ExitNetwork, Kind: KindNetwork, Msg: fmt.Sprintf("%s: directory at %s did not answer in time", what, addr), Hint: "is `keyline serve` running and reachable? use --server", Err: err}
	}
	if errors.Is(err, context.Canceled) {
		return &Error{Code: ExitError, Kind: KindError, Msg: what + ": interrupted", Err: err}
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.OK && st.Code() != codes.Unknown {
		return grpcErr(what, addr, st, err)
	}
	if isNetErr(err) {
		return &Error{Code: ExitNetwork, Kind: KindNetwork, Msg: fmt.Sprintf("cannot reach directory at %s", addr), Hint: "is `keyline serve` running? use --server", Err: err}
	}
	return verificationErr(what+": verification failed", "do not trust this answer; the directory may be lying — keep the output and report it", err)
}

// isOutOfRange reports whether err carries the directory's OutOfRange
// status (reason OUT_OF_RANGE): a tree size or entry range outside its
// published log.
func isOutOfRange(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.OutOfRange
}

func isNetErr(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ne) || errors.As(err, &oe) || errors.Is(err, syscall.ECONNREFUSED)
}

func grpcErr(what, addr string, st *status.Status, err error) *Error {
	reason := ""
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reason = info.Reason
		}
	}
	e := &Error{Code: ExitRejected, Kind: KindRejected, Reason: reason, Err: errors.New(st.Message())}
	switch st.Code() {
	case codes.Unavailable:
		e.Code, e.Kind = ExitNetwork, KindNetwork
		e.Msg = fmt.Sprintf("cannot reach directory at %s", addr)
		e.Hint = "is `keyline serve` running? use --server"
		if msg := st.Message(); strings.Contains(msg, "connection refused") {
			e.Err = errors.New("connection refused")
		}
	case codes.DeadlineExceeded:
		e.Code, e.Kind = ExitNetwork, KindNetwork
		e.Msg = fmt.Sprintf("%s: directory at %s did not answer in time", what, addr)
		e.Hint = "try again; check the server with `keyline lookup` or use --server"
	case codes.NotFound:
		e.Msg = what + ": not found"
	case codes.AlreadyExists:
		e.Msg = what + ": already exists"
		e.Hint = "choose another user id, or use `keyline account recover` if this is your account"
	case codes.PermissionDenied, codes.Unauthenticated:
		e.Msg = what + ": permission denied by the directory"
		e.Hint = "check the admin token (--admin-token-file)"
	case codes.ResourceExhausted:
		e.Msg = what + ": the directory refused a request that is too large or too frequent"
		e.Hint = "wait and retry"
	case codes.FailedPrecondition, codes.Aborted:
		e.Msg = what + ": the directory rejected the update"
		e.Hint = "your device's copy of the account may be stale; run the command again (it re-reads the account)"
	case codes.InvalidArgument, codes.OutOfRange:
		e.Msg = what + ": the directory rejected the request"
	default:
		e.Msg = fmt.Sprintf("%s: directory error (%s)", what, st.Code())
	}
	if reason != "" {
		e.Msg += " [" + reason + "]"
	}
	return e
}

// exitCode returns the process exit code for an error returned by a command.
func exitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ce *Error
	if errors.As(err, &ce) {
		return ce.Code
	}
	return ExitError
}

// asError returns err as an *Error (kind "error", exit 1, unless it already is one).
func asError(err error) *Error {
	var ce *Error
	if errors.As(err, &ce) {
		return ce
	}
	return &Error{Code: ExitError, Kind: KindError, Err: err}
}
