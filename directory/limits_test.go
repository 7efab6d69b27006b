package directory

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/tap"

	"github.com/keyline/keyline/directory/apierr"
	"github.com/keyline/keyline/directory/client"
	pb "github.com/keyline/keyline/proto"
)

// rawCodec sends a []byte as the request message, unparsed.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.(*[]byte); ok {
		return *b, nil
	}
	return nil, nil
}
func (rawCodec) Unmarshal(data []byte, v any) error { return nil }

// TestMalformedProtobuf: a request body that is not a valid protobuf
// message is answered InvalidArgument / MALFORMED_REQUEST (gRPC's default
// is Internal), for every method, and the connection keeps working.
func TestMalformedProtobuf(t *testing.T) {
	s := openTest(t, t.TempDir(), nil)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(lis)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	garbage := [][]byte{
		{0xff, 0xff, 0xff},             // truncated varint tag
		{0x0a, 0x80, 0x80, 0x80, 0x01}, // field 1, length past the end
		{0x0a, 0x02, 0xc3, 0x28},       // invalid UTF-8 in a string field (user_id of Lookup)
	}
	methods := []string{pb.Directory_Update_FullMethodName, pb.Directory_Lookup_FullMethodName, pb.Directory_GetEntries_FullMethodName, pb.Directory_History_FullMethodName}
	for _, m := range methods {
		for _, g := range garbage {
			var out []byte
			err := apierr.FromStatus(conn.Invoke(ctx, m, &g, &out, grpc.ForceCodec(rawCodec{})))
			if m != pb.Directory_Update_FullMethodName && m != pb.Directory_GetEntries_FullMethodName || g[0] != 0x0a || g[1] != 0x02 {
				if apierr.Code(err) != codes.InvalidArgument || apierr.Reason(err) != apierr.MalformedRequest {
					t.Errorf("%s %x: %v, want InvalidArgument %s", m, g, err, apierr.MalformedRequest)
				}
			}
		}
	}
	c := client.New(conn)
	if _, err := c.Checkpoint(ctx); err != nil {
		t.Fatalf("valid request after malformed ones: %v", err)
	}
}

func peerCtx(ip string) (context.Context, context.CancelFunc) {
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 1234}})
	return context.WithCancel(ctx)
}

// TestLimiter: per-peer and global concurrency, the memory budget and the
// token buckets refuse with ResourceExhausted and the right reason, and a
// request's charges are released when its stream ends.
func TestLimiter(t *testing.T) {
	l := newLimiter(Limits{MaxStreams: 4, MaxStreamsPerPeer: 2, Rate: -1, PeerRate: -1, MemoryBudget: 3 << 20}, 1<<20)
	upd := &tap.Info{FullMethodName: pb.Directory_Update_FullMethodName}
	look := &tap.Info{FullMethodName: pb.Directory_Lookup_FullMethodName}
	admit := func(ip string, info *tap.Info) (context.CancelFunc, error) {
		ctx, cancel := peerCtx(ip)
		_, err := l.admit(ctx, info)
		if err != nil {
			cancel()
		}
		return cancel, err
	}
	wantRefused := func(err error, reason string) {
		t.Helper()
		if apierr.Code(err) != codes.ResourceExhausted || apierr.Reason(err) != reason {
			t.Fatalf("got %v, want ResourceExhausted %s", err, reason)
		}
	}
	a1, err := admit("10.0.0.1", look)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admit("10.0.0.1", look); err != nil {
		t.Fatal(err)
	}
	_, err = admit("10.0.0.1", look) // third from one peer
	wantRefused(err, reasonOverloaded)
	// Another peer still gets in; then the memory budget (3 MiB, an Update
	// is charged 1 MiB) refuses a third Update.
	u1, err := admit("10.0.0.2", upd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admit("10.0.0.3", upd); err != nil {
		t.Fatal(err)
	}
	_, err = admit("10.0.0.4", upd)
	wantRefused(err, reasonOverloaded)
	// Ending a stream releases its charges.
	u1()
	a1()
	waitUntil(t, "charges released", 5*time.Second, func() error {
		if n, _ := l.inFlight(); n != 2 {
			return apierr.New(codes.Internal, "", "%d in flight", n)
		}
		return nil
	})
	if _, err := admit("10.0.0.4", upd); err != nil {
		t.Fatalf("after release: %v", err)
	}
	// The global bound: 4 in progress.
	if _, err := admit("10.0.0.5", look); err != nil {
		t.Fatal(err)
	}
	_, err = admit("10.0.0.6", look)
	wantRefused(err, reasonOverloaded)

	// Token buckets: a peer gets its burst, then is refused; others are not
	// affected until the global bucket is empty.
	l = newLimiter(Limits{MaxStreams: -1, MaxStreamsPerPeer: -1, Rate: 0.001, Burst: 5, PeerRate: 0.001, PeerBurst: 3, MemoryBudget: -1}, 1<<20)
	for i := 0; i < 3; i++ {
		if _, err := admit("10.0.0.1", look); err != nil {
			t.Fatal(err)
		}
	}
	_, err = admit("10.0.0.1", look)
	wantRefused(err, reasonRateLimited)
	for i := 0; i < 2; i++ {
		if _, err := admit("10.0.0.2", look); err != nil {
			t.Fatal(err)
		}
	}
	_, err = admit("10.0.0.3", look)
	wantRefused(err, reasonRateLimited)
}

// TestRateLimitOverGRPC: the limits apply to real gRPC requests, and a
// refused request costs the client a clear ResourceExhausted.
func TestRateLimitOverGRPC(t *testing.T) {
	s := openTest(t, t.TempDir(), func(c *Config) { c.Limits = Limits{PeerRate: 0.01, PeerBurst: 3} })
	c := serveTest(t, s)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := c.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.Checkpoint(ctx)
	if apierr.Code(err) != codes.ResourceExhausted || apierr.Reason(err) != reasonRateLimited {
		t.Fatalf("4th request: %v, want ResourceExhausted RATE_LIMITED", err)
	}
}

// TestIdleConnectionClosed: the keepalive parameters are enforced: a
// connection idle for MaxConnectionIdle is closed by the server (GOAWAY).
func TestIdleConnectionClosed(t *testing.T) {
	s := openTest(t, t.TempDir(), func(c *Config) { c.Limits = Limits{MaxConnectionIdle: 200 * time.Millisecond} })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(lis)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.New(conn).Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	for st := conn.GetState(); st != connectivity.Idle; st = conn.GetState() {
		if !conn.WaitForStateChange(ctx, st) {
			t.Fatalf("connection still %v after MaxConnectionIdle", st)
		}
	}
}
