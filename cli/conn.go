package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keyline/keyline/directory/apierr"
	"github.com/keyline/keyline/directory/client"
	"github.com/keyline/keyline/verifier"
)

// dirConn is what the CLI needs from a directory connection: the verifier
// Source (every answer is verified) plus publishing. *client.Client
// implements it.
type dirConn interface {
	verifier.Source
	Update(ctx context.Context, accountState []byte) (*client.UpdateResult, error)
	Close() error
}

// dial connects (lazily) to the directory at --server, over TLS if --tls,
// --tls-ca or --tls-server-name is set.
func (a *app) dial(ctx context.Context) (dirConn, error) {
	opts, err := a.dialOptions()
	if err != nil {
		return nil, err
	}
	c, err := client.Dial(a.server, opts...)
	if err != nil {
		return nil, err
	}
	return &hintConn{Client: c, a: a}, nil
}

// tlsConfig returns the client TLS configuration of the global flags, or
// nil for plaintext.
func (a *app) tlsConfig() (*tls.Config, error) {
	if !a.useTLS && a.tlsCA == "" && a.tlsServerName == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, ServerName: a.tlsServerName}
	if a.tlsCA != "" {
		pem, err := os.ReadFile(a.tlsCA)
		if err != nil {
			return nil, failf("check --tls-ca", err, "cannot read the TLS CA certificate")
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usageErr("--tls-ca %s: no PEM CERTIFICATE block in the file", a.tlsCA)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// dialOptions returns the transport options of the global flags.
func (a *app) dialOptions() ([]grpc.DialOption, error) {
	cfg, err := a.tlsConfig()
	if err != nil || cfg == nil {
		return nil, err
	}
	return []grpc.DialOption{client.WithTLS(cfg)}, nil
}

// hintConn is a *client.Client whose "cannot reach" errors say what to
// check about TLS: a TLS mismatch or an untrusted certificate shows up as
// an unavailable directory.
type hintConn struct {
	*client.Client
	a *app
}

func (h *hintConn) hint(err error) error {
	if err == nil || apierr.Reason(err) != "" {
		return err // the directory answered (e.g. UNAVAILABLE while closing)
	}
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return err
	}
	cause := errors.New(st.Message())
	if strings.Contains(st.Message(), "connection refused") {
		cause = errors.New("connection refused")
	}
	e := &Error{Code: ExitNetwork, Kind: KindNetwork, Msg: fmt.Sprintf("cannot reach directory at %s", h.a.server), Err: cause}
	if h.a.useTLS || h.a.tlsCA != "" || h.a.tlsServerName != "" {
		e.Hint = "check that `keyline serve` at --server runs with --tls-cert; trust its certificate with --tls-ca FILE unless a system root signed it, and use --tls-server-name if it names another host"
	} else {
		e.Hint = "is `keyline serve` running? use --server; if the directory serves TLS, add --tls (or --tls-ca FILE)"
	}
	return e
}

func (h *hintConn) Lookup(ctx context.Context, userID string, knownSize uint64) (*verifier.LookupBundle, error) {
	r, err := h.Client.Lookup(ctx, userID, knownSize)
	return r, h.hint(err)
}

func (h *hintConn) History(ctx context.Context, userID string, fromVersion uint64) (*verifier.HistoryBundle, error) {
	r, err := h.Client.History(ctx, userID, fromVersion)
	return r, h.hint(err)
}

func (h *hintConn) Checkpoint(ctx context.Context) ([]byte, error) {
	r, err := h.Client.Checkpoint(ctx)
	return r, h.hint(err)
}

func (h *hintConn) ConsistencyProof(ctx context.Context, oldSize, newSize uint64) ([][]byte, error) {
	r, err := h.Client.ConsistencyProof(ctx, oldSize, newSize)
	return r, h.hint(err)
}

func (h *hintConn) Entries(ctx context.Context, start, end uint64) ([][]byte, error) {
	r, err := h.Client.Entries(ctx, start, end)
	return r, h.hint(err)
}

func (h *hintConn) Update(ctx context.Context, accountState []byte) (*client.UpdateResult, error) {
	r, err := h.Client.Update(ctx, accountState)
	return r, h.hint(err)
}
