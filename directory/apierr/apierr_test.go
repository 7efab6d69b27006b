package apierr

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestStatusRoundTrip(t *testing.T) {
	e := New(codes.FailedPrecondition, VersionNotNext, "v%d follows v%d", 5, 3)
	got := FromStatus(e.GRPCStatus().Err())
	if Code(got) != codes.FailedPrecondition || Reason(got) != VersionNotNext {
		t.Fatalf("round trip: %v", got)
	}
	if !errors.Is(fmt.Errorf("wrapped: %w", got), &Error{Reason: VersionNotNext}) {
		t.Fatal("errors.Is by reason")
	}
	if errors.Is(got, &Error{Reason: VersionNotNext, Code: codes.InvalidArgument}) {
		t.Fatal("errors.Is ignored a code mismatch")
	}
	// A status without ErrorInfo keeps its code and has no reason.
	plain := FromStatus(status.Error(codes.ResourceExhausted, "too big"))
	if Code(plain) != codes.ResourceExhausted || Reason(plain) != "" {
		t.Fatalf("plain status: %v", plain)
	}
	other := errors.New("x")
	if FromStatus(other) != other || Code(other) != codes.Unknown || Code(nil) != codes.OK {
		t.Fatal("non-status errors")
	}
}
