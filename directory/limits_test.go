package directory

import (
	"context"
	"fmt"
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

// TestLimiter: the per-peer concurrency bound, the memory budget of
// writes, the fair global bound on reads and the token buckets refuse with
// ResourceExhausted and the right reason, and a request's charges are
// released when its stream ends.
func TestLimiter(t *testing.T) {
	l := newLimiter(Limits{MaxReads: 4, MaxStreamsPerPeer: 3, Rate: -1, PeerRate: -1, MemoryBudget: 3<<20 + 512<<10}, 1<<20)
	upd := &tap.Info{FullMethodName: pb.Directory_Update_FullMethodName}
	look := &tap.Info{FullMethodName: pb.Directory_Lookup_FullMethodName}
	admit := func(ip string, info *tap.Info) (context.Context, context.CancelFunc, error) {
		ctx, cancel := peerCtx(ip)
		ctx, err := l.admit(ctx, info)
		if err != nil {
			cancel()
		}
		return ctx, cancel, err
	}
	must := func(ip string, info *tap.Info) (context.Context, context.CancelFunc) {
		t.Helper()
		ctx, cancel, err := admit(ip, info)
		if err != nil {
			t.Fatalf("%s %s refused: %v", ip, info.FullMethodName, err)
		}
		return ctx, cancel
	}
	wantRefused := func(ip string, info *tap.Info, reason string) {
		t.Helper()
		_, _, err := admit(ip, info)
		if apierr.Code(err) != codes.ResourceExhausted || apierr.Reason(err) != reason {
			t.Fatalf("%s %s: got %v, want ResourceExhausted %s", ip, info.FullMethodName, err, reason)
		}
	}
	waitInFlight := func(n int, mem int64) {
		t.Helper()
		waitUntil(t, "charges released", 5*time.Second, func() error {
			if gn, gm := l.inFlight(); gn != n || gm != mem {
				return fmt.Errorf("%d in flight holding %d bytes, want %d and %d", gn, gm, n, mem)
			}
			return nil
		})
	}
	// Per peer: 3 requests in progress.
	_, a1 := must("10.0.0.1", look)
	must("10.0.0.1", look)
	must("10.0.0.1", upd)
	wantRefused("10.0.0.1", look, reasonOverloaded)
	// Writes: 3.5 MiB, 1 MiB per message until decoded.
	u2ctx, u2 := must("10.0.0.2", upd)
	must("10.0.0.3", upd)
	wantRefused("10.0.0.4", upd, reasonOverloaded)
	// A decoded write holds only its size: room for another.
	u2ctx.Value(chargeKey{}).(*charge).decoded(100 << 10)
	_, u4 := must("10.0.0.4", upd)
	waitInFlight(6, 3<<20+100<<10)
	u4()
	u2()
	a1()
	waitInFlight(3, 2<<20)
	// Reads: 4 in progress globally (10.0.0.1 has 1); then only peers under
	// their share (4 / peers reading) get in.
	must("10.0.0.5", look)
	must("10.0.0.5", look)
	must("10.0.0.6", look) // 4 reads now, 3 peers reading: share 1
	wantRefused("10.0.0.5", look, reasonOverloaded)
	wantRefused("10.0.0.6", look, reasonOverloaded)
	must("10.0.0.7", look) // a new peer with no read in progress
	waitInFlight(7, 2<<20)

	// Token buckets: a peer gets its burst, then is refused; others are not
	// affected until the global bucket is empty.
	l = newLimiter(Limits{MaxReads: -1, MaxStreamsPerPeer: -1, Rate: 0.001, Burst: 5, PeerRate: 0.001, PeerBurst: 3, MemoryBudget: -1}, 1<<20)
	for i := 0; i < 3; i++ {
		must("10.0.0.1", look)
	}
	wantRefused("10.0.0.1", look, reasonRateLimited)
	must("10.0.0.2", look)
	must("10.0.0.2", look)
	wantRefused("10.0.0.3", look, reasonRateLimited)
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

// TestQueueBytes: the leaves waiting for their epoch are bounded by
// Limits.QueueBytes (QUEUE_FULL beyond), and their bytes are released when
// the sequencer takes them and when Close fails them.
func TestQueueBytes(t *testing.T) {
	ctx := context.Background()
	accts := []*testAccount{newTestAccount(t, "q1"), newTestAccount(t, "q2"), newTestAccount(t, "q3"), newTestAccount(t, "q4")}
	n := int64(len(accts[0].bytes(t)))
	s := openTest(t, t.TempDir(), func(c *Config) {
		c.EpochInterval = time.Hour // epochs are cut only when MaxBatch updates wait
		c.MaxBatch = 3
		c.Limits.QueueBytes = 2*n + n/2 + 250 // two leaves fit, three do not
	})
	errs := make(chan error, 2)
	for _, a := range accts[:2] {
		go func() { _, err := s.Update(ctx, a.bytes(t)); errs <- err }()
	}
	waitUntil(t, "two queued updates", 10*time.Second, func() error {
		if len(s.queue) != 2 {
			return fmt.Errorf("%d queued", len(s.queue))
		}
		return nil
	})
	_, err := s.Update(ctx, accts[2].bytes(t))
	if apierr.Code(err) != codes.ResourceExhausted || apierr.Reason(err) != apierr.QueueFull {
		t.Fatalf("third update: %v, want QUEUE_FULL", err)
	}
	s.Close()
	for range 2 {
		if err := <-errs; apierr.Code(err) != codes.Unavailable {
			t.Fatalf("queued update after Close: %v", err)
		}
	}
	s.mu.Lock()
	left := s.queuedBytes
	s.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d queued bytes after Close failed the queue", left)
	}

	// Taken by the sequencer: MaxBatch 2 cuts an epoch as soon as two wait.
	s = openTest(t, t.TempDir(), func(c *Config) {
		c.EpochInterval = time.Hour
		c.MaxBatch = 2
		c.Limits.QueueBytes = 2*n + n/2 + 250
	})
	for _, a := range accts[:2] {
		go func() { _, err := s.Update(ctx, a.bytes(t)); errs <- err }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	left = s.queuedBytes
	s.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d queued bytes after the epoch", left)
	}
}
