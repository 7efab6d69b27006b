package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc"

	"github.com/keyline/keyline/directory"
	"github.com/keyline/keyline/directory/httpapi"
)

// httpServer is the HTTP side of `keyline serve --http`.
type httpServer struct {
	addr   string
	grpc   []grpc.ServerOption // the metrics interceptor for the gRPC server
	stop   func()
	errc   chan error
	hasJS  bool
	scheme string
}

// startHTTP serves srv's HTTP API (package httpapi) on addr, over TLS if
// tlsCfg is set, and starts its log follower. stop shuts both down.
func (a *app) startHTTP(srv *directory.Server, addr string, tlsCfg *tls.Config, logf func(string, ...any)) (*httpServer, error) {
	h, err := httpapi.New(httpapi.Options{Source: srv, Trust: srv.Trust(), QueueDepth: srv.QueueDepth, Logf: logf})
	if err != nil {
		return nil, failf("", err, "cannot start the HTTP server")
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, failf("choose another --http address, or stop the process using it", err, "cannot listen on %s", addr)
	}
	scheme := "http"
	if tlsCfg != nil {
		lis = tls.NewListener(lis, tlsCfg)
		scheme = "https"
	}
	ctx, cancel := context.WithCancel(context.Background())
	followed := make(chan struct{})
	go func() { h.Run(ctx); close(followed) }()
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	out := &httpServer{addr: lis.Addr().String(), grpc: []grpc.ServerOption{grpc.ChainUnaryInterceptor(h.UnaryInterceptor())}, errc: make(chan error, 1), hasJS: h.HasVerifier(), scheme: scheme}
	go func() {
		err := hs.Serve(lis)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		out.errc <- err
	}()
	out.stop = func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		hs.Shutdown(sctx)
		cancel()
		<-followed
	}
	return out, nil
}

// describe prints where the HTTP API is.
func (h *httpServer) describe(a *app) {
	base := h.scheme + "://" + h.addr
	fmt.Fprintf(a.out, "HTTP: tlog-tiles %s/checkpoint, JSON %s/v1/lookup/USER, status %s/, browser verification %s/verify, metrics %s/metrics\n", base, base, base, base, base)
	if !h.hasJS {
		fmt.Fprintf(a.errw, "keyline: warning: this binary has no WebAssembly verifier: %s/verify cannot verify (build it with scripts/build-wasm.sh before go build)\n", base)
	}
}

// httpErr returns the channel on which the HTTP server reports a failure
// (nil, which blocks forever, without --http).
func httpErr(h *httpServer) <-chan error {
	if h == nil {
		return nil
	}
	return h.errc
}
