package directory

import (
	"context"
	"fmt"
	"math"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/proto"

	"github.com/keyline/keyline/directory/apierr"
	pb "github.com/keyline/keyline/proto"
)

// Default request limits (Config.Limits). See docs/operations.md.
const (
	DefaultMaxReads          = 256
	DefaultMaxStreamsPerPeer = 256
	DefaultRate              = 50000 // requests/s, all peers
	DefaultPeerRate          = 10000 // requests/s of one peer address
	DefaultMemoryBudget      = 64 << 20
	DefaultQueueBytes        = 128 << 20
	DefaultKeepaliveMinTime  = 10 * time.Second
	DefaultKeepaliveTime     = time.Minute
	DefaultKeepaliveTimeout  = 20 * time.Second
	DefaultMaxConnectionIdle = 15 * time.Minute

	// smallRequestCharge is added to a decoded write's message size for
	// its handling (validation, the queued entry's bookkeeping).
	smallRequestCharge = 4 << 10
)

// Limits protect the directory from floods. Each is checked when a
// request's headers arrive, before its message is read, so a refused request
// costs no memory for its body. A refused request fails with
// ResourceExhausted and reason RATE_LIMITED (a token bucket is empty) or
// OVERLOADED (a concurrency or memory bound is reached); clients retry
// later. Zero fields get the defaults; a negative value disables that
// limit (not for production).
type Limits struct {
	// MaxReads bounds the reads (every request but Update and Reset) in
	// progress, all peers together (default 256): beyond it reads are
	// refused at once rather than queued, which keeps the latency of the
	// admitted ones low. The bound is fair: while it is reached, a peer
	// with fewer reads in progress than its share (MaxReads / peers with
	// reads in progress) is still admitted, so a flood from many addresses
	// cannot lock out a client that sends a few requests at a time. Reads
	// in progress are thus at most 2 x MaxReads.
	MaxReads int
	// MaxStreamsPerPeer bounds the requests in progress from one peer IP
	// address (default 256), and the concurrent streams of one connection
	// (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: clients queue the rest).
	MaxStreamsPerPeer int
	// Rate and Burst are the token bucket of requests started, all peers
	// together: Rate requests/s on average, at most Burst at once (defaults
	// 50000/s, burst = Rate).
	Rate  float64
	Burst int
	// PeerRate and PeerBurst are the token bucket of one peer IP address
	// (defaults 10000/s, burst = PeerRate).
	PeerRate  float64
	PeerBurst int
	// MemoryBudget bounds the memory of Update and Reset requests in
	// progress (default 64 MiB). One is charged MaxRecvMsgSize from the
	// arrival of its headers until its message is decoded, then the
	// decoded message's size until it ends (while it waits for its epoch).
	// With the default 256 KiB message bound, at most 256 such messages are
	// being received at once. Reads are bounded by MaxReads instead, so a
	// flood of Updates cannot lock lookups out.
	MemoryBudget int64
	// QueueBytes bounds the leaves of validated updates waiting for their
	// epoch (besides Config.QueueSize); over it Update fails with
	// ResourceExhausted QUEUE_FULL (default 128 MiB).
	QueueBytes int64
	// KeepaliveMinTime: a client that pings more often than this is
	// disconnected (GOAWAY "too_many_pings"; default 10s). Pings without
	// requests in progress are permitted.
	KeepaliveMinTime time.Duration
	// KeepaliveTime and KeepaliveTimeout: the server pings a connection
	// idle for KeepaliveTime and closes it if the answer does not come
	// within KeepaliveTimeout (defaults 1m, 20s).
	KeepaliveTime    time.Duration
	KeepaliveTimeout time.Duration
	// MaxConnectionIdle closes a connection with no request for this long
	// (default 15m).
	MaxConnectionIdle time.Duration
}

func (l *Limits) withDefaults() error {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.MaxReads, DefaultMaxReads)
	def(&l.MaxStreamsPerPeer, DefaultMaxStreamsPerPeer)
	if l.Rate == 0 {
		l.Rate = DefaultRate
	}
	if l.PeerRate == 0 {
		l.PeerRate = DefaultPeerRate
	}
	def(&l.Burst, max(1, int(l.Rate)))
	def(&l.PeerBurst, max(1, int(l.PeerRate)))
	if l.MemoryBudget == 0 {
		l.MemoryBudget = DefaultMemoryBudget
	}
	if l.QueueBytes == 0 {
		l.QueueBytes = DefaultQueueBytes
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defd(&l.KeepaliveMinTime, DefaultKeepaliveMinTime)
	defd(&l.KeepaliveTime, DefaultKeepaliveTime)
	defd(&l.KeepaliveTimeout, DefaultKeepaliveTimeout)
	defd(&l.MaxConnectionIdle, DefaultMaxConnectionIdle)
	if l.KeepaliveMinTime < 0 || l.KeepaliveTime < 0 || l.KeepaliveTimeout < 0 || l.MaxConnectionIdle < 0 {
		return fmt.Errorf("%w: keepalive durations must not be negative", ErrConfig)
	}
	return nil
}

// tokenBucket holds up to burst tokens, refilled at rate per second.
type tokenBucket struct {
	tokens float64
	last   time.Time
}

func (b *tokenBucket) take(now time.Time, rate float64, burst int) bool {
	if rate < 0 {
		return true
	}
	if b.last.IsZero() {
		b.tokens = float64(burst)
	} else {
		b.tokens = min(float64(burst), b.tokens+now.Sub(b.last).Seconds()*rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// full reports whether the bucket would be full at now.
func (b *tokenBucket) full(now time.Time, rate float64, burst int) bool {
	return b.last.IsZero() || b.tokens+now.Sub(b.last).Seconds()*rate >= float64(burst)
}

type peerLimit struct {
	bucket  tokenBucket
	streams int // requests in progress
	reads   int // reads in progress
}

// maxTrackedPeers bounds the per-peer table: beyond it idle peers (no
// request in progress, bucket full) are forgotten.
const maxTrackedPeers = 1 << 16

// limiter enforces Limits in a gRPC tap handle (before a request's message
// is read); a request's charges are released when its stream ends.
type limiter struct {
	lim       Limits
	bigMsg    int64 // charge of an Update or Reset until decoded
	mu        sync.Mutex
	global    tokenBucket
	streams   int // requests in progress
	reads     int // reads in progress
	readPeers int // peers with reads in progress
	mem       int64
	peers     map[string]*peerLimit
}

func newLimiter(l Limits, maxRecvMsgSize int) *limiter {
	return &limiter{lim: l, bigMsg: int64(maxRecvMsgSize), peers: map[string]*peerLimit{}}
}

// Reasons of limit refusals.
const (
	reasonRateLimited = apierr.RateLimited
	reasonOverloaded  = apierr.Overloaded
)

func peerKey(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	if a, ok := p.Addr.(*net.TCPAddr); ok {
		return a.IP.String()
	}
	host, _, err := net.SplitHostPort(p.Addr.String())
	if err != nil {
		return p.Addr.String()
	}
	return host
}

func isWrite(method string) bool {
	return method == pb.Directory_Update_FullMethodName || method == pb.Directory_Reset_FullMethodName
}

// charge is one admitted request's hold on the limiter.
type charge struct {
	l     *limiter
	p     *peerLimit
	write bool
	mem   int64 // guarded by l.mu
}

type chargeKey struct{}

// admit is the tap handle.
func (l *limiter) admit(ctx context.Context, info *tap.Info) (context.Context, error) {
	key := peerKey(ctx)
	write := isWrite(info.FullMethodName)
	now := time.Now()
	l.mu.Lock()
	p := l.peers[key]
	if p == nil {
		if len(l.peers) >= maxTrackedPeers {
			l.sweep(now)
		}
		p = &peerLimit{}
		l.peers[key] = p
	}
	var err error
	switch {
	case l.lim.MaxStreamsPerPeer > 0 && p.streams >= l.lim.MaxStreamsPerPeer:
		err = apierr.New(codes.ResourceExhausted, reasonOverloaded, "%d requests in progress from your address, the limit; retry later", p.streams)
	case write && l.lim.MemoryBudget > 0 && l.mem+l.bigMsg > l.lim.MemoryBudget:
		err = apierr.New(codes.ResourceExhausted, reasonOverloaded, "the directory's memory budget for updates in progress (%d bytes) is used up; retry later", l.lim.MemoryBudget)
	case !write && l.lim.MaxReads > 0 && l.reads >= l.lim.MaxReads && p.reads >= max(1, l.lim.MaxReads/max(1, l.readPeers)):
		err = apierr.New(codes.ResourceExhausted, reasonOverloaded, "the directory has %d reads in progress, its limit, and %d of them are yours; retry later", l.reads, p.reads)
	case !p.bucket.take(now, l.lim.PeerRate, l.lim.PeerBurst):
		err = apierr.New(codes.ResourceExhausted, reasonRateLimited, "over %g requests/s from your address; retry later", l.lim.PeerRate)
	case !l.global.take(now, l.lim.Rate, l.lim.Burst):
		err = apierr.New(codes.ResourceExhausted, reasonRateLimited, "the directory is over its %g requests/s; retry later", l.lim.Rate)
	}
	if err != nil {
		l.mu.Unlock()
		return ctx, err
	}
	c := &charge{l: l, p: p, write: write}
	l.streams++
	p.streams++
	if write {
		c.mem = l.bigMsg
		l.mem += c.mem
	} else {
		if p.reads == 0 {
			l.readPeers++
		}
		l.reads++
		p.reads++
	}
	l.mu.Unlock()
	context.AfterFunc(ctx, c.release)
	return context.WithValue(ctx, chargeKey{}, c), nil
}

func (c *charge) release() {
	l := c.l
	l.mu.Lock()
	defer l.mu.Unlock()
	l.streams--
	c.p.streams--
	l.mem -= c.mem
	c.mem = 0
	if !c.write {
		l.reads--
		c.p.reads--
		if c.p.reads == 0 {
			l.readPeers--
		}
	}
}

// decoded lowers the memory charge of a write to the size of its decoded
// message.
func (c *charge) decoded(size int64) {
	if !c.write {
		return
	}
	l := c.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.write && c.mem > size {
		l.mem -= c.mem - size
		c.mem = size
	}
}

// sweep forgets idle peers; l.mu is held.
func (l *limiter) sweep(now time.Time) {
	for k, p := range l.peers {
		if p.streams == 0 && p.bucket.full(now, l.lim.PeerRate, l.lim.PeerBurst) {
			delete(l.peers, k)
		}
	}
}

// inFlight returns the requests in progress and the writes' memory charge.
func (l *limiter) inFlight() (int, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.streams, l.mem
}

// limitOptions returns the gRPC options that enforce the limits: the tap
// handle, keepalive parameters and enforcement, and the codec that answers
// malformed messages with InvalidArgument.
func (s *Server) limitOptions() []grpc.ServerOption {
	l := s.cfg.Limits
	streams := uint32(math.MaxUint32)
	if l.MaxStreamsPerPeer > 0 {
		streams = uint32(l.MaxStreamsPerPeer)
	}
	return []grpc.ServerOption{
		grpc.InTapHandle(s.limiter.admit),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: l.KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: l.KeepaliveTime, Timeout: l.KeepaliveTimeout, MaxConnectionIdle: l.MaxConnectionIdle}),
		grpc.MaxConcurrentStreams(streams),
		grpc.ForceServerCodec(strictCodec{}),
		grpc.ChainUnaryInterceptor(malformedInterceptor),
	}
}

// strictCodec is the proto codec, except that a message that does not
// parse is not an error here (gRPC would answer Internal): the message is
// left empty and marked, and malformedInterceptor answers InvalidArgument.
type strictCodec struct{}

func (strictCodec) Name() string { return "proto" }

func (strictCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("strictCodec: %T is not a proto message", v)
	}
	return proto.Marshal(m)
}

func (strictCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("strictCodec: %T is not a proto message", v)
	}
	if err := proto.Unmarshal(data, m); err != nil {
		proto.Reset(m)
		malformed.Store(m, err)
	}
	return nil
}

// malformed maps a request message that did not parse to the parse error,
// from strictCodec.Unmarshal to malformedInterceptor (which always runs
// next for that message).
var malformed sync.Map

// malformedInterceptor answers a request strictCodec could not parse with
// InvalidArgument, and lowers a write's memory charge to its decoded size.
func malformedInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err, ok := malformed.LoadAndDelete(req); ok {
		return nil, apierr.New(codes.InvalidArgument, apierr.MalformedRequest, "the request is not a valid %T protobuf message: %v", req, err)
	}
	if c, ok := ctx.Value(chargeKey{}).(*charge); ok {
		if m, ok := req.(proto.Message); ok {
			c.decoded(int64(proto.Size(m)) + smallRequestCharge)
		}
	}
	return h(ctx, req)
}

// dequeued releases e's share of queuedBytes (e was taken from queue).
func (s *Server) dequeued(e *entry) {
	s.mu.Lock()
	s.queuedBytes -= int64(len(e.leaf))
	s.mu.Unlock()
}
