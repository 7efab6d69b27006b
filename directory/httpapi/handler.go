package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keyline/keyline/directory/apierr"
	"github.com/keyline/keyline/log/tiles"
	"github.com/keyline/keyline/verifier"
	"github.com/keyline/keyline/verifier/jsonapi"
)

// Options configures a Handler. Source and Trust are required.
type Options struct {
	// Source is the directory (its public read methods).
	Source verifier.Source
	// Trust is the directory's trust file, served at /v1/trust and used to
	// verify the checkpoints the follower reads.
	Trust *verifier.TrustFile
	// QueueDepth, if set, reports the update queue for /metrics.
	QueueDepth func() (queued, capacity int)
	// PollInterval is how often the follower reads the checkpoint
	// (default 1s).
	PollInterval time.Duration
	// Web, if set, replaces the embedded verifier files (keyline.wasm and
	// wasm_exec.js) served under /web/wasm/: tests point it at a fresh
	// build.
	Web http.FileSystem
	// Logf receives operational messages (nil: discarded).
	Logf func(format string, args ...any)
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Handler is the HTTP server's handler. Start its follower with Run.
type Handler struct {
	opts    Options
	trust   *verifier.Trust
	trustJS []byte
	follow  *follower
	metrics *metrics
	mux     *http.ServeMux
	started chan struct{}
	once    sync.Once
}

// New returns a Handler for opts.
func New(opts Options) (*Handler, error) {
	if opts.Source == nil || opts.Trust == nil {
		return nil, errors.New("httpapi: Source and Trust are required")
	}
	t, err := opts.Trust.Trust()
	if err != nil {
		return nil, err
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	tj, err := json.MarshalIndent(opts.Trust, "", "  ")
	if err != nil {
		return nil, err
	}
	h := &Handler{opts: opts, trust: t, trustJS: append(tj, '\n'), started: make(chan struct{})}
	h.follow = newFollower(opts.Source, t)
	h.follow.now = opts.Now
	h.metrics = newMetrics(h.follow, opts.QueueDepth, opts.Now)
	var errMu sync.Mutex
	var lastErr string
	h.follow.onErr = func(err error) {
		h.metrics.syncErrs.Inc()
		errMu.Lock()
		defer errMu.Unlock()
		if err.Error() != lastErr { // log each distinct error once in a row
			lastErr = err.Error()
			opts.Logf("http: following the log: %v", err)
		}
	}
	h.routes()
	return h, nil
}

// Run polls the log every PollInterval until ctx ends. The first poll is
// done before Run returns to its loop, so Ready is meaningful right away.
func (h *Handler) Run(ctx context.Context) {
	h.follow.poll(ctx)
	h.once.Do(func() { close(h.started) })
	t := time.NewTicker(h.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.follow.poll(ctx)
		}
	}
}

// Sync polls the log once now (tests, export-tiles).
func (h *Handler) Sync(ctx context.Context) error { return h.follow.poll(ctx) }

// Snapshot returns what the follower knows of the log.
func (h *Handler) Snapshot() Snapshot { return h.follow.snapshot() }

// Tiles returns the tiles server, synced by the follower (for Export).
func (h *Handler) Tiles() *tiles.Server { return h.follow.tiles }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) routes() {
	m := http.NewServeMux()
	tilesH := cors(h.follow.tiles)
	m.Handle("GET /checkpoint", tilesH)
	m.Handle("GET /tile/", tilesH)
	m.Handle("GET /v1/lookup/{user}", h.api("Lookup", h.lookup))
	m.Handle("GET /v1/history/{user}", h.api("History", h.history))
	m.Handle("GET /v1/checkpoint", h.api("GetCheckpoint", h.checkpoint))
	m.Handle("GET /v1/consistency", h.api("GetConsistencyProof", h.consistency))
	m.Handle("GET /v1/entries", h.api("GetEntries", h.entries))
	m.Handle("GET /v1/trust", cors(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Write(h.trustJS)
	})))
	m.Handle("GET /metrics", promhttp.HandlerFor(h.metrics.reg, promhttp.HandlerOpts{}))
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	m.HandleFunc("GET /readyz", h.readyz)
	m.HandleFunc("GET /{$}", h.status)
	m.HandleFunc("GET /status.json", h.statusJSON)
	h.webRoutes(m)
	h.mux = m
}

// cors lets pages on any origin read public, unauthenticated resources.
func cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		next.ServeHTTP(w, r)
	})
}

// Ready reports whether the server should receive traffic: a checkpoint
// signed by the log verified and its tiles synced, the log matches it, and
// its epoch is younger than the trust file's max_checkpoint_age.
func (h *Handler) Ready() error {
	s := h.follow.snapshot()
	switch {
	case s.Corrupt:
		return errors.New("the log does not match a signed checkpoint: " + s.LastError)
	case !s.Synced:
		if s.LastError != "" {
			return errors.New("no verified checkpoint yet: " + s.LastError)
		}
		return errors.New("no verified checkpoint yet")
	}
	if age := h.opts.Now().Sub(s.Epoch.Time); age > h.trust.MaxAge {
		return fmt.Errorf("the latest epoch is %s old, over max_checkpoint_age %s: clients reject it", age.Truncate(time.Second), h.trust.MaxAge)
	}
	return nil
}

func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := h.Ready(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready:", err)
		return
	}
	fmt.Fprintln(w, "ready")
}

// api wraps a JSON endpoint: CORS, metrics, errors as JSON.
func (h *Handler) api(method string, f func(r *http.Request) (any, error)) http.Handler {
	return cors(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		v, err := f(r)
		h.metrics.observe("http", method, start, err)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if err != nil {
			writeError(w, err)
			return
		}
		json.NewEncoder(w).Encode(v)
	}))
}

// httpStatus maps gRPC codes as the gRPC-HTTP mapping does.
var httpStatus = map[codes.Code]int{
	codes.InvalidArgument: http.StatusBadRequest, codes.OutOfRange: http.StatusBadRequest,
	codes.FailedPrecondition: http.StatusBadRequest, codes.NotFound: http.StatusNotFound,
	codes.Unauthenticated: http.StatusUnauthorized, codes.PermissionDenied: http.StatusForbidden,
	codes.ResourceExhausted: http.StatusTooManyRequests, codes.Unavailable: http.StatusServiceUnavailable,
	codes.DeadlineExceeded: http.StatusGatewayTimeout, codes.Canceled: 499, codes.Aborted: http.StatusConflict,
}

func writeError(w http.ResponseWriter, err error) {
	body := jsonapi.ErrorBody{Code: "INTERNAL", Reason: apierr.Internal, Message: "internal error"}
	code := codes.Internal
	var ae *apierr.Error
	if errors.As(err, &ae) {
		code = ae.Code
		body.Reason, body.Message = ae.Reason, ae.Msg
		if code == codes.Internal {
			body.Message = "internal error (details in the server log)"
		}
	} else if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		code, body.Message = st.Code(), st.Message()
		body.Reason = apierr.Reason(err)
	}
	body.Code = codeName(code)
	hs, ok := httpStatus[code]
	if !ok {
		hs = http.StatusInternalServerError
	}
	w.WriteHeader(hs)
	json.NewEncoder(w).Encode(jsonapi.Error{Error: body})
}

// codeName is the canonical upper-case name of a gRPC code.
func codeName(c codes.Code) string {
	names := map[codes.Code]string{
		codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN", codes.InvalidArgument: "INVALID_ARGUMENT",
		codes.DeadlineExceeded: "DEADLINE_EXCEEDED", codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
		codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
		codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED", codes.OutOfRange: "OUT_OF_RANGE",
		codes.Unimplemented: "UNIMPLEMENTED", codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE",
		codes.DataLoss: "DATA_LOSS", codes.Unauthenticated: "UNAUTHENTICATED",
	}
	if n, ok := names[c]; ok {
		return n
	}
	return "UNKNOWN"
}

func badRequest(format string, args ...any) error {
	return apierr.New(codes.InvalidArgument, apierr.MalformedRequest, format, args...)
}

// uintParam parses query parameter name (def if absent).
func uintParam(r *http.Request, name string, def uint64) (uint64, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, badRequest("query parameter %s=%q is not a non-negative decimal integer", name, s)
	}
	return v, nil
}

func (h *Handler) lookup(r *http.Request) (any, error) {
	known, err := uintParam(r, "known_size", 0)
	if err != nil {
		return nil, err
	}
	b, err := h.opts.Source.Lookup(r.Context(), r.PathValue("user"), known)
	if err != nil {
		return nil, err
	}
	return jsonapi.FromLookup(b), nil
}

func (h *Handler) history(r *http.Request) (any, error) {
	from, err := uintParam(r, "from_version", 1)
	if err != nil {
		return nil, err
	}
	b, err := h.opts.Source.History(r.Context(), r.PathValue("user"), from)
	if err != nil {
		return nil, err
	}
	return jsonapi.FromHistory(b), nil
}

func (h *Handler) checkpoint(r *http.Request) (any, error) {
	cp, err := h.opts.Source.Checkpoint(r.Context())
	if err != nil {
		return nil, err
	}
	return jsonapi.Checkpoint{Checkpoint: base64.StdEncoding.EncodeToString(cp)}, nil
}

func (h *Handler) consistency(r *http.Request) (any, error) {
	oldSize, err := uintParam(r, "old", 0)
	if err != nil {
		return nil, err
	}
	newSize, err := uintParam(r, "new", 0)
	if err != nil {
		return nil, err
	}
	if r.URL.Query().Get("new") == "" {
		return nil, badRequest("query parameter new (the tree size to prove consistency with) is required")
	}
	p, err := h.opts.Source.ConsistencyProof(r.Context(), oldSize, newSize)
	if err != nil {
		return nil, err
	}
	out := jsonapi.Proof{Proof: []string{}}
	for _, x := range p {
		out.Proof = append(out.Proof, base64.StdEncoding.EncodeToString(x))
	}
	return out, nil
}

func (h *Handler) entries(r *http.Request) (any, error) {
	start, err := uintParam(r, "start", 0)
	if err != nil {
		return nil, err
	}
	end, err := uintParam(r, "end", 0)
	if err != nil {
		return nil, err
	}
	ls, err := h.opts.Source.Entries(r.Context(), start, end)
	if err != nil {
		return nil, err
	}
	out := jsonapi.Entries{Entries: []string{}}
	for _, l := range ls {
		out.Entries = append(out.Entries, base64.StdEncoding.EncodeToString(l))
	}
	return out, nil
}
