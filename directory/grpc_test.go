package directory

import (
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keyline/keyline/directory/apierr"
	"github.com/keyline/keyline/directory/client"
	klog "github.com/keyline/keyline/log"
	pb "github.com/keyline/keyline/proto"
)

// serveTest serves s on a loopback port and returns a client.
func serveTest(t testing.TB, s *Server) *client.Client {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(lis)
	c, err := client.Dial(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestGRPCRejections(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir(), nil)
	c := serveTest(t, s)
	trust := trustOf(t, s)

	carol := newTestAccount(t, "carol")
	if _, err := c.Update(ctx, carol.bytes(t)); err != nil {
		t.Fatal(err)
	}
	next := carol.addDevice(t, "desktop")
	bad := *next
	bad.Signature[5] ^= 1
	skip := *next
	skip.Version = 7
	if err := skip.Sign(carol.ask); err != nil {
		t.Fatal(err)
	}
	wrongPrev := *next
	wrongPrev.PrevHash[31] ^= 1
	if err := wrongPrev.Sign(carol.ask); err != nil {
		t.Fatal(err)
	}
	badCert := *next
	badCert.Devices = append(badCert.Devices[:0:0], next.Devices...)
	cc := *badCert.Devices[0]
	cc.Signature[0] ^= 1
	badCert.Devices[0] = &cc
	if err := badCert.Sign(carol.ask); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		state  []byte
		code   codes.Code
		reason string
	}{
		{"bad signature", mustMarshal(t, &bad), codes.InvalidArgument, apierr.BadSignature},
		{"bad device cert", mustMarshal(t, &badCert), codes.InvalidArgument, apierr.BadDeviceCert},
		{"wrong version", mustMarshal(t, &skip), codes.FailedPrecondition, apierr.VersionNotNext},
		{"wrong prev hash", mustMarshal(t, &wrongPrev), codes.FailedPrecondition, apierr.PrevHashMismatch},
		{"malformed bytes", []byte("not an account state"), codes.InvalidArgument, apierr.MalformedAccountState},
		{"over the field bound", make([]byte, 100<<10), codes.InvalidArgument, apierr.RequestTooLarge},
		// Over MaxRecvMsgSize: gRPC itself refuses the message.
		{"oversized request", make([]byte, 300<<10), codes.ResourceExhausted, ""},
	} {
		_, err := c.Update(ctx, tc.state)
		if apierr.Code(err) != tc.code || apierr.Reason(err) != tc.reason {
			t.Errorf("%s: got %v, want %v %q", tc.name, err, tc.code, tc.reason)
		}
	}

	// Unknown user: a verifiable non-inclusion proof, not NotFound.
	b, err := c.Lookup(ctx, "nobody", 0)
	if err != nil {
		t.Fatal(err)
	}
	v, err := verifyLookup(trust, "nobody", b, 0, nil)
	if err != nil || v.found {
		t.Fatalf("unknown user: found=%v err=%v", v != nil && v.found, err)
	}
	if _, err := c.Lookup(ctx, "Not A Valid Id!", 0); apierr.Reason(err) != apierr.BadUserID {
		t.Fatalf("bad user id: %v", err)
	}
	if _, err := c.Lookup(ctx, strings.Repeat("a", 300), 0); apierr.Reason(err) != apierr.RequestTooLarge {
		t.Fatalf("long user id: %v", err)
	}

	// Reset without, and with a wrong, admin token.
	if _, err := c.Reset(ctx, "", "carol", carol.bytes(t), "lost"); apierr.Code(err) != codes.Unauthenticated || apierr.Reason(err) != apierr.Unauthenticated {
		t.Fatalf("reset without token: %v", err)
	}
	if _, err := c.Reset(ctx, "guess", "carol", carol.bytes(t), "lost"); apierr.Code(err) != codes.PermissionDenied || apierr.Reason(err) != apierr.PermissionDenied {
		t.Fatalf("reset with a wrong token: %v", err)
	}
	if _, err := c.Reset(ctx, s.AdminToken(), "carol", carol.bytes(t), "bored"); apierr.Reason(err) != apierr.BadResetReason {
		t.Fatalf("reset with a bad reason: %v", err)
	}
	if _, err := c.Reset(ctx, s.AdminToken(), "carol", mustMarshal(t, next), "lost"); apierr.Reason(err) != apierr.BadReset {
		t.Fatalf("reset keeping the IK: %v", err)
	}

	// Ranges.
	if _, err := c.Entries(ctx, 5, 2); apierr.Code(err) != codes.OutOfRange {
		t.Fatalf("Entries(5, 2): %v", err)
	}
	if _, err := c.ConsistencyProof(ctx, 1<<40, 1<<41); apierr.Code(err) != codes.OutOfRange {
		t.Fatalf("ConsistencyProof beyond the log: %v", err)
	}
	if _, err := c.Lookup(ctx, "carol", 1<<40); apierr.Code(err) != codes.OutOfRange {
		t.Fatalf("Lookup with a future known size: %v", err)
	}

	// Every error carries an ErrorInfo.
	conn := pb.NewDirectoryClient(clientConn(t, c))
	_, err = conn.Update(ctx, &pb.UpdateRequest{AccountState: []byte{0}})
	st, _ := status.FromError(err)
	if len(st.Details()) != 1 {
		t.Fatalf("status details: %v", st.Details())
	}

	// The valid update still goes through, over gRPC.
	if _, err := c.Update(ctx, mustMarshal(t, next)); err != nil {
		t.Fatal(err)
	}
	if v := mustLookup(t, c, trust, "carol"); v.version != 2 {
		t.Fatalf("version %d", v.version)
	}

	// A reset with the admin token, over gRPC.
	rs := resetStateFor(t, next, "replacement")
	res, err := c.Reset(ctx, s.AdminToken(), "Carol", mustMarshal(t, rs), "compromised")
	if err != nil {
		t.Fatal(err)
	}
	u, err := klog.ParseAccountUpdate(res.Leaf)
	if err != nil || u.Update != klog.UpdateReset || u.Version != 3 {
		t.Fatalf("reset leaf: %+v %v", u, err)
	}
	if v := mustLookup(t, c, trust, "carol"); v.version != 3 || v.state.IdentityKey != rs.IdentityKey {
		t.Fatalf("after reset: version %d", v.version)
	}
	h, err := c.History(ctx, "carol", 0)
	if err != nil {
		t.Fatal(err)
	}
	checkHistory(t, trust, h, 3)
}

func clientConn(t testing.TB, c *client.Client) *grpc.ClientConn { return c.Conn() }
