// Package client is the gRPC client of a Keyline directory. A *Client
// implements verifier.Source (lookups and log reads, all to be verified by
// the caller) and submits updates and resets. Errors from the server are
// *apierr.Error values carrying the gRPC code and the ErrorInfo reason
// (see docs/api.md); match them with apierr.Reason or errors.Is.
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/keyline/keyline/directory/apierr"
	pb "github.com/keyline/keyline/proto"
	"github.com/keyline/keyline/verifier"
)

// DefaultMaxRecvMsgSize bounds a response (a History of 1000 large entries
// fits).
const DefaultMaxRecvMsgSize = 64 << 20

// ErrPlaintextAdminToken is returned by Reset, before the token is sent,
// when the connection to a non-loopback directory is not protected by TLS
// (or other transport credentials of security level PrivacyAndIntegrity).
var ErrPlaintextAdminToken = errors.New("directory client: refusing to send the admin token over a plaintext connection to a non-loopback address (use TLS: client.WithTLS)")

// Client talks to one directory.
type Client struct {
	conn *grpc.ClientConn
	rpc  pb.DirectoryClient
	// loopback: the target is a loopback address (or a unix socket), to
	// which Reset may send the admin token without TLS.
	loopback bool
}

// Dial returns a client for the directory at addr (host:port). Without
// options it uses a plaintext connection (loopback, private networks or a
// TLS-terminating proxy); pass WithTLS (or grpc.WithTransportCredentials)
// to use TLS. Later options override earlier ones. The connection is made
// lazily.
func Dial(addr string, opts ...grpc.DialOption) (*Client, error) {
	o := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(DefaultMaxRecvMsgSize)),
	}
	conn, err := grpc.NewClient(addr, append(o, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("directory client: %w", err)
	}
	return New(conn), nil
}

// WithTLS returns a dial option that connects over TLS with a copy of cfg
// (nil means the system roots and the host name of the address). A zero
// cfg.MinVersion becomes TLS 1.3, the version `keyline serve` requires.
func WithTLS(cfg *tls.Config) grpc.DialOption {
	if cfg == nil {
		cfg = &tls.Config{}
	} else {
		cfg = cfg.Clone()
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS13
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(cfg))
}

// New returns a client over an existing connection; Close closes it.
func New(conn *grpc.ClientConn) *Client {
	return &Client{conn: conn, rpc: pb.NewDirectoryClient(conn), loopback: IsLoopbackTarget(conn.Target())}
}

// IsLoopbackTarget reports whether a gRPC target (host:port, optionally
// with a dns:/// or passthrough:/// scheme, or a unix: socket) names this
// machine: "localhost", a loopback IP address or a unix socket. Host names
// other than localhost are not resolved and count as remote.
func IsLoopbackTarget(target string) bool {
	if strings.HasPrefix(target, "unix:") || strings.HasPrefix(target, "unix-abstract:") {
		return true
	}
	for _, scheme := range []string{"dns:", "passthrough:"} {
		if rest, ok := strings.CutPrefix(target, scheme); ok {
			target = rest
			if rest, ok := strings.CutPrefix(target, "//"); ok {
				// dns://authority/host:port: drop the authority.
				if i := strings.IndexByte(rest, '/'); i >= 0 {
					target = rest[i+1:]
				} else {
					target = rest
				}
			}
			break
		}
	}
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		host = strings.Trim(target, "[]")
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// adminToken is the bearer token of Reset as per-RPC credentials. gRPC
// itself refuses to send it, before any request byte is written, when
// requireTLS is set and the connection's security level is below
// PrivacyAndIntegrity (plaintext).
type adminToken struct {
	token      string
	requireTLS bool
}

func (a adminToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + a.token}, nil
}

func (a adminToken) RequireTransportSecurity() bool { return a.requireTLS }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// UpdateResult is the directory's acknowledgement of an update or reset.
type UpdateResult struct {
	Epoch      uint64
	LogIndex   uint64
	Leaf       []byte // the AccountUpdate leaf as appended
	Checkpoint []byte // signed checkpoint of the epoch containing it
}

// Update submits the canonical encoding of a signed AccountState and
// returns once its epoch is published.
func (c *Client) Update(ctx context.Context, state []byte) (*UpdateResult, error) {
	r, err := c.rpc.Update(ctx, &pb.UpdateRequest{AccountState: state})
	if err != nil {
		return nil, apierr.FromStatus(err)
	}
	return &UpdateResult{Epoch: r.GetEpoch(), LogIndex: r.GetLogIndex(), Leaf: r.GetLeaf(), Checkpoint: r.GetCheckpoint()}, nil
}

// Reset asks the directory, with its admin token, to reset userID's
// identity key to the one of state (reason "lost" or "compromised"). The
// token is sent only over TLS, or in plaintext to a loopback address;
// otherwise Reset fails with ErrPlaintextAdminToken and sends nothing.
func (c *Client) Reset(ctx context.Context, token, userID string, state []byte, reason string) (*UpdateResult, error) {
	creds := adminToken{token: token, requireTLS: !c.loopback}
	r, err := c.rpc.Reset(ctx, &pb.ResetRequest{UserId: userID, AccountState: state, Reason: reason}, grpc.PerRPCCredentials(creds))
	if err != nil {
		// The directory's own Unauthenticated errors always carry a
		// Keyline ErrorInfo; one without details is gRPC's refusal to send
		// transport-secure credentials over this connection.
		if st, ok := status.FromError(err); ok && creds.requireTLS && st.Code() == codes.Unauthenticated && len(st.Details()) == 0 {
			return nil, fmt.Errorf("%w: %s (%s)", ErrPlaintextAdminToken, c.conn.Target(), st.Message())
		}
		return nil, apierr.FromStatus(err)
	}
	return &UpdateResult{Epoch: r.GetEpoch(), LogIndex: r.GetLogIndex(), Leaf: r.GetLeaf(), Checkpoint: r.GetCheckpoint()}, nil
}

// Lookup implements verifier.Source.
func (c *Client) Lookup(ctx context.Context, userID string, knownSize uint64) (*verifier.LookupBundle, error) {
	r, err := c.rpc.Lookup(ctx, &pb.LookupRequest{UserId: userID, KnownTreeSize: knownSize})
	if err != nil {
		return nil, apierr.FromStatus(err)
	}
	return &verifier.LookupBundle{
		Checkpoint: r.GetCheckpoint(), VRFProof: r.GetVrfProof(), MapProof: r.GetMapProof(),
		EpochRecord: r.GetEpochRecord(), EpochRecordInclusion: r.GetEpochRecordInclusion(),
		AccountUpdate: r.GetAccountUpdate(), AccountUpdateIndex: r.GetAccountUpdateIndex(),
		Consistency: r.GetConsistency(),
	}, nil
}

// History implements verifier.Source. The server returns at most 1000
// entries per call (one page, all under one checkpoint); callers wanting
// more call again with fromVersion past the last entry's version.
func (c *Client) History(ctx context.Context, userID string, fromVersion uint64) (*verifier.HistoryBundle, error) {
	r, err := c.rpc.History(ctx, &pb.HistoryRequest{UserId: userID, FromVersion: fromVersion})
	if err != nil {
		return nil, apierr.FromStatus(err)
	}
	h := &verifier.HistoryBundle{Checkpoint: r.GetCheckpoint(), VRFProof: r.GetVrfProof()}
	for _, e := range r.GetEntries() {
		h.Entries = append(h.Entries, verifier.HistoryEntry{LogIndex: e.GetLogIndex(), Leaf: e.GetLeaf(), Inclusion: e.GetInclusion()})
	}
	return h, nil
}

// Checkpoint implements verifier.Source.
func (c *Client) Checkpoint(ctx context.Context) ([]byte, error) {
	r, err := c.rpc.GetCheckpoint(ctx, &pb.GetCheckpointRequest{})
	if err != nil {
		return nil, apierr.FromStatus(err)
	}
	return r.GetCheckpoint(), nil
}

// ConsistencyProof implements verifier.Source.
func (c *Client) ConsistencyProof(ctx context.Context, oldSize, newSize uint64) ([][]byte, error) {
	r, err := c.rpc.GetConsistencyProof(ctx, &pb.GetConsistencyProofRequest{OldSize: oldSize, NewSize: newSize})
	if err != nil {
		return nil, apierr.FromStatus(err)
	}
	return r.GetProof(), nil
}

// Entries implements verifier.Source (at most 1000 leaves per call).
func (c *Client) Entries(ctx context.Context, start, end uint64) ([][]byte, error) {
	r, err := c.rpc.GetEntries(ctx, &pb.GetEntriesRequest{Start: start, End: end})
	if err != nil {
		return nil, apierr.FromStatus(err)
	}
	return r.GetLeaves(), nil
}

var _ verifier.Source = (*Client)(nil)

// Conn returns the underlying connection.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }
